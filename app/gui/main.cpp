// qins-chat: opens the window at once; the model loads on the worker thread (ModelManager).
#include <QCommandLineParser>
#include <QDir>
#include <QGuiApplication>
#include <QIcon>
#include <QQmlApplicationEngine>
#include <QQuickStyle>
#include <QUrl>
#include <QtQml/QQmlExtensionPlugin>

#include "model_manager.h"

Q_IMPORT_QML_PLUGIN(QinsChatPlugin)

int main(int argc, char* argv[]) {
  QGuiApplication app(argc, argv);
  QGuiApplication::setOrganizationName(QStringLiteral("QINS"));
  QGuiApplication::setOrganizationDomain(QStringLiteral("qins.org"));
  QGuiApplication::setApplicationName(QStringLiteral("QINS Chat"));
  QGuiApplication::setApplicationVersion(QStringLiteral(QINS_APP_VERSION));
  QGuiApplication::setDesktopFileName(QStringLiteral("qins-chat"));

  QCommandLineParser args;
  args.setApplicationDescription(QStringLiteral("QINS Chat: Phi-3.5-mini on this computer."));
  args.addHelpOption();
  args.addVersionOption();
  args.addPositionalArgument(QStringLiteral("model"),
                             QStringLiteral("A .qins file or a Hugging Face folder to load instead of the default "
                                            "(also: QINS_MODEL=...)."),
                             QStringLiteral("[model]"));
  args.process(app);
  if (!args.positionalArguments().isEmpty())
    ModelManager::setStartupModel(QDir::current().absoluteFilePath(args.positionalArguments().first()));
  // Fusion draws every control from the palette, which Main.qml sets from Theme (light / dark).
  if (qEnvironmentVariableIsEmpty("QT_QUICK_CONTROLS_STYLE")) QQuickStyle::setStyle(QStringLiteral("Fusion"));

  QGuiApplication::setWindowIcon(QIcon(QStringLiteral(":/icons/qins-chat.png")));

  QQmlApplicationEngine engine;
  // Qt 6.5+ has this import path built in; Qt 6.4 needs it for modules under /qt/qml.
  engine.addImportPath(QStringLiteral("qrc:/qt/qml"));
  QObject::connect(
      &engine, &QQmlApplicationEngine::objectCreated, &app,
      [](QObject* object, const QUrl&) {
        if (!object) QCoreApplication::exit(1);
      },
      Qt::QueuedConnection);
  engine.load(QUrl(QStringLiteral("qrc:/qt/qml/QinsChat/Main.qml")));
  if (engine.rootObjects().isEmpty()) return 1;
  return QGuiApplication::exec();
}
