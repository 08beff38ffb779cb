// GoogleTest main for test_app: one QGuiApplication on the offscreen platform, settings and data
// in Qt's test locations (never the user's), the QinsChat QML module linked in statically.
#include <gtest/gtest.h>

#include <QFile>
#include <QGuiApplication>
#include <QQuickStyle>
#include <QSettings>
#include <QStandardPaths>
#include <QtQml/QQmlExtensionPlugin>

#include "chat_list_model.h"

Q_IMPORT_QML_PLUGIN(QinsChatPlugin)

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM")) qputenv("QT_QPA_PLATFORM", "offscreen");
  QStandardPaths::setTestModeEnabled(true);
  QGuiApplication app(argc, argv);
  QGuiApplication::setOrganizationName(QStringLiteral("QINS-test"));
  QGuiApplication::setApplicationName(QStringLiteral("test_app"));
  QQuickStyle::setStyle(QStringLiteral("Fusion"));  // as qins-chat does; must precede any QML
  QSettings().clear();
  // The window test opens the default chat database: start each run from an empty one.
  for (const char* suffix : {"", "-wal", "-shm"})
    QFile::remove(ChatListModel::defaultDatabasePath() + QLatin1String(suffix));
  return RUN_ALL_TESTS();
}
