// Takes the screenshots in docs/screenshots/: runs the real window (Main.qml, real types, the
// model QINS_MODEL names or the default one), drives it through its typed root properties (as a
// user would: send a prompt, open the panels, switch the theme) and grabs the window after each
// step. Run under Xvfb: scripts in docs/app.md.
//   qins_app_screenshots OUT_DIR [PROMPT]
#include <QDir>
#include <QGuiApplication>
#include <QImage>
#include <QQmlApplicationEngine>
#include <QQuickStyle>
#include <QQuickWindow>
#include <QTest>
#include <QThread>
#include <QtQml/QQmlExtensionPlugin>

#include <cstdio>

#include "chat_controller.h"
#include "theme.h"

Q_IMPORT_QML_PLUGIN(QinsChatPlugin)

namespace {

bool save(QQuickWindow* window, const QString& dir, const QString& name, int settleMs = 300) {
  QTest::qWait(settleMs);  // let bindings, layout and the scene graph settle
  const QImage image = window->grabWindow();
  const QString path = QDir(dir).filePath(name + QStringLiteral(".png"));
  const bool ok = !image.isNull() && image.save(path);
  std::printf("%s %s\n", ok ? "wrote" : "FAILED", qPrintable(path));
  std::fflush(stdout);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  QGuiApplication app(argc, argv);
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR [PROMPT]\n", argv[0]);
    return 2;
  }
  const QString out = QString::fromLocal8Bit(argv[1]);
  const QString prompt = argc > 2 ? QString::fromLocal8Bit(argv[2])
                                  : QStringLiteral("Write a C++ function that reverses the words in a string.");
  QDir().mkpath(out);
  // Keep the user's chats and settings out of it.
  QGuiApplication::setOrganizationName(QStringLiteral("QINS-screenshots"));
  QGuiApplication::setApplicationName(QStringLiteral("QINS Chat"));
  QQuickStyle::setStyle(QStringLiteral("Fusion"));

  QQmlApplicationEngine engine;
  engine.addImportPath(QStringLiteral("qrc:/qt/qml"));
  engine.load(QUrl(QStringLiteral("qrc:/qt/qml/QinsChat/Main.qml")));
  if (engine.rootObjects().isEmpty()) return 1;
  auto* window = qobject_cast<QQuickWindow*>(engine.rootObjects().first());
  auto* models = qvariant_cast<ModelManager*>(window->property("modelManager"));
  auto* controller = qvariant_cast<ChatController*>(window->property("chatController"));
  auto* theme = engine.singletonInstance<Theme*>(qmlTypeId("QinsChat", 1, 0, "Theme"));
  if (!models || !controller || !theme) return 1;
  window->resize(1180, 760);
  theme->setMode(QStringLiteral("light"));

  save(window, out, QStringLiteral("loading-light"));
  if (!QTest::qWaitFor([&] { return !models->loading(); }, 600000) || !models->ready()) {
    std::fprintf(stderr, "model did not load: %s\n", qPrintable(models->message()));
    return 1;
  }
  controller->newChat();
  save(window, out, QStringLiteral("empty-light"));

  // A frame in the middle of a stream. Small models answer in milliseconds: with QINS_SHOTS_PACE
  // set, this first reply is paced (80 ms a piece, through the worker's test hook) so the frame can
  // be caught; the reply whose statistics are shown below is a second, unpaced one.
  const bool pace = qEnvironmentVariableIsSet("QINS_SHOTS_PACE");
  if (pace) models->worker()->setPieceHookForTesting([](int) { QThread::msleep(80); });
  controller->send(prompt);
  (void)QTest::qWaitFor([&] { return !controller->generating() || (controller->messages()->count() > 1 &&
                               controller->messages()->at(1).text.size() > 12); }, 600000);
  save(window, out, QStringLiteral("streaming-light"), 60);
  (void)QTest::qWaitFor([&] { return !controller->generating(); }, 600000);
  if (pace) {
    models->worker()->setPieceHookForTesting({});
    controller->newChat();
    controller->send(prompt);
  }
  (void)QTest::qWaitFor([&] { return !controller->generating(); }, 600000);
  save(window, out, QStringLiteral("reply-light"));

  window->setProperty("sidePanel", QStringLiteral("sampling"));
  save(window, out, QStringLiteral("sampling-light"));
  window->setProperty("sidePanel", QStringLiteral("stats"));
  save(window, out, QStringLiteral("stats-light"));

  // How Markdown and a code block render: a fixed sample reply put into the view (the models this
  // runs with may not write code). Saved under its own name so the docs can say what it is.
  window->setProperty("sidePanel", QString());
  controller->newChat();
  controller->messages()->append(0, QStringLiteral("user"), QStringLiteral("How do I reverse the words in a string in C++?"));
  controller->messages()->append(0, QStringLiteral("assistant"), QStringLiteral(
      "Split the string on spaces, reverse the list of words, and join them again:\n\n"
      "```cpp\n#include <algorithm>\n#include <sstream>\n#include <string>\n#include <vector>\n\n"
      "std::string reverse_words(const std::string& text) {\n"
      "  std::istringstream in(text);\n  std::vector<std::string> words;\n"
      "  for (std::string w; in >> w;) words.push_back(w);\n"
      "  std::reverse(words.begin(), words.end());\n  std::string out;\n"
      "  for (const auto& w : words) out += (out.empty() ? \"\" : \" \") + w;\n  return out;\n}\n```\n\n"
      "**Notes**\n\n- Runs of spaces collapse to one.\n- `reverse_words(\"a b c\")` returns `\"c b a\"`."));
  save(window, out, QStringLiteral("markdown-sample-light"));
  theme->setMode(QStringLiteral("dark"));
  save(window, out, QStringLiteral("markdown-sample-dark"));
  controller->openChat(controller->chats()->chatIdAt(0));
  window->setProperty("sidePanel", QStringLiteral("stats"));
  save(window, out, QStringLiteral("stats-dark"));
  window->setProperty("sidePanel", QStringLiteral("sampling"));
  save(window, out, QStringLiteral("sampling-dark"));
  window->setProperty("sidePanel", QString());
  save(window, out, QStringLiteral("reply-dark"));
  controller->newChat();
  save(window, out, QStringLiteral("empty-dark"));
  theme->setMode(QStringLiteral("system"));
  return 0;
}
