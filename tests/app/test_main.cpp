// GoogleTest main for test_app: one QGuiApplication on the offscreen platform, settings and data
// in Qt's test locations (never the user's), the QinsChat QML module linked in statically.
#include <gtest/gtest.h>

#include <QDir>
#include <QFile>
#include <QGuiApplication>
#include <QQuickStyle>
#include <QSettings>
#include <QStandardPaths>
#include <QtQml/QQmlExtensionPlugin>

Q_IMPORT_QML_PLUGIN(QinsChatPlugin)

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM")) qputenv("QT_QPA_PLATFORM", "offscreen");
  QStandardPaths::setTestModeEnabled(true);
  QGuiApplication app(argc, argv);
  QGuiApplication::setOrganizationName(QStringLiteral("QINS-test"));
  // One settings file and data folder per process: ctest runs tests in parallel processes, and
  // they must not see each other's sampling settings or chat database.
  QGuiApplication::setApplicationName(QStringLiteral("test_app-%1").arg(QCoreApplication::applicationPid()));
  QQuickStyle::setStyle(QStringLiteral("Fusion"));  // as qins-chat does; must precede any QML
  const QString settingsFile = QSettings().fileName();
  const QString dataDir = QStandardPaths::writableLocation(QStandardPaths::AppDataLocation);
  // The Models page's default folders (the Hub cache, converted models): the test's, never the user's.
  qputenv("QINS_MODELS_DIR", QDir(dataDir).filePath(QStringLiteral("models")).toUtf8());
  qputenv("HF_HUB_CACHE", QDir(dataDir).filePath(QStringLiteral("hf-cache")).toUtf8());
  const int rc = RUN_ALL_TESTS();
  QFile::remove(settingsFile);
  QDir(dataDir).removeRecursively();
  return rc;
}
