// Colours for light and dark, following the system unless the user picked one (persisted).
// Qt 6.4 has no QStyleHints::colorScheme (6.5+): there the system's choice is read from the
// application palette (a dark window colour means a dark theme) and followed on palette changes.
// Also here: AppSettings (window size, layout) and Format (numbers for the views).
#pragma once

#include <QColor>
#include <QObject>
#include <QString>
#include <QtQml/qqmlregistration.h>

class Theme : public QObject {
  Q_OBJECT
  QML_ELEMENT
  QML_SINGLETON
  Q_PROPERTY(QString mode READ mode WRITE setMode NOTIFY changed)  // "system" | "light" | "dark"
  Q_PROPERTY(bool dark READ dark NOTIFY changed)
  Q_PROPERTY(bool systemDark READ systemDark NOTIFY changed)
  Q_PROPERTY(QColor window READ window NOTIFY changed)
  Q_PROPERTY(QColor surface READ surface NOTIFY changed)
  Q_PROPERTY(QColor sidebar READ sidebar NOTIFY changed)
  Q_PROPERTY(QColor text READ text NOTIFY changed)
  Q_PROPERTY(QColor mutedText READ mutedText NOTIFY changed)
  Q_PROPERTY(QColor border READ border NOTIFY changed)
  Q_PROPERTY(QColor accent READ accent NOTIFY changed)
  Q_PROPERTY(QColor accentText READ accentText NOTIFY changed)
  Q_PROPERTY(QColor userBubble READ userBubble NOTIFY changed)
  Q_PROPERTY(QColor assistantBubble READ assistantBubble NOTIFY changed)
  Q_PROPERTY(QColor codeBackground READ codeBackground NOTIFY changed)
  Q_PROPERTY(QColor codeText READ codeText NOTIFY changed)
  Q_PROPERTY(QColor warning READ warning NOTIFY changed)
  Q_PROPERTY(QColor danger READ danger NOTIFY changed)
  Q_PROPERTY(QColor gaugeWeights READ gaugeWeights NOTIFY changed)
  Q_PROPERTY(QColor gaugeKvCache READ gaugeKvCache NOTIFY changed)
  Q_PROPERTY(QColor gaugeOther READ gaugeOther NOTIFY changed)
  Q_PROPERTY(QColor gaugeTrack READ gaugeTrack NOTIFY changed)
  Q_PROPERTY(QString monoFamily READ monoFamily CONSTANT)
 public:
  explicit Theme(QObject* parent = nullptr);

  QString mode() const { return m_mode; }
  void setMode(const QString& mode);
  Q_INVOKABLE void toggle();  // system -> the opposite of the system's -> back to system
  bool dark() const;
  bool systemDark() const { return m_systemDark; }

  QColor window() const { return dark() ? QColor(0x1e, 0x1f, 0x22) : QColor(0xf7, 0xf7, 0xf8); }
  QColor surface() const { return dark() ? QColor(0x2b, 0x2d, 0x31) : QColor(0xff, 0xff, 0xff); }
  QColor sidebar() const { return dark() ? QColor(0x18, 0x19, 0x1b) : QColor(0xec, 0xed, 0xef); }
  QColor text() const { return dark() ? QColor(0xe8, 0xe8, 0xea) : QColor(0x1d, 0x1d, 0x1f); }
  QColor mutedText() const { return dark() ? QColor(0x9a, 0x9c, 0xa3) : QColor(0x6b, 0x6e, 0x76); }
  QColor border() const { return dark() ? QColor(0x3c, 0x3f, 0x45) : QColor(0xd9, 0xdb, 0xdf); }
  // Dark: a deeper blue than the usual #5b9cff, so white text on a selected row stays readable.
  QColor accent() const { return dark() ? QColor(0x2f, 0x6f, 0xd8) : QColor(0x1f, 0x6f, 0xeb); }
  QColor accentText() const { return QColor(0xff, 0xff, 0xff); }
  QColor userBubble() const { return dark() ? QColor(0x24, 0x3b, 0x5e) : QColor(0xdd, 0xea, 0xfd); }
  QColor assistantBubble() const { return dark() ? QColor(0x2b, 0x2d, 0x31) : QColor(0xff, 0xff, 0xff); }
  QColor codeBackground() const { return dark() ? QColor(0x16, 0x17, 0x19) : QColor(0xf1, 0xf3, 0xf5); }
  QColor codeText() const { return dark() ? QColor(0xd6, 0xde, 0xeb) : QColor(0x24, 0x29, 0x2f); }
  QColor warning() const { return dark() ? QColor(0xe3, 0xb3, 0x41) : QColor(0x9a, 0x67, 0x00); }
  QColor danger() const { return dark() ? QColor(0xf8, 0x71, 0x71) : QColor(0xc5, 0x22, 0x1f); }
  QColor gaugeWeights() const { return dark() ? QColor(0x5b, 0x9c, 0xff) : QColor(0x1f, 0x6f, 0xeb); }
  QColor gaugeKvCache() const { return dark() ? QColor(0xc0, 0x84, 0xfc) : QColor(0x8b, 0x3d, 0xd9); }
  QColor gaugeOther() const { return dark() ? QColor(0x4a, 0xde, 0x80) : QColor(0x1a, 0x9d, 0x4b); }
  QColor gaugeTrack() const { return dark() ? QColor(0x3c, 0x3f, 0x45) : QColor(0xe3, 0xe5, 0xe8); }
  QString monoFamily() const { return m_monoFamily; }

 Q_SIGNALS:
  void changed();

 protected:
  bool eventFilter(QObject* watched, QEvent* event) override;

 private:
  void updateSystemDark();
  QString m_mode = QStringLiteral("system");
  bool m_systemDark = false;
  QString m_monoFamily;
};

// Window size and layout choices that outlive a run (QSettings group "window").
class AppSettings : public QObject {
  Q_OBJECT
  QML_ELEMENT
  QML_SINGLETON
  Q_PROPERTY(int windowWidth READ windowWidth WRITE setWindowWidth NOTIFY changed)
  Q_PROPERTY(int windowHeight READ windowHeight WRITE setWindowHeight NOTIFY changed)
  Q_PROPERTY(bool maximized READ maximized WRITE setMaximized NOTIFY changed)
  Q_PROPERTY(bool sidebarVisible READ sidebarVisible WRITE setSidebarVisible NOTIFY changed)
  Q_PROPERTY(qint64 lastChatId READ lastChatId WRITE setLastChatId NOTIFY changed)
 public:
  explicit AppSettings(QObject* parent = nullptr);
  int windowWidth() const { return m_width; }
  int windowHeight() const { return m_height; }
  bool maximized() const { return m_maximized; }
  bool sidebarVisible() const { return m_sidebar; }
  qint64 lastChatId() const { return m_lastChat; }
  void setWindowWidth(int v);
  void setWindowHeight(int v);
  void setMaximized(bool v);
  void setSidebarVisible(bool v);
  void setLastChatId(qint64 v);

 Q_SIGNALS:
  void changed();

 private:
  void save(const char* key, const QVariant& value);
  int m_width = 1180;
  int m_height = 780;
  bool m_maximized = false;
  bool m_sidebar = true;
  qint64 m_lastChat = 0;
};

// Number formatting for the views.
class Format : public QObject {
  Q_OBJECT
  QML_ELEMENT
  QML_SINGLETON
 public:
  using QObject::QObject;
  Q_INVOKABLE static QString bytes(qint64 n);    // "2.13 GB", "512 MB" (powers of 1024)
  Q_INVOKABLE static QString count(qint64 n);    // "3.82 B", "12.4 M"
  Q_INVOKABLE static QString seconds(double s);  // "0.42 s", "1 min 3 s"
};
