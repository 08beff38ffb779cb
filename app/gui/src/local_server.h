// "Serve this model on localhost": the OpenAI-compatible server of `qins serve` (qins_server) run
// in-process over the app's loaded model. The HTTP side lives here (GUI thread, its own
// connection threads); the batched scheduler lives on the inference worker, next to the engine,
// and while it exists the app's own replies are sequences of it as well.
#pragma once

#include <QObject>
#include <QString>
#include <QTimer>
#include <QtQml/qqmlregistration.h>

#include <memory>

#include "model_manager.h"

namespace qins::server {
class Server;
}

class LocalServer : public QObject {
  Q_OBJECT
  QML_ELEMENT
  Q_PROPERTY(ModelManager* models READ models WRITE setModels NOTIFY modelsChanged)
  // The setting: serve whenever a model is loaded (not remembered across launches on purpose).
  Q_PROPERTY(bool enabled READ enabled WRITE setEnabled NOTIFY enabledChanged)
  Q_PROPERTY(int port READ port WRITE setPort NOTIFY portChanged)  // remembered (QSettings server/port)
  Q_PROPERTY(bool running READ running NOTIFY stateChanged)        // answering completions
  Q_PROPERTY(QString address READ address NOTIFY stateChanged)     // http://127.0.0.1:PORT/v1 while bound
  Q_PROPERTY(QString error READ error NOTIFY stateChanged)
  Q_PROPERTY(qint64 requestsServed READ requestsServed NOTIFY requestsServedChanged)
 public:
  static constexpr int kDefaultPort = 8080;

  explicit LocalServer(QObject* parent = nullptr);
  ~LocalServer() override;

  ModelManager* models() const { return m_models; }
  void setModels(ModelManager* models);
  bool enabled() const { return m_enabled; }
  void setEnabled(bool on);
  int port() const { return m_port; }
  void setPort(int port);  // a running server moves to the new port
  bool running() const { return m_running; }
  QString address() const { return m_address; }
  QString error() const { return m_error; }
  qint64 requestsServed() const { return m_requestsServed; }

 Q_SIGNALS:
  void modelsChanged();
  void enabledChanged();
  void portChanged();
  void stateChanged();
  void requestsServedChanged();

 private:
  void sync();  // start or stop to match enabled && model ready
  void start();
  void stop();
  void onSchedulerReady(quint64 serial, qins::BatchScheduler* scheduler);
  void onSchedulerFailed(quint64 serial, const QString& error);
  void setState(bool running, const QString& address, const QString& error);

  ModelManager* m_models = nullptr;
  std::unique_ptr<qins::server::Server> m_server;
  quint64 m_serial = 0;  // which start a scheduler answer belongs to
  bool m_enabled = false;
  int m_port = kDefaultPort;
  bool m_running = false;
  QString m_address;
  QString m_error;
  qint64 m_requestsServed = 0;
  qint64 m_servedBefore = 0;  // by the servers this object stopped earlier
  QTimer m_poll;              // requestsServed from the server's counters
};
