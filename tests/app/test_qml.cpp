// The views: every QML file compiles, and the whole window (Main.qml with the real C++ types,
// loading the fixture model, a reply streaming, panels open, both themes) logs no warning.
#include <gtest/gtest.h>

#include <QDir>
#include <QDirIterator>
#include <QQmlApplicationEngine>
#include <QQmlComponent>
#include <QQmlEngine>
#include <QQuickStyle>
#include <QQuickWindow>
#include <QTest>

#include "chat_controller.h"
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
  }
  qunsetenv("QINS_MODEL");
  EXPECT_TRUE(warnings.messages().isEmpty()) << warnings.joined().toStdString();
}
