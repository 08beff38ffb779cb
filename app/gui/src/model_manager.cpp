#include "model_manager.h"

#include <QCoreApplication>
#include <QDir>
#include <QFileInfo>
#include <QSettings>

#include <algorithm>

#ifndef QINS_DEFAULT_MODEL_DIR
#define QINS_DEFAULT_MODEL_DIR ""
#endif

ModelManager::ModelManager(QObject* parent) : QObject(parent) {
  QSettings s;
  m_contextLength = std::clamp(s.value("model/contextLength", 4096).toInt(), 64, 131072);
  m_preferredDevice = s.value("model/device", QStringLiteral("auto")).toString();
  m_folderWeightFormat = s.value("model/folderWeightFormat", m_folderWeightFormat).toString();

  m_worker = new InferenceWorker;  // no parent: it moves to m_thread
  m_worker->moveToThread(&m_thread);
  m_thread.setObjectName(QStringLiteral("qins-inference"));
  connect(m_worker, &InferenceWorker::loadProgress, this,
          [this](quint64 loadId, double fraction, const QString& stage) {
    if (m_status != Loading || loadId != m_loadId) return;
    m_progress = fraction;
    m_stage = stage;
    Q_EMIT progressChanged();
  });
  connect(m_worker, &InferenceWorker::loaded, this, &ModelManager::onLoaded);
  connect(m_worker, &InferenceWorker::loadFailed, this, &ModelManager::onLoadFailed);
  m_thread.start();
}

ModelManager::~ModelManager() {
  Q_EMIT aboutToUnload();
  // Whatever runs on the worker ends soon: both flags are checked inside the engine's loops.
  m_worker->requestStop();
  m_worker->requestCancelLoad();
  m_thread.quit();
  m_thread.wait();
  delete m_worker;  // the thread has ended: no event of the worker's can still be running
}

void ModelManager::componentComplete() {
  if (m_autoLoad) loadDefault();
}

void ModelManager::setAutoLoad(bool v) {
  if (v == m_autoLoad) return;
  m_autoLoad = v;
  Q_EMIT autoLoadChanged();
}

void ModelManager::setContextLength(int v) {
  v = std::clamp(v, 64, 131072);
  if (v == m_contextLength) return;
  m_contextLength = v;
  QSettings().setValue("model/contextLength", v);
  Q_EMIT optionsChanged();
}

void ModelManager::setPreferredDevice(const QString& v) {
  if (v == m_preferredDevice) return;
  m_preferredDevice = v;
  QSettings().setValue("model/device", v);
  Q_EMIT optionsChanged();
}

void ModelManager::setFolderWeightFormat(const QString& v) {
  if (v == m_folderWeightFormat) return;
  m_folderWeightFormat = v;
  QSettings().setValue("model/folderWeightFormat", v);
  Q_EMIT optionsChanged();
}

double ModelManager::compressionRatio() const {
  if (m_info.file_bytes <= 0 || m_info.n_params <= 0) return 0.0;
  return 2.0 * static_cast<double>(m_info.n_params) / static_cast<double>(m_info.file_bytes);
}

QString ModelManager::loadableIn(const QString& candidate) {
  if (candidate.isEmpty()) return {};
  const QFileInfo fi(candidate);
  if (fi.isFile()) return candidate.endsWith(QLatin1String(".qins")) ? fi.absoluteFilePath() : QString();
  if (!fi.isDir()) return {};
  const QDir dir(fi.absoluteFilePath());
  if (dir.exists(QStringLiteral("config.json"))) return dir.absolutePath();
  const QStringList qins = dir.entryList({QStringLiteral("*.qins")}, QDir::Files, QDir::Name);
  if (!qins.isEmpty()) return dir.filePath(qins.first());
  return {};
}

namespace {
QString& startupModel() {
  static QString path;
  return path;
}
}  // namespace

void ModelManager::setStartupModel(const QString& path) { startupModel() = path; }

QString ModelManager::resolveDefaultModel(QStringList* searched) {
  QStringList looked;
  const QString env = !startupModel().isEmpty() ? startupModel() : qEnvironmentVariable("QINS_MODEL");
  if (!env.isEmpty()) {
    // An explicit choice is honoured even when it is wrong: the load then names the bad path.
    if (searched) *searched = {env};
    const QString ok = loadableIn(env);
    return ok.isEmpty() ? env : ok;
  }
  const QString last = QSettings().value("model/lastPath").toString();
  if (!last.isEmpty()) {
    looked << last;
    const QString ok = loadableIn(last);
    if (!ok.isEmpty()) return ok;
  }
  QStringList builtIn;
  if (qstrlen(QINS_DEFAULT_MODEL_DIR) > 0) builtIn << QStringLiteral(QINS_DEFAULT_MODEL_DIR);
  if (QCoreApplication::instance()) {
    const QDir app(QCoreApplication::applicationDirPath());
    builtIn << app.filePath(QStringLiteral("../share/qins-chat/model"))  // Linux install
            << app.filePath(QStringLiteral("../Resources/model"))        // macOS bundle
            << app.filePath(QStringLiteral("model"));                    // next to the executable
  }
  for (const QString& dir : builtIn) {
    looked << QDir::cleanPath(dir);
    const QString ok = loadableIn(dir);
    if (!ok.isEmpty()) return ok;
  }
  if (searched) *searched = looked;
  return {};
}

void ModelManager::loadDefault() {
  QStringList searched;
  const QString path = resolveDefaultModel(&searched);
  if (path.isEmpty()) {
    setStatus(NoModel, QStringLiteral("No model found (looked in %1). Open a .qins file or a Hugging Face "
                                      "model folder.")
                           .arg(searched.join(QStringLiteral(", "))));
    return;
  }
  load(path);
}

void ModelManager::openModel(const QUrl& fileOrFolder) {
  load(fileOrFolder.isLocalFile() ? fileOrFolder.toLocalFile() : fileOrFolder.toString());
}

void ModelManager::load(const QString& path) {
  Q_EMIT aboutToUnload();
  Q_EMIT aboutToLoad();
  m_loadingPath = path;
  m_progress = 0.0;
  m_stage = QStringLiteral("opening");
  if (m_info.n_params != 0) {
    m_info = {};
    Q_EMIT infoChanged();
  }
  setStatus(Loading, QStringLiteral("Loading %1").arg(QFileInfo(path).fileName()));
  Q_EMIT progressChanged();
  const quint64 loadId = ++m_loadId;
  m_worker->setWantedLoad(loadId);
  qins::LoadOptions options;
  options.device = m_preferredDevice.toStdString();
  options.context_length = m_contextLength;
  // A Hugging Face folder in f32 would need 4 bytes per parameter (15 GB for Phi-3.5-mini): by
  // default its projections are quantized to QINS codes while loading. (.qins files ignore this.)
  options.weight_format = m_folderWeightFormat.toStdString();
  InferenceWorker* worker = m_worker;
  QMetaObject::invokeMethod(m_worker, [worker, loadId, path, options] { worker->load(loadId, path, options); },
                            Qt::QueuedConnection);
}

void ModelManager::cancelLoad() {
  if (m_status == Loading) m_worker->requestCancelLoad();
}

void ModelManager::setStatus(Status s, const QString& message) {
  m_status = s;
  m_message = message;
  Q_EMIT statusChanged();
}

void ModelManager::onLoaded(quint64 loadId, const qins::ModelInfo& info) {
  if (loadId != m_loadId) return;
  m_info = info;
  m_progress = 1.0;
  QSettings().setValue("model/lastPath", m_loadingPath);
  Q_EMIT infoChanged();
  Q_EMIT progressChanged();
  setStatus(Ready, QString());
}

void ModelManager::onLoadFailed(quint64 loadId, const QString& error, bool cancelled) {
  if (loadId != m_loadId) return;
  setStatus(cancelled ? NoModel : Failed, error);
}
