#include "chat_model.h"

#include <algorithm>

// ---- SegmentListModel ----------------------------------------------------------------------------

int SegmentListModel::rowCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : static_cast<int>(m_segments.size());
}

QVariant SegmentListModel::data(const QModelIndex& index, int role) const {
  if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid)) return {};
  const MarkdownSegment& s = m_segments[index.row()];
  switch (role) {
    case CodeRole: return s.code;
    case TextRole:
    case Qt::DisplayRole: return s.text;
    case LanguageRole: return s.language;
    case ClosedRole: return s.closed;
    default: return {};
  }
}

QHash<int, QByteArray> SegmentListModel::roleNames() const {
  return {{CodeRole, "code"}, {TextRole, "text"}, {LanguageRole, "language"}, {ClosedRole, "closed"}};
}

void SegmentListModel::setSegments(const QList<MarkdownSegment>& segments) {
  const int oldCount = static_cast<int>(m_segments.size());
  const int newCount = static_cast<int>(segments.size());
  const int common = std::min(oldCount, newCount);
  if (newCount < oldCount) {
    beginRemoveRows({}, newCount, oldCount - 1);
    m_segments.erase(m_segments.begin() + newCount, m_segments.end());
    endRemoveRows();
  }
  for (int i = 0; i < common; ++i) {
    if (m_segments[i] == segments[i]) continue;
    // A segment that turns from prose into code (or back) is replaced, so its delegate is rebuilt.
    if (m_segments[i].code != segments[i].code) {
      beginRemoveRows({}, i, i);
      m_segments.removeAt(i);
      endRemoveRows();
      beginInsertRows({}, i, i);
      m_segments.insert(i, segments[i]);
      endInsertRows();
      continue;
    }
    m_segments[i] = segments[i];
    const QModelIndex at = index(i);
    Q_EMIT dataChanged(at, at);
  }
  if (newCount > oldCount) {
    beginInsertRows({}, oldCount, newCount - 1);
    for (int i = oldCount; i < newCount; ++i) m_segments.append(segments[i]);
    endInsertRows();
  }
}

// ---- ChatModel -----------------------------------------------------------------------------------

ChatModel::ChatModel(QObject* parent) : QAbstractListModel(parent) {
  connect(this, &QAbstractItemModel::rowsInserted, this, &ChatModel::countChanged);
  connect(this, &QAbstractItemModel::rowsRemoved, this, &ChatModel::countChanged);
  connect(this, &QAbstractItemModel::modelReset, this, &ChatModel::countChanged);
}

int ChatModel::rowCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : static_cast<int>(m_messages.size());
}

QVariant ChatModel::data(const QModelIndex& index, int role) const {
  if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid)) return {};
  const Message& m = m_messages[index.row()];
  switch (role) {
    case MessageIdRole: return m.id;
    case AuthorRole: return m.author;
    case TextRole:
    case Qt::DisplayRole: return m.text;
    case StreamingRole: return m.streaming;
    case StatsRole: return m.stats;
    case SegmentsRole: return QVariant::fromValue(m.segments);
    default: return {};
  }
}

QHash<int, QByteArray> ChatModel::roleNames() const {
  return {{MessageIdRole, "messageId"}, {AuthorRole, "author"},   {TextRole, "text"},
          {StreamingRole, "streaming"}, {StatsRole, "stats"},     {SegmentsRole, "segments"}};
}

void ChatModel::clear() {
  beginResetModel();
  // Delegates may still hold the old segment models until the reset is processed.
  for (Message& m : m_messages) m.segments->deleteLater();
  m_messages.clear();
  endResetModel();
}

int ChatModel::append(qint64 id, const QString& author, const QString& text, bool streaming) {
  const int row = static_cast<int>(m_messages.size());
  beginInsertRows({}, row, row);
  Message m;
  m.id = id;
  m.author = author;
  m.text = text;
  m.streaming = streaming;
  m.segments = new SegmentListModel(this);
  m.segments->setSegments(splitMarkdownSegments(text));
  m_messages.append(m);
  endInsertRows();
  return row;
}

void ChatModel::resegment(int row) {
  m_messages[row].segments->setSegments(splitMarkdownSegments(m_messages[row].text));
}

void ChatModel::appendText(int row, const QString& more) {
  if (row < 0 || row >= count() || more.isEmpty()) return;
  m_messages[row].text += more;
  resegment(row);
  const QModelIndex at = index(row);
  Q_EMIT dataChanged(at, at, {TextRole});
}

void ChatModel::setText(int row, const QString& text) {
  if (row < 0 || row >= count() || m_messages[row].text == text) return;
  m_messages[row].text = text;
  resegment(row);
  const QModelIndex at = index(row);
  Q_EMIT dataChanged(at, at, {TextRole});
}

void ChatModel::setStreaming(int row, bool streaming) {
  if (row < 0 || row >= count() || m_messages[row].streaming == streaming) return;
  m_messages[row].streaming = streaming;
  const QModelIndex at = index(row);
  Q_EMIT dataChanged(at, at, {StreamingRole});
}

void ChatModel::setStats(int row, const QString& stats) {
  if (row < 0 || row >= count() || m_messages[row].stats == stats) return;
  m_messages[row].stats = stats;
  const QModelIndex at = index(row);
  Q_EMIT dataChanged(at, at, {StatsRole});
}

void ChatModel::setMessageId(int row, qint64 id) {
  if (row < 0 || row >= count() || m_messages[row].id == id) return;
  m_messages[row].id = id;
  const QModelIndex at = index(row);
  Q_EMIT dataChanged(at, at, {MessageIdRole});
}

void ChatModel::removeFrom(int row) {
  if (row < 0 || row >= count()) return;
  beginRemoveRows({}, row, count() - 1);
  for (int i = row; i < count(); ++i) m_messages[i].segments->deleteLater();
  m_messages.erase(m_messages.begin() + row, m_messages.end());
  endRemoveRows();
}
