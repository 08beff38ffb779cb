// Which model is loaded, loading it on the worker thread (with progress and Cancel), and what the
// statistics panel shows about it. Owns the inference thread and its InferenceWorker.
#pragma once

#include <QObject>
#include <QQmlParserStatus>
#include <QString>
#include <QStringList>
#include <QThread>
#include <QUrl>
#include <QtQml/qqmlregistration.h>

#include "inference_worker.h"

class ModelManager : public QObject, public QQmlParserStatus {
  Q_OBJECT
  QML_ELEMENT
  Q_INTERFACES(QQmlParserStatus)
  Q_PROPERTY(Status status READ status NOTIFY statusChanged)
  Q_PROPERTY(bool ready READ ready NOTIFY statusChanged)
  Q_PROPERTY(bool loading READ loading NOTIFY statusChanged)
  Q_PROPERTY(double progress READ progress NOTIFY progressChanged)
  Q_PROPERTY(QString stage READ stage NOTIFY progressChanged)
  Q_PROPERTY(QString message READ message NOTIFY statusChanged)
  Q_PROPERTY(QString loadingPath READ loadingPath NOTIFY statusChanged)
  Q_PROPERTY(bool autoLoad READ autoLoad WRITE setAutoLoad NOTIFY autoLoadChanged)
  Q_PROPERTY(int contextLength READ contextLength WRITE setContextLength NOTIFY optionsChanged)
  Q_PROPERTY(QString preferredDevice READ preferredDevice WRITE setPreferredDevice NOTIFY optionsChanged)
  // How a Hugging Face folder's projections are held in memory: "projective" (default) | "inverse" |
  // "uniform" (QINS codes, made at load) or "bf16" | "f32".
  Q_PROPERTY(QString folderWeightFormat READ folderWeightFormat WRITE setFolderWeightFormat NOTIFY optionsChanged)
  // About the loaded model (empty / 0 when none).
  Q_PROPERTY(QString modelName READ modelName NOTIFY infoChanged)
  Q_PROPERTY(QString modelPath READ modelPath NOTIFY infoChanged)
  Q_PROPERTY(QString format READ format NOTIFY infoChanged)
  Q_PROPERTY(QString codebook READ codebook NOTIFY infoChanged)
  Q_PROPERTY(QString device READ device NOTIFY infoChanged)
  Q_PROPERTY(QString deviceNote READ deviceNote NOTIFY infoChanged)
  Q_PROPERTY(QString deviceMode READ deviceMode NOTIFY infoChanged)
  Q_PROPERTY(QString chatTemplateNote READ chatTemplateNote NOTIFY infoChanged)
  Q_PROPERTY(qint64 parameterCount READ parameterCount NOTIFY infoChanged)
  Q_PROPERTY(qint64 fileBytes READ fileBytes NOTIFY infoChanged)
  Q_PROPERTY(qint64 weightBytes READ weightBytes NOTIFY infoChanged)
  Q_PROPERTY(qint64 kvCacheBytes READ kvCacheBytes NOTIFY infoChanged)
  Q_PROPERTY(int loadedContextLength READ loadedContextLength NOTIFY infoChanged)
  Q_PROPERTY(double loadSeconds READ loadSeconds NOTIFY infoChanged)
  Q_PROPERTY(double compressionRatio READ compressionRatio NOTIFY infoChanged)
 public:
  enum Status { NoModel, Loading, Ready, Failed };
  Q_ENUM(Status)

  explicit ModelManager(QObject* parent = nullptr);
  ~ModelManager() override;

  void classBegin() override {}
  void componentComplete() override;  // autoLoad: loads the default model

  // A model named on the command line (`qins-chat MODEL`): looked at before anything else.
  static void setStartupModel(const QString& path);
  // Where the default model is: the command line's model, else $QINS_MODEL, else the last model used (if it still exists), else
  // the built-in model (source tree models/demo, or installed next to the executable / in
  // share/qins-chat). Empty when there is none; `searched` lists the places looked at.
  static QString resolveDefaultModel(QStringList* searched = nullptr);
  // A .qins file, or a folder with config.json or one .qins file in it -> the path to load; else empty.
  static QString loadableIn(const QString& candidate);

  Q_INVOKABLE void loadDefault();
  Q_INVOKABLE void openModel(const QUrl& fileOrFolder);
  Q_INVOKABLE void load(const QString& path);
  Q_INVOKABLE void cancelLoad();

  Status status() const { return m_status; }
  bool ready() const { return m_status == Ready; }
  bool loading() const { return m_status == Loading; }
  double progress() const { return m_progress; }
  QString stage() const { return m_stage; }
  QString message() const { return m_message; }
  QString loadingPath() const { return m_loadingPath; }
  bool autoLoad() const { return m_autoLoad; }
  void setAutoLoad(bool v);
  int contextLength() const { return m_contextLength; }
  void setContextLength(int v);
  QString preferredDevice() const { return m_preferredDevice; }
  void setPreferredDevice(const QString& v);
  QString folderWeightFormat() const { return m_folderWeightFormat; }
  void setFolderWeightFormat(const QString& v);

  QString modelName() const { return QString::fromStdString(m_info.name); }
  QString modelPath() const { return QString::fromStdString(m_info.path); }
  QString format() const { return QString::fromStdString(m_info.format); }
  QString codebook() const { return QString::fromStdString(m_info.codebook); }
  QString device() const { return QString::fromStdString(m_info.device); }
  QString deviceNote() const { return QString::fromStdString(m_info.device_note); }
  QString deviceMode() const { return QString::fromStdString(m_info.device_mode); }
  QString chatTemplateNote() const { return QString::fromStdString(m_info.chat_template_note); }
  qint64 parameterCount() const { return m_info.n_params; }
  qint64 fileBytes() const { return m_info.file_bytes; }
  qint64 weightBytes() const { return m_info.weight_bytes; }
  qint64 kvCacheBytes() const { return m_info.kv_cache_bytes; }
  int loadedContextLength() const { return m_info.context_length; }
  double loadSeconds() const { return m_info.load_seconds; }
  // bf16 bytes of the parameters / bytes on disk (1 for a bf16 checkpoint; 0 when unknown).
  double compressionRatio() const;
  const qins::ModelInfo& info() const { return m_info; }

  InferenceWorker* worker() const { return m_worker; }

 Q_SIGNALS:
  void statusChanged();
  void progressChanged();
  void autoLoadChanged();
  void optionsChanged();
  void infoChanged();
  void aboutToLoad();  // a new model replaces the current one: stop what uses it
  // The engine is about to go (a new load, or the manager is destroyed): the local server lets go
  // of the worker's scheduler. Emitted before aboutToLoad, and first thing in the destructor.
  void aboutToUnload();

 private:
  void setStatus(Status s, const QString& message);
  void onLoaded(quint64 loadId, const qins::ModelInfo& info);
  void onLoadFailed(quint64 loadId, const QString& error, bool cancelled);

  QThread m_thread;
  quint64 m_loadId = 0;  // the newest load asked for; answers about older ones are ignored
  InferenceWorker* m_worker = nullptr;  // lives on m_thread; deleted after the thread ends
  Status m_status = NoModel;
  double m_progress = 0.0;
  QString m_stage;
  QString m_message;
  QString m_loadingPath;
  bool m_autoLoad = false;
  int m_contextLength = 4096;
  QString m_preferredDevice = QStringLiteral("auto");
  QString m_folderWeightFormat = QStringLiteral("projective");
  qins::ModelInfo m_info;
};
