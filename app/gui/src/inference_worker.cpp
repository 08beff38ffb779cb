#include "inference_worker.h"

#include <QDateTime>
#include <QDir>
#include <QFileInfo>
#include <QStandardPaths>

#include <QElapsedTimer>
#include <condition_variable>
#include <string>

InferenceWorker::InferenceWorker(QObject* parent) : QObject(parent) {
  qRegisterMetaType<qins::ModelInfo>();
  qRegisterMetaType<qins::GenerationStats>();
  qRegisterMetaType<qins::BatchScheduler*>();
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
    m_scheduler.reset();
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
  m_scheduler.reset();
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
  if (m_scheduler) {
    generateBatched(requestId, messages, params);
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

void InferenceWorker::startScheduler(quint64 serial, int parallel) {
  if (!m_engine) {
    Q_EMIT schedulerFailed(serial, QStringLiteral("No model is loaded."));
    return;
  }
  try {
    if (!m_scheduler) {
      qins::SchedulerOptions options;
      options.parallel = parallel;
      m_scheduler = std::make_unique<qins::BatchScheduler>(*m_engine, options);
    }
    Q_EMIT schedulerReady(serial, m_scheduler.get());
  } catch (const std::exception& e) {
    Q_EMIT schedulerFailed(serial, QString::fromStdString(e.what()));
  }
}

void InferenceWorker::stopScheduler() { m_scheduler.reset(); }

void InferenceWorker::generateBatched(quint64 requestId, const std::vector<qins::ChatMessage>& messages,
                                      const qins::SamplingParams& params) {
  // The scheduler thread appends; this thread relays to the GUI every kFlushMs (the first piece
  // at once) and turns the stop flag into a cancel. (The piece hook of the tests is not called here.)
  struct Shared {
    std::mutex m;
    std::condition_variable cv;
    std::string pending;
    int pieces = 0;
    bool done = false;
    qins::BatchResult result;
  };
  auto shared = std::make_shared<Shared>();
  qins::BatchRequest request;
  request.messages = messages;
  request.params = params;
  qins::BatchCallbacks callbacks;
  callbacks.on_piece = [shared](std::string_view piece) {
    {
      std::lock_guard<std::mutex> lock(shared->m);
      shared->pending.append(piece);
      ++shared->pieces;
    }
    shared->cv.notify_all();
    return true;
  };
  callbacks.on_done = [shared](const qins::BatchResult& r) {
    {
      std::lock_guard<std::mutex> lock(shared->m);
      shared->result = r;
      shared->done = true;
    }
    shared->cv.notify_all();
  };
  QElapsedTimer sinceStart;
  sinceStart.start();
  std::shared_ptr<qins::BatchHandle> handle;
  try {
    handle = m_scheduler->submit(std::move(request), std::move(callbacks));
  } catch (const std::exception& e) {
    Q_EMIT generationFailed(requestId, QString::fromStdString(e.what()));
    return;
  }
  bool firstFlushed = false;
  bool cancelled = false;
  for (;;) {
    std::string text;
    int pieces = 0;
    bool done = false;
    {
      std::unique_lock<std::mutex> lock(shared->m);
      shared->cv.wait_for(lock, std::chrono::milliseconds(firstFlushed ? kFlushMs : 5),
                          [&] { return shared->done || (!firstFlushed && !shared->pending.empty()); });
      text.swap(shared->pending);
      pieces = shared->pieces;
      done = shared->done;
    }
    if (!text.empty()) {
      Q_EMIT textChunk(requestId, QString::fromUtf8(text.data(), static_cast<int>(text.size())), pieces,
                       sinceStart.nsecsElapsed() * 1e-9);
      firstFlushed = true;
    }
    if (done) break;
    if (!cancelled && m_stop.load()) {
      handle->cancel();
      cancelled = true;
    }
  }
  const qins::BatchResult& r = shared->result;
  if (r.finish_reason == "error") {
    Q_EMIT generationFailed(requestId, QString::fromStdString(r.error));
  } else {
    Q_EMIT generationFinished(requestId, r.stats);
  }
}
