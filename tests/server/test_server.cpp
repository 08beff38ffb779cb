// qins_server on loopback over a real BatchScheduler and a tiny fixture model: responses checked
// field by field against what a Session produces alone, the SSE stream parsed by the test's own
// client, concurrency, disconnects, every error status, auth, CORS and the loading state.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <mutex>
#include <thread>

#include "fixture_dir.h"
#include "http_client.h"
#include "openai_api.h"
#include "qins/runtime/batch.h"
#include "qins/server/server.h"

namespace qins {
namespace {

using nlohmann::json;
using qins_test::Connection;
using qins_test::http_request;
using qins_test::HttpReply;
using qins_test::parse_sse;

constexpr int kContext = 512;

// Two engines over one fixture: the server's, and one for the references computed alone.
struct Models {
  std::string dir;
  std::unique_ptr<Engine> served;
  std::unique_ptr<Engine> alone;
};

Models& models() {
  static Models m = [] {
    Models x;
    x.dir = test::fixture("server", FixtureOptions{});
    LoadOptions lo;
    lo.context_length = kContext;
    x.served = Engine::load(x.dir, lo);
    x.alone = Engine::load(x.dir, lo);
    return x;
  }();
  return m;
}

struct Reference {
  std::string text;
  GenerationStats stats;
  std::string finish_reason() const { return stats.stop_reason == "max_tokens" ? "length" : "stop"; }
};

Reference chat_alone(const std::vector<ChatMessage>& messages, int n) {
  auto s = models().alone->new_session();
  Reference r;
  r.stats = s->generate(messages, test::greedy(n), [&](std::string_view p) {
    r.text.append(p);
    return true;
  });
  return r;
}

Reference complete_alone(const std::string& prompt, int n) {
  auto s = models().alone->new_session();
  Reference r;
  r.stats = s->complete(prompt, test::greedy(n), [&](std::string_view p) {
    r.text.append(p);
    return true;
  });
  return r;
}

json chat_body(const std::string& user, int max_tokens, bool stream = false) {
  return json{{"model", models().served->info().name},
              {"messages", json::array({{{"role", "system"}, {"content", "You are terse."}},
                                        {{"role", "user"}, {"content", user}}})},
              {"temperature", 0},
              {"max_tokens", max_tokens},
              {"stream", stream}};
}

std::vector<ChatMessage> chat_messages(const std::string& user) {
  return {{Role::System, "You are terse."}, {Role::User, user}};
}

class ServerTest : public ::testing::Test {
 protected:
  void start(server::ServerOptions so = {}, SchedulerOptions sc = {}) {
    scheduler_ = std::make_unique<BatchScheduler>(*models().served, sc);
    so.host = "127.0.0.1";
    so.port = 0;
    so.log = [this](const std::string& line) {
      std::lock_guard<std::mutex> lk(log_m_);
      log_.push_back(line);
    };
    server_ = std::make_unique<server::Server>(so);
    server_->start();
    server_->attach(scheduler_.get());
  }
  void TearDown() override {
    if (server_) server_->stop();
    server_.reset();
    scheduler_.reset();
  }
  int port() const { return server_->port(); }
  HttpReply post(const std::string& path, const json& body, const std::vector<std::string>& headers = {}) {
    return http_request(port(), "POST", path, body.dump(), headers);
  }
  // Waits (bounded) until the scheduler has nothing left to do.
  BatchCounters settled() {
    for (int i = 0; i < 2000; ++i) {
      BatchCounters c = scheduler_->counters();
      if (c.active == 0 && c.queued == 0) return c;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ADD_FAILURE() << "the scheduler did not settle";
    return scheduler_->counters();
  }
  // After the client of an n-token request hung up: its generation stopped before the end, and
  // the server counted one disconnect.
  void expect_cancelled_by_disconnect(int n) {
    const BatchCounters c = settled();
    EXPECT_EQ(c.cancelled, 1);
    EXPECT_EQ(c.completed, 0);
    EXPECT_LT(c.generated_tokens, n);
    for (int i = 0; i < 200 && server_->counters().disconnects == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    EXPECT_EQ(server_->counters().disconnects, 1);
  }
  std::vector<std::string> log_lines() {
    std::lock_guard<std::mutex> lk(log_m_);
    return log_;
  }

  std::unique_ptr<BatchScheduler> scheduler_;
  std::unique_ptr<server::Server> server_;
  std::mutex log_m_;
  std::vector<std::string> log_;
};

void expect_error(const HttpReply& r, int status, const std::string& type, const std::string& param,
                  const std::string& message_part, const std::string& what) {
  SCOPED_TRACE(what);
  EXPECT_EQ(r.status, status) << r.body;
  EXPECT_EQ(r.header("content-type"), "application/json");
  json j;
  ASSERT_NO_THROW(j = json::parse(r.body)) << r.body;
  ASSERT_TRUE(j.contains("error")) << r.body;
  const json& e = j["error"];
  ASSERT_TRUE(e.is_object());
  EXPECT_TRUE(e["message"].is_string());
  EXPECT_EQ(e["type"], type) << r.body;
  ASSERT_TRUE(e.contains("param"));
  ASSERT_TRUE(e.contains("code"));
  if (param.empty()) {
    EXPECT_TRUE(e["param"].is_null()) << r.body;
  } else {
    EXPECT_EQ(e["param"], param) << r.body;
  }
  EXPECT_NE(e["message"].get<std::string>().find(message_part), std::string::npos) << r.body;
}

int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

TEST_F(ServerTest, HealthAndModels) {
  start();
  HttpReply h = http_request(port(), "GET", "/health");
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(json::parse(h.body)["status"], "ok");
  HttpReply m = http_request(port(), "GET", "/v1/models");
  ASSERT_EQ(m.status, 200) << m.body;
  const json j = json::parse(m.body);
  EXPECT_EQ(j["object"], "list");
  ASSERT_EQ(j["data"].size(), 1u);
  EXPECT_EQ(j["data"][0]["id"], models().served->info().name);
  EXPECT_EQ(j["data"][0]["object"], "model");
  EXPECT_EQ(j["data"][0]["owned_by"], "qins");
  EXPECT_TRUE(j["data"][0]["created"].is_number_integer());
  HttpReply one = http_request(port(), "GET", "/v1/models/" + models().served->info().name);
  EXPECT_EQ(one.status, 200);
  EXPECT_EQ(json::parse(one.body)["id"], models().served->info().name);
  expect_error(http_request(port(), "GET", "/v1/models/gpt-4o"), 404, "invalid_request_error", "model", "gpt-4o",
               "unknown model id");
}

TEST_F(ServerTest, ChatNonStreamingFieldByField) {
  start();
  const Reference ref = chat_alone(chat_messages("Hello there"), 12);
  ASSERT_FALSE(ref.text.empty());
  const int64_t before = now_s();
  HttpReply r = post("/v1/chat/completions", chat_body("Hello there", 12));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("content-type"), "application/json");
  const json j = json::parse(r.body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_GE(j["created"].get<int64_t>(), before);
  EXPECT_LE(j["created"].get<int64_t>(), now_s());
  EXPECT_EQ(j["model"], models().served->info().name);
  ASSERT_EQ(j["choices"].size(), 1u);
  const json& c = j["choices"][0];
  EXPECT_EQ(c["index"], 0);
  EXPECT_EQ(c["message"]["role"], "assistant");
  EXPECT_EQ(c["message"]["content"], ref.text);
  EXPECT_EQ(c["finish_reason"], ref.finish_reason());
  EXPECT_EQ(j["usage"]["prompt_tokens"], ref.stats.prompt_tokens);
  EXPECT_EQ(j["usage"]["completion_tokens"], ref.stats.generated_tokens);
  EXPECT_EQ(j["usage"]["total_tokens"], ref.stats.prompt_tokens + ref.stats.generated_tokens);
  EXPECT_EQ(j["usage"]["prompt_tokens_details"]["cached_tokens"], 0);  // a fresh server: nothing cached
  // One log line per request, naming method, path and status.
  const auto lines = log_lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("POST /v1/chat/completions 200"), std::string::npos) << lines[0];
}

TEST_F(ServerTest, ChatStreamingParsedBySseClient) {
  start();
  const Reference ref = chat_alone(chat_messages("Tell me a story"), 16);
  json body = chat_body("Tell me a story", 16, true);
  body["stream_options"] = {{"include_usage", true}};
  HttpReply r = post("/v1/chat/completions", body);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("content-type"), "text/event-stream");
  EXPECT_EQ(r.header("transfer-encoding"), "chunked");
  const auto events = parse_sse(r.body);
  ASSERT_GE(events.size(), 4u);  // role, >= 1 content, finish, usage, [DONE]
  EXPECT_EQ(events.back(), "[DONE]");
  std::string id, text;
  int64_t created = 0;
  size_t finish_at = 0;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    SCOPED_TRACE(events[i]);
    const json c = json::parse(events[i]);
    if (i == 0) {
      id = c["id"];
      created = c["created"];
      EXPECT_EQ(id.rfind("chatcmpl-", 0), 0u);
    }
    EXPECT_EQ(c["id"], id);
    EXPECT_EQ(c["created"], created);
    EXPECT_EQ(c["object"], "chat.completion.chunk");
    EXPECT_EQ(c["model"], models().served->info().name);
    ASSERT_TRUE(c.contains("usage"));
    if (i + 2 == events.size()) {  // the usage chunk
      EXPECT_TRUE(c["choices"].empty());
      EXPECT_EQ(c["usage"]["prompt_tokens"], ref.stats.prompt_tokens);
      EXPECT_EQ(c["usage"]["completion_tokens"], ref.stats.generated_tokens);
      EXPECT_EQ(c["usage"]["total_tokens"], ref.stats.prompt_tokens + ref.stats.generated_tokens);
      continue;
    }
    EXPECT_TRUE(c["usage"].is_null());
    ASSERT_EQ(c["choices"].size(), 1u);
    const json& ch = c["choices"][0];
    EXPECT_EQ(ch["index"], 0);
    if (i == 0) {
      EXPECT_EQ(ch["delta"], (json{{"role", "assistant"}, {"content", ""}}));
    } else {
      EXPECT_FALSE(ch["delta"].contains("role"));
    }
    if (!ch["finish_reason"].is_null()) {
      EXPECT_EQ(finish_at, 0u) << "two chunks with a finish_reason";
      finish_at = i;
      EXPECT_EQ(ch["finish_reason"], ref.finish_reason());
    }
    if (ch["delta"].contains("content")) text += ch["delta"]["content"].get<std::string>();
  }
  EXPECT_EQ(finish_at, events.size() - 3);  // finish_reason only on the last choice chunk
  EXPECT_EQ(text, ref.text);
}

TEST_F(ServerTest, CompletionNonStreamingAndStreaming) {
  start();
  const std::string prompt = "The quick brown fox";
  const Reference ref = complete_alone(prompt, 10);
  json body{{"prompt", prompt}, {"temperature", 0}, {"max_tokens", 10}};
  HttpReply r = post("/v1/completions", body);
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["id"].get<std::string>().rfind("cmpl-", 0), 0u);
  EXPECT_EQ(j["model"], models().served->info().name);
  ASSERT_EQ(j["choices"].size(), 1u);
  EXPECT_EQ(j["choices"][0]["text"], ref.text);
  EXPECT_EQ(j["choices"][0]["index"], 0);
  EXPECT_EQ(j["choices"][0]["finish_reason"], ref.finish_reason());
  EXPECT_EQ(j["usage"]["prompt_tokens"], ref.stats.prompt_tokens);
  EXPECT_EQ(j["usage"]["completion_tokens"], ref.stats.generated_tokens);

  body["stream"] = true;
  body["prompt"] = json::array({prompt});  // a one-element array is a prompt too
  HttpReply s = post("/v1/completions", body);
  ASSERT_EQ(s.status, 200) << s.body;
  EXPECT_EQ(s.header("content-type"), "text/event-stream");
  const auto events = parse_sse(s.body);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.back(), "[DONE]");
  std::string text;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    const json c = json::parse(events[i]);
    EXPECT_EQ(c["object"], "text_completion");
    EXPECT_FALSE(c.contains("usage"));  // no include_usage: no usage field
    const json& ch = c["choices"][0];
    text += ch["text"].get<std::string>();
    if (i + 2 == events.size()) {
      EXPECT_EQ(ch["finish_reason"], ref.finish_reason());
    } else {
      EXPECT_TRUE(ch["finish_reason"].is_null());
    }
  }
  EXPECT_EQ(text, ref.text);
}

TEST_F(ServerTest, StopStringEndsBeforeIt) {
  start();
  const Reference ref = complete_alone("Hello", 24);
  ASSERT_GE(ref.text.size(), 4u);
  // A stop string taken from the middle of what the model says alone: two whole UTF-8 characters.
  auto boundary = [&](size_t i) {
    while (i < ref.text.size() && (static_cast<unsigned char>(ref.text[i]) & 0xC0) == 0x80) ++i;
    return i;
  };
  const size_t from = boundary(ref.text.size() / 2);
  const size_t to = boundary(boundary(from + 1) + 1);
  ASSERT_LT(from, to);
  const std::string stop = ref.text.substr(from, to - from);
  const std::string expect = ref.text.substr(0, ref.text.find(stop));
  HttpReply r = post("/v1/completions", json{{"prompt", "Hello"}, {"temperature", 0}, {"max_tokens", 24},
                                             {"stop", json::array({stop})}});
  ASSERT_EQ(r.status, 200) << r.body;
  const json j = json::parse(r.body);
  EXPECT_EQ(j["choices"][0]["text"], expect);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
}

TEST_F(ServerTest, FourConcurrentGreedyRequestsMatchAlone) {
  start({}, SchedulerOptions{4, 16, 64});
  const std::vector<std::string> prompts = {"Hello", "What is the weather like", "Count to ten", "Name a color"};
  std::vector<Reference> refs;
  for (const auto& p : prompts) refs.push_back(chat_alone(chat_messages(p), 20));
  std::vector<HttpReply> replies(prompts.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < prompts.size(); ++i) {
    // Two of them streamed: batching must not change either kind.
    threads.emplace_back([&, i] { replies[i] = post("/v1/chat/completions", chat_body(prompts[i], 20, i % 2 == 1)); });
  }
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < prompts.size(); ++i) {
    SCOPED_TRACE(prompts[i]);
    ASSERT_EQ(replies[i].status, 200) << replies[i].body;
    std::string text;
    if (i % 2 == 1) {
      const auto events = parse_sse(replies[i].body);
      for (size_t k = 0; k + 1 < events.size(); ++k) {
        const json c = json::parse(events[k]);
        if (c["choices"][0]["delta"].contains("content")) text += c["choices"][0]["delta"]["content"].get<std::string>();
      }
    } else {
      text = json::parse(replies[i].body)["choices"][0]["message"]["content"];
    }
    EXPECT_EQ(text, refs[i].text);
  }
  const BatchCounters c = settled();
  EXPECT_EQ(c.completed, 4);
  EXPECT_GT(c.decode_steps, 0);
}

TEST_F(ServerTest, ASecondTurnReportsThePromptTokensItsSlotHadCached) {
  SchedulerOptions sc;
  sc.parallel = 1;  // one slot: the second turn finds the first one's tokens there
  start({}, sc);
  json first = chat_body("Tell me about rivers.", 6);
  const HttpReply r1 = post("/v1/chat/completions", first);
  ASSERT_EQ(r1.status, 200) << r1.body;
  const json j1 = json::parse(r1.body);
  EXPECT_EQ(j1["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  json second = first;
  second["messages"].push_back({{"role", "assistant"}, {"content", j1["choices"][0]["message"]["content"]}});
  second["messages"].push_back({{"role", "user"}, {"content", "And stones?"}});
  const HttpReply r2 = post("/v1/chat/completions", second);
  ASSERT_EQ(r2.status, 200) << r2.body;
  const json u = json::parse(r2.body)["usage"];
  const int cached = u["prompt_tokens_details"]["cached_tokens"];
  // The whole first prompt at least is reused; the new turn is prefilled.
  EXPECT_GE(cached, j1["usage"]["prompt_tokens"].get<int>());
  EXPECT_LT(cached, u["prompt_tokens"].get<int>());
}

TEST_F(ServerTest, DisconnectMidStreamStopsTheWork) {
  start();
  const int n = kContext - 64;
  const Reference ref = complete_alone("the cat sat on the mat", n);
  ASSERT_EQ(ref.stats.generated_tokens, n) << "the fixture stops early; pick another prompt";
  {
    Connection c(port());
    c.send_request("POST", "/v1/completions",
                   json{{"prompt", "the cat sat on the mat"}, {"temperature", 0}, {"max_tokens", n}, {"stream", true}}.dump());
    std::string got;
    while (got.find("data: ") == std::string::npos) ASSERT_TRUE(c.read_some(got)) << got;
    EXPECT_EQ(got.rfind("HTTP/1.1 200", 0), 0u) << got;
  }  // hang up after the first event
  expect_cancelled_by_disconnect(n);
  // And the server goes on serving.
  EXPECT_EQ(http_request(port(), "GET", "/health").status, 200);
  EXPECT_EQ(post("/v1/completions", json{{"prompt", "Hi"}, {"max_tokens", 2}}).status, 200);
}

TEST_F(ServerTest, DisconnectWhileWaitingForANonStreamedReplyStopsTheWork) {
  start();
  const int n = kContext - 64;
  const Reference ref = complete_alone("the cat sat on the mat", n);
  ASSERT_EQ(ref.stats.generated_tokens, n) << "the fixture stops early; pick another prompt";
  {
    Connection c(port());
    c.send_request("POST", "/v1/completions",
                   json{{"prompt", "the cat sat on the mat"}, {"temperature", 0}, {"max_tokens", n}}.dump());
    // Hang up once the request is generating (nothing has been written back: not streamed).
    for (int i = 0; i < 6000 && scheduler_->counters().generated_tokens == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ASSERT_GT(scheduler_->counters().generated_tokens, 0);
  }
  expect_cancelled_by_disconnect(n);
  // A client that is still there gets its whole reply, and the server goes on serving.
  const HttpReply r = post("/v1/completions", json{{"prompt", "the cat sat on the mat"}, {"temperature", 0}, {"max_tokens", 8}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["usage"]["completion_tokens"], 8);
  EXPECT_EQ(server_->counters().disconnects, 1);
}

TEST_F(ServerTest, BadInputsGetTheirStatusAndTheServerGoesOn) {
  server::ServerOptions so;
  so.max_body_bytes = 64 * 1024;
  start(so);
  const std::string chat = "/v1/chat/completions";
  expect_error(http_request(port(), "POST", chat, "{\"messages\": [", {}), 400, "invalid_request_error", "",
               "not valid JSON", "malformed JSON");
  expect_error(http_request(port(), "POST", chat, "[1,2]", {}), 400, "invalid_request_error", "", "JSON object",
               "not an object");
  // A number too large for a double is the parser's out_of_range, not a parse_error (fuzz_openai found it: a 500).
  expect_error(http_request(port(), "POST", chat, "{\"messages\": [], \"seed\": 1844e4415}", {}), 400,
               "invalid_request_error", "", "not valid JSON", "number overflow");
  // Invalid UTF-8 inside a string: a 400 whose body is still valid JSON.
  expect_error(http_request(port(), "POST", chat, "{\"model\": \"a\xff\"}", {}), 400, "invalid_request_error", "",
               "not valid JSON", "invalid UTF-8");
  expect_error(post(chat, json{{"messages", "hello"}}), 400, "invalid_request_error", "messages", "'messages' must be an array",
               "messages as a string");
  expect_error(post(chat, json::object()), 400, "invalid_request_error", "messages", "required", "no messages");
  expect_error(post(chat, json{{"messages", json::array({{{"role", "user"}, {"content", 5}}})}}), 400,
               "invalid_request_error", "messages[0].content", "messages[0].content", "content as a number");
  expect_error(post(chat, json{{"messages", json::array({{{"role", "tool"}, {"content", "x"}}})}}), 400,
               "invalid_request_error", "messages[0].role", "tool", "unsupported role");
  json base = chat_body("hi", 4);
  auto with = [&](const char* key, const json& v) {
    json b = base;
    b[key] = v;
    return b;
  };
  expect_error(post(chat, with("temperature", "hot")), 400, "invalid_request_error", "temperature",
               "'temperature' must be a number", "temperature as a string");
  expect_error(post(chat, with("temperature", 7)), 400, "invalid_request_error", "temperature", "between", "temperature 7");
  expect_error(post(chat, with("max_tokens", 1.5)), 400, "invalid_request_error", "max_tokens", "integer", "max_tokens 1.5");
  expect_error(post(chat, with("max_tokens", 0)), 400, "invalid_request_error", "max_tokens", "between", "max_tokens 0");
  expect_error(post(chat, with("top_p", json::array())), 400, "invalid_request_error", "top_p", "number", "top_p array");
  expect_error(post(chat, with("stop", 3)), 400, "invalid_request_error", "stop", "string", "stop as a number");
  expect_error(post(chat, with("stop", json::array({"a", 1}))), 400, "invalid_request_error", "stop[1]", "string",
               "stop array with a number");
  expect_error(post(chat, with("seed", "x")), 400, "invalid_request_error", "seed", "integer", "seed as a string");
  expect_error(post(chat, with("stream", "yes")), 400, "invalid_request_error", "stream", "boolean", "stream as a string");
  expect_error(post(chat, with("n", 2)), 400, "invalid_request_error", "n", "'n' must be 1", "n = 2");
  expect_error(post(chat, with("frequency_penalty", 3)), 400, "invalid_request_error", "frequency_penalty", "between",
               "frequency_penalty 3");
  expect_error(post(chat, with("model", "gpt-4o")), 404, "invalid_request_error", "model", "gpt-4o", "unknown model");
  expect_error(post("/v1/completions", json{{"prompt", json::array({"a", "b"})}}), 400, "invalid_request_error", "prompt",
               "one prompt", "two prompts");
  expect_error(post("/v1/completions", json{{"prompt", json::array({1, 2, 3})}}), 400, "invalid_request_error", "prompt",
               "token id", "token id prompt");
  // Longer than the context: a 400 before any header of a stream, naming the sizes.
  std::string long_text;
  for (int i = 0; i < kContext; ++i) long_text += "word ";
  expect_error(post(chat, with("messages", json::array({{{"role", "user"}, {"content", long_text}}}))), 400,
               "invalid_request_error", "messages", std::to_string(kContext), "prompt too long");
  json long_stream = with("messages", json::array({{{"role", "user"}, {"content", long_text}}}));
  long_stream["stream"] = true;
  expect_error(post(chat, long_stream), 400, "invalid_request_error", "messages", std::to_string(kContext),
               "prompt too long, streamed");
  // Over the body limit.
  const std::string big = json{{"prompt", std::string(100 * 1024, 'x')}}.dump();
  expect_error(http_request(port(), "POST", "/v1/completions", big), 413, "invalid_request_error", "", "larger than",
               "body over the limit");
  expect_error(http_request(port(), "GET", "/v1/nothing"), 404, "invalid_request_error", "", "/v1/nothing", "unknown path");
  // Unknown fields are ignored; the server still serves.
  HttpReply ok = post(chat, with("logit_bias", json::object()));
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(http_request(port(), "GET", "/health").status, 200);
  const BatchCounters c = settled();
  EXPECT_EQ(c.submitted, 1);  // none of the bad requests reached the scheduler
}

TEST_F(ServerTest, QueueFullIs429) {
  start({}, SchedulerOptions{1, 0, 64});
  const int n = kContext - 64;
  Connection busy(port());
  busy.send_request("POST", "/v1/completions",
                    json{{"prompt", "the cat sat on the mat"}, {"temperature", 0}, {"max_tokens", n}, {"stream", true}}.dump());
  std::string got;
  while (got.find("data: ") == std::string::npos) ASSERT_TRUE(busy.read_some(got)) << got;
  expect_error(post("/v1/completions", json{{"prompt", "Hi"}, {"max_tokens", 2}}), 429, "rate_limit_error", "",
               "too many requests", "queue full");
  busy.close();
  settled();
  EXPECT_EQ(post("/v1/completions", json{{"prompt", "Hi"}, {"max_tokens", 2}}).status, 200);
}

TEST_F(ServerTest, ApiKey) {
  server::ServerOptions so;
  so.api_key = "sk-test-123";
  start(so);
  const json body{{"prompt", "Hi"}, {"max_tokens", 2}};
  expect_error(post("/v1/completions", body), 401, "invalid_request_error", "", "missing API key", "no key");
  expect_error(post("/v1/completions", body, {"Authorization: Bearer sk-wrong"}), 401, "invalid_request_error", "",
               "incorrect API key", "wrong key");
  expect_error(post("/v1/chat/completions", chat_body("hi", 2), {"Authorization: sk-test-123"}), 401,
               "invalid_request_error", "", "incorrect API key", "no Bearer");
  EXPECT_EQ(post("/v1/completions", body, {"Authorization: Bearer sk-test-123"}).status, 200);
  EXPECT_EQ(http_request(port(), "GET", "/health").status, 200);     // public
  EXPECT_EQ(http_request(port(), "GET", "/v1/models").status, 200);  // public
}

TEST_F(ServerTest, NoKeySetIgnoresAuthorization) {
  start();
  EXPECT_EQ(post("/v1/completions", json{{"prompt", "Hi"}, {"max_tokens", 2}}, {"Authorization: Bearer anything"}).status,
            200);
}

TEST_F(ServerTest, CorsOnlyForNamedOrigins) {
  server::ServerOptions so;
  so.cors_origins = {"http://localhost:3000"};
  start(so);
  HttpReply pre = http_request(port(), "OPTIONS", "/v1/chat/completions", "",
                               {"Origin: http://localhost:3000", "Access-Control-Request-Method: POST",
                                "Access-Control-Request-Headers: authorization, content-type"});
  EXPECT_EQ(pre.status, 204);
  EXPECT_EQ(pre.header("access-control-allow-origin"), "http://localhost:3000");
  EXPECT_NE(pre.header("access-control-allow-methods").find("POST"), std::string::npos);
  EXPECT_EQ(pre.header("access-control-allow-headers"), "authorization, content-type");
  HttpReply other = http_request(port(), "OPTIONS", "/v1/chat/completions", "", {"Origin: http://evil.example"});
  EXPECT_EQ(other.status, 403);
  EXPECT_EQ(other.header("access-control-allow-origin"), "");
  HttpReply get = http_request(port(), "GET", "/v1/models", "", {"Origin: http://localhost:3000"});
  EXPECT_EQ(get.header("access-control-allow-origin"), "http://localhost:3000");
  HttpReply get_other = http_request(port(), "GET", "/v1/models", "", {"Origin: http://evil.example"});
  EXPECT_EQ(get_other.header("access-control-allow-origin"), "");
}

TEST_F(ServerTest, CorsOffByDefault) {
  start();
  HttpReply get = http_request(port(), "GET", "/v1/models", "", {"Origin: http://localhost:3000"});
  EXPECT_EQ(get.status, 200);
  EXPECT_EQ(get.header("access-control-allow-origin"), "");
  EXPECT_EQ(http_request(port(), "OPTIONS", "/v1/models", "", {"Origin: http://localhost:3000"}).status, 404);
}

TEST(ServerLifecycle, LoadingThenReadyThenStopped) {
  server::ServerOptions so;
  so.port = 0;
  so.log = [](const std::string&) {};
  server::Server s(so);
  s.start();
  const int port = s.port();
  ASSERT_GT(port, 0);
  HttpReply h = http_request(port, "GET", "/health");
  EXPECT_EQ(h.status, 503);
  EXPECT_EQ(json::parse(h.body)["status"], "loading");
  expect_error(http_request(port, "POST", "/v1/completions", "{\"prompt\":\"x\"}"), 503, "server_error", "", "loading",
               "completion while loading");
  {
    BatchScheduler sched(*models().served);
    s.attach(&sched);
    EXPECT_EQ(http_request(port, "GET", "/health").status, 200);
    s.stop_accepting();
    EXPECT_EQ(http_request(port, "GET", "/health").status, 503);
    expect_error(http_request(port, "POST", "/v1/completions", "{\"prompt\":\"x\"}"), 503, "server_error", "",
                 "shutting down", "completion while stopping");
    s.stop();
  }
  EXPECT_FALSE(s.running());
  EXPECT_THROW(http_request(port, "GET", "/health"), std::runtime_error);  // nobody listens any more
}

TEST(ServerLifecycle, StopCancelsWhatRuns) {
  BatchScheduler sched(*models().served);
  server::ServerOptions so;
  so.port = 0;
  so.log = [](const std::string&) {};
  server::Server s(so);
  s.start();
  s.attach(&sched);
  Connection c(s.port());
  c.send_request("POST", "/v1/completions",
                 json{{"prompt", "the cat sat on the mat"}, {"temperature", 0}, {"max_tokens", kContext - 64}, {"stream", true}}.dump());
  std::string got;
  while (got.find("data: ") == std::string::npos) ASSERT_TRUE(c.read_some(got)) << got;
  s.stop();  // returns: the stream was cancelled, its connection finished
  while (c.read_some(got)) {
  }
  const HttpReply r = Connection::parse(got);
  const auto events = parse_sse(r.body);
  ASSERT_FALSE(events.empty());
  const json last = json::parse(events.back());  // an error event, no [DONE]
  ASSERT_TRUE(last.contains("error")) << events.back();
  EXPECT_EQ(last["error"]["code"], "cancelled");
  EXPECT_EQ(sched.counters().cancelled, 1);
}

TEST(ServerLifecycle, PortInUseIsAClearError) {
  server::ServerOptions so;
  so.port = 0;
  so.log = [](const std::string&) {};
  server::Server a(so);
  a.start();
  so.port = a.port();
  server::Server b(so);
  try {
    b.start();
    FAIL() << "a second server bound the same port";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(a.port())), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace qins

namespace qins {
namespace {

// The request fields land in the BatchRequest the scheduler gets (the HTTP tests see only the text).
TEST(OpenAiApi, FieldsReachTheBatchRequest) {
  using server::Endpoint;
  const auto r = server::parse_request(Endpoint::Chat, R"({
      "model": "m", "messages": [{"role": "developer", "content": "sys"},
                                 {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                                 {"role": "assistant", "content": null}],
      "temperature": 0.25, "top_p": 0.5, "top_k": 7, "min_p": 0.1, "repetition_penalty": 1.2,
      "frequency_penalty": 0.5, "presence_penalty": -0.5, "max_completion_tokens": 99, "seed": 42,
      "stop": ["x", "yz"], "stream": true, "stream_options": {"include_usage": true}, "user": "ignored"})",
                                       1000);
  EXPECT_FALSE(r.batch.raw);
  EXPECT_EQ(r.model, "m");
  ASSERT_EQ(r.batch.messages.size(), 3u);
  EXPECT_EQ(r.batch.messages[0].role, Role::System);
  EXPECT_EQ(r.batch.messages[1].content, "ab");
  EXPECT_EQ(r.batch.messages[2].role, Role::Assistant);
  EXPECT_EQ(r.batch.messages[2].content, "");
  EXPECT_FLOAT_EQ(r.batch.params.temperature, 0.25f);
  EXPECT_FLOAT_EQ(r.batch.params.top_p, 0.5f);
  EXPECT_EQ(r.batch.params.top_k, 7);
  EXPECT_FLOAT_EQ(r.batch.params.min_p, 0.1f);
  EXPECT_FLOAT_EQ(r.batch.params.repetition_penalty, 1.2f);
  EXPECT_FLOAT_EQ(r.batch.frequency_penalty, 0.5f);
  EXPECT_FLOAT_EQ(r.batch.presence_penalty, -0.5f);
  EXPECT_EQ(r.batch.params.max_new_tokens, 99);
  EXPECT_EQ(r.batch.params.seed, 42u);
  EXPECT_FALSE(r.batch.params.random_seed);
  EXPECT_EQ(r.batch.stop, (std::vector<std::string>{"x", "yz"}));
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
}

TEST(OpenAiApi, DefaultsAreOpenAis) {
  const auto r = server::parse_request(server::Endpoint::Completion, R"({"prompt": "hi", "max_tokens": null})", 300);
  EXPECT_TRUE(r.batch.raw);
  EXPECT_EQ(r.batch.prompt, "hi");
  EXPECT_FLOAT_EQ(r.batch.params.temperature, 1.0f);
  EXPECT_FLOAT_EQ(r.batch.params.top_p, 1.0f);
  EXPECT_EQ(r.batch.params.max_new_tokens, 300);  // until the context is full
  EXPECT_TRUE(r.batch.params.random_seed);
  EXPECT_FALSE(r.stream);
  EXPECT_TRUE(r.batch.stop.empty());
  // max_tokens beyond the context is capped to it.
  EXPECT_EQ(server::parse_request(server::Endpoint::Completion, R"({"prompt": "hi", "max_tokens": 100000})", 300)
                .batch.params.max_new_tokens,
            300);
}

TEST(OpenAiApi, ErrorsNameTheField) {
  auto param_of = [](const std::string& body) {
    try {
      server::parse_request(server::Endpoint::Chat, body, 100);
    } catch (const server::ApiError& e) {
      EXPECT_EQ(e.status, 400);
      return e.param;
    }
    ADD_FAILURE() << "no error for " << body;
    return std::string();
  };
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": "x"}], "top_k": -1})"), "top_k");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": "x"}], "min_p": "0.1"})"), "min_p");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": "x"}], "stop": [""]})"), "stop");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": 1}})"),
            "stream_options.include_usage");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]})"),
            "messages[0].content[0].type");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user"}]})"), "messages[0].content");
  EXPECT_EQ(param_of(R"({"messages": [{"content": "x"}]})"), "messages[0].role");
  EXPECT_EQ(param_of(R"({"messages": [{"role": "user", "content": "x"}], "model": 3})"), "model");
}

}  // namespace
}  // namespace qins
