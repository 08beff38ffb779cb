#include "model_library.h"

#include <QDir>
#include <QDirIterator>
#include <QFileInfo>
#include <QJsonDocument>
#include <QJsonObject>

#include "qins/io/hub.h"
#include "qins/runtime/engine.h"
#include "theme.h"

namespace hub = qins::hub;

namespace {
QString bytesText(qint64 n) { return QString::fromStdString(hub::format_bytes(static_cast<uint64_t>(std::max<qint64>(n, 0)))); }

// Bytes of the files a folder's entries point at (snapshot entries are symlinks to blobs).
qint64 folderBytes(const QString& dir) {
  qint64 total = 0;
  QDirIterator it(dir, QDir::Files, QDirIterator::Subdirectories);
  while (it.hasNext()) total += QFileInfo(it.next()).size();  // size() follows a symlink
  return total;
}
}  // namespace

bool ModelLibrary::isCompleteFolder(const QDir& snap) {
  if (!snap.exists(QStringLiteral("config.json")) || !snap.exists(QStringLiteral("tokenizer.model"))) return false;
  if (snap.exists(QStringLiteral("model.safetensors"))) return true;
  QFile index(snap.filePath(QStringLiteral("model.safetensors.index.json")));
  if (!index.open(QIODevice::ReadOnly)) return false;
  const QJsonObject map = QJsonDocument::fromJson(index.readAll()).object().value(QStringLiteral("weight_map")).toObject();
  if (map.isEmpty()) return false;
  for (const auto& v : map)
    if (!snap.exists(v.toString())) return false;
  return true;
}

ModelLibrary::ModelLibrary(QObject* parent)
    : QAbstractListModel(parent),
      m_modelsDir(QString::fromStdString(hub::app_models_dir())),
      m_cacheDir(QString::fromStdString(hub::default_cache_dir())) {
  refresh();
}

int ModelLibrary::rowCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : static_cast<int>(m_entries.size());
}

QHash<int, QByteArray> ModelLibrary::roleNames() const {
  return {{NameRole, "name"},         {PathRole, "path"},         {KindRole, "kind"},
          {SizeRole, "sizeBytes"},    {SizeTextRole, "sizeText"}, {CodebookRole, "codebook"},
          {OriginRole, "origin"},     {ParamsTextRole, "paramsText"}, {DeleteTextRole, "deleteText"}};
}

QVariant ModelLibrary::data(const QModelIndex& index, int role) const {
  if (!index.isValid() || index.row() >= rowCount()) return {};
  const Entry& e = m_entries[static_cast<size_t>(index.row())];
  switch (role) {
    case NameRole: return e.name;
    case PathRole: return e.path;
    case KindRole: return e.kind;
    case SizeRole: return e.size;
    case SizeTextRole: return bytesText(e.size);
    case CodebookRole: return e.codebook;
    case OriginRole: return e.origin;
    case ParamsTextRole: return e.paramsText;
    case DeleteTextRole: return e.deleteText;
  }
  return {};
}

void ModelLibrary::setModelsDir(const QString& dir) {
  if (dir == m_modelsDir) return;
  m_modelsDir = dir;
  Q_EMIT foldersChanged();
  refresh();
}

void ModelLibrary::setCacheDir(const QString& dir) {
  if (dir == m_cacheDir) return;
  m_cacheDir = dir;
  Q_EMIT foldersChanged();
  refresh();
}

void ModelLibrary::setError(const QString& e) {
  if (e == m_error) return;
  m_error = e;
  Q_EMIT errorMessageChanged();
}

void ModelLibrary::refresh() {
  std::vector<Entry> entries;
  const QDir models(m_modelsDir);
  for (const QFileInfo& f : models.entryInfoList({QStringLiteral("*.qins")}, QDir::Files, QDir::Name)) {
    Entry e;
    e.kind = QStringLiteral("qins");
    e.path = f.absoluteFilePath();
    e.deletePath = e.path;
    e.size = f.size();
    e.name = f.completeBaseName();
    e.deleteText = tr("Delete the converted model %1 (%2)? The file is removed from the disk.").arg(f.fileName(), bytesText(e.size));
    try {
      const auto info = qins::read_model_file_info(e.path.toStdString());
      e.codebook = QString::fromStdString(info.codebook);
      e.paramsText = tr("%1 parameters").arg(Format::count(info.n_params));
      e.origin = info.origin_repo.empty()
                     ? tr("converted from the folder %1").arg(QString::fromStdString(info.name))
                     : tr("%1 at %2").arg(QString::fromStdString(info.origin_repo),
                                          QString::fromStdString(info.origin_commit).left(7));
    } catch (const std::exception& ex) {
      e.codebook = QStringLiteral("?");
      e.origin = tr("unreadable: %1").arg(QString::fromStdString(ex.what()));
    }
    entries.push_back(e);
  }
  // <cache>/models--ORG--NAME/snapshots/<commit>: one entry per snapshot with a config.json.
  const QDir cache(m_cacheDir);
  for (const QString& repoDir : cache.entryList({QStringLiteral("models--*")}, QDir::Dirs, QDir::Name)) {
    const QDir snapshots(cache.filePath(repoDir + QStringLiteral("/snapshots")));
    const QString repo = repoDir.mid(8).replace(QStringLiteral("--"), QStringLiteral("/"));
    for (const QString& commit : snapshots.entryList(QDir::Dirs | QDir::NoDotAndDotDot, QDir::Name)) {
      const QDir snap(snapshots.filePath(commit));
      if (!isCompleteFolder(snap)) continue;  // a paused download is not a model yet
      Entry e;
      e.kind = QStringLiteral("folder");
      e.name = repo;
      e.path = snap.absolutePath();
      e.deletePath = cache.filePath(repoDir);
      e.size = folderBytes(e.path);
      e.codebook = tr("none (safetensors)");
      e.origin = tr("Hugging Face cache, commit %1").arg(commit.left(7));
      e.deleteText = tr("Delete the downloaded files of %1 (%2) from the Hugging Face cache (%3)? Other tools that "
                        "use the same cache lose them too; converted .qins files are kept.")
                         .arg(repo, bytesText(e.size), e.deletePath);
      entries.push_back(e);
    }
  }
  beginResetModel();
  m_entries = std::move(entries);
  endResetModel();
  Q_EMIT countChanged();
}

int ModelLibrary::rowOfPath(const QString& path) const {
  for (size_t i = 0; i < m_entries.size(); ++i)
    if (m_entries[i].path == path) return static_cast<int>(i);
  return -1;
}

bool ModelLibrary::remove(const QString& path) {
  const int row = rowOfPath(path);
  if (row < 0) {
    setError(tr("%1 is not in the list of models.").arg(path));
    return false;
  }
  const Entry& e = m_entries[static_cast<size_t>(row)];
  const bool ok = e.kind == QLatin1String("qins") ? QFile::remove(e.deletePath) : QDir(e.deletePath).removeRecursively();
  setError(ok ? QString() : tr("Could not delete %1 (check its permissions).").arg(e.deletePath));
  refresh();
  return ok;
}
