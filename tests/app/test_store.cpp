// The chat store: survives a restart; a corrupt file is kept aside and a fresh store started.
#include <gtest/gtest.h>

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QSqlDatabase>
#include <QSqlQuery>

#include "chat_list_model.h"
#include "chat_store.h"
#include "test_support.h"

TEST(ChatStore, ChatsSurviveARestart) {
  const QString path = QDir(makeTempDir(QStringLiteral("restart"))).filePath(QStringLiteral("chats.sqlite"));
  qint64 chat = 0;
  {
    ChatStore store;
    ASSERT_TRUE(store.open(path)) << store.errorString().toStdString();
    EXPECT_TRUE(store.notice().isEmpty());
    chat = store.createChat(QStringLiteral("Trip ideas"));
    ASSERT_GT(chat, 0);
    ASSERT_GT(store.addMessage(chat, QStringLiteral("user"), QStringLiteral("Where to go? ☃")), 0) << store.errorString().toStdString();
    ASSERT_GT(store.addMessage(chat, QStringLiteral("assistant"), QStringLiteral("The **Alps**."),
                               QStringLiteral("3 tokens")), 0);
  }  // closed, as at the end of a run
  ChatStore reopened;
  ASSERT_TRUE(reopened.open(path));
  const QList<StoredChat> chats = reopened.chats();
  ASSERT_EQ(chats.size(), 1);
  EXPECT_EQ(chats[0].id, chat);
  EXPECT_EQ(chats[0].title, QStringLiteral("Trip ideas"));
  const QList<StoredMessage> messages = reopened.messages(chat);
  ASSERT_EQ(messages.size(), 2);
  EXPECT_EQ(messages[0].role, QStringLiteral("user"));
  EXPECT_EQ(messages[0].text, QStringLiteral("Where to go? ☃"));
  EXPECT_EQ(messages[1].role, QStringLiteral("assistant"));
  EXPECT_EQ(messages[1].text, QStringLiteral("The **Alps**."));
  EXPECT_EQ(messages[1].stats, QStringLiteral("3 tokens"));
}

TEST(ChatStore, EditAndRegenerateDeleteFromAMessageOn) {
  const QString path = QDir(makeTempDir(QStringLiteral("truncate"))).filePath(QStringLiteral("chats.sqlite"));
  ChatStore store;
  ASSERT_TRUE(store.open(path));
  const qint64 chat = store.createChat(QStringLiteral("t"));
  const qint64 other = store.createChat(QStringLiteral("o"));
  store.addMessage(chat, QStringLiteral("user"), QStringLiteral("1"));
  const qint64 second = store.addMessage(chat, QStringLiteral("assistant"), QStringLiteral("2"));
  const qint64 keep = store.addMessage(other, QStringLiteral("user"), QStringLiteral("x"));
  store.addMessage(chat, QStringLiteral("user"), QStringLiteral("3"));
  ASSERT_TRUE(store.deleteMessagesFrom(chat, second));
  ASSERT_EQ(store.messages(chat).size(), 1);
  ASSERT_EQ(store.messages(other).size(), 1);
  EXPECT_EQ(store.messages(other)[0].id, keep);
  EXPECT_TRUE(store.updateMessage(keep, QStringLiteral("y"), QStringLiteral("s")));
  EXPECT_EQ(store.messages(other)[0].text, QStringLiteral("y"));
}

TEST(ChatStore, SoftDeletedChatsArePurgedAtTheNextOpen) {
  const QString path = QDir(makeTempDir(QStringLiteral("purge"))).filePath(QStringLiteral("chats.sqlite"));
  qint64 gone = 0;
  {
    ChatStore store;
    ASSERT_TRUE(store.open(path));
    gone = store.createChat(QStringLiteral("gone"));
    store.createChat(QStringLiteral("kept"));
    store.addMessage(gone, QStringLiteral("user"), QStringLiteral("bye"));
    ASSERT_TRUE(store.setChatDeleted(gone, true));
    EXPECT_EQ(store.chats().size(), 1);
  }
  ChatStore store;
  ASSERT_TRUE(store.open(path));
  ASSERT_EQ(store.chats().size(), 1);
  EXPECT_EQ(store.chats()[0].title, QStringLiteral("kept"));
  EXPECT_FALSE(store.setChatDeleted(gone, false));  // purged: nothing to restore
  EXPECT_TRUE(store.messages(gone).isEmpty());       // its messages went with it
}

TEST(ChatStore, CorruptFileIsKeptAsideAndAFreshStoreStarts) {
  const QString dir = makeTempDir(QStringLiteral("corrupt"));
  const QString path = QDir(dir).filePath(QStringLiteral("chats.sqlite"));
  QByteArray junk("this is not an SQLite database, just bytes\n");
  junk = junk.repeated(200);
  {
    QFile f(path);
    ASSERT_TRUE(f.open(QIODevice::WriteOnly));
    f.write(junk);
  }
  ChatListModel list;  // the same path the app takes
  ASSERT_TRUE(list.openDatabase(path)) << list.storeError().toStdString();
  const QString notice = list.storeNotice();
  EXPECT_FALSE(notice.isEmpty());
  EXPECT_TRUE(notice.contains(path)) << notice.toStdString();
  EXPECT_TRUE(notice.contains(QStringLiteral("file is not a database"))) << notice.toStdString();
  const QString aside = list.store().movedAsidePath();
  ASSERT_FALSE(aside.isEmpty());
  EXPECT_TRUE(notice.contains(aside)) << notice.toStdString();
  // The bad file is kept byte for byte; the fresh store works.
  QFile kept(aside);
  ASSERT_TRUE(kept.open(QIODevice::ReadOnly));
  EXPECT_EQ(kept.readAll(), junk);
  EXPECT_EQ(list.count(), 0);
  EXPECT_GT(list.newChat(QStringLiteral("after")), 0);
  ChatStore again;
  ASSERT_TRUE(again.open(path));
  EXPECT_TRUE(again.notice().isEmpty());
  EXPECT_EQ(again.chats().size(), 1);
}

TEST(ChatStore, DamagedSqliteFileIsKeptAside) {
  const QString dir = makeTempDir(QStringLiteral("damaged"));
  const QString path = QDir(dir).filePath(QStringLiteral("chats.sqlite"));
  {
    ChatStore store;
    ASSERT_TRUE(store.open(path));
    const qint64 chat = store.createChat(QStringLiteral("t"));
    for (int i = 0; i < 200; ++i) store.addMessage(chat, QStringLiteral("user"), QString(500, QLatin1Char('x')));
  }
  // Overwrite the pages after the header with garbage: a real SQLite file, broken inside.
  {
    QFile f(path);
    ASSERT_TRUE(f.open(QIODevice::ReadWrite));
    ASSERT_GT(f.size(), 8192);
    f.seek(4096);
    f.write(QByteArray(static_cast<int>(f.size()) - 4096, '\x5a'));
  }
  ChatStore store;
  ASSERT_TRUE(store.open(path)) << store.errorString().toStdString();
  EXPECT_FALSE(store.notice().isEmpty());
  EXPECT_TRUE(QFileInfo::exists(store.movedAsidePath()));
  EXPECT_TRUE(store.chats().isEmpty());
}

TEST(ChatStore, ForeignSqliteFileIsNotMistakenForAChatStore) {
  const QString path = QDir(makeTempDir(QStringLiteral("foreign"))).filePath(QStringLiteral("chats.sqlite"));
  {
    QSqlDatabase db = QSqlDatabase::addDatabase(QStringLiteral("QSQLITE"), QStringLiteral("foreign"));
    db.setDatabaseName(path);
    ASSERT_TRUE(db.open());
    QSqlQuery q(db);
    ASSERT_TRUE(q.exec(QStringLiteral("CREATE TABLE chats(name TEXT)")));
    db.close();
  }
  QSqlDatabase::removeDatabase(QStringLiteral("foreign"));
  ChatStore store;
  ASSERT_TRUE(store.open(path));
  EXPECT_FALSE(store.notice().isEmpty());
  EXPECT_TRUE(QFileInfo::exists(store.movedAsidePath()));
  EXPECT_GT(store.createChat(QStringLiteral("ok")), 0);
}

TEST(ChatStore, UnwritableLocationGivesAClearError) {
  ChatStore store;
  EXPECT_FALSE(store.open(QStringLiteral("/proc/qins-no-such-dir/chats.sqlite")));
  EXPECT_FALSE(store.errorString().isEmpty());
  EXPECT_EQ(store.createChat(QStringLiteral("x")), 0);  // closed store: calls fail, no crash
}
