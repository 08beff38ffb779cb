#include "chat_controller.h"

#include <QClipboard>
#include <QDateTime>
#include <QFileInfo>
#include <QGuiApplication>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QSaveFile>

#if defined(Q_OS_UNIX)
#include <unistd.h>
#endif

namespace {

const QString kUser = QStringLiteral("user");
const QString kAssistant = QStringLiteral("assistant");
const QString kSystem = QStringLiteral("system");
const QString kNewChat = QStringLiteral("New chat");

qins::Role roleOf(const QString& author) {
  if (author == kAssistant) return qins::Role::Assistant;
  if (author == kSystem) return qins::Role::System;
  return qins::Role::User;
}

// The line shown under a finished reply.
QString statsLine(const qins::GenerationStats& s) {
  QString line = QStringLiteral("%1 tokens · %2 tok/s · first token %3 s")
                     .arg(s.generated_tokens)
                     .arg(s.tokens_per_s, 0, 'f', 1)
                     .arg(s.time_to_first_token_s, 0, 'f', 2);
  if (s.stop_reason == "cancelled") line += QStringLiteral(" · stopped");
  else if (s.stop_reason == "max_tokens") line += QStringLiteral(" · max tokens reached");
  else if (s.stop_reason == "context_full") line += QStringLiteral(" · context full");
  return line;
}

}  // namespace

ChatController::ChatController(QObject* parent) : QObject(parent) {
  connect(&m_messages, &ChatModel::countChanged, this, &ChatController::canSendChanged);
}

ChatController::~ChatController() {
  if (m_generating && m_models) m_models->worker()->requestStop();
}

void ChatController::setModelManager(ModelManager* m) {
  if (m == m_models) return;
  if (m_models) {
    disconnect(m_models, nullptr, this, nullptr);
    disconnect(m_models->worker(), nullptr, this, nullptr);
  }
  m_models = m;
  if (m) {
    // Queued: the worker emits on its own thread; the slots run here, on the GUI thread.
    InferenceWorker* w = m->worker();
    connect(w, &InferenceWorker::textChunk, this, &ChatController::onTextChunk, Qt::QueuedConnection);
    connect(w, &InferenceWorker::generationFinished, this, &ChatController::onFinished, Qt::QueuedConnection);
    connect(w, &InferenceWorker::generationFailed, this, &ChatController::onFailed, Qt::QueuedConnection);
    connect(m, &ModelManager::aboutToLoad, this, &ChatController::stop);
    connect(m, &ModelManager::statusChanged, this, &ChatController::canSendChanged);
  }
  Q_EMIT modelManagerChanged();
  Q_EMIT canSendChanged();
}

void ChatController::setSettings(SamplingSettings* s) {
  if (s == m_settings) return;
  m_settings = s;
  Q_EMIT settingsChanged();
}

void ChatController::setChats(ChatListModel* c) {
  if (c == m_chats) return;
  if (m_chats) disconnect(m_chats, nullptr, this, nullptr);
  m_chats = c;
  if (c) connect(c, &ChatListModel::chatRemoved, this, &ChatController::onChatRemoved);
  Q_EMIT chatsChanged();
  Q_EMIT canSendChanged();
}

QString ChatController::currentTitle() const {
  if (m_chatId == 0 || !m_chats) return kNewChat;
  const QString t = m_chats->titleOf(m_chatId);
  return t.isEmpty() ? kNewChat : t;
}

bool ChatController::canSend() const {
  return !m_generating && m_models && m_models->ready() && m_chats;
}

bool ChatController::canRegenerate() const {
  return canSend() && m_messages.count() > 0;
}

QString ChatController::titleFor(const QString& firstMessage) {
  QString t = firstMessage.section(QLatin1Char('\n'), 0, 0).simplified();
  if (t.isEmpty()) t = firstMessage.simplified();
  constexpr int kMax = 48;
  if (t.size() > kMax) t = t.left(kMax - 1).trimmed() + QChar(0x2026);
  return t.isEmpty() ? kNewChat : t;
}

void ChatController::setCurrentChat(qint64 chatId) {
  if (chatId == m_chatId) return;
  m_chatId = chatId;
  Q_EMIT currentChatChanged();
}

bool ChatController::send(const QString& text) {
  const QString body = text.trimmed();
  if (body.isEmpty() || !canSend()) return false;
  ChatStore& store = m_chats->store();
  if (m_chatId == 0) {
    const qint64 id = m_chats->newChat(titleFor(body));
    if (id == 0) {
      setError(QStringLiteral("Cannot save the chat: %1").arg(store.errorString()));
      return false;
    }
    setCurrentChat(id);
  } else if (m_chats->titleOf(m_chatId) == kNewChat) {
    m_chats->rename(m_chatId, titleFor(body));
    Q_EMIT currentChatChanged();
  }
  // Written before the reply starts: a crash from here on loses at most the reply.
  const qint64 id = store.addMessage(m_chatId, kUser, body);
  if (id == 0) setError(QStringLiteral("Cannot save the message: %1").arg(store.errorString()));
  m_messages.append(id, kUser, body);
  m_chats->touch(m_chatId);
  startReply();
  return true;
}

void ChatController::startReply() {
  // Everything in the view so far goes into the prompt; the engine drops the oldest turns (never
  // the system prompt) when they do not fit the context, and reports how many it dropped.
  std::vector<qins::ChatMessage> prompt;
  const QString system = m_settings ? m_settings->systemPrompt().trimmed() : QString();
  if (!system.isEmpty()) prompt.push_back({qins::Role::System, system.toStdString()});
  for (const ChatModel::Message& m : m_messages.messages()) prompt.push_back({roleOf(m.author), m.text.toStdString()});
  const qins::SamplingParams params = m_settings ? m_settings->snapshot() : SamplingSettings::defaults();

  m_replyChatId = m_chatId;
  m_replyText.clear();
  m_replyRow = m_messages.append(0, kAssistant, QString(), true);
  const quint64 requestId = ++m_requestId;
  m_stats = {};
  m_hasStats = false;
  Q_EMIT statsChanged();
  setError(QString());
  setGenerating(true);

  InferenceWorker* worker = m_models->worker();
  worker->clearStop();
  QMetaObject::invokeMethod(
      worker, [worker, requestId, prompt, params] { worker->generate(requestId, prompt, params); },
      Qt::QueuedConnection);
  Q_EMIT replyStarted();
}

void ChatController::onTextChunk(quint64 requestId, const QString& text, int pieces, double elapsedS) {
  if (requestId != m_requestId || !m_generating) return;
  m_replyText += text;
  if (m_replyRow >= 0) m_messages.appendText(m_replyRow, text);
  // Live figures until the engine's exact ones arrive with the end of the reply.
  if (!m_hasStats || m_stats.generated_tokens == 0) m_stats.time_to_first_token_s = elapsedS;
  m_stats.generated_tokens = pieces;
  const double decode = elapsedS - m_stats.time_to_first_token_s;
  m_stats.tokens_per_s = (pieces > 1 && decode > 0) ? (pieces - 1) / decode : 0.0;
  m_hasStats = true;
  Q_EMIT statsChanged();
}

void ChatController::onFinished(quint64 requestId, const qins::GenerationStats& stats) {
  if (requestId != m_requestId) return;
  m_stats = stats;
  m_hasStats = true;
  Q_EMIT statsChanged();
  if (stats.dropped_messages > 0) {
    const int ctx = m_models ? m_models->loadedContextLength() : 0;
    setContextNotice(QStringLiteral("This conversation no longer fits the model's %1-token context: the %2 oldest "
                                    "message(s) were left out of the prompt for this reply.")
                         .arg(ctx)
                         .arg(stats.dropped_messages));
  } else if (stats.stop_reason == "context_full") {
    setContextNotice(QStringLiteral("The reply stopped because the model's %1-token context is full. Start a new "
                                    "chat to go on.")
                         .arg(m_models ? m_models->loadedContextLength() : 0));
  } else {
    setContextNotice(QString());
  }
  finishReply(statsLine(stats));
  Q_EMIT replyFinished(QString::fromStdString(stats.stop_reason));
}

void ChatController::onFailed(quint64 requestId, const QString& error) {
  if (requestId != m_requestId) return;
  setError(error);
  finishReply(QStringLiteral("error"));
  Q_EMIT replyFinished(QStringLiteral("error"));
}

void ChatController::finishReply(const QString& line) {
  // What was written is kept, also when the user pressed Stop; an empty reply is dropped.
  if (!m_replyText.isEmpty() && m_chats) {
    const qint64 id = m_chats->store().addMessage(m_replyChatId, kAssistant, m_replyText, line);
    if (id == 0) setError(QStringLiteral("Cannot save the reply: %1").arg(m_chats->store().errorString()));
    if (m_replyRow >= 0) {
      m_messages.setMessageId(m_replyRow, id);
      m_messages.setStats(m_replyRow, line);
      m_messages.setStreaming(m_replyRow, false);
    }
    m_chats->touch(m_replyChatId);
  } else if (m_replyRow >= 0) {
    m_messages.removeFrom(m_replyRow);
  }
  m_replyRow = -1;
  m_replyChatId = 0;
  setGenerating(false);
}

void ChatController::stop() {
  if (m_generating && m_models) m_models->worker()->requestStop();
}

bool ChatController::regenerate() {
  if (!canRegenerate()) return false;
  int row = m_messages.count() - 1;
  if (m_messages.at(row).author == kAssistant) {
    if (m_messages.at(row).id != 0) m_chats->store().deleteMessagesFrom(m_chatId, m_messages.at(row).id);
    m_messages.removeFrom(row);
    --row;
  }
  if (row < 0 || m_messages.at(row).author != kUser) return false;
  startReply();
  return true;
}

bool ChatController::editAndResend(int row, const QString& text) {
  if (!canSend() || row < 0 || row >= m_messages.count() || m_messages.at(row).author != kUser) return false;
  const QString body = text.trimmed();
  if (body.isEmpty()) return false;
  if (m_messages.at(row).id != 0) m_chats->store().deleteMessagesFrom(m_chatId, m_messages.at(row).id);
  m_messages.removeFrom(row);
  return send(body);
}

void ChatController::newChat() {
  m_replyRow = -1;  // a reply in flight still lands in its own chat's store
  m_messages.clear();
  setContextNotice(QString());
  setCurrentChat(0);
  Q_EMIT canSendChanged();
}

bool ChatController::openChat(qint64 chatId) {
  if (!m_chats || chatId == 0) return false;
  if (chatId == m_chatId) return true;
  if (m_chats->rowOf(chatId) < 0 && m_chats->filter().isEmpty()) return false;
  m_replyRow = -1;
  m_messages.clear();
  const QList<StoredMessage> stored = m_chats->store().messages(chatId);
  for (const StoredMessage& m : stored) {
    const int row = m_messages.append(m.id, m.role, m.text);
    m_messages.setStats(row, m.stats);
  }
  // Reopening the chat that is still streaming shows its reply so far, which keeps streaming.
  if (m_generating && m_replyChatId == chatId) m_replyRow = m_messages.append(0, kAssistant, m_replyText, true);
  setContextNotice(QString());
  setCurrentChat(chatId);
  Q_EMIT canSendChanged();
  return true;
}

void ChatController::onChatRemoved(qint64 chatId) {
  if (chatId == m_chatId) newChat();
}

void ChatController::copyMessage(int row) const {
  if (row >= 0 && row < m_messages.count()) copyText(m_messages.at(row).text);
}

void ChatController::copyText(const QString& text) const {
  if (QClipboard* c = QGuiApplication::clipboard()) c->setText(text);
}

void ChatController::clearError() { setError(QString()); }

QString ChatController::exportText(const QString& format) const {
  const QString title = currentTitle();
  if (format == QLatin1String("json")) {
    QJsonArray messages;
    for (const ChatModel::Message& m : m_messages.messages()) {
      if (m.streaming) continue;
      QJsonObject o{{QStringLiteral("role"), m.author}, {QStringLiteral("content"), m.text}};
      if (!m.stats.isEmpty()) o.insert(QStringLiteral("stats"), m.stats);
      messages.append(o);
    }
    QJsonObject root{{QStringLiteral("title"), title},
                     {QStringLiteral("exported"), QDateTime::currentDateTimeUtc().toString(Qt::ISODate)},
                     {QStringLiteral("messages"), messages}};
    if (m_models && m_models->ready()) root.insert(QStringLiteral("model"), m_models->modelName());
    if (m_settings) root.insert(QStringLiteral("system_prompt"), m_settings->systemPrompt());
    return QString::fromUtf8(QJsonDocument(root).toJson(QJsonDocument::Indented));
  }
  QString md = QStringLiteral("# %1\n\n").arg(title);
  for (const ChatModel::Message& m : m_messages.messages()) {
    if (m.streaming) continue;
    md += m.author == kUser ? QStringLiteral("## You\n\n") : QStringLiteral("## Assistant\n\n");
    md += m.text + QStringLiteral("\n\n");
    if (!m.stats.isEmpty()) md += QStringLiteral("*%1*\n\n").arg(m.stats);
  }
  return md;
}

bool ChatController::exportChat(const QUrl& file, const QString& format) {
  const QString path = file.isLocalFile() ? file.toLocalFile() : file.toString();
  const QByteArray bytes = exportText(format).toUtf8();
  // QSaveFile writes a temporary file and renames it over the target on commit.
  QSaveFile out(path);
  bool ok = out.open(QIODevice::WriteOnly) && out.write(bytes) == bytes.size() && out.flush();
#if defined(Q_OS_UNIX)
  ok = ok && ::fsync(out.handle()) == 0;
#endif
  ok = ok && out.commit();
  if (!ok) {
    setError(QStringLiteral("Cannot write %1: %2").arg(path, out.errorString()));
    return false;
  }
  return true;
}

void ChatController::setGenerating(bool on) {
  if (on == m_generating) return;
  m_generating = on;
  Q_EMIT generatingChanged();
  Q_EMIT canSendChanged();
}

void ChatController::setError(const QString& error) {
  if (error == m_error) return;
  m_error = error;
  Q_EMIT errorMessageChanged();
}

void ChatController::setContextNotice(const QString& notice) {
  if (notice == m_contextNotice) return;
  m_contextNotice = notice;
  Q_EMIT contextNoticeChanged();
}
