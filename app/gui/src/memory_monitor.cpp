#include "memory_monitor.h"

#include <algorithm>

#include "model_manager.h"
#include "qins/runtime/engine.h"

MemoryMonitor::MemoryMonitor(QObject* parent) : QObject(parent) {
  m_timer.setInterval(kMaxIntervalMs);
  connect(&m_timer, &QTimer::timeout, this, &MemoryMonitor::refresh);
  m_timer.start();
  refresh();
}

void MemoryMonitor::setModelManager(ModelManager* m) {
  if (m == m_modelManager) return;
  if (m_modelManager) disconnect(m_modelManager, nullptr, this, nullptr);
  m_modelManager = m;
  if (m) connect(m, &ModelManager::infoChanged, this, &MemoryMonitor::refresh);
  Q_EMIT modelManagerChanged();
  refresh();
}

void MemoryMonitor::setInterval(int ms) {
  ms = std::clamp(ms, 50, kMaxIntervalMs);
  if (ms == m_timer.interval()) return;
  m_timer.setInterval(ms);
  Q_EMIT intervalChanged();
}

void MemoryMonitor::setRunning(bool on) {
  if (on == m_timer.isActive()) return;
  if (on) m_timer.start(); else m_timer.stop();
  Q_EMIT runningChanged();
}

void MemoryMonitor::refresh() {
  const qins::MemoryReading r = qins::read_memory();
  m_resident = std::max<int64_t>(0, r.resident_bytes);
  m_peak = std::max<int64_t>(0, r.peak_resident_bytes);
  m_total = std::max<int64_t>(0, r.total_bytes);
  m_available = std::max<int64_t>(0, r.available_bytes);
  // The engine knows how big its weights and KV cache are; the OS knows what is resident. The
  // parts are clamped so that they never add up to more than the resident total.
  const qint64 weights = m_modelManager ? m_modelManager->weightBytes() : 0;
  const qint64 kv = m_modelManager ? m_modelManager->kvCacheBytes() : 0;
  m_weights = std::min(weights, m_resident);
  m_kv = std::min(kv, m_resident - m_weights);
  m_other = m_resident - m_weights - m_kv;
  ++m_readings;
  Q_EMIT updated();
}
