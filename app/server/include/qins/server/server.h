// The OpenAI-compatible HTTP server of `qins serve` and of the app's "Serve this model on
// localhost": GET /health, GET /v1/models, POST /v1/chat/completions and /v1/completions
// (stream true and false) over a BatchScheduler. Torch-, Qt- and httplib-free header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "qins/runtime/batch.h"

namespace qins::server {

struct ServerOptions {
  std::string host = "127.0.0.1";     // loopback unless asked otherwise
  int port = 8080;                    // 0 = an ephemeral port (see Server::port())
  std::string api_key;                // non-empty: /v1/* completions need "Authorization: Bearer KEY"
  std::vector<std::string> cors_origins;  // empty: no CORS headers; "*" allows any origin
  size_t max_body_bytes = 4u << 20;   // larger bodies get 413
  int http_threads = 0;               // connection threads; 0 = 16 + 2 x (parallel + max_queue), capped at 256
  // One line per request (method, path, status, tokens, time); empty = stderr.
  std::function<void(const std::string&)> log;
};

struct ServerCounters {
  int64_t requests = 0;          // HTTP requests answered (any path, any status)
  int64_t completions = 0;       // completion requests answered successfully (whole response or stream)
  int64_t errors = 0;            // responses with status >= 400 and streams ended by an error
  int64_t disconnects = 0;       // requests cancelled because the client went away (streamed or not)
};

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();  // stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds host:port and serves on a thread of its own. Until attach(), /health answers 503
  // ("loading") and completions 503. Throws Error naming the address when it cannot bind.
  void start();
  int port() const;          // the bound port (after start)
  std::string address() const;  // http://host:port

  // Serves this scheduler from now on (not owned; it must outlive stop()). model_id is the id
  // /v1/models lists and requests may name; "" = the scheduler's info().name.
  void attach(BatchScheduler* scheduler, const std::string& model_id = "");
  // After a failed load: /health answers 503 with this message.
  void set_load_error(const std::string& message);

  // New requests get 503 ("shutting down"); requests in flight go on. Call before draining the
  // scheduler so nothing new reaches it.
  void stop_accepting();
  // Closes the listening socket and waits for every connection thread (requests in flight must
  // be finished or drained first, or their streams end with an error). Idempotent.
  void stop();
  bool running() const;

  ServerCounters counters() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace qins::server
