#include "sampling_settings.h"

#include <QSettings>
#include <algorithm>
#include <cmath>

namespace {
const char* kGroup = "sampling";
template <typename T>
T clampTo(T v, T lo, T hi) { return std::min(hi, std::max(lo, v)); }
// Slider values arrive as doubles with float noise; compare and store at 1e-3.
double rounded(double v) { return std::round(v * 1000.0) / 1000.0; }
}  // namespace

qins::SamplingParams SamplingSettings::defaults() {
  qins::SamplingParams p;
  p.temperature = 0.7f;
  p.top_p = 0.95f;
  p.top_k = 0;
  p.min_p = 0.0f;
  p.repetition_penalty = 1.0f;
  p.max_new_tokens = 512;
  p.random_seed = true;
  p.seed = 0;
  return p;
}

QString SamplingSettings::defaultSystemPrompt() {
  return QStringLiteral("You are a helpful assistant.");
}

SamplingSettings::SamplingSettings(QObject* parent)
    : QObject(parent), m_p(defaults()), m_systemPrompt(defaultSystemPrompt()) {
  load();
}

bool SamplingSettings::isDefault() const {
  const qins::SamplingParams d = defaults();
  return m_p.temperature == d.temperature && m_p.top_p == d.top_p && m_p.top_k == d.top_k &&
         m_p.min_p == d.min_p && m_p.repetition_penalty == d.repetition_penalty &&
         m_p.max_new_tokens == d.max_new_tokens && m_p.random_seed == d.random_seed && m_p.seed == d.seed &&
         m_systemPrompt == defaultSystemPrompt();
}

void SamplingSettings::load() {
  QSettings s;
  s.beginGroup(QLatin1String(kGroup));
  const qins::SamplingParams d = defaults();
  m_p.temperature = static_cast<float>(clampTo(s.value("temperature", d.temperature).toDouble(), 0.0, 2.0));
  m_p.top_p = static_cast<float>(clampTo(s.value("topP", d.top_p).toDouble(), 0.1, 1.0));
  m_p.top_k = clampTo(s.value("topK", d.top_k).toInt(), 0, 200);
  m_p.min_p = static_cast<float>(clampTo(s.value("minP", d.min_p).toDouble(), 0.0, 0.5));
  m_p.repetition_penalty = static_cast<float>(clampTo(s.value("repetitionPenalty", d.repetition_penalty).toDouble(), 1.0, 2.0));
  m_p.max_new_tokens = clampTo(s.value("maxNewTokens", d.max_new_tokens).toInt(), 50, 2048);
  m_p.random_seed = s.value("randomSeed", d.random_seed).toBool();
  m_p.seed = static_cast<uint64_t>(clampTo(s.value("seed", 0).toLongLong(), 0LL, 2147483647LL));
  m_systemPrompt = s.value("systemPrompt", defaultSystemPrompt()).toString();
  s.endGroup();
}

void SamplingSettings::save() const {
  QSettings s;
  s.beginGroup(QLatin1String(kGroup));
  s.setValue("temperature", static_cast<double>(m_p.temperature));
  s.setValue("topP", static_cast<double>(m_p.top_p));
  s.setValue("topK", m_p.top_k);
  s.setValue("minP", static_cast<double>(m_p.min_p));
  s.setValue("repetitionPenalty", static_cast<double>(m_p.repetition_penalty));
  s.setValue("maxNewTokens", m_p.max_new_tokens);
  s.setValue("randomSeed", m_p.random_seed);
  s.setValue("seed", static_cast<qlonglong>(m_p.seed));
  s.setValue("systemPrompt", m_systemPrompt);
  s.endGroup();
}

void SamplingSettings::commit() {
  save();
  Q_EMIT changed();
}

#define QINS_SET_FLOAT(field, value, lo, hi)                                  \
  do {                                                                         \
    const float next = static_cast<float>(rounded(clampTo(value, lo, hi)));    \
    if (next == m_p.field) return;                                             \
    m_p.field = next;                                                          \
    commit();                                                                  \
  } while (0)

void SamplingSettings::setTemperature(double v) { QINS_SET_FLOAT(temperature, v, 0.0, 2.0); }
void SamplingSettings::setTopP(double v) { QINS_SET_FLOAT(top_p, v, 0.1, 1.0); }
void SamplingSettings::setMinP(double v) { QINS_SET_FLOAT(min_p, v, 0.0, 0.5); }
void SamplingSettings::setRepetitionPenalty(double v) { QINS_SET_FLOAT(repetition_penalty, v, 1.0, 2.0); }
#undef QINS_SET_FLOAT

void SamplingSettings::setTopK(int v) {
  v = clampTo(v, 0, 200);
  if (v == m_p.top_k) return;
  m_p.top_k = v;
  commit();
}

void SamplingSettings::setMaxNewTokens(int v) {
  v = clampTo(v, 50, 2048);
  if (v == m_p.max_new_tokens) return;
  m_p.max_new_tokens = v;
  commit();
}

void SamplingSettings::setRandomSeed(bool v) {
  if (v == m_p.random_seed) return;
  m_p.random_seed = v;
  commit();
}

void SamplingSettings::setSeed(int v) {
  const uint64_t next = static_cast<uint64_t>(std::max(0, v));
  if (next == m_p.seed) return;
  m_p.seed = next;
  commit();
}

void SamplingSettings::setSystemPrompt(const QString& v) {
  if (v == m_systemPrompt) return;
  m_systemPrompt = v;
  commit();
}

void SamplingSettings::resetToDefaults() {
  m_p = defaults();
  m_systemPrompt = defaultSystemPrompt();
  commit();
}
