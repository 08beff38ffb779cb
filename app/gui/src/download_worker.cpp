#include "download_worker.h"

#include <QDir>
#include <QElapsedTimer>
#include <QFileInfo>


#include "model_catalog.h"
#include "qins/runtime/engine.h"

namespace hub = qins::hub;

namespace {

QString tokenHelp() {
  return QStringLiteral(
      "To use it, accept its conditions on the model's page on huggingface.co, create an access token there "
      "(Settings → Access Tokens), then either set the environment variable HF_TOKEN before starting QINS Chat "
      "or write the token into the file ~/.cache/huggingface/token (`huggingface-cli login` does that).");
}

// The user's words for a Hub error; the Hub client's own message (repo, file, hashes) follows.
std::pair<DownloadWorker::Failure, QString> describe(const hub::HubError& e, const QString& repo) {
  const QString detail = QString::fromStdString(e.what());
  switch (e.kind()) {
    case hub::HubErrorKind::GatedRepo:
      return {DownloadWorker::Failure::Gated,
              QStringLiteral("%1 is a gated model: the Hub asks you to accept its licence first. %2\n(%3)")
                  .arg(repo, tokenHelp(), detail)};
    case hub::HubErrorKind::Unauthorized:
      return {DownloadWorker::Failure::Unauthorized,
              QStringLiteral("The Hub refused access to %1 (missing or invalid token). %2\n(%3)").arg(repo, tokenHelp(), detail)};
    case hub::HubErrorKind::Network:
    case hub::HubErrorKind::Stalled:
    case hub::HubErrorKind::Server:
    case hub::HubErrorKind::RateLimited:
      return {DownloadWorker::Failure::Network,
              QStringLiteral("The download stopped: the Hub could not be reached or did not answer. Nothing is "
                             "lost: Resume continues from the bytes already downloaded.\n(%1)").arg(detail)};
    case hub::HubErrorKind::DiskFull:
      return {DownloadWorker::Failure::DiskFull,
              QStringLiteral("Not enough disk space for %1. Free some space, then press Resume: what was "
                             "downloaded is kept.\n(%2)").arg(repo, detail)};
    case hub::HubErrorKind::RepoNotFound:
    case hub::HubErrorKind::RevisionNotFound:
    case hub::HubErrorKind::EntryNotFound:
      return {DownloadWorker::Failure::NotFound,
              QStringLiteral("%1 was not found on the Hub (check the spelling; a private repo needs a token).\n(%2)")
                  .arg(repo, detail)};
    default:
      return {DownloadWorker::Failure::Other, detail};
  }
}

// Removes the partial downloads (<cache>/models--ORG--NAME/blobs/*.incomplete) of a cancelled pull.
void discardPartial(const std::string& cacheDir, const QString& repo) {
  const QDir blobs(QString::fromStdString(hub::repo_cache_dir(cacheDir, repo.toStdString())) +
                   QStringLiteral("/blobs"));
  for (const QString& name : blobs.entryList({QStringLiteral("*.incomplete")}, QDir::Files))
    QFile::remove(blobs.filePath(name));
}

}  // namespace

DownloadWorker::DownloadWorker(const std::atomic<bool>* stop, const std::atomic<bool>* discard)
    : m_stop(stop), m_discard(discard) {
  qRegisterMetaType<DownloadJob>();
  qRegisterMetaType<DownloadProgress>();
}

void DownloadWorker::run(const DownloadJob& job) {
  const std::string repo = job.repo.toStdString();
  hub::HubClient client(job.hub);
  QElapsedTimer sinceLast;
  DownloadProgress last;
  // Coalesced: at most one signal per kProgressIntervalMs, except when the stage or file changes.
  auto report = [&](const DownloadProgress& p) {
    const bool changed = p.stage != last.stage || p.file != last.file;
    if (changed || !sinceLast.isValid() || sinceLast.elapsed() >= kProgressIntervalMs) {
      sinceLast.restart();
      last = p;
      Q_EMIT progress(job.repo, p);
    }
  };
  try {
    const hub::PullResult r = client.pull(
        repo, job.revision.toStdString(),
        [&](const hub::PullProgress& hp) {
          DownloadProgress p;
          p.stage = QString::fromStdString(hp.stage);
          p.file = QString::fromStdString(hp.file);
          p.fileIndex = hp.file_index;
          p.fileCount = hp.file_count;
          p.done = static_cast<qint64>(hp.done);
          p.total = static_cast<qint64>(hp.total);
          p.bytesPerSecond = hp.bytes_per_second;
          p.etaSeconds = hp.eta_seconds;
          report(p);
          return !m_stop->load();
        },
        m_stop);

    const QString snapshot = QString::fromStdString(r.snapshot_dir);
    if (!QFileInfo::exists(snapshot + QStringLiteral("/tokenizer.model"))) {
      Q_EMIT failed(job.repo, Failure::Other,
                    QStringLiteral("%1 has no tokenizer.model (SentencePiece), which QINS needs to convert it. The "
                                   "downloaded files are kept in %2.").arg(job.repo, snapshot));
      return;
    }
    QDir().mkpath(job.modelsDir);
    const QString out = QDir(job.modelsDir).filePath(repoName(job.repo) + QLatin1Char('-') + job.codebook +
                                                     QStringLiteral(".qins"));
    qins::ModelOrigin origin;
    origin.name = repoName(job.repo).toStdString();
    origin.origin_json = hub::origin_json(client.endpoint(), repo, job.revision.toStdString(), r);
    DownloadProgress p = last;
    p.stage = QStringLiteral("converting to .qins");
    p.file.clear();
    p.bytesPerSecond = 0.0;
    p.etaSeconds = -1.0;
    p.done = p.total;
    qins::convert_model(r.snapshot_dir, out.toStdString(), job.codebook.toStdString(), origin,
                        [&](double fraction, std::string_view) {
                          p.convertFraction = fraction;
                          report(p);
                          return !m_stop->load();
                        });
    Q_EMIT finished(job.repo, out);
  } catch (const qins::Cancelled&) {
    const bool discard = m_discard->load();
    if (discard) discardPartial(client.cache_dir(), job.repo);
    Q_EMIT failed(job.repo, discard ? Failure::Cancelled : Failure::Paused, QString());
  } catch (const hub::HubError& e) {
    const auto [failure, message] = describe(e, job.repo);
    Q_EMIT failed(job.repo, failure, message);
  } catch (const std::exception& e) {
    // Conversion errors (and the rare system error): the downloaded files stay in the cache.
    Q_EMIT failed(job.repo, Failure::Other, QString::fromStdString(e.what()));
  }
}
