// What the chat view does: send, stop, regenerate, edit and resend, switch chats, export.
// Owns the open chat's ChatModel; writes every finished message to the chat store; talks to the
// inference worker only through queued calls and its signals, so the GUI thread never waits on it.
#pragma once

#include <QObject>
#include <QPointer>
#include <QString>
#include <QUrl>
#include <QtQml/qqmlregistration.h>

#include "chat_list_model.h"
#include "chat_model.h"
#include "model_manager.h"
#include "sampling_settings.h"

class ChatController : public QObject {
  Q_OBJECT
  QML_ELEMENT
  Q_PROPERTY(ModelManager* modelManager READ modelManager WRITE setModelManager NOTIFY modelManagerChanged)
  Q_PROPERTY(SamplingSettings* settings READ settings WRITE setSettings NOTIFY settingsChanged)
  Q_PROPERTY(ChatListModel* chats READ chats WRITE setChats NOTIFY chatsChanged)
  Q_PROPERTY(ChatModel* messages READ messages CONSTANT)
  Q_PROPERTY(qint64 currentChatId READ currentChatId NOTIFY currentChatChanged)
  Q_PROPERTY(QString currentTitle READ currentTitle NOTIFY currentChatChanged)
  Q_PROPERTY(bool generating READ generating NOTIFY generatingChanged)
  Q_PROPERTY(bool canSend READ canSend NOTIFY canSendChanged)
  Q_PROPERTY(bool canRegenerate READ canRegenerate NOTIFY canSendChanged)
  // Statistics of the latest reply (live while it streams where the value is known).
  Q_PROPERTY(bool hasStats READ hasStats NOTIFY statsChanged)
  Q_PROPERTY(double tokensPerSecond READ tokensPerSecond NOTIFY statsChanged)
  Q_PROPERTY(double prefillTokensPerSecond READ prefillTokensPerSecond NOTIFY statsChanged)
  Q_PROPERTY(double timeToFirstToken READ timeToFirstToken NOTIFY statsChanged)
  Q_PROPERTY(int promptTokens READ promptTokens NOTIFY statsChanged)
  Q_PROPERTY(int prefilledTokens READ prefilledTokens NOTIFY statsChanged)
  Q_PROPERTY(int generatedTokens READ generatedTokens NOTIFY statsChanged)
  Q_PROPERTY(double totalSeconds READ totalSeconds NOTIFY statsChanged)
  Q_PROPERTY(QString stopReason READ stopReason NOTIFY statsChanged)
  Q_PROPERTY(QString contextNotice READ contextNotice NOTIFY contextNoticeChanged)
  Q_PROPERTY(QString errorMessage READ errorMessage NOTIFY errorMessageChanged)
 public:
  explicit ChatController(QObject* parent = nullptr);
  ~ChatController() override;

  ModelManager* modelManager() const { return m_models; }
  void setModelManager(ModelManager* m);
  SamplingSettings* settings() const { return m_settings; }
  void setSettings(SamplingSettings* s);
  ChatListModel* chats() const { return m_chats; }
  void setChats(ChatListModel* c);
  ChatModel* messages() { return &m_messages; }

  qint64 currentChatId() const { return m_chatId; }
  QString currentTitle() const;
  bool generating() const { return m_generating; }
  bool canSend() const;
  bool canRegenerate() const;

  bool hasStats() const { return m_hasStats; }
  double tokensPerSecond() const { return m_stats.tokens_per_s; }
  double prefillTokensPerSecond() const { return m_stats.prefill_tokens_per_s; }
  double timeToFirstToken() const { return m_stats.time_to_first_token_s; }
  int promptTokens() const { return m_stats.prompt_tokens; }
  int prefilledTokens() const { return m_stats.prefilled_tokens; }
  int generatedTokens() const { return m_stats.generated_tokens; }
  double totalSeconds() const { return m_stats.total_s; }
  QString stopReason() const { return QString::fromStdString(m_stats.stop_reason); }
  QString contextNotice() const { return m_contextNotice; }
  QString errorMessage() const { return m_error; }

  Q_INVOKABLE bool send(const QString& text);
  Q_INVOKABLE void stop();
  Q_INVOKABLE bool regenerate();
  Q_INVOKABLE bool editAndResend(int row, const QString& text);
  Q_INVOKABLE void newChat();             // an empty chat; stored when its first message is sent
  Q_INVOKABLE bool openChat(qint64 chatId);
  Q_INVOKABLE void copyMessage(int row) const;
  Q_INVOKABLE void copyText(const QString& text) const;
  Q_INVOKABLE void clearError();
  // format: "markdown" | "json"
  Q_INVOKABLE QString exportText(const QString& format) const;
  Q_INVOKABLE bool exportChat(const QUrl& file, const QString& format);

  // The text of a chat's first message, shortened to a title.
  static QString titleFor(const QString& firstMessage);

 Q_SIGNALS:
  void modelManagerChanged();
  void settingsChanged();
  void chatsChanged();
  void currentChatChanged();
  void generatingChanged();
  void canSendChanged();
  void statsChanged();
  void contextNoticeChanged();
  void errorMessageChanged();
  void replyStarted();
  void replyFinished(const QString& stopReason);

 private:
  void startReply();
  void onTextChunk(quint64 requestId, const QString& text, int pieces, double elapsedS);
  void onFinished(quint64 requestId, const qins::GenerationStats& stats);
  void onFailed(quint64 requestId, const QString& error);
  void finishReply(const QString& statsLine);
  void setGenerating(bool on);
  void setError(const QString& error);
  void setContextNotice(const QString& notice);
  void setCurrentChat(qint64 chatId);
  void onChatRemoved(qint64 chatId);

  ChatModel m_messages;
  QPointer<ModelManager> m_models;
  QPointer<SamplingSettings> m_settings;
  QPointer<ChatListModel> m_chats;
  qint64 m_chatId = 0;
  bool m_generating = false;
  // The reply in flight: its request number, chat, row in m_messages (-1 once the user switched
  // to another chat) and text so far (kept here too, so it is stored even if the view moved on).
  quint64 m_requestId = 0;
  qint64 m_replyChatId = 0;
  int m_replyRow = -1;
  QString m_replyText;
  bool m_hasStats = false;
  qins::GenerationStats m_stats;
  QString m_contextNotice;
  QString m_error;
};
