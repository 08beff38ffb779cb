// The chat list in the sidebar: every saved chat, newest first, with a search filter. Owns the
// chat store (chat_store.h); deleting a chat is a soft delete that can be undone until the next
// deletion or the next start of the app.
#pragma once

#include <QAbstractListModel>
#include <QList>
#include <QQmlParserStatus>
#include <QtQml/qqmlregistration.h>

#include "chat_store.h"

class ChatListModel : public QAbstractListModel, public QQmlParserStatus {
  Q_OBJECT
  QML_ELEMENT
  Q_INTERFACES(QQmlParserStatus)
  Q_PROPERTY(QString filter READ filter WRITE setFilter NOTIFY filterChanged)
  Q_PROPERTY(int count READ count NOTIFY countChanged)
  Q_PROPERTY(QString databasePath READ databasePath NOTIFY databaseChanged)
  Q_PROPERTY(QString storeNotice READ storeNotice NOTIFY databaseChanged)
  Q_PROPERTY(QString storeError READ storeError NOTIFY databaseChanged)
  Q_PROPERTY(bool canUndoRemove READ canUndoRemove NOTIFY undoChanged)
  Q_PROPERTY(QString removedTitle READ removedTitle NOTIFY undoChanged)
 public:
  enum Roles { ChatIdRole = Qt::UserRole + 1, TitleRole, UpdatedRole };

  explicit ChatListModel(QObject* parent = nullptr);

  int rowCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role) const override;
  QHash<int, QByteArray> roleNames() const override;

  void classBegin() override {}
  void componentComplete() override;  // opens the default database unless one is open

  // Default location: <AppDataLocation>/chats.sqlite.
  static QString defaultDatabasePath();
  Q_INVOKABLE bool openDatabase(const QString& path);

  QString filter() const { return m_filter; }
  void setFilter(const QString& filter);
  int count() const { return static_cast<int>(m_chats.size()); }
  QString databasePath() const { return m_store.path(); }
  QString storeNotice() const { return m_store.notice(); }
  QString storeError() const { return m_storeError; }
  bool canUndoRemove() const { return m_removedId != 0; }
  QString removedTitle() const { return m_removedTitle; }

  Q_INVOKABLE qint64 newChat(const QString& title = QStringLiteral("New chat"));
  Q_INVOKABLE bool rename(qint64 chatId, const QString& title);
  Q_INVOKABLE bool remove(qint64 chatId);
  Q_INVOKABLE bool undoRemove();
  Q_INVOKABLE int rowOf(qint64 chatId) const;
  Q_INVOKABLE QString titleOf(qint64 chatId) const;
  Q_INVOKABLE qint64 chatIdAt(int row) const;
  Q_INVOKABLE void reload();

  // The chat got a new message (already stored): it moves to the top of the list.
  void touch(qint64 chatId);

  ChatStore& store() { return m_store; }

 Q_SIGNALS:
  void filterChanged();
  void countChanged();
  void databaseChanged();
  void undoChanged();
  void chatRemoved(qint64 chatId);
  void chatRestored(qint64 chatId);

 private:
  ChatStore m_store;
  QList<StoredChat> m_chats;
  QString m_filter;
  QString m_storeError;
  qint64 m_removedId = 0;
  QString m_removedTitle;
};
