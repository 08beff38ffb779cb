#include "model_downloads.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QSettings>

#include <cmath>

#include "qins/runtime/engine.h"
#include "theme.h"

namespace hub = qins::hub;

namespace {

QString bytesText(qint64 n) { return QString::fromStdString(hub::format_bytes(static_cast<uint64_t>(std::max<qint64>(n, 0)))); }

// The per-repo precision choice: {repo (lower case): codebook}.
const QString kPrecisionsKey = QStringLiteral("models/precisions");

}  // namespace

ModelDownloads::ModelDownloads(QObject* parent) : QAbstractListModel(parent) {
  m_modelsDir = QString::fromStdString(hub::app_models_dir());
  for (const auto& m : modelCatalog()) m_rows.push_back(Row{m});
  for (const QString& ref : QSettings().value(QStringLiteral("models/customRepos")).toStringList()) {
    try {
      const auto [repo, revision] = hub::parse_repo_ref(ref.toStdString());
      Row row{CatalogModel{QString::fromStdString(repo), repoName(QString::fromStdString(repo)),
                           QStringLiteral("Added by you"), QStringLiteral("see the model's page"), 0, 0, {}}};
      row.revision = QString::fromStdString(revision);
      row.custom = true;
      if (rowOf(row.model.repo) < 0) m_rows.push_back(row);
    } catch (const hub::HubError&) {
    }
  }

  for (Row& r : m_rows) loadPrecision(r);

  m_worker = new DownloadWorker(&m_stop, &m_discard);  // no parent: it moves to m_thread
  m_worker->moveToThread(&m_thread);
  m_thread.setObjectName(QStringLiteral("qins-download"));
  connect(m_worker, &DownloadWorker::progress, this, &ModelDownloads::onProgress);
  connect(m_worker, &DownloadWorker::finished, this, &ModelDownloads::onFinished);
  connect(m_worker, &DownloadWorker::failed, this, &ModelDownloads::onFailed);
  m_thread.start();
  refresh();
}

ModelDownloads::~ModelDownloads() {
  // A running pull stops at its next chunk (or during a stall) and keeps its partial files.
  m_stop = true;
  m_thread.quit();
  m_thread.wait();
  delete m_worker;
}

int ModelDownloads::rowCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : static_cast<int>(m_rows.size());
}

QHash<int, QByteArray> ModelDownloads::roleNames() const {
  return {{RepoRole, "repo"},         {TitleRole, "title"},
          {DescriptionRole, "description"}, {LicenceRole, "licence"},
          {SizesTextRole, "sizesText"}, {StateRole, "downloadState"},
          {StateTextRole, "stateText"}, {ProgressRole, "progress"},
          {ProgressTextRole, "progressText"}, {ErrorRole, "errorMessage"},
          {QinsPathRole, "qinsPath"},   {CustomRole, "custom"},
          {PrecisionRole, "precision"}, {PrecisionOptionsRole, "precisionOptions"}};
}

QVariant ModelDownloads::data(const QModelIndex& index, int role) const {
  if (!index.isValid() || index.row() >= rowCount()) return {};
  const Row& r = m_rows[static_cast<size_t>(index.row())];
  const DownloadProgress& p = r.progress;
  const double downloaded = p.total > 0 ? static_cast<double>(p.done) / static_cast<double>(p.total) : 0.0;
  switch (role) {
    case RepoRole: return r.model.repo;
    case TitleRole: return r.model.title;
    case DescriptionRole: return r.model.description;
    case LicenceRole: return r.model.licence;
    case SizesTextRole: {
      QString s = r.model.downloadBytes > 0 ? tr("%1 download").arg(bytesText(r.model.downloadBytes))
                                            : tr("download size: shown once the Hub lists the files");
      const qint64 converted = r.precision == Bits4 ? r.model.converted4Bytes : r.model.convertedBytes;
      const QString precision = r.precision == Bits4 ? tr("4-bit QINS-4") : tr("8-bit QINS");
      if (converted > 0) s += tr(" · about %1 after conversion to %2").arg(bytesText(converted), precision);
      else s += tr(" · converts to %1").arg(precision);
      if (r.state == Converted) s += tr(" · on disk: %1").arg(bytesText(QFileInfo(r.qinsPath()).size()));
      return s;
    }
    case StateRole: return r.state;
    case StateTextRole:
      switch (r.state) {
        case NotDownloaded: return tr("Not downloaded");
        case Downloading:
          return p.total > 0 ? tr("Downloading %1 %").arg(static_cast<int>(std::floor(downloaded * 100)))
                             : tr("Starting (%1)").arg(p.stage.isEmpty() ? tr("listing files") : p.stage);
        case Paused:
          return tr("Paused: %1 downloaded, Resume continues from there").arg(bytesText(r.partialBytes));
        case Downloaded: return tr("Downloaded, not converted yet");
        case Converting: return tr("Converting to .qins %1 %").arg(static_cast<int>(std::max(0.0, p.convertFraction) * 100));
        case Converted:
          return r.precision == Bits4 ? tr("Converted to 4-bit QINS-4: ready to load")
                                      : tr("Converted to 8-bit QINS: ready to load");
      }
      return {};
    case ProgressRole:
      return r.state == Converting ? std::max(0.0, p.convertFraction) : downloaded;
    case ProgressTextRole: {
      if (r.state != Downloading) return QString();
      if (p.total <= 0) return p.stage;
      QString s = tr("%1 of %2").arg(bytesText(p.done), bytesText(p.total));
      if (p.bytesPerSecond > 0) s += tr(" · %1/s").arg(bytesText(static_cast<qint64>(p.bytesPerSecond)));
      if (p.etaSeconds >= 0) s += tr(" · %1 left").arg(Format::seconds(p.etaSeconds));
      if (p.fileCount > 0) s += tr(" · file %1 of %2").arg(p.fileIndex).arg(p.fileCount);
      if (!p.file.isEmpty()) s += QStringLiteral(": ") + p.file;
      if (!p.stage.startsWith(QLatin1String("downloading"))) s += QStringLiteral(" (") + p.stage + QLatin1Char(')');
      return s;
    }
    case ErrorRole: return r.error;
    case QinsPathRole: return r.qinsPath();
    case CustomRole: return r.custom;
    case PrecisionRole: return r.precision;
    case PrecisionOptionsRole: {
      QStringList labels;
      for (const Precision p : {Bits8, Bits4}) {
        const qint64 bytes = p == Bits4 ? r.model.converted4Bytes : r.model.convertedBytes;
        QString label = p == Bits4 ? tr("4-bit QINS-4") : tr("8-bit QINS");
        if (bytes > 0) label += tr(" · about %1").arg(bytesText(bytes));
        label += p == Bits4 ? tr(" · faster decode, a little lower quality") : tr(" · best quality");
        if (!r.qinsPaths[p].isEmpty()) label += tr(" · converted");
        labels << label;
      }
      return labels;
    }
  }
  return {};
}

QString ModelDownloads::hubEndpoint() const {
  return QString::fromStdString(hub::HubClient(m_hub).endpoint());
}

QString ModelDownloads::cacheDir() const {
  return QString::fromStdString(m_hub.cache_dir.empty() ? hub::default_cache_dir() : m_hub.cache_dir);
}

void ModelDownloads::setCacheDir(const QString& dir) {
  if (dir == cacheDir()) return;
  m_hub.cache_dir = dir.toStdString();
  Q_EMIT foldersChanged();
  refresh();
}

void ModelDownloads::setModelsDir(const QString& dir) {
  if (dir == m_modelsDir) return;
  m_modelsDir = dir;
  Q_EMIT foldersChanged();
  refresh();
}

bool ModelDownloads::hasToken() const { return hub::HubClient(m_hub).has_token(); }

void ModelDownloads::setHubOptions(const qins::hub::HubOptions& options) {
  const std::string cache = m_hub.cache_dir;
  m_hub = options;
  if (m_hub.cache_dir.empty()) m_hub.cache_dir = cache;
  refresh();
}

void ModelDownloads::setLibrary(ModelLibrary* library) {
  if (library == m_library) return;
  m_library = library;
  Q_EMIT libraryChanged();
}

int ModelDownloads::rowOf(const QString& repo) const {
  for (size_t i = 0; i < m_rows.size(); ++i)
    if (m_rows[i].model.repo.compare(repo, Qt::CaseInsensitive) == 0) return static_cast<int>(i);
  return -1;
}

ModelDownloads::State ModelDownloads::stateOf(const QString& repo) const {
  const int i = rowOf(repo);
  return i < 0 ? NotDownloaded : m_rows[static_cast<size_t>(i)].state;
}

ModelDownloads::Precision ModelDownloads::precisionOf(const QString& repo) const {
  const int i = rowOf(repo);
  return i < 0 ? Bits8 : m_rows[static_cast<size_t>(i)].precision;
}

QString ModelDownloads::codebookOf(Precision p) { return p == Bits4 ? QStringLiteral("qins4") : QStringLiteral("projective"); }

QString ModelDownloads::qinsPathOf(const QString& repo, int precision) const {
  const int i = rowOf(repo);
  if (i < 0 || (precision != Bits8 && precision != Bits4)) return {};
  return m_rows[static_cast<size_t>(i)].qinsPaths[precision];
}

void ModelDownloads::loadPrecision(Row& r) const {
  const QString codebook = QSettings().value(kPrecisionsKey).toMap().value(r.model.repo.toLower()).toString();
  r.precision = codebook == codebookOf(Bits4) ? Bits4 : Bits8;
}

bool ModelDownloads::setPrecision(const QString& repo, int precision) {
  const int i = rowOf(repo);
  if (i < 0 || (precision != Bits8 && precision != Bits4)) return false;
  Row& r = m_rows[static_cast<size_t>(i)];
  if (r.model.repo == m_activeRepo) return false;  // the running job converts at the precision it started with
  if (r.precision == precision) return true;
  r.precision = static_cast<Precision>(precision);
  QVariantMap saved = QSettings().value(kPrecisionsKey).toMap();
  saved.insert(r.model.repo.toLower(), codebookOf(r.precision));
  QSettings().setValue(kPrecisionsKey, saved);
  readDiskState(r);  // converted at this precision, or what the download stands at
  changed(i);
  return true;
}

QString ModelDownloads::errorOf(const QString& repo) const {
  const int i = rowOf(repo);
  return i < 0 ? QString() : m_rows[static_cast<size_t>(i)].error;
}

void ModelDownloads::highlight(const QString& repo) {
  const int i = rowOf(repo);
  if (i == m_highlightedRow) return;
  m_highlightedRow = i;
  Q_EMIT highlightedRowChanged();
}

void ModelDownloads::readDiskState(Row& r) const {
  r.qinsPaths[Bits8].clear();
  r.qinsPaths[Bits4].clear();
  r.partialBytes = 0;
  // Converted: <models>/NAME-CODEBOOK.qins whose recorded origin (when it has one) is this repo; its
  // codebook says the precision (qins4: 4-bit, any other: 8-bit). The name the worker writes for a
  // precision wins over other files of that precision.
  const QDir models(m_modelsDir);
  const QString stem = repoName(r.model.repo) + QLatin1Char('-');
  for (const QString& name : models.entryList({stem + QStringLiteral("*.qins")}, QDir::Files, QDir::Name)) {
    Precision p = Bits8;
    try {
      const auto info = qins::read_model_file_info(models.filePath(name).toStdString());
      if (!info.origin_repo.empty() &&
          QString::fromStdString(info.origin_repo).compare(r.model.repo, Qt::CaseInsensitive) != 0)
        continue;
      p = info.codebook == "qins4" ? Bits4 : Bits8;
    } catch (const std::exception&) {
      continue;  // not a readable .qins: the local list shows why
    }
    if (r.qinsPaths[p].isEmpty() || name == stem + codebookOf(p) + QStringLiteral(".qins"))
      r.qinsPaths[p] = models.filePath(name);
  }
  if (!r.qinsPath().isEmpty()) {
    r.state = Converted;
    return;
  }
  const QDir repoDir(QString::fromStdString(hub::repo_cache_dir(cacheDir().toStdString(), r.model.repo.toStdString())));
  QFile ref(repoDir.filePath(QStringLiteral("refs/") + r.revision));
  QString commit = r.revision;
  if (ref.open(QIODevice::ReadOnly)) commit = QString::fromUtf8(ref.readAll()).trimmed();
  if (ModelLibrary::isCompleteFolder(QDir(repoDir.filePath(QStringLiteral("snapshots/") + commit)))) {
    r.state = Downloaded;
    return;
  }
  const QDir blobs(repoDir.filePath(QStringLiteral("blobs")));
  for (const QFileInfo& f : blobs.entryInfoList(QDir::Files)) r.partialBytes += f.size();
  r.state = blobs.exists() && !blobs.isEmpty(QDir::Files) ? Paused : NotDownloaded;
}

void ModelDownloads::refresh() {
  for (size_t i = 0; i < m_rows.size(); ++i) {
    if (m_rows[i].model.repo == m_activeRepo) continue;  // the job says what it is doing
    readDiskState(m_rows[i]);
  }
  if (!m_rows.empty()) Q_EMIT dataChanged(index(0), index(rowCount() - 1));
}

void ModelDownloads::changed(int row) {
  if (row >= 0) Q_EMIT dataChanged(index(row), index(row));
}

void ModelDownloads::setActive(const QString& repo) {
  m_activeRepo = repo;
  Q_EMIT busyChanged();
}

bool ModelDownloads::download(const QString& repo) {
  const int i = rowOf(repo);
  if (i < 0 || busy()) return false;
  Row& r = m_rows[static_cast<size_t>(i)];
  // No job runs: nothing reads the flags until the next one starts.
  m_stop = false;
  m_discard = false;
  r.error.clear();
  r.state = Downloading;
  r.progress = DownloadProgress{};
  r.progress.stage = tr("listing files");
  m_activePrecision = r.precision;
  setActive(r.model.repo);
  changed(i);
  DownloadJob job{r.model.repo, r.revision, m_modelsDir, codebookOf(r.precision), m_hub};
  if (job.hub.cache_dir.empty()) job.hub.cache_dir = cacheDir().toStdString();
  DownloadWorker* worker = m_worker;
  QMetaObject::invokeMethod(m_worker, [worker, job] { worker->run(job); }, Qt::QueuedConnection);
  return true;
}

void ModelDownloads::pause() {
  if (busy()) m_stop = true;
}

void ModelDownloads::cancel() {
  if (!busy()) return;
  m_discard = true;
  m_stop = true;
}

int ModelDownloads::addRepo(const QString& ref) {
  QString error;
  int row = -1;
  try {
    const auto [repo, revision] = hub::parse_repo_ref(ref.trimmed().toStdString());
    const QString qrepo = QString::fromStdString(repo);
    row = rowOf(qrepo);
    if (row < 0) {
      Row r{CatalogModel{qrepo, repoName(qrepo), tr("Added by you"), tr("see the model's page"), 0, 0, {}}};
      r.revision = QString::fromStdString(revision);
      r.custom = true;
      loadPrecision(r);
      readDiskState(r);
      row = rowCount();
      beginInsertRows({}, row, row);
      m_rows.push_back(r);
      endInsertRows();
      Q_EMIT countChanged();
      QStringList saved = QSettings().value(QStringLiteral("models/customRepos")).toStringList();
      saved << (r.revision == QLatin1String("main") ? qrepo : qrepo + QLatin1Char('@') + r.revision);
      QSettings().setValue(QStringLiteral("models/customRepos"), saved);
    }
  } catch (const std::exception& e) {
    error = tr("“%1” is not a Hugging Face repo id (ORG/NAME, optionally @REVISION): %2")
                .arg(ref, QString::fromStdString(e.what()));
  }
  if (error != m_addError) {
    m_addError = error;
    Q_EMIT addErrorChanged();
  }
  if (row >= 0) highlight(m_rows[static_cast<size_t>(row)].model.repo);
  return row;
}

void ModelDownloads::onProgress(const QString& repo, const DownloadProgress& p) {
  const int i = rowOf(repo);
  if (i < 0 || repo != m_activeRepo) return;
  Row& r = m_rows[static_cast<size_t>(i)];
  r.progress = p;
  r.state = p.convertFraction >= 0 ? Converting : Downloading;
  if (r.model.downloadBytes <= 0 && p.total > 0) r.model.downloadBytes = p.total;  // a repo the Hub just listed
  changed(i);
}

void ModelDownloads::onFinished(const QString& repo, const QString& qinsPath) {
  const int i = rowOf(repo);
  setActive(QString());
  if (i >= 0) {
    Row& r = m_rows[static_cast<size_t>(i)];
    r.state = Converted;  // the choice cannot change while the job runs: it is this precision
    r.qinsPaths[m_activePrecision] = qinsPath;
    r.error.clear();
    changed(i);
  }
  if (m_library) m_library->refresh();
  Q_EMIT converted(repo, qinsPath);
}

void ModelDownloads::onFailed(const QString& repo, DownloadWorker::Failure failure, const QString& message) {
  const int i = rowOf(repo);
  setActive(QString());
  if (i < 0) return;
  Row& r = m_rows[static_cast<size_t>(i)];
  readDiskState(r);  // what is on the disk now: paused (partial files kept), downloaded, ...
  r.error = failure == DownloadWorker::Failure::Paused || failure == DownloadWorker::Failure::Cancelled ? QString() : message;
  changed(i);
  if (m_library) m_library->refresh();
}
