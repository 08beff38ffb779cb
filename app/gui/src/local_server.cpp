#include "local_server.h"

#include <QDebug>
#include <QSettings>

#include "qins/server/server.h"

namespace {
constexpr int kParallel = 4;  // sequences the scheduler decodes together (the app's reply is one of them)
}

LocalServer::LocalServer(QObject* parent) : QObject(parent) {
  const int saved = QSettings().value(QStringLiteral("server/port"), kDefaultPort).toInt();
  m_port = saved >= 1 && saved <= 65535 ? saved : kDefaultPort;
  m_poll.setInterval(500);
  connect(&m_poll, &QTimer::timeout, this, [this] {
    if (!m_server) return;
    const qint64 served = m_servedBefore + m_server->counters().completions;
    if (served != m_requestsServed) {
      m_requestsServed = served;
      Q_EMIT requestsServedChanged();
    }
  });
}

LocalServer::~LocalServer() { stop(); }

void LocalServer::setModels(ModelManager* models) {
  if (models == m_models) return;
  stop();
  if (m_models) {
    disconnect(m_models, nullptr, this, nullptr);
    disconnect(m_models->worker(), nullptr, this, nullptr);
  }
  m_models = models;
  if (m_models) {
    connect(m_models, &ModelManager::statusChanged, this, &LocalServer::sync);
    // Synchronous (same thread): the server lets go of the scheduler before the worker drops it.
    connect(m_models, &ModelManager::aboutToUnload, this, &LocalServer::stop);
    connect(m_models, &QObject::destroyed, this, [this] { m_models = nullptr; });
    connect(m_models->worker(), &InferenceWorker::schedulerReady, this, &LocalServer::onSchedulerReady,
            Qt::QueuedConnection);
    connect(m_models->worker(), &InferenceWorker::schedulerFailed, this, &LocalServer::onSchedulerFailed,
            Qt::QueuedConnection);
  }
  Q_EMIT modelsChanged();
  sync();
}

void LocalServer::setEnabled(bool on) {
  if (on == m_enabled) return;
  m_enabled = on;
  Q_EMIT enabledChanged();
  if (!on && !m_error.isEmpty()) setState(m_running, m_address, QString());
  sync();
}

void LocalServer::setPort(int port) {
  // 0 = any free port (tests); the view offers 1024-65535.
  if (port == m_port || port < 0 || port > 65535) return;
  m_port = port;
  if (port > 0) QSettings().setValue(QStringLiteral("server/port"), port);
  Q_EMIT portChanged();
  if (m_server) {
    stop();
    sync();
  }
}

void LocalServer::sync() {
  const bool want = m_enabled && m_models && m_models->ready();
  if (want && !m_server) {
    start();
  } else if (!want && m_server) {
    stop();
  }
}

void LocalServer::start() {
  qins::server::ServerOptions options;
  options.host = "127.0.0.1";
  options.port = m_port;
  options.log = [](const std::string& line) { qInfo().noquote() << QString::fromStdString(line); };
  auto server = std::make_unique<qins::server::Server>(options);
  try {
    server->start();
  } catch (const std::exception& e) {
    setState(false, QString(), QString::fromStdString(e.what()));
    return;
  }
  m_server = std::move(server);
  const quint64 serial = ++m_serial;
  // Bound (health answers 503) until the worker hands over its scheduler.
  setState(false, QString::fromStdString(m_server->address()) + QStringLiteral("/v1"), QString());
  InferenceWorker* worker = m_models->worker();
  QMetaObject::invokeMethod(worker, [worker, serial] { worker->startScheduler(serial, kParallel); },
                            Qt::QueuedConnection);
  m_poll.start();
}

void LocalServer::stop() {
  if (!m_server) return;
  m_poll.stop();
  m_server->stop();  // cancels what still runs; returns once every connection thread is done
  m_servedBefore += m_server->counters().completions;
  m_server.reset();
  ++m_serial;  // a scheduler answer still on its way belongs to no server
  if (m_models) {
    InferenceWorker* worker = m_models->worker();
    QMetaObject::invokeMethod(worker, [worker] { worker->stopScheduler(); }, Qt::QueuedConnection);
  }
  if (m_requestsServed != m_servedBefore) {
    m_requestsServed = m_servedBefore;
    Q_EMIT requestsServedChanged();
  }
  setState(false, QString(), m_error);
}

void LocalServer::onSchedulerReady(quint64 serial, qins::BatchScheduler* scheduler) {
  if (serial != m_serial || !m_server) return;
  m_server->attach(scheduler);
  setState(true, m_address, QString());
}

void LocalServer::onSchedulerFailed(quint64 serial, const QString& error) {
  if (serial != m_serial || !m_server) return;
  stop();
  setState(false, QString(), error);
}

void LocalServer::setState(bool running, const QString& address, const QString& error) {
  if (running == m_running && address == m_address && error == m_error) return;
  m_running = running;
  m_address = address;
  m_error = error;
  Q_EMIT stateChanged();
}
