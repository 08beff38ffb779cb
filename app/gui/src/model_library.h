// ModelLibrary: the models on this computer — every converted .qins in the app's models folder and
// every model folder in the Hugging Face cache (snapshots) — with size on disk, codebook and origin,
// for the Models page's local list (Load, Delete). A .qins is described from its header and small
// metadata blobs (qins::read_model_file_info), never by loading it.
#pragma once

#include <QAbstractListModel>
#include <QDir>
#include <QtQml/qqmlregistration.h>

#include <vector>

class ModelLibrary : public QAbstractListModel {
  Q_OBJECT
  QML_ELEMENT
  Q_PROPERTY(int count READ rowCount NOTIFY countChanged)
  Q_PROPERTY(QString modelsDir READ modelsDir WRITE setModelsDir NOTIFY foldersChanged)
  Q_PROPERTY(QString cacheDir READ cacheDir WRITE setCacheDir NOTIFY foldersChanged)
  Q_PROPERTY(QString errorMessage READ errorMessage NOTIFY errorMessageChanged)
 public:
  enum Role {
    NameRole = Qt::UserRole + 1,
    PathRole,
    KindRole,       // "qins" | "folder"
    SizeRole,       // bytes on disk
    SizeTextRole,
    CodebookRole,   // "projective", ...; "bf16 safetensors" for folders
    OriginRole,     // "microsoft/Phi-3.5-mini-instruct at 0123abc", "Hugging Face cache", ...
    ParamsTextRole, // "3.82 B parameters"
    DeleteTextRole, // what Delete removes, for the confirmation
  };

  explicit ModelLibrary(QObject* parent = nullptr);

  int rowCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role) const override;
  QHash<int, QByteArray> roleNames() const override;

  Q_INVOKABLE void refresh();
  // Deletes a listed model from the disk (a .qins file, or a folder's repo in the Hugging Face
  // cache). Confirmed by the view first. False (errorMessage set) when it could not.
  Q_INVOKABLE bool remove(const QString& path);
  Q_INVOKABLE int rowOfPath(const QString& path) const;
  // A Hugging Face folder with its config, tokenizer and every weight file its index names
  // (dangling snapshot symlinks, whose blobs are not downloaded yet, do not count).
  static bool isCompleteFolder(const QDir& folder);

  QString modelsDir() const { return m_modelsDir; }
  void setModelsDir(const QString& dir);
  QString cacheDir() const { return m_cacheDir; }
  void setCacheDir(const QString& dir);
  QString errorMessage() const { return m_error; }

 Q_SIGNALS:
  void countChanged();
  void foldersChanged();
  void errorMessageChanged();

 private:
  struct Entry {
    QString name, path, kind, codebook, origin, paramsText, deleteText, deletePath;
    qint64 size = 0;
  };
  void setError(const QString& e);
  std::vector<Entry> m_entries;
  QString m_modelsDir, m_cacheDir, m_error;
};
