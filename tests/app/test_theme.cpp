// Theme follows the system (palette-based on Qt 6.4) unless the user picked a side; Format.
#include <gtest/gtest.h>

#include <QGuiApplication>
#include <QPalette>
#include <QSettings>
#include <QSignalSpy>

#include "theme.h"

TEST(Theme, FollowsTheSystemPaletteAndTheUsersChoice) {
  QSettings().remove(QStringLiteral("ui/theme"));
  qunsetenv("QINS_THEME");
  const QPalette original = QGuiApplication::palette();
  QPalette light;
  light.setColor(QPalette::Window, QColor(0xf0, 0xf0, 0xf0));
  light.setColor(QPalette::WindowText, QColor(0x10, 0x10, 0x10));
  QGuiApplication::setPalette(light);

  Theme theme;
  EXPECT_EQ(theme.mode(), QStringLiteral("system"));
  EXPECT_FALSE(theme.dark());
  const QColor lightWindow = theme.window();

  // The system turns dark: a theme that follows it turns dark too.
  QSignalSpy changed(&theme, &Theme::changed);
  QPalette dark;
  dark.setColor(QPalette::Window, QColor(0x20, 0x20, 0x20));
  dark.setColor(QPalette::WindowText, QColor(0xee, 0xee, 0xee));
  QGuiApplication::setPalette(dark);
  QCoreApplication::processEvents();
  EXPECT_TRUE(theme.systemDark());
  EXPECT_TRUE(theme.dark());
  EXPECT_GE(changed.count(), 1);
  EXPECT_NE(theme.window(), lightWindow);
  EXPECT_LT(theme.window().lightness(), theme.text().lightness());

  // Toggle: the opposite of the system, then back to following it. The choice is persisted.
  theme.toggle();
  EXPECT_EQ(theme.mode(), QStringLiteral("light"));
  EXPECT_FALSE(theme.dark());
  EXPECT_EQ(Theme().mode(), QStringLiteral("light"));
  theme.toggle();
  EXPECT_EQ(theme.mode(), QStringLiteral("system"));
  EXPECT_TRUE(theme.dark());
  theme.setMode(QStringLiteral("nonsense"));
  EXPECT_EQ(theme.mode(), QStringLiteral("system"));

  QGuiApplication::setPalette(original);
  QSettings().remove(QStringLiteral("ui/theme"));
}

TEST(Format, BytesCountsAndSeconds) {
  EXPECT_EQ(Format::bytes(512), QStringLiteral("512 B"));
  EXPECT_EQ(Format::bytes(3 * 1024), QStringLiteral("3 KB"));
  EXPECT_EQ(Format::bytes(200LL * 1024 * 1024), QStringLiteral("200 MB"));
  EXPECT_EQ(Format::bytes(2LL * 1024 * 1024 * 1024 + 1024LL * 1024 * 1024 / 4), QStringLiteral("2.25 GB"));
  EXPECT_EQ(Format::count(3821079552LL), QStringLiteral("3.82 B"));
  EXPECT_EQ(Format::count(125200), QStringLiteral("125.2 K"));
  EXPECT_EQ(Format::count(999), QStringLiteral("999"));
  EXPECT_EQ(Format::seconds(0.4249), QStringLiteral("0.42 s"));
  EXPECT_EQ(Format::seconds(12.34), QStringLiteral("12.3 s"));
  EXPECT_EQ(Format::seconds(63.0), QStringLiteral("1 min 3 s"));
}
