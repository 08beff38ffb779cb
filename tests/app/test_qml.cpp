// The views: every QML file compiles, and the whole window (Main.qml with the real C++ types,
// loading the fixture model, a reply streaming, panels open, both themes) logs no warning.
#include <gtest/gtest.h>

#include <QDir>
#include <QDirIterator>
#include <QQmlApplicationEngine>
#include <QQmlComponent>
#include <QQmlEngine>
#include <QQuickItem>
#include <QQuickStyle>
#include <QQuickWindow>
#include <QSemaphore>
#include <QTest>

#include "chat_controller.h"
#include "model_downloads.h"
#include "test_support.h"

namespace {

const QString kModuleDir = QStringLiteral(":/qt/qml/QinsChat");

QStringList qmlFiles() {
  QStringList files;
  QDirIterator it(kModuleDir, {QStringLiteral("*.qml")}, QDir::Files);
  while (it.hasNext()) files << it.next();
  files.sort();
  return files;
}

void prepareEngine(QQmlEngine& engine) { engine.addImportPath(QStringLiteral("qrc:/qt/qml")); }

// A root property of type T* (the window's C++ objects are reached through their QML ids'
// properties, never by findChild).
template <typename T>
T* rootObject(QObject* root, const char* property) {
  return qvariant_cast<T*>(root->property(property));
}

// The item called `name` under `item` (a delegate's control: Repeater delegates are reached through
// the visual tree).
QQuickItem* findItem(QQuickItem* item, const QString& name) {
  if (item->objectName() == name) return item;
  for (QQuickItem* child : item->childItems())
    if (QQuickItem* found = findItem(child, name)) return found;
  return nullptr;
}

// A real mouse click in the middle of `item`.
void clickItem(QQuickWindow* window, QQuickItem* item) {
  const QPointF centre = item->mapToScene(QPointF(item->width() / 2, item->height() / 2));
  QTest::mouseClick(window, Qt::LeftButton, Qt::NoModifier, centre.toPoint());
}

// QTest::keyClicks has no QWindow overload: one key click per (ASCII) character.
void typeText(QWindow* window, const QString& text) {
  for (const QChar c : text) QTest::keyClick(window, c.toLatin1());
}

}  // namespace

TEST(Qml, ModuleHasAllViews) {
  const QStringList files = qmlFiles();
  EXPECT_GE(files.size(), 11) << files.join(QLatin1Char(' ')).toStdString();
  EXPECT_TRUE(files.contains(kModuleDir + QStringLiteral("/Main.qml")));
}

TEST(Qml, EveryFileCompilesWithoutWarnings) {
  WarningCollector warnings;
  QQmlEngine engine;
  prepareEngine(engine);
  for (const QString& file : qmlFiles()) {
    QQmlComponent component(&engine, QUrl(QStringLiteral("qrc") + file));
    EXPECT_TRUE(component.isReady()) << file.toStdString() << ": " << component.errorString().toStdString();
  }
  EXPECT_TRUE(warnings.messages().isEmpty()) << warnings.joined().toStdString();
}

TEST(Qml, MainWindowRunsAChatWithoutWarnings) {
  qputenv("QINS_MODEL", fixtureModelDir().toUtf8());
  WarningCollector warnings;
  {
    QQmlApplicationEngine engine;
    prepareEngine(engine);
    engine.load(QUrl(QStringLiteral("qrc:/qt/qml/QinsChat/Main.qml")));
    ASSERT_EQ(engine.rootObjects().size(), 1) << warnings.joined().toStdString();
    auto* window = qobject_cast<QQuickWindow*>(engine.rootObjects().first());
    ASSERT_NE(window, nullptr);
    // The window is up before the model is: loading runs on the worker thread.
    EXPECT_TRUE(window->isVisible());
    QObject* root = window;
    auto* models = rootObject<ModelManager>(root, "modelManager");
    auto* controller = rootObject<ChatController>(root, "chatController");
    ASSERT_NE(models, nullptr);
    ASSERT_NE(controller, nullptr);
    ASSERT_TRUE(QTest::qWaitFor([&] { return !models->loading(); }, 60000));
    ASSERT_TRUE(models->ready()) << models->message().toStdString();

    // A chat, with a reply containing a code block, drawn in both themes with both panels open.
    ASSERT_TRUE(controller->send(QStringLiteral("Show me some code")));
    ASSERT_TRUE(QTest::qWaitFor([&] { return !controller->generating(); }, 60000));
    const int row = controller->messages()->append(0, QStringLiteral("assistant"),
        QStringLiteral("# Heading\n\n- one\n- two\n\n```cpp\nint main() { return 0; }\n```\nDone."));
    EXPECT_EQ(controller->messages()->at(row).segments->rowCount(), 3);
    root->setProperty("sidePanel", QStringLiteral("sampling"));
    QTest::qWait(50);
    root->setProperty("sidePanel", QStringLiteral("stats"));
    QTest::qWait(50);
    root->setProperty("sidePanel", QStringLiteral("server"));  // "Serve this model on localhost"
    QTest::qWait(50);
    const int themeType = qmlTypeId("QinsChat", 1, 0, "Theme");
    ASSERT_GE(themeType, 0);
    auto* theme = engine.singletonInstance<QObject*>(themeType);
    ASSERT_NE(theme, nullptr);
    theme->setProperty("mode", QStringLiteral("dark"));
    QTest::qWait(50);
    theme->setProperty("mode", QStringLiteral("light"));
    QTest::qWait(50);
    theme->setProperty("mode", QStringLiteral("system"));
    controller->newChat();  // the empty chat with example prompts
    QTest::qWait(50);
    // The Models page with its catalog and local list, then back to the chat.
    auto* downloads = rootObject<ModelDownloads>(root, "modelDownloads");
    ASSERT_NE(downloads, nullptr);
    downloads->highlight(QStringLiteral("microsoft/Phi-3.5-mini-instruct"));
    root->setProperty("page", QStringLiteral("models"));
    QTest::qWait(50);
    root->setProperty("page", QStringLiteral("chat"));
    QTest::qWait(50);
  }
  qunsetenv("QINS_MODEL");
  EXPECT_TRUE(warnings.messages().isEmpty()) << warnings.joined().toStdString();
}

TEST(Qml, KeyboardEnterSendsShiftEnterBreaksEscStopsCtrlNStartsOver) {
  qputenv("QINS_MODEL", fixtureModelDir().toUtf8());
  WarningCollector warnings;
  {
    QQmlApplicationEngine engine;
    prepareEngine(engine);
    engine.load(QUrl(QStringLiteral("qrc:/qt/qml/QinsChat/Main.qml")));
    ASSERT_EQ(engine.rootObjects().size(), 1);
    auto* window = qobject_cast<QQuickWindow*>(engine.rootObjects().first());
    ASSERT_NE(window, nullptr);
    window->requestActivate();
    ASSERT_TRUE(QTest::qWaitForWindowActive(window));
    auto* models = rootObject<ModelManager>(window, "modelManager");
    auto* controller = rootObject<ChatController>(window, "chatController");
    ASSERT_TRUE(QTest::qWaitFor([&] { return !models->loading(); }, 60000));
    ASSERT_TRUE(models->ready());
    controller->newChat();
    QTest::keyClick(window, Qt::Key_L, Qt::ControlModifier);  // focus the input
    ASSERT_TRUE(QTest::qWaitFor([&] { return window->activeFocusItem() != nullptr; }, 5000));

    // Shift+Enter is a new line, Enter sends what was typed.
    QSemaphore reached, proceed;
    models->worker()->setPieceHookForTesting([&](int piece) {
      if (piece == 1) {
        reached.release();
        proceed.tryAcquire(1, 30000);
      }
    });
    typeText(window, QStringLiteral("first line"));
    QTest::keyClick(window, Qt::Key_Return, Qt::ShiftModifier);
    typeText(window, QStringLiteral("second line"));
    QTest::keyClick(window, Qt::Key_Return);
    ASSERT_TRUE(QTest::qWaitFor([&] { return controller->messages()->count() >= 1; }, 5000));
    EXPECT_EQ(controller->messages()->at(0).text, QStringLiteral("first line\nsecond line"));
    EXPECT_TRUE(controller->generating());

    // Esc stops the reply while the worker is held in the middle of it. The reply is sampled with a
    // clock seed, so now and then it ends before its second piece (the hook never fires): then send
    // another message, a few times at most.
    bool held = false;
    for (int attempt = 0; attempt < 8 && !held; ++attempt) {
      if (attempt > 0) {
        typeText(window, QStringLiteral("again"));
        QTest::keyClick(window, Qt::Key_Return);
        ASSERT_TRUE(QTest::qWaitFor([&] { return controller->generating(); }, 5000));
      }
      ASSERT_TRUE(QTest::qWaitFor([&] { return reached.tryAcquire() || !controller->generating(); }, 60000));
      held = controller->generating();
    }
    ASSERT_TRUE(held) << "eight replies in a row ended before their second piece";
    QTest::keyClick(window, Qt::Key_Escape);
    proceed.release();
    ASSERT_TRUE(QTest::qWaitFor([&] { return !controller->generating(); }, 60000));
    EXPECT_EQ(controller->stopReason(), QStringLiteral("cancelled"));
    models->worker()->setPieceHookForTesting({});

    // Ctrl+N: a new, empty chat (the old one stays in the list).
    const qint64 typed = controller->currentChatId();
    EXPECT_GT(typed, 0);
    QTest::keyClick(window, Qt::Key_N, Qt::ControlModifier);
    EXPECT_EQ(controller->currentChatId(), 0);
    EXPECT_EQ(controller->messages()->count(), 0);
    EXPECT_GE(controller->chats()->rowOf(typed), 0);

    // Ctrl+, opens the sampling panel.
    QTest::keyClick(window, Qt::Key_Comma, Qt::ControlModifier);
    EXPECT_EQ(window->property("sidePanel").toString(), QStringLiteral("sampling"));
  }
  qunsetenv("QINS_MODEL");
  EXPECT_TRUE(warnings.messages().isEmpty()) << warnings.joined().toStdString();
}

TEST(Qml, ModelsPageFourBitOptionChangesTheSizes) {
  WarningCollector warnings;
  {
    QQmlApplicationEngine engine;
    prepareEngine(engine);
    // The page alone, with the real C++ types (the default folders: the test's, see test_main.cpp).
    engine.loadData(R"(
import QtQuick
import QtQuick.Controls
import QinsChat
ApplicationWindow {
    id: win
    width: 1100
    height: 900
    visible: true
    property ModelManager models: ModelManager {}
    property ModelLibrary library: ModelLibrary {}
    property ModelDownloads downloads: ModelDownloads { library: win.library }
    ModelsPage {
        anchors.fill: parent
        downloads: win.downloads
        library: win.library
        models: win.models
    }
}
)");
    ASSERT_EQ(engine.rootObjects().size(), 1) << warnings.joined().toStdString();
    auto* window = qobject_cast<QQuickWindow*>(engine.rootObjects().first());
    ASSERT_NE(window, nullptr);
    ASSERT_TRUE(QTest::qWaitForWindowExposed(window));
    auto* downloads = rootObject<ModelDownloads>(window, "downloads");
    ASSERT_NE(downloads, nullptr);
    const QString repo = downloads->data(downloads->index(0), ModelDownloads::RepoRole).toString();
    ASSERT_TRUE(downloads->setPrecision(repo, ModelDownloads::Bits8));
    QTest::qWait(50);

    QQuickItem* sizes = findItem(window->contentItem(), QStringLiteral("sizes-0"));
    QQuickItem* bits4 = findItem(window->contentItem(), QStringLiteral("precision4-0"));
    QQuickItem* bits8 = findItem(window->contentItem(), QStringLiteral("precision8-0"));
    ASSERT_NE(sizes, nullptr);
    ASSERT_NE(bits4, nullptr);
    ASSERT_NE(bits8, nullptr);
    EXPECT_TRUE(bits8->property("checked").toBool());
    EXPECT_FALSE(bits4->property("checked").toBool());
    EXPECT_TRUE(bits4->property("text").toString().startsWith(QStringLiteral("4-bit QINS-4 · about 2.24 GB")))
        << bits4->property("text").toString().toStdString();
    const QString before = sizes->property("text").toString();
    EXPECT_TRUE(before.contains(QStringLiteral("about 3.83 GB after conversion to 8-bit QINS"))) << before.toStdString();

    clickItem(window, bits4);
    ASSERT_TRUE(QTest::qWaitFor([&] { return sizes->property("text").toString() != before; }, 5000));
    const QString after = sizes->property("text").toString();
    EXPECT_TRUE(after.contains(QStringLiteral("about 2.24 GB after conversion to 4-bit QINS-4"))) << after.toStdString();
    EXPECT_TRUE(after.startsWith(QStringLiteral("7.64 GB download"))) << after.toStdString();
    EXPECT_EQ(downloads->precisionOf(repo), ModelDownloads::Bits4);
    EXPECT_TRUE(bits4->property("checked").toBool());
    EXPECT_FALSE(bits8->property("checked").toBool());

    // And back: the binding still follows the model.
    clickItem(window, bits8);
    ASSERT_TRUE(QTest::qWaitFor([&] { return sizes->property("text").toString() == before; }, 5000));
    EXPECT_EQ(downloads->precisionOf(repo), ModelDownloads::Bits8);
    EXPECT_FALSE(bits4->property("checked").toBool());
  }
  EXPECT_TRUE(warnings.messages().isEmpty()) << warnings.joined().toStdString();
}
