// ModelDownloads: the Models page's catalog (the Phi-3 family chat models, plus any repo id the user
// adds) with each model's sizes, licence and state — not downloaded, downloading x %, paused,
// downloaded, converting, converted — read from the disk (the Hugging Face cache and the app's
// models folder) and from the running job. One download at a time runs on a worker thread
// (DownloadWorker); progress arrives coalesced through queued signals, so the GUI never blocks.
// Pause keeps the partial files (Download again resumes, also after a restart); Cancel removes them.
// Each model is converted at the precision the user picks for it (8-bit QINS, the default, or 4-bit
// QINS-4; remembered per repo in QSettings): the file is NAME-projective.qins or NAME-qins4.qins, both
// can be on the disk, and the row's state, sizes and Load follow the chosen one.
#pragma once

#include <QAbstractListModel>
#include <QPointer>
#include <QThread>
#include <QtQml/qqmlregistration.h>

#include <atomic>
#include <vector>

#include "download_worker.h"
#include "model_catalog.h"
#include "model_library.h"

class ModelDownloads : public QAbstractListModel {
  Q_OBJECT
  QML_ELEMENT
  Q_PROPERTY(int count READ rowCount NOTIFY countChanged)
  Q_PROPERTY(bool busy READ busy NOTIFY busyChanged)
  Q_PROPERTY(QString activeRepo READ activeRepo NOTIFY busyChanged)
  // Refreshed when a model has been converted (or a cancel removed files).
  Q_PROPERTY(ModelLibrary* library READ library WRITE setLibrary NOTIFY libraryChanged)
  Q_PROPERTY(QString hubEndpoint READ hubEndpoint CONSTANT)
  Q_PROPERTY(QString cacheDir READ cacheDir WRITE setCacheDir NOTIFY foldersChanged)
  Q_PROPERTY(QString modelsDir READ modelsDir WRITE setModelsDir NOTIFY foldersChanged)
  Q_PROPERTY(bool hasToken READ hasToken CONSTANT)
  // Why "Add" refused the last repo id ("" when it did not).
  Q_PROPERTY(QString addError READ addError NOTIFY addErrorChanged)
  // The row the page should show first (set by "Get Phi-3.5-mini" on the welcome screen).
  Q_PROPERTY(int highlightedRow READ highlightedRow NOTIFY highlightedRowChanged)
 public:
  enum State { NotDownloaded, Downloading, Paused, Downloaded, Converting, Converted };
  Q_ENUM(State)
  // What a model is converted to. Bits8: 8-bit QINS codes (codebook "projective"); Bits4: QINS-4
  // layer projections at group 16, embedding and lm_head 8-bit (codebook "qins4").
  enum Precision { Bits8, Bits4 };
  Q_ENUM(Precision)
  enum Role {
    RepoRole = Qt::UserRole + 1,
    TitleRole,
    DescriptionRole,
    LicenceRole,
    SizesTextRole,      // "7.64 GB download · about 3.83 GB after conversion to 8-bit QINS"
    StateRole,          // State
    StateTextRole,      // "Downloading 42 %", "Paused at 1.20 GB of 7.64 GB", ...
    ProgressRole,       // 0..1 of the current stage (download bytes, or conversion)
    ProgressTextRole,   // "1.20 GB of 7.64 GB · 25.0 MB/s · 4 min 10 s left · file 2 of 9"
    ErrorRole,          // the last failure of this row, in words ("" when none)
    QinsPathRole,       // the converted file at the chosen precision ("" until converted)
    CustomRole,         // added by the user (not in the catalog)
    PrecisionRole,         // Precision: the one chosen for this model
    PrecisionOptionsRole,  // one label per Precision: "4-bit QINS-4 · about 2.24 GB · converted"
  };

  explicit ModelDownloads(QObject* parent = nullptr);
  ~ModelDownloads() override;

  int rowCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role) const override;
  QHash<int, QByteArray> roleNames() const override;

  // Starts (or resumes) the download of `repo`, then its conversion. False when another job runs.
  Q_INVOKABLE bool download(const QString& repo);
  // Stops the running job keeping what was downloaded (Download resumes it).
  Q_INVOKABLE void pause();
  // Stops the running job and removes its partial files.
  Q_INVOKABLE void cancel();
  // Adds "org/name[@revision]" to the list (and returns its row), or -1 with addError set.
  Q_INVOKABLE int addRepo(const QString& ref);
  // Re-reads every row's state from the disk.
  Q_INVOKABLE void refresh();
  Q_INVOKABLE int rowOf(const QString& repo) const;
  Q_INVOKABLE void highlight(const QString& repo);
  // Chooses what `repo` is converted to (and which of its files Load uses); remembered. False for
  // an unknown repo or precision, or while that repo's job runs.
  Q_INVOKABLE bool setPrecision(const QString& repo, int precision);
  // The converted file of `repo` at `precision` ("" when there is none).
  Q_INVOKABLE QString qinsPathOf(const QString& repo, int precision) const;

  bool busy() const { return !m_activeRepo.isEmpty(); }
  QString activeRepo() const { return m_activeRepo; }
  ModelLibrary* library() const { return m_library; }
  void setLibrary(ModelLibrary* library);
  QString hubEndpoint() const;
  QString cacheDir() const;
  void setCacheDir(const QString& dir);
  QString modelsDir() const { return m_modelsDir; }
  void setModelsDir(const QString& dir);
  bool hasToken() const;
  QString addError() const { return m_addError; }
  int highlightedRow() const { return m_highlightedRow; }

  State stateOf(const QString& repo) const;
  Precision precisionOf(const QString& repo) const;
  // "projective" | "qins4": the converter's codebook for a precision (and the file name's suffix).
  static QString codebookOf(Precision p);
  QString errorOf(const QString& repo) const;
  // Tests: the Hub client's options (endpoint, timeouts, token); cache_dir follows cacheDir.
  void setHubOptions(const qins::hub::HubOptions& options);

 Q_SIGNALS:
  void countChanged();
  void busyChanged();
  void libraryChanged();
  void foldersChanged();
  void addErrorChanged();
  void highlightedRowChanged();
  // A model is converted and can be loaded.
  void converted(const QString& repo, const QString& qinsPath);

 private:
  struct Row {
    explicit Row(CatalogModel m) : model(std::move(m)) {}
    CatalogModel model;
    QString revision = QStringLiteral("main");
    bool custom = false;
    State state = NotDownloaded;
    DownloadProgress progress;  // of the running job, or the last one
    qint64 partialBytes = 0;    // on disk in *.incomplete files
    QString error;
    Precision precision = Bits8;
    QString qinsPaths[2];  // the converted file per Precision ("" when none)
    const QString& qinsPath() const { return qinsPaths[precision]; }
  };
  void loadPrecision(Row& row) const;
  void readDiskState(Row& row) const;
  void changed(int row);
  void onProgress(const QString& repo, const DownloadProgress& p);
  void onFinished(const QString& repo, const QString& qinsPath);
  void onFailed(const QString& repo, DownloadWorker::Failure failure, const QString& message);
  void setActive(const QString& repo);

  std::vector<Row> m_rows;
  QThread m_thread;
  DownloadWorker* m_worker = nullptr;  // lives on m_thread; deleted after the thread ends
  std::atomic<bool> m_stop{false};
  std::atomic<bool> m_discard{false};
  QString m_activeRepo;
  Precision m_activePrecision = Bits8;  // of the running job
  QPointer<ModelLibrary> m_library;
  qins::hub::HubOptions m_hub;
  QString m_modelsDir;
  QString m_addError;
  int m_highlightedRow = -1;
};
