// ChatModel, SegmentListModel and ChatListModel under QAbstractItemModelTester, and the Markdown
// splitter that gives each code block its own segment.
#include <gtest/gtest.h>

#include <QAbstractItemModelTester>
#include <QDir>
#include <QSignalSpy>

#include "chat_list_model.h"
#include "chat_model.h"
#include "markdown_segments.h"
#include "test_support.h"

namespace {
using Tester = QAbstractItemModelTester;
constexpr auto kWarn = QAbstractItemModelTester::FailureReportingMode::Warning;
}  // namespace

TEST(MarkdownSegments, SplitsProseAndFencedCode) {
  const QString text = QStringLiteral(
      "Here is the code:\n\n```cpp\nint main() {\n  return 0;\n}\n```\n\nAnd some `inline` text.\n~~~\nplain\n~~~");
  const QList<MarkdownSegment> s = splitMarkdownSegments(text);
  ASSERT_EQ(s.size(), 4);
  EXPECT_FALSE(s[0].code);
  EXPECT_EQ(s[0].text, QStringLiteral("Here is the code:"));
  EXPECT_TRUE(s[1].code);
  EXPECT_EQ(s[1].language, QStringLiteral("cpp"));
  EXPECT_EQ(s[1].text, QStringLiteral("int main() {\n  return 0;\n}"));
  EXPECT_TRUE(s[1].closed);
  EXPECT_FALSE(s[2].code);
  EXPECT_EQ(s[2].text, QStringLiteral("And some `inline` text."));
  EXPECT_TRUE(s[3].code);
  EXPECT_TRUE(s[3].language.isEmpty());
  EXPECT_EQ(s[3].text, QStringLiteral("plain"));
}

TEST(MarkdownSegments, UnclosedFenceRunsToTheEndWhileStreaming) {
  const QList<MarkdownSegment> s = splitMarkdownSegments(QStringLiteral("Try:\n```python\nprint(1)\n"));
  ASSERT_EQ(s.size(), 2);
  EXPECT_TRUE(s[1].code);
  EXPECT_FALSE(s[1].closed);
  EXPECT_EQ(s[1].language, QStringLiteral("python"));
  EXPECT_EQ(s[1].text, QStringLiteral("print(1)\n"));
}

TEST(MarkdownSegments, ShorterOrDifferentFenceDoesNotClose) {
  const QList<MarkdownSegment> s =
      splitMarkdownSegments(QStringLiteral("````md\n```\ninner\n```\n~~~\n````\ntail"));
  ASSERT_EQ(s.size(), 2);
  EXPECT_TRUE(s[0].code);
  EXPECT_EQ(s[0].text, QStringLiteral("```\ninner\n```\n~~~"));
  EXPECT_EQ(s[1].text, QStringLiteral("tail"));
}

TEST(MarkdownSegments, PlainTextIsOneSegmentAndEmptyIsNone) {
  EXPECT_TRUE(splitMarkdownSegments(QString()).isEmpty());
  const QList<MarkdownSegment> s = splitMarkdownSegments(QStringLiteral("# Title\n\n- a\n- b"));
  ASSERT_EQ(s.size(), 1);
  EXPECT_FALSE(s[0].code);
  // Indented by four spaces is an indented code block in CommonMark, not a fence.
  EXPECT_EQ(splitMarkdownSegments(QStringLiteral("    ```\nx")).size(), 1);
}

TEST(ChatModel, PassesModelTesterThroughEdits) {
  WarningCollector warnings;
  ChatModel model;
  Tester tester(&model, kWarn);
  QSignalSpy countSpy(&model, &ChatModel::countChanged);
  EXPECT_EQ(model.append(1, QStringLiteral("user"), QStringLiteral("hello")), 0);
  const int reply = model.append(0, QStringLiteral("assistant"), QString(), true);
  EXPECT_EQ(reply, 1);
  SegmentListModel* segments = model.at(reply).segments;
  ASSERT_NE(segments, nullptr);
  Tester segmentTester(segments, kWarn);

  QSignalSpy dataSpy(&model, &QAbstractItemModel::dataChanged);
  model.appendText(reply, QStringLiteral("Sure:\n```cpp\nint x"));
  model.appendText(reply, QStringLiteral(" = 1;\n```\nDone."));
  EXPECT_EQ(dataSpy.count(), 2);
  EXPECT_EQ(model.at(reply).text, QStringLiteral("Sure:\n```cpp\nint x = 1;\n```\nDone."));
  EXPECT_EQ(segments->rowCount(), 3);
  EXPECT_EQ(segments->data(segments->index(1), SegmentListModel::CodeRole).toBool(), true);
  EXPECT_EQ(segments->data(segments->index(1), SegmentListModel::TextRole).toString(), QStringLiteral("int x = 1;"));

  model.setStreaming(reply, false);
  model.setStats(reply, QStringLiteral("3 tokens"));
  model.setMessageId(reply, 7);
  const QModelIndex at = model.index(reply);
  EXPECT_EQ(model.data(at, ChatModel::AuthorRole).toString(), QStringLiteral("assistant"));
  EXPECT_EQ(model.data(at, ChatModel::StreamingRole).toBool(), false);
  EXPECT_EQ(model.data(at, ChatModel::StatsRole).toString(), QStringLiteral("3 tokens"));
  EXPECT_EQ(model.data(at, ChatModel::MessageIdRole).toLongLong(), 7);
  EXPECT_EQ(model.data(at, ChatModel::SegmentsRole).value<SegmentListModel*>(), segments);
  EXPECT_TRUE(model.roleNames().values().contains("segments"));

  model.append(3, QStringLiteral("user"), QStringLiteral("again"));
  model.removeFrom(1);
  EXPECT_EQ(model.count(), 1);
  model.clear();
  EXPECT_EQ(model.count(), 0);
  EXPECT_GE(countSpy.count(), 5);
  EXPECT_TRUE(warnings.messages().isEmpty()) << warnings.joined().toStdString();
}

TEST(SegmentListModel, StreamingChangesOnlyTheLastSegment) {
  WarningCollector warnings;
  SegmentListModel model;
  Tester tester(&model, kWarn);
  model.setSegments(splitMarkdownSegments(QStringLiteral("Intro\n```\na")));
  QSignalSpy changed(&model, &QAbstractItemModel::dataChanged);
  QSignalSpy inserted(&model, &QAbstractItemModel::rowsInserted);
  model.setSegments(splitMarkdownSegments(QStringLiteral("Intro\n```\nab")));
  ASSERT_EQ(changed.count(), 1);
  EXPECT_EQ(changed.first().at(0).toModelIndex().row(), 1);
  EXPECT_EQ(inserted.count(), 0);
  model.setSegments(splitMarkdownSegments(QStringLiteral("Intro\n```\nab\n```\nOutro")));
  EXPECT_EQ(model.rowCount(), 3);
  model.setSegments(splitMarkdownSegments(QStringLiteral("Intro")));
  EXPECT_EQ(model.rowCount(), 1);
  EXPECT_TRUE(warnings.messages().isEmpty()) << warnings.joined().toStdString();
}

TEST(ChatListModel, NewRenameRemoveUndoSearchUnderModelTester) {
  WarningCollector warnings;
  ChatListModel list;
  Tester tester(&list, kWarn);
  ASSERT_TRUE(list.openDatabase(QDir(makeTempDir(QStringLiteral("list"))).filePath(QStringLiteral("chats.sqlite"))));
  EXPECT_EQ(list.count(), 0);
  const qint64 a = list.newChat(QStringLiteral("Alpha"));
  const qint64 b = list.newChat(QStringLiteral("Beta"));
  const qint64 c = list.newChat(QStringLiteral("Gamma"));
  ASSERT_GT(a, 0);
  EXPECT_EQ(list.count(), 3);
  EXPECT_EQ(list.chatIdAt(0), c);  // newest first

  EXPECT_TRUE(list.rename(b, QStringLiteral("  Beta   renamed ")));
  EXPECT_EQ(list.titleOf(b), QStringLiteral("Beta renamed"));
  EXPECT_FALSE(list.rename(b, QStringLiteral("   ")));

  // A message moves its chat to the top.
  ASSERT_GT(list.store().addMessage(a, QStringLiteral("user"), QStringLiteral("a needle in a haystack")), 0);
  list.touch(a);
  EXPECT_EQ(list.chatIdAt(0), a);

  // Search looks at titles and message text.
  list.setFilter(QStringLiteral("needle"));
  ASSERT_EQ(list.count(), 1);
  EXPECT_EQ(list.chatIdAt(0), a);
  list.setFilter(QStringLiteral("renamed"));
  ASSERT_EQ(list.count(), 1);
  EXPECT_EQ(list.chatIdAt(0), b);
  list.setFilter(QStringLiteral("100%_"));  // LIKE wildcards are matched literally
  EXPECT_EQ(list.count(), 0);
  list.setFilter(QString());
  EXPECT_EQ(list.count(), 3);

  QSignalSpy removed(&list, &ChatListModel::chatRemoved);
  EXPECT_TRUE(list.remove(b));
  EXPECT_EQ(removed.count(), 1);
  EXPECT_EQ(list.count(), 2);
  EXPECT_TRUE(list.canUndoRemove());
  EXPECT_EQ(list.removedTitle(), QStringLiteral("Beta renamed"));
  EXPECT_TRUE(list.undoRemove());
  EXPECT_FALSE(list.canUndoRemove());
  EXPECT_EQ(list.count(), 3);
  EXPECT_GE(list.rowOf(b), 0);
  EXPECT_TRUE(warnings.messages().isEmpty()) << warnings.joined().toStdString();
}
