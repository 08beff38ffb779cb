// Chats on disk: one SQLite file (Qt SQL, QSQLITE driver), written after every message.
// WAL journal with synchronous=FULL: each committed message survives a crash or power loss, so a
// crash loses at most the reply still streaming. Used from the GUI thread only.
#pragma once

#include <QList>
#include <QSqlDatabase>
#include <QString>

struct StoredChat {
  qint64 id = 0;
  QString title;
  qint64 updatedMs = 0;  // ms since the epoch, UTC
};

struct StoredMessage {
  qint64 id = 0;
  QString role;   // "user" | "assistant" | "system"
  QString text;
  QString stats;  // one line shown under an assistant reply, empty otherwise
};

class ChatStore {
 public:
  ChatStore();
  ~ChatStore();
  ChatStore(const ChatStore&) = delete;
  ChatStore& operator=(const ChatStore&) = delete;

  // Opens (or creates) the database at `path`. A file that is not a readable chat database is
  // renamed aside (never deleted), a fresh store is started and notice() says what happened.
  // Returns false only when not even a fresh store could be made; errorString() says why.
  bool open(const QString& path);
  void close();
  bool isOpen() const { return m_open; }
  QString path() const { return m_path; }
  QString notice() const { return m_notice; }        // non-empty after a recovery
  QString errorString() const { return m_error; }    // last failure
  QString movedAsidePath() const { return m_movedAside; }

  // Not deleted, most recently updated first; with a `filter`, only chats whose title or any message
  // contains it (case-insensitive for ASCII, as SQLite's LIKE).
  QList<StoredChat> chats(const QString& filter = {}) const;
  bool touchChat(qint64 chatId);  // marks the chat as updated now
  qint64 createChat(const QString& title);  // 0 on failure
  bool renameChat(qint64 chatId, const QString& title);
  bool setChatDeleted(qint64 chatId, bool deleted);  // soft delete: undo is setChatDeleted(id, false)
  bool purgeDeletedChats();                           // drops soft-deleted chats for good

  QList<StoredMessage> messages(qint64 chatId) const;
  qint64 addMessage(qint64 chatId, const QString& role, const QString& text, const QString& stats = {});
  bool updateMessage(qint64 messageId, const QString& text, const QString& stats);
  // Deletes `messageId` and every later message of its chat (edit and resend, regenerate).
  bool deleteMessagesFrom(qint64 chatId, qint64 messageId);

 private:
  bool openConnection(const QString& path, QString* why);
  bool createSchema(QString* why);
  void dropConnection();
  bool exec(const QString& sql, QString* why = nullptr);

  QString m_connection;
  QString m_path;
  QString m_notice;
  mutable QString m_error;
  QString m_movedAside;
  bool m_open = false;
};
