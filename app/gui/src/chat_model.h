// The messages of the open chat, as the chat view sees them.
#pragma once

#include <QAbstractListModel>
#include <QList>
#include <QtQml/qqmlregistration.h>

#include "markdown_segments.h"

// The prose and code blocks of one message (see markdown_segments.h). A streaming reply changes
// only its last segment, so the view re-renders one block per flush, not the whole message.
class SegmentListModel : public QAbstractListModel {
  Q_OBJECT
  QML_ELEMENT
  QML_UNCREATABLE("Segments belong to a ChatModel message.")
 public:
  enum Roles { CodeRole = Qt::UserRole + 1, TextRole, LanguageRole, ClosedRole };
  using QAbstractListModel::QAbstractListModel;

  int rowCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role) const override;
  QHash<int, QByteArray> roleNames() const override;

  // Replaces the segments with `segments`, emitting the smallest change (row-wise).
  void setSegments(const QList<MarkdownSegment>& segments);
  const QList<MarkdownSegment>& segments() const { return m_segments; }

 private:
  QList<MarkdownSegment> m_segments;
};

class ChatModel : public QAbstractListModel {
  Q_OBJECT
  QML_ELEMENT
  QML_UNCREATABLE("ChatController owns the ChatModel: use ChatController.messages.")
  Q_PROPERTY(int count READ count NOTIFY countChanged)
 public:
  enum Roles { MessageIdRole = Qt::UserRole + 1, AuthorRole, TextRole, StreamingRole, StatsRole, SegmentsRole };
  struct Message {
    qint64 id = 0;      // row id in the chat store, 0 while not stored yet
    QString author;     // "user" | "assistant" | "system"
    QString text;
    bool streaming = false;
    QString stats;
    SegmentListModel* segments = nullptr;  // owned by the ChatModel
  };

  explicit ChatModel(QObject* parent = nullptr);

  int rowCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role) const override;
  QHash<int, QByteArray> roleNames() const override;
  int count() const { return static_cast<int>(m_messages.size()); }

  const Message& at(int row) const { return m_messages[row]; }
  const QList<Message>& messages() const { return m_messages; }

  void clear();
  int append(qint64 id, const QString& author, const QString& text, bool streaming = false);
  void appendText(int row, const QString& more);
  void setText(int row, const QString& text);
  void setStreaming(int row, bool streaming);
  void setStats(int row, const QString& stats);
  void setMessageId(int row, qint64 id);
  void removeFrom(int row);  // drops rows [row, count)

 Q_SIGNALS:
  void countChanged();

 private:
  void resegment(int row);
  QList<Message> m_messages;
};
