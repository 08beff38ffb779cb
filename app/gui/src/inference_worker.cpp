#include "inference_worker.h"

#include <QDateTime>
#include <QDir>
#include <QFileInfo>
#include <QStandardPaths>

#include <QElapsedTimer>
#include <string>

InferenceWorker::InferenceWorker(QObject* parent) : QObject(parent) {
  qRegisterMetaType<qins::ModelInfo>();
  qRegisterMetaType<qins::GenerationStats>();
}

InferenceWorker::~InferenceWorker() = default;

void InferenceWorker::setPieceHookForTesting(std::function<void(int)> hook) {
  std::lock_guard<std::mutex> lock(m_hookMutex);
  m_pieceHook = std::move(hook);
}

QString InferenceWorker::loadablePath(const QString& path, const qins::ProgressFn& progress,
                                      const std::string& codebook) {
  const QFileInfo source(path);
  if (!source.isDir()) return path;
  // A Hugging Face folder is converted once into the app's data folder, then loaded from there;
  // the conversion is redone when the folder's files are newer than the converted file.
  const QString dir = QStandardPaths::writableLocation(QStandardPaths::AppDataLocation) + QStringLiteral("/models");
  QDir().mkpath(dir);
  const QString target = dir + QLatin1Char('/') + source.fileName() + QLatin1Char('-') +
                         QString::fromStdString(codebook) + QStringLiteral(".qins");
  QDateTime newest;
  for (const QFileInfo& f : QDir(path).entryInfoList(QDir::Files))
    if (!newest.isValid() || f.lastModified() > newest) newest = f.lastModified();
  const QFileInfo converted(target);
  if (!converted.exists() || converted.lastModified() < newest)
    qins::convert_model(path.toStdString(), target.toStdString(), codebook, progress);
  return target;
}

void InferenceWorker::load(quint64 loadId, const QString& path, const qins::LoadOptions& options) {
  double lastFraction = -1.0;
  std::string lastStage;
  const qins::ProgressFn progress = [&](double fraction, std::string_view stage) {
    // The engine may report per tensor; the GUI needs no more than ~200 updates per load.
    if (fraction - lastFraction >= 0.005 || fraction >= 1.0 || stage != lastStage) {
      lastFraction = fraction;
      lastStage = std::string(stage);
      Q_EMIT loadProgress(loadId, fraction, QString::fromStdString(lastStage));
    }
    return m_wantedLoad.load() == loadId;
  };
  try {
    if (m_wantedLoad.load() != loadId) throw qins::Cancelled();  // superseded while queued
    // Drop the old model first: two Phi-3 models at once may not fit in memory.
    m_session.reset();
    m_engine.reset();
    const std::string& fmt = options.weight_format;
    const std::string codebook = (fmt == "inverse" || fmt == "uniform") ? fmt : std::string("projective");
    const QString source = loadablePath(path, progress, codebook);
    std::unique_ptr<qins::Engine> engine = qins::Engine::load(source.toStdString(), options, progress);
    if (m_wantedLoad.load() != loadId) throw qins::Cancelled();
    m_session = engine->new_session();
    m_engine = std::move(engine);
    Q_EMIT loaded(loadId, m_engine->info());
  } catch (const qins::Cancelled&) {
    Q_EMIT loadFailed(loadId, QStringLiteral("Loading %1 was cancelled.").arg(path), true);
  } catch (const std::exception& e) {
    Q_EMIT loadFailed(loadId, QString::fromStdString(e.what()), false);
  }
}

void InferenceWorker::unload() {
  m_session.reset();
  m_engine.reset();
  Q_EMIT unloaded();
}

void InferenceWorker::generate(quint64 requestId, const std::vector<qins::ChatMessage>& messages,
                               const qins::SamplingParams& params) {
  if (!m_session) {
    Q_EMIT generationFailed(requestId, QStringLiteral("No model is loaded."));
    return;
  }
  std::function<void(int)> hook;
  {
    std::lock_guard<std::mutex> lock(m_hookMutex);
    hook = m_pieceHook;
  }
  // Pieces are whole UTF-8 characters (engine.h), so a byte buffer always converts cleanly.
  std::string pending;
  QElapsedTimer sinceFlush;
  sinceFlush.start();
  QElapsedTimer sinceStart;
  sinceStart.start();
  int pieceIndex = 0;
  bool firstFlushed = false;
  const qins::TokenFn onPiece = [&](std::string_view piece) {
    pending.append(piece);
    if (hook) hook(pieceIndex);
    ++pieceIndex;
    // The first piece goes out at once (time to first token is visible); then every kFlushMs.
    if (!firstFlushed || sinceFlush.elapsed() >= kFlushMs) {
      Q_EMIT textChunk(requestId, QString::fromUtf8(pending.data(), static_cast<int>(pending.size())), pieceIndex,
                       sinceStart.nsecsElapsed() * 1e-9);
      pending.clear();
      sinceFlush.restart();
      firstFlushed = true;
    }
    return !m_stop.load();
  };
  try {
    const qins::GenerationStats stats = m_session->generate(messages, params, onPiece, &m_stop);
    if (!pending.empty())
      Q_EMIT textChunk(requestId, QString::fromUtf8(pending.data(), static_cast<int>(pending.size())), pieceIndex,
                       sinceStart.nsecsElapsed() * 1e-9);
    Q_EMIT generationFinished(requestId, stats);
  } catch (const std::exception& e) {
    if (!pending.empty())
      Q_EMIT textChunk(requestId, QString::fromUtf8(pending.data(), static_cast<int>(pending.size())), pieceIndex,
                       sinceStart.nsecsElapsed() * 1e-9);
    // The session's cache may be half-written: start the next request from scratch.
    m_session->reset();
    Q_EMIT generationFailed(requestId, QString::fromStdString(e.what()));
  }
}
