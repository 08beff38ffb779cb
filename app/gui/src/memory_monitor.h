// The memory gauge: this process's resident memory as the OS reports it (qins::read_memory:
// Linux /proc, macOS task_info), split into model weights, KV cache and the rest, against the
// machine's total and available memory. Polled by a QTimer on the GUI thread (a /proc read
// takes microseconds), so it keeps updating while the worker generates.
#pragma once

#include <QObject>
#include <QPointer>
#include <QTimer>
#include <QtQml/qqmlregistration.h>

#include "model_manager.h"

class MemoryMonitor : public QObject {
  Q_OBJECT
  QML_ELEMENT
  Q_PROPERTY(ModelManager* modelManager READ modelManager WRITE setModelManager NOTIFY modelManagerChanged)
  Q_PROPERTY(int interval READ interval WRITE setInterval NOTIFY intervalChanged)
  Q_PROPERTY(bool running READ running WRITE setRunning NOTIFY runningChanged)
  Q_PROPERTY(qint64 residentBytes READ residentBytes NOTIFY updated)
  Q_PROPERTY(qint64 peakResidentBytes READ peakResidentBytes NOTIFY updated)
  Q_PROPERTY(qint64 weightBytes READ weightBytes NOTIFY updated)
  Q_PROPERTY(qint64 kvCacheBytes READ kvCacheBytes NOTIFY updated)
  Q_PROPERTY(qint64 otherBytes READ otherBytes NOTIFY updated)
  Q_PROPERTY(qint64 totalBytes READ totalBytes NOTIFY updated)
  Q_PROPERTY(qint64 availableBytes READ availableBytes NOTIFY updated)
  Q_PROPERTY(int readings READ readings NOTIFY updated)
 public:
  static constexpr int kMaxIntervalMs = 1000;  // the gauge updates at least once a second

  explicit MemoryMonitor(QObject* parent = nullptr);

  ModelManager* modelManager() const { return m_modelManager; }
  void setModelManager(ModelManager* m);
  int interval() const { return m_timer.interval(); }
  void setInterval(int ms);  // clamped to [50, 1000]
  bool running() const { return m_timer.isActive(); }
  void setRunning(bool on);

  qint64 residentBytes() const { return m_resident; }
  qint64 peakResidentBytes() const { return m_peak; }
  qint64 weightBytes() const { return m_weights; }
  qint64 kvCacheBytes() const { return m_kv; }
  qint64 otherBytes() const { return m_other; }
  qint64 totalBytes() const { return m_total; }
  qint64 availableBytes() const { return m_available; }
  int readings() const { return m_readings; }

  Q_INVOKABLE void refresh();

 Q_SIGNALS:
  void modelManagerChanged();
  void intervalChanged();
  void runningChanged();
  void updated();

 private:
  QTimer m_timer;
  QPointer<ModelManager> m_modelManager;
  qint64 m_resident = 0, m_peak = 0, m_weights = 0, m_kv = 0, m_other = 0, m_total = 0, m_available = 0;
  int m_readings = 0;
};
