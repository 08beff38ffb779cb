#include "test_support.h"

#include <QDir>
#include <QMutex>
#include <QTemporaryDir>

#include <memory>

#include "qins/tools/fixture.h"

namespace {
QMutex g_mutex;
QStringList g_messages;
QtMessageHandler g_previous = nullptr;
int g_depth = 0;

// Qt's font engine notes when the machine's fonts lack shaping tables for a script that some
// text uses. The fixture model is random, so a reply can hold characters of any script (its
// byte-fallback pieces form arbitrary UTF-8): whether this note appears depends on the reply and
// on the fonts installed, not on our QML. Every other warning still fails the tests.
bool font_environment_note(const QString& message) {
  return message.trimmed().startsWith(QStringLiteral("OpenType support missing for"));
}

void collect(QtMsgType type, const QMessageLogContext& context, const QString& message) {
  if ((type == QtWarningMsg || type == QtCriticalMsg || type == QtFatalMsg) && !font_environment_note(message)) {
    QMutexLocker lock(&g_mutex);
    g_messages.append(QStringLiteral("[%1] %2").arg(QString::fromLatin1(context.category), message));
  }
  if (g_previous) g_previous(type, context, message);
}

QTemporaryDir& tempRoot() {
  static QTemporaryDir dir(QDir::temp().filePath(QStringLiteral("qins-test-app-XXXXXX")));
  return dir;
}
}  // namespace

WarningCollector::WarningCollector() {
  QMutexLocker lock(&g_mutex);
  if (g_depth++ == 0) {
    g_messages.clear();
    g_previous = qInstallMessageHandler(collect);
  }
}

WarningCollector::~WarningCollector() {
  QMutexLocker lock(&g_mutex);
  if (--g_depth == 0) qInstallMessageHandler(g_previous);
}

QStringList WarningCollector::messages() const {
  QMutexLocker lock(&g_mutex);
  return g_messages;
}

void WarningCollector::clear() {
  QMutexLocker lock(&g_mutex);
  g_messages.clear();
}

QString makeTempDir(const QString& name) {
  static int counter = 0;
  const QString path = QDir(tempRoot().path()).filePath(QStringLiteral("%1-%2").arg(name).arg(++counter));
  QDir().mkpath(path);
  return path;
}

QString fixtureModelDir() {
  static const QString dir = [] {
    const QString d = QDir(tempRoot().path()).filePath(QStringLiteral("fixture-model"));
    qins::write_fixture_model(d.toStdString());
    return d;
  }();
  return dir;
}
