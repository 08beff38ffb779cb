// Owns the engine and its session; lives on a worker QThread (ModelManager moves it there).
// Every engine call happens on that thread: loading, generating, unloading. The GUI thread talks
// to it only through queued calls and signals, plus two atomic flags (stop, cancel load).
#pragma once

#include <QObject>
#include <QString>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "qins/runtime/batch.h"
#include "qins/runtime/engine.h"

Q_DECLARE_METATYPE(qins::ModelInfo)
Q_DECLARE_METATYPE(qins::GenerationStats)
Q_DECLARE_METATYPE(qins::BatchScheduler*)

class InferenceWorker : public QObject {
  Q_OBJECT
 public:
  // Text reaches the GUI at most every kFlushMs (plus once at the end): a long reply is appended
  // in a few hundred chunks, not re-rendered once per token.
  static constexpr int kFlushMs = 30;

  explicit InferenceWorker(QObject* parent = nullptr);
  ~InferenceWorker() override;

  // Thread-safe (any thread). Flags are cleared by the GUI before it queues a request, so a
  // stop issued before the worker picks the request up is not lost.
  void requestStop() { m_stop.store(true); }
  void clearStop() { m_stop.store(false); }
  // Loads are numbered; only the newest one wanted may run to the end. A new load (or Cancel)
  // makes any older one stop at its next progress report.
  void setWantedLoad(quint64 loadId) { m_wantedLoad.store(loadId); }
  void requestCancelLoad() { m_wantedLoad.store(0); }

  // Test hook, called on the worker thread after each piece is received (before it is queued):
  // lets a test slow generation down or hold it at a known point. Set it while idle.
  void setPieceHookForTesting(std::function<void(int pieceIndex)> hook);

  // Worker-thread entry points; call through QMetaObject::invokeMethod(worker, lambda, Qt::QueuedConnection).
  void load(quint64 loadId, const QString& path, const qins::LoadOptions& options);
  void generate(quint64 requestId, const std::vector<qins::ChatMessage>& messages,
                const qins::SamplingParams& params);
  void unload();
  // The batched scheduler over this worker's engine, for the local server (LocalServer). While it
  // exists every reply of the app is one more sequence of it too, so the app and the server never
  // run the engine at the same time from two threads. `serial` is echoed back in the signals.
  // startScheduler answers schedulerReady (the pointer stays valid until stopScheduler, a load or
  // unload, whichever comes first) or schedulerFailed.
  void startScheduler(quint64 serial, int parallel);
  void stopScheduler();

 Q_SIGNALS:
  void loadProgress(quint64 loadId, double fraction, const QString& stage);
  void loaded(quint64 loadId, const qins::ModelInfo& info);
  void loadFailed(quint64 loadId, const QString& error, bool cancelled);
  void unloaded();
  // `pieces`: pieces received so far; `elapsedS`: seconds since the request started (live stats).
  void textChunk(quint64 requestId, const QString& text, int pieces, double elapsedS);
  void generationFinished(quint64 requestId, const qins::GenerationStats& stats);
  void generationFailed(quint64 requestId, const QString& error);
  void schedulerReady(quint64 serial, qins::BatchScheduler* scheduler);
  void schedulerFailed(quint64 serial, const QString& error);

 private:
  // The path Engine::load gets: a .qins file as it is; a Hugging Face folder is first converted
  // (once, with its own progress stage) into a .qins file in the app's data folder.
  QString loadablePath(const QString& path, const qins::ProgressFn& progress, const std::string& codebook);
  // generate() while the scheduler exists: the reply is submitted to it and relayed from here.
  void generateBatched(quint64 requestId, const std::vector<qins::ChatMessage>& messages,
                       const qins::SamplingParams& params);

  std::unique_ptr<qins::Engine> m_engine;
  std::unique_ptr<qins::Session> m_session;
  std::atomic<bool> m_stop{false};
  std::atomic<quint64> m_wantedLoad{0};
  std::mutex m_hookMutex;
  std::function<void(int)> m_pieceHook;
  std::unique_ptr<qins::BatchScheduler> m_scheduler;  // declared last: destroyed before the engine
};
