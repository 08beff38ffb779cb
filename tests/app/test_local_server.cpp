// The app's "Serve this model on localhost": LocalServer over the real ModelManager and fixture
// model. The setting starts the server (health answers, a completion is served and counted, the
// app's own reply runs as a sequence of the same scheduler meanwhile) and stops it (nobody
// listens any more).
#include <gtest/gtest.h>

#include <QSignalSpy>
#include <QTest>

#include <stdexcept>

#include "../server/http_client.h"
#include "local_server.h"
#include "model_manager.h"
#include "test_support.h"

namespace {

constexpr int kWaitMs = 60000;  // generous: a shared 2-core machine; never a speed assertion

int portOf(const QString& address) {  // http://127.0.0.1:PORT/v1
  const int colon = address.lastIndexOf(QLatin1Char(':'));
  return address.mid(colon + 1, address.indexOf(QLatin1Char('/'), colon) - colon - 1).toInt();
}

bool healthAnswers(int port) {
  try {
    return qins_test::http_request(port, "GET", "/health").status == 200;
  } catch (const std::runtime_error&) {
    return false;  // connection refused
  }
}

TEST(LocalServer, SettingStartsAndStopsTheServer) {
  ModelManager models;
  models.load(fixtureModelDir());
  ASSERT_TRUE(QTest::qWaitFor([&] { return !models.loading(); }, kWaitMs));
  ASSERT_TRUE(models.ready()) << models.message().toStdString();

  LocalServer server;
  server.setModels(&models);
  server.setPort(0);  // any free port
  EXPECT_FALSE(server.running());
  EXPECT_TRUE(server.address().isEmpty());

  server.setEnabled(true);
  ASSERT_TRUE(QTest::qWaitFor([&] { return server.running(); }, kWaitMs)) << server.error().toStdString();
  EXPECT_TRUE(server.address().startsWith(QStringLiteral("http://127.0.0.1:"))) << server.address().toStdString();
  EXPECT_TRUE(server.address().endsWith(QStringLiteral("/v1")));
  const int port = portOf(server.address());
  ASSERT_GT(port, 0);
  EXPECT_TRUE(healthAnswers(port));

  // A request from another program, while the app's own reply runs on the same scheduler.
  InferenceWorker* worker = models.worker();
  QSignalSpy finished(worker, &InferenceWorker::generationFinished);
  QSignalSpy failed(worker, &InferenceWorker::generationFailed);
  QString appText;
  QObject::connect(worker, &InferenceWorker::textChunk, &server,
                   [&](quint64, const QString& text, int, double) { appText += text; });
  qins::SamplingParams params;
  params.temperature = 0.0f;
  params.random_seed = false;
  params.max_new_tokens = 24;
  const std::vector<qins::ChatMessage> messages{{qins::Role::User, "Hello from the app"}};
  worker->clearStop();
  QMetaObject::invokeMethod(worker, [worker, messages, params] { worker->generate(1, messages, params); },
                            Qt::QueuedConnection);
  const std::string body =
      R"({"messages":[{"role":"user","content":"Hello from a script"}],"temperature":0,"max_tokens":8})";
  const qins_test::HttpReply reply = qins_test::http_request(port, "POST", "/v1/chat/completions", body);
  EXPECT_EQ(reply.status, 200) << reply.body;
  ASSERT_TRUE(QTest::qWaitFor([&] { return finished.count() + failed.count() > 0; }, kWaitMs));
  ASSERT_EQ(failed.count(), 0) << failed.first().at(1).toString().toStdString();
  const auto stats = finished.first().at(1).value<qins::GenerationStats>();
  EXPECT_GT(stats.generated_tokens, 0);
  // textChunk reaches appText through a queued connection; the spy counted the finish directly.
  EXPECT_TRUE(QTest::qWaitFor([&] { return !appText.isEmpty(); }, kWaitMs));
  EXPECT_TRUE(QTest::qWaitFor([&] { return server.requestsServed() == 1; }, kWaitMs));

  // Off: the port is closed, the counter stays.
  server.setEnabled(false);
  EXPECT_FALSE(server.running());
  EXPECT_TRUE(server.address().isEmpty());
  EXPECT_FALSE(healthAnswers(port));
  EXPECT_EQ(server.requestsServed(), 1);

  // The app's replies go back to the session of their own once the scheduler is gone.
  finished.clear();
  QMetaObject::invokeMethod(worker, [worker, messages, params] { worker->generate(2, messages, params); },
                            Qt::QueuedConnection);
  ASSERT_TRUE(QTest::qWaitFor([&] { return finished.count() + failed.count() > 0; }, kWaitMs));
  EXPECT_EQ(failed.count(), 0);
}

TEST(LocalServer, WaitsForAModelAndReportsABusyPort) {
  LocalServer server;
  server.setPort(0);
  server.setEnabled(true);  // no model manager yet: nothing to serve
  EXPECT_FALSE(server.running());
  EXPECT_TRUE(server.address().isEmpty());

  ModelManager models;
  models.load(fixtureModelDir());
  ASSERT_TRUE(QTest::qWaitFor([&] { return !models.loading(); }, kWaitMs));
  server.setModels(&models);  // enabled and ready: starts
  ASSERT_TRUE(QTest::qWaitFor([&] { return server.running(); }, kWaitMs)) << server.error().toStdString();

  // A second server on the same port fails with a message naming it.
  LocalServer second;
  second.setPort(portOf(server.address()));
  second.setModels(&models);
  second.setEnabled(true);
  EXPECT_FALSE(second.running());
  EXPECT_TRUE(second.error().contains(QString::number(portOf(server.address())))) << second.error().toStdString();
}

}  // namespace
