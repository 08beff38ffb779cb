#include "theme.h"

#include <algorithm>

#include <QEvent>
#include <QFontDatabase>
#include <QGuiApplication>
#include <QPalette>
#include <QSettings>
#include <QStyleHints>
#include <QVariant>

Theme::Theme(QObject* parent) : QObject(parent) {
  const QString saved = QSettings().value("ui/theme", QStringLiteral("system")).toString();
  if (saved == QLatin1String("light") || saved == QLatin1String("dark")) m_mode = saved;
  m_monoFamily = QFontDatabase::systemFont(QFontDatabase::FixedFont).family();
  updateSystemDark();
  if (QGuiApplication* app = qobject_cast<QGuiApplication*>(QCoreApplication::instance())) {
    app->installEventFilter(this);
#if QT_VERSION >= QT_VERSION_CHECK(6, 5, 0)
    connect(app->styleHints(), &QStyleHints::colorSchemeChanged, this, [this] {
      updateSystemDark();
    });
#endif
  }
}

bool Theme::dark() const {
  if (m_mode == QLatin1String("dark")) return true;
  if (m_mode == QLatin1String("light")) return false;
  return m_systemDark;
}

void Theme::setMode(const QString& mode) {
  const QString m = (mode == QLatin1String("light") || mode == QLatin1String("dark")) ? mode : QStringLiteral("system");
  if (m == m_mode) return;
  m_mode = m;
  QSettings().setValue("ui/theme", m_mode);
  Q_EMIT changed();
}

void Theme::toggle() {
  // Every click flips what the user sees: the opposite of the system, then back to following it.
  if (m_mode == QLatin1String("system")) setMode(m_systemDark ? QStringLiteral("light") : QStringLiteral("dark"));
  else if (dark() != m_systemDark) setMode(QStringLiteral("system"));
  else setMode(dark() ? QStringLiteral("light") : QStringLiteral("dark"));
}

bool Theme::eventFilter(QObject* watched, QEvent* event) {
  if (event->type() == QEvent::ApplicationPaletteChange && watched == QCoreApplication::instance())
    updateSystemDark();
  return QObject::eventFilter(watched, event);
}

void Theme::updateSystemDark() {
  bool dark = false;
  if (qobject_cast<QGuiApplication*>(QCoreApplication::instance())) {
#if QT_VERSION >= QT_VERSION_CHECK(6, 5, 0)
    const Qt::ColorScheme scheme = QGuiApplication::styleHints()->colorScheme();
    if (scheme != Qt::ColorScheme::Unknown) dark = scheme == Qt::ColorScheme::Dark;
    else
#endif
    {
      // Fallback: the platform palette's window colour.
      const QPalette palette = QGuiApplication::palette();
      dark = palette.color(QPalette::Window).lightness() < palette.color(QPalette::WindowText).lightness();
    }
  }
  // QINS_THEME=dark|light forces the system's answer (screenshots, desktops that report nothing).
  const QString forced = qEnvironmentVariable("QINS_THEME");
  if (forced == QLatin1String("dark")) dark = true;
  if (forced == QLatin1String("light")) dark = false;
  if (dark == m_systemDark) return;
  m_systemDark = dark;
  Q_EMIT changed();
}

// ---- AppSettings ---------------------------------------------------------------------------------

AppSettings::AppSettings(QObject* parent) : QObject(parent) {
  QSettings s;
  m_width = std::max(640, s.value("window/width", m_width).toInt());
  m_height = std::max(480, s.value("window/height", m_height).toInt());
  m_maximized = s.value("window/maximized", false).toBool();
  m_sidebar = s.value("window/sidebar", true).toBool();
  m_lastChat = s.value("window/lastChat", 0).toLongLong();
}

void AppSettings::save(const char* key, const QVariant& value) {
  QSettings().setValue(QLatin1String(key), value);
  Q_EMIT changed();
}

void AppSettings::setWindowWidth(int v) {
  if (v == m_width || v < 200) return;
  m_width = v;
  save("window/width", v);
}
void AppSettings::setWindowHeight(int v) {
  if (v == m_height || v < 200) return;
  m_height = v;
  save("window/height", v);
}
void AppSettings::setMaximized(bool v) {
  if (v == m_maximized) return;
  m_maximized = v;
  save("window/maximized", v);
}
void AppSettings::setSidebarVisible(bool v) {
  if (v == m_sidebar) return;
  m_sidebar = v;
  save("window/sidebar", v);
}
void AppSettings::setLastChatId(qint64 v) {
  if (v == m_lastChat) return;
  m_lastChat = v;
  save("window/lastChat", v);
}

// ---- Format --------------------------------------------------------------------------------------

QString Format::bytes(qint64 n) {
  const double gib = 1024.0 * 1024.0 * 1024.0;
  if (n >= gib) return QString::number(static_cast<double>(n) / gib, 'f', 2) + QStringLiteral(" GB");
  if (n >= 1024 * 1024) return QString::number(static_cast<double>(n) / (1024.0 * 1024.0), 'f', 0) + QStringLiteral(" MB");
  if (n >= 1024) return QString::number(static_cast<double>(n) / 1024.0, 'f', 0) + QStringLiteral(" KB");
  return QString::number(n) + QStringLiteral(" B");
}

QString Format::count(qint64 n) {
  const double v = static_cast<double>(n);
  if (n >= 1000000000LL) return QString::number(v / 1e9, 'f', 2) + QStringLiteral(" B");
  if (n >= 1000000LL) return QString::number(v / 1e6, 'f', 1) + QStringLiteral(" M");
  if (n >= 1000LL) return QString::number(v / 1e3, 'f', 1) + QStringLiteral(" K");
  return QString::number(n);
}

QString Format::seconds(double s) {
  if (s < 60.0) return QString::number(s, 'f', s < 10.0 ? 2 : 1) + QStringLiteral(" s");
  const int total = static_cast<int>(s + 0.5);
  return QStringLiteral("%1 min %2 s").arg(total / 60).arg(total % 60);
}
