// Helpers shared by the app tests.
#pragma once

#include <QList>
#include <QString>
#include <QtGlobal>

// Collects every qWarning / qCritical (also from QML and QAbstractItemModelTester in Warning
// mode) while alive; restores the previous handler afterwards.
class WarningCollector {
 public:
  WarningCollector();
  ~WarningCollector();
  QStringList messages() const;
  QString joined() const { return messages().join(QLatin1Char('\n')); }
  void clear();
};

// A fresh directory under the system temp dir, removed at the end of the test run.
QString makeTempDir(const QString& name);

// The tiny random-weight Phi-3 fixture model (written once per test run), as a directory path.
QString fixtureModelDir();
