#include "chat_store.h"

#include <QDateTime>
#include <QFile>
#include <QFileInfo>
#include <QDir>
#include <QSqlError>
#include <QSqlQuery>
#include <QVariant>

#include <atomic>

namespace {

qint64 nowMs() { return QDateTime::currentMSecsSinceEpoch(); }

// SQLite's own words ("file is not a database"), without Qt's "Unable to execute statement".
QString sqliteText(const QSqlError& e) {
  return e.databaseText().isEmpty() ? e.text() : e.databaseText();
}

// Qt SQL binds a null QString as SQL NULL; the text columns are NOT NULL.
QString notNull(const QString& s) { return s.isNull() ? QStringLiteral("") : s; }

QString uniqueConnectionName() {
  static std::atomic<int> counter{0};
  return QStringLiteral("qins-chat-store-%1").arg(counter.fetch_add(1));
}

// "<path>.corrupt-20261127-151500" (with "-2", "-3"... if that exists already).
QString asideName(const QString& path) {
  const QString base = path + QStringLiteral(".corrupt-") +
                       QDateTime::currentDateTime().toString(QStringLiteral("yyyyMMdd-HHmmss"));
  QString name = base;
  for (int i = 2; QFileInfo::exists(name); ++i) name = base + QStringLiteral("-%1").arg(i);
  return name;
}

}  // namespace

ChatStore::ChatStore() : m_connection(uniqueConnectionName()) {}

ChatStore::~ChatStore() { close(); }

void ChatStore::close() {
  dropConnection();
  m_open = false;
}

void ChatStore::dropConnection() {
  if (QSqlDatabase::contains(m_connection)) {
    {
      QSqlDatabase db = QSqlDatabase::database(m_connection, false);
      if (db.isOpen()) db.close();
    }
    QSqlDatabase::removeDatabase(m_connection);
  }
}

bool ChatStore::exec(const QString& sql, QString* why) {
  QSqlQuery q(QSqlDatabase::database(m_connection, false));
  if (q.exec(sql)) return true;
  const QString err = sqliteText(q.lastError());
  if (why) *why = err;
  m_error = err;
  return false;
}

bool ChatStore::openConnection(const QString& path, QString* why) {
  dropConnection();
  QSqlDatabase db = QSqlDatabase::addDatabase(QStringLiteral("QSQLITE"), m_connection);
  db.setDatabaseName(path);
  if (!db.open()) {
    *why = db.lastError().text();
    return false;
  }
  // A file that is not SQLite opens fine; the first statement is where SQLite notices.
  QSqlQuery check(db);
  if (!check.exec(QStringLiteral("PRAGMA quick_check")) || !check.next()) {
    *why = sqliteText(check.lastError());
    return false;
  }
  const QString verdict = check.value(0).toString();
  check.finish();  // an unfinished statement holds a read transaction; journal_mode=WAL needs none
  if (verdict != QLatin1String("ok")) {
    *why = QStringLiteral("integrity check failed: ") + verdict;
    return false;
  }
  return exec(QStringLiteral("PRAGMA journal_mode=WAL"), why) &&
         exec(QStringLiteral("PRAGMA synchronous=FULL"), why) &&
         exec(QStringLiteral("PRAGMA foreign_keys=ON"), why) && createSchema(why);
}

bool ChatStore::createSchema(QString* why) {
  return exec(QStringLiteral("CREATE TABLE IF NOT EXISTS chats("
                             "id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL, created_ms INTEGER NOT NULL, "
                             "updated_ms INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0)"),
              why) &&
         exec(QStringLiteral("CREATE TABLE IF NOT EXISTS messages("
                             "id INTEGER PRIMARY KEY AUTOINCREMENT, "  // ids are never reused
                             "chat_id INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE, "
                             "role TEXT NOT NULL, content TEXT NOT NULL, stats TEXT NOT NULL DEFAULT '', "
                             "created_ms INTEGER NOT NULL)"),
              why) &&
         exec(QStringLiteral("CREATE INDEX IF NOT EXISTS messages_by_chat ON messages(chat_id, id)"), why) &&
         // Both tables must read back with the columns this code uses (a foreign SQLite file fails here).
         exec(QStringLiteral("SELECT id, title, created_ms, updated_ms, deleted FROM chats LIMIT 1"), why) &&
         exec(QStringLiteral("SELECT id, chat_id, role, content, stats, created_ms FROM messages LIMIT 1"), why);
}

bool ChatStore::open(const QString& path) {
  close();
  m_path = path;
  m_notice.clear();
  m_movedAside.clear();
  m_error.clear();
  const QFileInfo info(path);
  if (!info.dir().exists() && !QDir().mkpath(info.dir().absolutePath())) {
    m_error = QStringLiteral("Cannot create the folder %1 for the chat database.").arg(info.dir().absolutePath());
    return false;
  }
  QString why;
  if (openConnection(path, &why)) {
    m_open = true;
    purgeDeletedChats();  // chats deleted in an earlier run whose undo window has passed
    return true;
  }
  dropConnection();
  if (!QFileInfo::exists(path)) {
    m_error = QStringLiteral("Cannot create the chat database %1: %2").arg(path, why);
    return false;
  }
  // Keep the damaged file (and its WAL side files) for the user to inspect or recover.
  const QString aside = asideName(path);
  if (!QFile::rename(path, aside)) {
    m_error = QStringLiteral("The chat database %1 cannot be read (%2) and could not be moved aside.").arg(path, why);
    return false;
  }
  for (const char* suffix : {"-wal", "-shm"}) {
    const QString side = path + QLatin1String(suffix);
    if (QFileInfo::exists(side)) QFile::rename(side, aside + QLatin1String(suffix));
  }
  m_movedAside = aside;
  m_notice = QStringLiteral("The chat database %1 could not be read (%2). It was kept as %3 and a new, empty "
                            "chat database was started.")
                 .arg(path, why, aside);
  QString why2;
  if (!openConnection(path, &why2)) {
    dropConnection();
    m_error = QStringLiteral("Cannot create a new chat database %1: %2").arg(path, why2);
    return false;
  }
  m_open = true;
  return true;
}

QList<StoredChat> ChatStore::chats(const QString& filter) const {
  QList<StoredChat> out;
  if (!m_open) return out;
  QSqlQuery q(QSqlDatabase::database(m_connection, false));
  QString sql = QStringLiteral("SELECT id, title, updated_ms FROM chats WHERE deleted = 0");
  const QString needle = filter.trimmed();
  if (!needle.isEmpty()) {
    sql += QStringLiteral(" AND (title LIKE ? ESCAPE '\\' OR EXISTS (SELECT 1 FROM messages m WHERE "
                          "m.chat_id = chats.id AND m.content LIKE ? ESCAPE '\\'))");
  }
  sql += QStringLiteral(" ORDER BY updated_ms DESC, id DESC");
  q.prepare(sql);
  if (!needle.isEmpty()) {
    QString escaped = needle;
    escaped.replace(QLatin1Char('\\'), QLatin1String("\\\\"))
        .replace(QLatin1Char('%'), QLatin1String("\\%"))
        .replace(QLatin1Char('_'), QLatin1String("\\_"));
    const QString pattern = QStringLiteral("%") + escaped + QStringLiteral("%");
    q.addBindValue(pattern);  // title
    q.addBindValue(pattern);  // message content
  }
  if (!q.exec()) {
    m_error = q.lastError().text();
    return out;
  }
  while (q.next()) out.append({q.value(0).toLongLong(), q.value(1).toString(), q.value(2).toLongLong()});
  return out;
}

qint64 ChatStore::createChat(const QString& title) {
  if (!m_open) return 0;
  QSqlQuery q(QSqlDatabase::database(m_connection, false));
  q.prepare(QStringLiteral("INSERT INTO chats(title, created_ms, updated_ms) VALUES(?, ?, ?)"));
  const qint64 now = nowMs();
  q.addBindValue(notNull(title));
  q.addBindValue(now);
  q.addBindValue(now);
  if (!q.exec()) {
    m_error = q.lastError().text();
    return 0;
  }
  return q.lastInsertId().toLongLong();
}

bool ChatStore::renameChat(qint64 chatId, const QString& title) {
  if (!m_open) return false;
  QSqlQuery q(QSqlDatabase::database(m_connection, false));
  q.prepare(QStringLiteral("UPDATE chats SET title = ? WHERE id = ?"));
  q.addBindValue(title);
  q.addBindValue(chatId);
  if (!q.exec()) m_error = q.lastError().text();
  return q.numRowsAffected() == 1;
}

bool ChatStore::touchChat(qint64 chatId) {
  if (!m_open) return false;
  QSqlQuery q(QSqlDatabase::database(m_connection, false));
  q.prepare(QStringLiteral("UPDATE chats SET updated_ms = ? WHERE id = ?"));
  q.addBindValue(nowMs());
  q.addBindValue(chatId);
  if (!q.exec()) m_error = q.lastError().text();
  return q.numRowsAffected() == 1;
}

bool ChatStore::setChatDeleted(qint64 chatId, bool deleted) {
  if (!m_open) return false;
  QSqlQuery q(QSqlDatabase::database(m_connection, false));
  q.prepare(QStringLiteral("UPDATE chats SET deleted = ? WHERE id = ?"));
  q.addBindValue(deleted ? 1 : 0);
  q.addBindValue(chatId);
  if (!q.exec()) m_error = q.lastError().text();
  return q.numRowsAffected() == 1;
}

bool ChatStore::purgeDeletedChats() {
  if (!m_open) return false;
  // Messages go with their chat (ON DELETE CASCADE).
  return exec(QStringLiteral("DELETE FROM chats WHERE deleted != 0"));
}

QList<StoredMessage> ChatStore::messages(qint64 chatId) const {
  QList<StoredMessage> out;
  if (!m_open) return out;
  QSqlQuery q(QSqlDatabase::database(m_connection, false));
  q.prepare(QStringLiteral("SELECT id, role, content, stats FROM messages WHERE chat_id = ? ORDER BY id"));
  q.addBindValue(chatId);
  if (!q.exec()) {
    m_error = q.lastError().text();
    return out;
  }
  while (q.next())
    out.append({q.value(0).toLongLong(), q.value(1).toString(), q.value(2).toString(), q.value(3).toString()});
  return out;
}

qint64 ChatStore::addMessage(qint64 chatId, const QString& role, const QString& text, const QString& stats) {
  if (!m_open) return 0;
  QSqlDatabase db = QSqlDatabase::database(m_connection, false);
  // One transaction: the message and the chat's "updated" time land together, one fsync.
  if (!db.transaction()) {
    m_error = db.lastError().text();
    return 0;
  }
  const qint64 now = nowMs();
  QSqlQuery q(db);
  q.prepare(QStringLiteral("INSERT INTO messages(chat_id, role, content, stats, created_ms) VALUES(?, ?, ?, ?, ?)"));
  q.addBindValue(chatId);
  q.addBindValue(role);
  q.addBindValue(notNull(text));
  q.addBindValue(notNull(stats));
  q.addBindValue(now);
  if (!q.exec()) {
    m_error = q.lastError().text();
    db.rollback();
    return 0;
  }
  const qint64 id = q.lastInsertId().toLongLong();
  QSqlQuery touch(db);
  touch.prepare(QStringLiteral("UPDATE chats SET updated_ms = ? WHERE id = ?"));
  touch.addBindValue(now);
  touch.addBindValue(chatId);
  if (!touch.exec() || !db.commit()) {
    m_error = touch.lastError().text();
    db.rollback();
    return 0;
  }
  return id;
}

bool ChatStore::updateMessage(qint64 messageId, const QString& text, const QString& stats) {
  if (!m_open) return false;
  QSqlQuery q(QSqlDatabase::database(m_connection, false));
  q.prepare(QStringLiteral("UPDATE messages SET content = ?, stats = ? WHERE id = ?"));
  q.addBindValue(notNull(text));
  q.addBindValue(notNull(stats));
  q.addBindValue(messageId);
  if (!q.exec()) m_error = q.lastError().text();
  return q.numRowsAffected() == 1;
}

bool ChatStore::deleteMessagesFrom(qint64 chatId, qint64 messageId) {
  if (!m_open) return false;
  QSqlQuery q(QSqlDatabase::database(m_connection, false));
  q.prepare(QStringLiteral("DELETE FROM messages WHERE chat_id = ? AND id >= ?"));
  q.addBindValue(chatId);
  q.addBindValue(messageId);
  if (!q.exec()) {
    m_error = q.lastError().text();
    return false;
  }
  return true;
}
