// ChatController against the real engine on the fixture model (a tiny random-weight Phi-3):
// send and stream, stop mid-reply, regenerate, edit and resend, context overflow, and the GUI
// thread serving its timers while the worker generates.
#include <gtest/gtest.h>

#include <QDir>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QSemaphore>
#include <QSettings>
#include <QSignalSpy>
#include <QTest>
#include <QTimer>

#include <atomic>
#include <memory>

#include "chat_controller.h"
#include "memory_monitor.h"
#include "test_support.h"

namespace {

constexpr int kWaitMs = 60000;  // generous: a shared 2-core machine; never a speed assertion

// One loaded fixture model for all controller tests (loading is the slow part).
class ControllerFlow : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    models_ = new ModelManager;
    models_->setContextLength(4096);
    models_->load(fixtureModelDir());
    (void)QTest::qWaitFor([] { return !models_->loading(); }, kWaitMs);  // SetUp asserts ready()
  }
  static void TearDownTestSuite() {
    delete models_;
    models_ = nullptr;
  }

  void SetUp() override {
    ASSERT_TRUE(models_->ready()) << models_->message().toStdString();
    models_->worker()->setPieceHookForTesting({});
    ASSERT_TRUE(chats_.openDatabase(QDir(makeTempDir(QStringLiteral("controller"))).filePath(QStringLiteral("c.sqlite"))));
    settings_.resetToDefaults();
    settings_.setTemperature(0.0);  // greedy: replies are reproducible
    settings_.setMaxNewTokens(60);
    controller_.setSettings(&settings_);
    controller_.setChats(&chats_);
    controller_.setModelManager(models_);
  }

  // Sends (or runs `start`) and waits for the reply to end; returns its stop reason.
  QString waitForReply() {
    QSignalSpy finished(&controller_, &ChatController::replyFinished);
    if (!QTest::qWaitFor([&] { return finished.count() > 0; }, kWaitMs)) return QStringLiteral("timeout");
    return finished.first().at(0).toString();
  }

  static ModelManager* models_;
  SamplingSettings settings_;
  ChatListModel chats_;
  ChatController controller_;
};
ModelManager* ControllerFlow::models_ = nullptr;

}  // namespace

TEST_F(ControllerFlow, ModelInfoReachesTheView) {
  // A Hugging Face folder is converted to a .qins file first, then loaded from it.
  EXPECT_EQ(models_->format(), QStringLiteral("qins"));
  EXPECT_EQ(models_->codebook(), QStringLiteral("projective"));
  EXPECT_GT(models_->parameterCount(), 0);
  EXPECT_GT(models_->fileBytes(), 0);
  EXPECT_GT(models_->weightBytes(), 0);
  EXPECT_GT(models_->kvCacheBytes(), 0);
  EXPECT_EQ(models_->loadedContextLength(), 4096);
  EXPECT_FALSE(models_->device().isEmpty());
  EXPECT_GT(models_->loadSeconds(), 0.0);
  MemoryMonitor memory;
  memory.setModelManager(models_);
  EXPECT_EQ(memory.weightBytes(), std::min(models_->weightBytes(), memory.residentBytes()));
}

TEST_F(ControllerFlow, SendStreamsTheReplyAndStoresBothMessages) {
  QSignalSpy chunks(models_->worker(), &InferenceWorker::textChunk);
  QSignalSpy generating(&controller_, &ChatController::generatingChanged);
  ASSERT_TRUE(controller_.send(QStringLiteral("Hello there, how are you?")));
  EXPECT_TRUE(controller_.generating());
  EXPECT_FALSE(controller_.canSend());
  EXPECT_FALSE(controller_.send(QStringLiteral("second while busy")));  // one reply at a time
  ASSERT_EQ(controller_.messages()->count(), 2);
  EXPECT_TRUE(controller_.messages()->at(1).streaming);

  const QString reason = waitForReply();
  EXPECT_TRUE(reason == QLatin1String("max_tokens") || reason == QLatin1String("stop_token")) << reason.toStdString();
  EXPECT_FALSE(controller_.generating());
  EXPECT_EQ(generating.count(), 2);
  EXPECT_GE(chunks.count(), 1);
  ASSERT_EQ(controller_.messages()->count(), 2);
  const ChatModel::Message& reply = controller_.messages()->at(1);
  EXPECT_EQ(reply.author, QStringLiteral("assistant"));
  EXPECT_FALSE(reply.streaming);
  EXPECT_FALSE(reply.text.isEmpty());
  EXPECT_FALSE(reply.stats.isEmpty());
  EXPECT_GT(controller_.generatedTokens(), 0);
  EXPECT_GT(controller_.promptTokens(), 0);
  EXPECT_GT(controller_.timeToFirstToken(), 0.0);
  EXPECT_TRUE(controller_.contextNotice().isEmpty());

  // The chunks add up to the reply; both messages are in the store, under the titled chat.
  QString streamed;
  for (const QList<QVariant>& args : chunks) streamed += args.at(1).toString();
  EXPECT_EQ(streamed, reply.text);
  const qint64 chat = controller_.currentChatId();
  ASSERT_GT(chat, 0);
  EXPECT_EQ(chats_.titleOf(chat), QStringLiteral("Hello there, how are you?"));
  const QList<StoredMessage> stored = chats_.store().messages(chat);
  ASSERT_EQ(stored.size(), 2);
  EXPECT_EQ(stored[0].text, QStringLiteral("Hello there, how are you?"));
  EXPECT_EQ(stored[1].text, reply.text);
  EXPECT_EQ(stored[1].id, reply.id);

  // Export carries both messages.
  const QString md = controller_.exportText(QStringLiteral("markdown"));
  EXPECT_TRUE(md.contains(QStringLiteral("Hello there, how are you?")));
  EXPECT_TRUE(md.contains(reply.text));
  const QString json = controller_.exportText(QStringLiteral("json"));
  EXPECT_TRUE(json.contains(QStringLiteral("\"role\": \"assistant\"")));
  const QString file = QDir(makeTempDir(QStringLiteral("export"))).filePath(QStringLiteral("chat.json"));
  EXPECT_TRUE(controller_.exportChat(QUrl::fromLocalFile(file), QStringLiteral("json")));
  QFile f(file);
  ASSERT_TRUE(f.open(QIODevice::ReadOnly));
  const QJsonObject root = QJsonDocument::fromJson(f.readAll()).object();
  const QJsonArray messages = root.value(QStringLiteral("messages")).toArray();
  ASSERT_EQ(messages.size(), 2);
  EXPECT_EQ(messages[1].toObject().value(QStringLiteral("content")).toString(), reply.text);
}

TEST_F(ControllerFlow, StopMidReplyKeepsWhatWasWritten) {
  settings_.setMaxNewTokens(2048);
  QSemaphore reached, proceed;
  // Hold the worker inside generation at its third piece until the test has pressed Stop (or
  // 30 s passed: then the GUI thread was not free to press it, and the test fails, not hangs).
  std::atomic<bool> releasedByGui{false};
  models_->worker()->setPieceHookForTesting([&](int piece) {
    if (piece == 2) {
      reached.release();
      releasedByGui = proceed.tryAcquire(1, 30000);
    }
  });
  ASSERT_TRUE(controller_.send(QStringLiteral("Tell me a long story about the sea.")));
  ASSERT_TRUE(QTest::qWaitFor([&] { return reached.tryAcquire(); }, kWaitMs));
  controller_.stop();
  proceed.release();
  EXPECT_EQ(waitForReply(), QStringLiteral("cancelled"));
  EXPECT_TRUE(releasedByGui);
  EXPECT_EQ(controller_.stopReason(), QStringLiteral("cancelled"));
  ASSERT_EQ(controller_.messages()->count(), 2);
  const ChatModel::Message& reply = controller_.messages()->at(1);
  EXPECT_FALSE(reply.text.isEmpty());
  EXPECT_LT(controller_.generatedTokens(), 2048);
  EXPECT_TRUE(reply.stats.contains(QStringLiteral("stopped")));
  const QList<StoredMessage> stored = chats_.store().messages(controller_.currentChatId());
  ASSERT_EQ(stored.size(), 2);
  EXPECT_EQ(stored[1].text, reply.text);
  EXPECT_TRUE(controller_.canSend());
}

TEST_F(ControllerFlow, RegenerateReplacesTheLastReply) {
  ASSERT_TRUE(controller_.send(QStringLiteral("Name three colours.")));
  waitForReply();
  ASSERT_EQ(controller_.messages()->count(), 2);
  const QString first = controller_.messages()->at(1).text;
  const qint64 firstId = controller_.messages()->at(1).id;
  ASSERT_TRUE(controller_.regenerate());
  EXPECT_EQ(controller_.messages()->count(), 2);  // the old reply is gone, the new one streams
  EXPECT_TRUE(controller_.messages()->at(1).streaming);
  waitForReply();
  ASSERT_EQ(controller_.messages()->count(), 2);
  // Greedy decoding from the same history gives the same reply, stored under a new row.
  EXPECT_EQ(controller_.messages()->at(1).text, first);
  EXPECT_NE(controller_.messages()->at(1).id, firstId);
  const QList<StoredMessage> stored = chats_.store().messages(controller_.currentChatId());
  ASSERT_EQ(stored.size(), 2);
  EXPECT_EQ(stored[1].id, controller_.messages()->at(1).id);
}

TEST_F(ControllerFlow, EditAndResendDropsTheLaterTurns) {
  ASSERT_TRUE(controller_.send(QStringLiteral("First question")));
  waitForReply();
  ASSERT_TRUE(controller_.send(QStringLiteral("Second question")));
  waitForReply();
  ASSERT_EQ(controller_.messages()->count(), 4);
  EXPECT_FALSE(controller_.editAndResend(1, QStringLiteral("not a user message")));
  ASSERT_TRUE(controller_.editAndResend(0, QStringLiteral("Edited question")));
  waitForReply();
  ASSERT_EQ(controller_.messages()->count(), 2);
  EXPECT_EQ(controller_.messages()->at(0).text, QStringLiteral("Edited question"));
  const QList<StoredMessage> stored = chats_.store().messages(controller_.currentChatId());
  ASSERT_EQ(stored.size(), 2);
  EXPECT_EQ(stored[0].text, QStringLiteral("Edited question"));
  EXPECT_EQ(stored[1].text, controller_.messages()->at(1).text);
}

TEST_F(ControllerFlow, SwitchingChatsReloadsFromTheStore) {
  ASSERT_TRUE(controller_.send(QStringLiteral("About cats")));
  waitForReply();
  const qint64 cats = controller_.currentChatId();
  const QString catReply = controller_.messages()->at(1).text;
  controller_.newChat();
  EXPECT_EQ(controller_.currentChatId(), 0);
  EXPECT_EQ(controller_.messages()->count(), 0);
  ASSERT_TRUE(controller_.send(QStringLiteral("About dogs")));
  waitForReply();
  EXPECT_NE(controller_.currentChatId(), cats);
  ASSERT_TRUE(controller_.openChat(cats));
  ASSERT_EQ(controller_.messages()->count(), 2);
  EXPECT_EQ(controller_.messages()->at(0).text, QStringLiteral("About cats"));
  EXPECT_EQ(controller_.messages()->at(1).text, catReply);
  // Deleting the open chat empties the view; undo brings the chat back into the list.
  EXPECT_TRUE(chats_.remove(cats));
  EXPECT_EQ(controller_.currentChatId(), 0);
  EXPECT_TRUE(chats_.undoRemove());
  EXPECT_TRUE(controller_.openChat(cats));
  EXPECT_EQ(controller_.messages()->count(), 2);
}

TEST_F(ControllerFlow, GuiThreadKeepsServingTimersWhileGenerating) {
  QSemaphore reached, proceed;
  // The worker is held inside Session::generate (in the token callback) until the GUI thread
  // has shown that its event loop still runs: timers fire, the first text arrives, the memory
  // gauge updates. A GUI thread that waited on the worker would never get there.
  // If the GUI thread were the one generating (or waiting on the worker), the hold would only end
  // by its 30 s timeout: releasedByGui stays false and the test fails instead of hanging.
  std::atomic<bool> releasedByGui{false};
  models_->worker()->setPieceHookForTesting([&](int piece) {
    if (piece == 1) {
      reached.release();
      releasedByGui = proceed.tryAcquire(1, 30000);
    }
  });
  int ticks = 0;
  QTimer timer;
  timer.setInterval(10);
  QObject::connect(&timer, &QTimer::timeout, [&] { ++ticks; });
  timer.start();
  MemoryMonitor memory;
  memory.setInterval(50);
  ASSERT_TRUE(controller_.send(QStringLiteral("Write a poem.")));
  ASSERT_TRUE(QTest::qWaitFor([&] { return reached.tryAcquire(); }, kWaitMs));
  const int ticksAtHold = ticks;
  const int readingsAtHold = memory.readings();
  const bool served = QTest::qWaitFor(
      [&] { return ticks >= ticksAtHold + 5 && memory.readings() >= readingsAtHold + 2 &&
                   !controller_.messages()->at(1).text.isEmpty(); },
      kWaitMs);
  const bool stillGenerating = controller_.generating();
  proceed.release();  // always let the worker go, also when the checks failed
  EXPECT_TRUE(served);
  EXPECT_TRUE(stillGenerating);
  waitForReply();
  EXPECT_TRUE(releasedByGui);
  EXPECT_FALSE(controller_.generating());
}

TEST_F(ControllerFlow, OverflowDropsOldTurnsAndSaysSo) {
  // A second model with a 128-token context: the engine keeps room for max_new_tokens (50), so
  // one turn fits and a few no longer do.
  ModelManager small;
  small.setContextLength(128);
  small.load(fixtureModelDir());
  ASSERT_TRUE(QTest::qWaitFor([&] { return !small.loading(); }, kWaitMs));
  ASSERT_TRUE(small.ready()) << small.message().toStdString();
  QSettings().remove(QStringLiteral("model/contextLength"));  // persisted: do not leak into later tests
  controller_.setModelManager(&small);
  settings_.setMaxNewTokens(50);
  QSignalSpy notices(&controller_, &ChatController::contextNoticeChanged);
  int turns = 0;
  while (controller_.contextNotice().isEmpty() && turns < 8) {
    ASSERT_TRUE(controller_.send(QStringLiteral("Please tell me about the weather in the mountains today.")));
    waitForReply();
    ++turns;
  }
  EXPECT_GT(turns, 1);  // the first turn fits
  EXPECT_FALSE(controller_.contextNotice().isEmpty());
  EXPECT_TRUE(controller_.contextNotice().contains(QStringLiteral("128-token context")));
  EXPECT_TRUE(controller_.contextNotice().contains(QStringLiteral("left out"))) << controller_.contextNotice().toStdString();
  EXPECT_GT(controller_.messages()->count(), 2);  // the view keeps every turn; only the prompt drops them
  EXPECT_GE(notices.count(), 1);
  controller_.setModelManager(models_);
}
