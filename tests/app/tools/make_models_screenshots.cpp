// Takes the Models page's screenshots in docs/screenshots/: the real window (Main.qml, real types)
// with the Hub endpoint pointed at tests/io's fake Hub on loopback, which serves the fixture model
// (a tiny random-weight Phi-3) under the name microsoft/Phi-3.5-mini-instruct, so a download can be
// shown in progress (the transfer is held halfway with the fake Hub's stall switch) without the
// network. Run under Xvfb: see docs/app.md.
//   qins_models_screenshots OUT_DIR
#include <QDir>
#include <QFileInfo>
#include <QGuiApplication>
#include <QImage>
#include <QQmlApplicationEngine>
#include <QQuickStyle>
#include <QQuickWindow>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QTest>
#include <QtQml/QQmlExtensionPlugin>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "chat_controller.h"
#include "fake_hub.h"
#include "model_downloads.h"
#include "qins/tools/fixture.h"
#include "theme.h"

Q_IMPORT_QML_PLUGIN(QinsChatPlugin)

namespace {

bool save(QQuickWindow* window, const QString& dir, const QString& name, int settleMs = 400) {
  QTest::qWait(settleMs);
  const QImage image = window->grabWindow();
  const QString path = QDir(dir).filePath(name + QStringLiteral(".png"));
  const bool ok = !image.isNull() && image.save(path);
  std::printf("%s %s\n", ok ? "wrote" : "FAILED", qPrintable(path));
  std::fflush(stdout);
  return ok;
}

std::string readAll(const QString& path) {
  std::ifstream in(path.toStdString(), std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

int main(int argc, char** argv) {
  QGuiApplication app(argc, argv);
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  const QString out = QString::fromLocal8Bit(argv[1]);
  QDir().mkpath(out);
  QGuiApplication::setOrganizationName(QStringLiteral("QINS-screenshots"));
  QGuiApplication::setApplicationName(QStringLiteral("QINS Chat"));
  QQuickStyle::setStyle(QStringLiteral("Fusion"));

  // The served repo: the fixture model's files, the weights as LFS files on the fake CDN.
  QTemporaryDir tmp;
  const QString fixture = tmp.filePath(QStringLiteral("fixture"));
  qins::write_fixture_model(fixture.toStdString());
  std::vector<qins_test::FakeFile> files;
  for (const QFileInfo& f : QDir(fixture).entryInfoList(QDir::Files))
    files.push_back({f.fileName().toStdString(), readAll(f.absoluteFilePath()), f.suffix() == QLatin1String("safetensors")});
  qins_test::FakeHub hub("microsoft/Phi-3.5-mini-instruct", files);
  hub.fault_file = "model.safetensors";
  hub.stall = 1;  // half the weights, then the transfer is held: the frame shows a download in progress
  qputenv("HF_ENDPOINT", QByteArray::fromStdString(hub.endpoint()));
  qputenv("HF_TOKEN", "");
  if (qEnvironmentVariableIsEmpty("HF_HUB_CACHE")) qputenv("HF_HUB_CACHE", tmp.filePath(QStringLiteral("hf-cache")).toUtf8());

  QQmlApplicationEngine engine;
  engine.addImportPath(QStringLiteral("qrc:/qt/qml"));
  engine.load(QUrl(QStringLiteral("qrc:/qt/qml/QinsChat/Main.qml")));
  if (engine.rootObjects().isEmpty()) return 1;
  auto* window = qobject_cast<QQuickWindow*>(engine.rootObjects().first());
  auto* models = qvariant_cast<ModelManager*>(window->property("modelManager"));
  auto* controller = qvariant_cast<ChatController*>(window->property("chatController"));
  auto* downloads = qvariant_cast<ModelDownloads*>(window->property("modelDownloads"));
  auto* theme = engine.singletonInstance<Theme*>(qmlTypeId("QinsChat", 1, 0, "Theme"));
  if (!models || !controller || !downloads || !theme) return 1;
  window->resize(1180, 860);
  theme->setMode(QStringLiteral("light"));
  if (!QTest::qWaitFor([&] { return !models->loading(); }, 600000) || !models->ready()) {
    std::fprintf(stderr, "model did not load: %s\n", qPrintable(models->message()));
    return 1;
  }
  controller->newChat();
  save(window, out, QStringLiteral("welcome-demo-light"));

  downloads->highlight(QStringLiteral("microsoft/Phi-3.5-mini-instruct"));
  window->setProperty("page", QStringLiteral("models"));
  save(window, out, QStringLiteral("models-light"));

  downloads->download(QStringLiteral("microsoft/Phi-3.5-mini-instruct"));
  (void)QTest::qWaitFor([&] {
    return downloads->data(downloads->index(0), ModelDownloads::ProgressRole).toDouble() > 0.2;
  }, 60000);
  save(window, out, QStringLiteral("models-download-light"), 150);
  theme->setMode(QStringLiteral("dark"));
  save(window, out, QStringLiteral("models-download-dark"), 150);
  downloads->pause();
  (void)QTest::qWaitFor([&] { return !downloads->busy(); }, 60000);
  save(window, out, QStringLiteral("models-paused-dark"));
  theme->setMode(QStringLiteral("system"));
  hub.release_stall = true;
  return 0;
}
