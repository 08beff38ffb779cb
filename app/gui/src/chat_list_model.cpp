#include "chat_list_model.h"

#include <QDateTime>
#include <QDir>
#include <QLocale>
#include <QStandardPaths>

ChatListModel::ChatListModel(QObject* parent) : QAbstractListModel(parent) {
  connect(this, &QAbstractItemModel::rowsInserted, this, &ChatListModel::countChanged);
  connect(this, &QAbstractItemModel::rowsRemoved, this, &ChatListModel::countChanged);
  connect(this, &QAbstractItemModel::modelReset, this, &ChatListModel::countChanged);
}

QString ChatListModel::defaultDatabasePath() {
  return QDir(QStandardPaths::writableLocation(QStandardPaths::AppDataLocation))
      .filePath(QStringLiteral("chats.sqlite"));
}

void ChatListModel::componentComplete() {
  if (!m_store.isOpen()) openDatabase(defaultDatabasePath());
}

bool ChatListModel::openDatabase(const QString& path) {
  const bool ok = m_store.open(path);
  m_storeError = ok ? QString() : m_store.errorString();
  m_removedId = 0;
  m_removedTitle.clear();
  reload();
  Q_EMIT databaseChanged();
  Q_EMIT undoChanged();
  return ok;
}

int ChatListModel::rowCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : static_cast<int>(m_chats.size());
}

QVariant ChatListModel::data(const QModelIndex& index, int role) const {
  if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid)) return {};
  const StoredChat& c = m_chats[index.row()];
  switch (role) {
    case ChatIdRole: return c.id;
    case TitleRole:
    case Qt::DisplayRole: return c.title;
    case UpdatedRole: {
      const QDateTime t = QDateTime::fromMSecsSinceEpoch(c.updatedMs);
      const QLocale locale;
      if (t.date() == QDate::currentDate()) return locale.toString(t.time(), QStringLiteral("HH:mm"));
      return locale.toString(t.date(), QLocale::ShortFormat);
    }
    default: return {};
  }
}

QHash<int, QByteArray> ChatListModel::roleNames() const {
  return {{ChatIdRole, "chatId"}, {TitleRole, "title"}, {UpdatedRole, "updated"}};
}

void ChatListModel::setFilter(const QString& filter) {
  if (filter == m_filter) return;
  m_filter = filter;
  reload();
  Q_EMIT filterChanged();
}

void ChatListModel::reload() {
  beginResetModel();
  m_chats = m_store.chats(m_filter);
  endResetModel();
}

qint64 ChatListModel::newChat(const QString& title) {
  const qint64 id = m_store.createChat(title);
  if (id == 0) return 0;
  if (!m_filter.isEmpty()) {
    // A filtered list would hide the new chat: clear the search so the user sees it.
    m_filter.clear();
    Q_EMIT filterChanged();
    reload();
    return id;
  }
  beginInsertRows({}, 0, 0);
  m_chats.prepend(StoredChat{id, title, QDateTime::currentMSecsSinceEpoch()});
  endInsertRows();
  return id;
}

int ChatListModel::rowOf(qint64 chatId) const {
  for (int i = 0; i < m_chats.size(); ++i)
    if (m_chats[i].id == chatId) return i;
  return -1;
}

QString ChatListModel::titleOf(qint64 chatId) const {
  const int row = rowOf(chatId);
  return row < 0 ? QString() : m_chats[row].title;
}

qint64 ChatListModel::chatIdAt(int row) const {
  return row >= 0 && row < m_chats.size() ? m_chats[row].id : 0;
}

bool ChatListModel::rename(qint64 chatId, const QString& title) {
  const QString t = title.simplified();
  if (t.isEmpty() || !m_store.renameChat(chatId, t)) return false;
  const int row = rowOf(chatId);
  if (row >= 0) {
    m_chats[row].title = t;
    const QModelIndex at = index(row);
    Q_EMIT dataChanged(at, at, {TitleRole, Qt::DisplayRole});
  }
  return true;
}

bool ChatListModel::remove(qint64 chatId) {
  if (!m_store.setChatDeleted(chatId, true)) return false;
  // One undo slot: an earlier soft-deleted chat stays deleted and is purged at the next start.
  m_removedId = chatId;
  m_removedTitle = QString();
  const int row = rowOf(chatId);
  if (row >= 0) {
    m_removedTitle = m_chats[row].title;
    beginRemoveRows({}, row, row);
    m_chats.removeAt(row);
    endRemoveRows();
  }
  Q_EMIT undoChanged();
  Q_EMIT chatRemoved(chatId);
  return true;
}

bool ChatListModel::undoRemove() {
  if (m_removedId == 0) return false;
  const qint64 id = m_removedId;
  const bool ok = m_store.setChatDeleted(id, false);
  m_removedId = 0;
  m_removedTitle.clear();
  if (ok) reload();
  Q_EMIT undoChanged();
  if (ok) Q_EMIT chatRestored(id);
  return ok;
}

void ChatListModel::touch(qint64 chatId) {
  // The store already moved the chat's time when the message was written (ChatStore::addMessage).
  const int row = rowOf(chatId);
  if (row < 0) return;
  m_chats[row].updatedMs = QDateTime::currentMSecsSinceEpoch();
  if (row > 0) {
    beginMoveRows({}, row, row, {}, 0);
    m_chats.move(row, 0);
    endMoveRows();
  }
  const QModelIndex at = index(0);
  Q_EMIT dataChanged(at, at, {UpdatedRole});
}
