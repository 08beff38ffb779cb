// DownloadWorker: lives on ModelDownloads' download thread. Pulls a repo from the Hugging Face Hub
// (qins::hub::HubClient: resume, verification) and converts it to .qins (qins::convert_model),
// reporting coalesced progress through queued signals. Pause and cancel are an atomic flag checked
// by the pull (between chunks, also during a stall) and by the converter's progress callback.
#pragma once

#include <QMetaType>
#include <QObject>
#include <QString>

#include <atomic>

#include "qins/io/hub.h"

// One request, copied to the worker: it never reads the GUI's state.
struct DownloadJob {
  QString repo;      // "org/name"
  QString revision;  // "main", a tag or a commit
  QString modelsDir; // where the .qins goes
  QString codebook;  // inverse | projective | uniform
  qins::hub::HubOptions hub;
};

// What the progress view shows (bytes are whole-pull totals).
struct DownloadProgress {
  QString stage;  // "listing", "downloading", ..., "converting to .qins"
  QString file;
  int fileIndex = 0, fileCount = 0;
  qint64 done = 0, total = 0;
  double bytesPerSecond = 0.0;
  double etaSeconds = -1.0;
  double convertFraction = -1.0;  // >= 0 while converting
};
Q_DECLARE_METATYPE(DownloadJob)
Q_DECLARE_METATYPE(DownloadProgress)

class DownloadWorker : public QObject {
  Q_OBJECT
 public:
  // Why a job ended early; kinds the page words differently.
  enum class Failure { Paused, Cancelled, Gated, Unauthorized, Network, DiskFull, NotFound, Other };
  Q_ENUM(Failure)

  // `stop` and `discard` belong to ModelDownloads and outlive the worker's thread.
  DownloadWorker(const std::atomic<bool>* stop, const std::atomic<bool>* discard);

  // On the worker thread: pull, then convert. Ends with finished() or failed(), always.
  void run(const DownloadJob& job);

  // Minimum interval between two progress signals (a stage or file change is sent at once).
  static constexpr int kProgressIntervalMs = 100;

 Q_SIGNALS:
  void progress(const QString& repo, const DownloadProgress& p);
  void finished(const QString& repo, const QString& qinsPath);
  void failed(const QString& repo, DownloadWorker::Failure failure, const QString& message);

 private:
  const std::atomic<bool>* m_stop;
  const std::atomic<bool>* m_discard;
};
