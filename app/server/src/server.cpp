// The HTTP side of `qins serve` (cpp-httplib): routes, auth, CORS, SSE streaming, logging.
//
// A completion request's connection thread submits it to the BatchScheduler and waits: the
// scheduler thread hands pieces over through an Exchange (mutex + condition variable). A stream's
// headers go out only once the first piece (or the end) is there, so a request that fails before
// its first token gets an ordinary HTTP error. A write that fails (the client went away) cancels
// the request's BatchHandle, which stops it at the scheduler's next token. A request that is not
// streamed writes nothing until its end, so its connection thread watches the socket instead
// (connection_socket / peer_closed) each time a piece arrives.
#include "qins/server/server.h"

#include <httplib.h>
#include <netdb.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <cerrno>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <set>
#include <thread>

#include "openai_api.h"

namespace qins::server {

using nlohmann::json;

namespace {

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// What the scheduler thread hands the connection thread.
struct Exchange {
  std::mutex m;
  std::condition_variable cv;
  std::string pending;  // text not yet taken by the connection thread
  bool done = false;
  BatchResult result;
};

// The per-request note the logger prints (the logger runs on the request's connection thread,
// after the whole response, streams included, has been written).
struct LogNote {
  std::chrono::steady_clock::time_point start{};
  std::string detail;
};
thread_local LogNote t_note;

// Compares every byte whatever the first difference (no early exit that times the key).
bool same_secret(const std::string& given, const std::string& key) {
  if (given.size() != key.size() || key.empty()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < key.size(); ++i) diff |= static_cast<unsigned char>(given[i] ^ key[i]);
  return diff == 0;
}

// The socket of the connection a request came on: cpp-httplib 0.11 (Debian 12's) gives a handler
// no socket and no way to ask whether the client is still there, so this looks for the open
// socket whose local port, peer port and peer address are the request's (the connection's fd
// stays open until the handler returns). -1 when none is found among the first 4096 fds.
int connection_socket(const httplib::Request& req) {
  rlimit rl{};
  int cap = 4096;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < static_cast<rlim_t>(cap))
    cap = static_cast<int>(rl.rlim_cur);
  auto port_of = [](const sockaddr_storage& a) -> int {
    if (a.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(a).sin_port);
    if (a.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6&>(a).sin6_port);
    return -1;
  };
  for (int fd = 0; fd < cap; ++fd) {
    sockaddr_storage local{}, peer{};
    socklen_t ln = sizeof local, pn = sizeof peer;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &ln) != 0 || port_of(local) != req.local_port) continue;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pn) != 0 || port_of(peer) != req.remote_port) continue;
    char host[NI_MAXHOST] = "";
    if (getnameinfo(reinterpret_cast<sockaddr*>(&peer), pn, host, sizeof host, nullptr, 0, NI_NUMERICHOST) == 0 &&
        req.remote_addr == host)
      return fd;
  }
  return -1;
}

// True once the client has closed or reset the connection (a peek that reads end-of-file or
// fails); bytes waiting (a pipelined request) or none yet mean it is still there. A client that
// half-closes its side after sending the request counts as gone.
bool peer_closed(int fd) {
  char b;
  const ssize_t n = ::recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return true;
  return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

}  // namespace

struct Server::Impl {
  ServerOptions opt;
  httplib::Server http;
  std::thread thread;
  int port = 0;
  bool started = false;
  std::atomic<bool> accepting{true};

  std::mutex state_m;  // guards the fields below
  BatchScheduler* scheduler = nullptr;
  std::string model_id;
  int context_length = 0;
  int64_t ready_since = 0;
  std::string load_error;

  // Requests submitted whose responses are not finished yet (see Ticket).
  std::mutex flight_m;
  std::condition_variable flight_cv;
  std::set<std::shared_ptr<BatchHandle>> in_flight;

  std::atomic<int64_t> n_requests{0}, n_completions{0}, n_errors{0}, n_disconnects{0};

  void log(const std::string& line) {
    if (opt.log) {
      opt.log(line);
    } else {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
  }

  void send_error(httplib::Response& res, const ApiError& e) {
    res.status = e.status;
    res.set_content(dump(error_body(e)), "application/json");
    t_note.detail = e.what();
  }

  // A request in flight from submit until its response is gone: held by the handler, and by a
  // stream's provider and releaser, which the Response destroys only after the last byte (or the
  // failed write). stop() waits for every ticket before it closes the connections, so a stream
  // it cancelled still gets its error event and the end of its chunked body.
  struct Ticket {
    Impl* d;
    std::shared_ptr<BatchHandle> handle;
    Ticket(Impl* d_, std::shared_ptr<BatchHandle> h) : d(d_), handle(std::move(h)) {
      std::lock_guard<std::mutex> lk(d->flight_m);
      d->in_flight.insert(handle);
    }
    ~Ticket() {
      {
        std::lock_guard<std::mutex> lk(d->flight_m);
        d->in_flight.erase(handle);
      }
      d->flight_cv.notify_all();
    }
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
  };

  bool allowed_origin(const std::string& origin) const {
    if (origin.empty()) return false;
    for (const auto& o : opt.cors_origins) {
      if (o == "*" || o == origin) return true;
    }
    return false;
  }

  static bool is_public(const std::string& path) {
    return path == "/health" || path == "/v1/models" || path.rfind("/v1/models/", 0) == 0;
  }

  httplib::Server::HandlerResponse pre_route(const httplib::Request& req, httplib::Response& res) {
    t_note.start = std::chrono::steady_clock::now();
    t_note.detail.clear();
    if (!opt.cors_origins.empty()) {
      const std::string origin = req.get_header_value("Origin");
      if (allowed_origin(origin)) {
        res.set_header("Access-Control-Allow-Origin", origin);
        res.set_header("Vary", "Origin");
      }
    }
    if (!opt.api_key.empty() && req.method != "OPTIONS" && !is_public(req.path)) {
      const std::string auth = req.get_header_value("Authorization");
      const std::string prefix = "Bearer ";
      const bool ok = auth.rfind(prefix, 0) == 0 && same_secret(auth.substr(prefix.size()), opt.api_key);
      if (!ok) {
        send_error(res, ApiError(401, "invalid_request_error", "invalid_api_key", "",
                                 auth.empty() ? "missing API key: send the header 'Authorization: Bearer KEY'"
                                              : "incorrect API key in the Authorization header"));
        res.set_header("WWW-Authenticate", "Bearer");
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    return httplib::Server::HandlerResponse::Unhandled;
  }

  void preflight(const httplib::Request& req, httplib::Response& res) {
    const std::string origin = req.get_header_value("Origin");
    if (!allowed_origin(origin)) {
      send_error(res, ApiError(403, "invalid_request_error", "origin_not_allowed", "",
                               "origin '" + origin + "' is not allowed (qins serve --cors ORIGIN)"));
      return;
    }
    res.status = 204;
    res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    const std::string asked = req.get_header_value("Access-Control-Request-Headers");
    res.set_header("Access-Control-Allow-Headers", asked.empty() ? "Authorization, Content-Type" : asked);
    res.set_header("Access-Control-Max-Age", "600");
  }

  // A handler body: ApiError becomes its response, anything else a 500.
  template <class F>
  void guarded(httplib::Response& res, F&& f) {
    try {
      f();
    } catch (const ApiError& e) {
      send_error(res, e);
    } catch (const std::exception& e) {
      send_error(res, ApiError(500, "server_error", "internal_error", "", e.what()));
    }
  }

  void health(httplib::Response& res) {
    std::lock_guard<std::mutex> lk(state_m);
    json body;
    if (!accepting) {
      res.status = 503;
      body = {{"status", "stopping"}};
    } else if (scheduler) {
      res.status = 200;
      body = {{"status", "ok"}, {"model", model_id}};
    } else if (!load_error.empty()) {
      res.status = 503;
      body = {{"status", "error"}, {"error", load_error}};
    } else {
      res.status = 503;
      body = {{"status", "loading"}};
    }
    res.set_content(dump(body), "application/json");
  }

  json model_object() const {
    return json{{"id", model_id}, {"object", "model"}, {"created", ready_since}, {"owned_by", "qins"},
                {"context_length", context_length}};
  }

  void models(const httplib::Request& req, httplib::Response& res) {
    std::lock_guard<std::mutex> lk(state_m);
    if (!scheduler) throw ApiError(503, "server_error", "model_loading", "", "the model is still loading");
    if (req.matches.size() > 1) {
      const std::string id = req.matches[1];
      if (id != model_id) throw ApiError(404, "invalid_request_error", "model_not_found", "model", "model '" + id + "' does not exist");
      res.set_content(dump(model_object()), "application/json");
      return;
    }
    res.set_content(dump(json{{"object", "list"}, {"data", json::array({model_object()})}}), "application/json");
  }

  void completion(Endpoint endpoint, const httplib::Request& req, httplib::Response& res) {
    if (!accepting) throw ApiError(503, "server_error", "shutting_down", "", "the server is shutting down");
    BatchScheduler* sched;
    std::string model;
    int ctx;
    {
      std::lock_guard<std::mutex> lk(state_m);
      sched = scheduler;
      model = model_id;
      ctx = context_length;
      if (!sched) {
        throw ApiError(503, "server_error", "model_loading", "",
                       load_error.empty() ? "the model is still loading" : "the model failed to load: " + load_error);
      }
    }
    ApiRequest ar = parse_request(endpoint, req.body, ctx);
    if (!ar.model.empty() && ar.model != model) {
      throw ApiError(404, "invalid_request_error", "model_not_found", "model",
                     "model '" + ar.model + "' does not exist; this server serves '" + model + "'");
    }
    auto ex = std::make_shared<Exchange>();
    BatchCallbacks cb;
    cb.on_piece = [ex](std::string_view piece) {
      {
        std::lock_guard<std::mutex> lk(ex->m);
        ex->pending.append(piece.data(), piece.size());
      }
      ex->cv.notify_all();
      return true;
    };
    cb.on_done = [ex](const BatchResult& r) {
      {
        std::lock_guard<std::mutex> lk(ex->m);
        ex->result = r;
        ex->done = true;
      }
      ex->cv.notify_all();
    };
    std::shared_ptr<BatchHandle> handle;
    try {
      handle = sched->submit(std::move(ar.batch), std::move(cb));
    } catch (const QueueFull& e) {
      throw ApiError(429, "rate_limit_error", "queue_full", "", std::string("too many requests: ") + e.what());
    } catch (const PromptTooLong& e) {
      throw ApiError(400, "invalid_request_error", "context_length_exceeded",
                     endpoint == Endpoint::Chat ? "messages" : "prompt", e.what());
    } catch (const Error& e) {
      if (!accepting) throw ApiError(503, "server_error", "shutting_down", "", "the server is shutting down");
      throw ApiError(400, "invalid_request_error", "invalid_value", "", e.what());
    }
    auto ticket = std::make_shared<Ticket>(this, handle);
    const ResponseMeta meta = new_response_meta(endpoint, model);

    if (!ar.stream) {
      // Nothing is written before the end, so a client that hangs up is noticed by watching its
      // socket: at every piece (the next token) and every 100 ms.
      const int sock = connection_socket(req);
      bool gone = false;
      std::string text;
      BatchResult result;
      {
        std::unique_lock<std::mutex> lk(ex->m);
        size_t seen = 0;
        while (!ex->done) {
          ex->cv.wait_for(lk, std::chrono::milliseconds(100), [&] { return ex->done || ex->pending.size() != seen; });
          seen = ex->pending.size();
          if (ex->done || gone || sock < 0) continue;
          lk.unlock();  // the scheduler thread takes ex->m for every piece: no syscall under it
          gone = peer_closed(sock);
          if (gone) handle->cancel();  // the scheduler ends it at its next token and calls on_done
          lk.lock();
        }
        text = std::move(ex->pending);
        result = ex->result;
      }
      if (gone) {
        ++n_disconnects;
        // Nobody reads it: the status the log line shows for a request its client abandoned.
        send_error(res, ApiError(499, "invalid_request_error", "client_closed_request", "", "client disconnected"));
        return;
      }
      check_outcome(result);
      res.set_content(dump(full_response(meta, text, result)), "application/json");
      note_result(result);
      ++n_completions;
      return;
    }

    // Stream: the headers wait for the first piece (or the end).
    {
      std::unique_lock<std::mutex> lk(ex->m);
      ex->cv.wait(lk, [&] { return ex->done || !ex->pending.empty(); });
      if (ex->done && ex->pending.empty()) {
        const BatchResult result = ex->result;
        lk.unlock();
        check_outcome(result);
      }
    }
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    const bool include_usage = ar.include_usage;
    auto started = std::make_shared<bool>(false);
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, ex, handle, ticket, meta, include_usage, started](size_t, httplib::DataSink& sink) -> bool {
          auto send = [&](const json& j) {
            const std::string ev = sse_event(dump(j));
            return sink.write(ev.data(), ev.size());
          };
          auto gone = [&] {
            handle->cancel();
            ++n_disconnects;
            t_note.detail = "client disconnected";
            return false;
          };
          if (!*started) {
            *started = true;
            if (meta.endpoint == Endpoint::Chat && !send(role_chunk(meta, include_usage))) return gone();
          }
          std::string piece;
          bool done;
          BatchResult result;
          {
            std::unique_lock<std::mutex> lk(ex->m);
            ex->cv.wait(lk, [&] { return ex->done || !ex->pending.empty(); });
            piece.swap(ex->pending);
            done = ex->done;
            if (done) result = ex->result;
          }
          if (!piece.empty() && !send(content_chunk(meta, piece, include_usage))) return gone();
          if (!done) return true;
          if (result.finish_reason == "error" || result.finish_reason == "cancelled") {
            const ApiError e = outcome_error(result);
            send(error_body(e));
            t_note.detail = std::string("stream ended by an error: ") + e.what();
            ++n_errors;
            sink.done();
            return true;
          }
          if (!send(finish_chunk(meta, finish_reason_of(result), include_usage))) return gone();
          if (include_usage && !send(usage_chunk(meta, result.stats))) return gone();
          const std::string end = sse_event("[DONE]");
          if (!sink.write(end.data(), end.size())) return gone();
          sink.done();
          note_result(result);
          ++n_completions;
          return true;
        },
        [handle, ticket](bool success) {
          if (!success) handle->cancel();  // any way the stream ended early stops the request
        });
  }

  static ApiError outcome_error(const BatchResult& r) {
    if (r.finish_reason == "cancelled") {
      return ApiError(503, "server_error", "cancelled", "", "the request was cancelled (the server is stopping)");
    }
    return ApiError(500, "server_error", "generation_failed",
                    "", "generation failed: " + (r.error.empty() ? std::string("unknown error") : r.error));
  }
  static void check_outcome(const BatchResult& r) {
    if (r.finish_reason == "error" || r.finish_reason == "cancelled") throw outcome_error(r);
  }
  static void note_result(const BatchResult& r) {
    t_note.detail = std::to_string(r.stats.prompt_tokens) + " prompt + " + std::to_string(r.stats.generated_tokens) +
                    " generated tokens, finish " + r.finish_reason;
  }

  void logger(const httplib::Request& req, const httplib::Response& res) {
    ++n_requests;
    if (res.status >= 400) ++n_errors;
    char buf[64] = "";
    if (t_note.start.time_since_epoch().count() != 0) {
      std::snprintf(buf, sizeof buf, " %.3f s",
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t_note.start).count());
    }
    log("qins serve: " + req.remote_addr + " " + req.method + " " + req.path + " " + std::to_string(res.status) + buf +
        (t_note.detail.empty() ? "" : " (" + t_note.detail + ")"));
    t_note = LogNote{};
  }
};

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->opt = std::move(options);
  Impl* d = impl_.get();
  httplib::Server& h = d->http;
  const int threads = d->opt.http_threads > 0 ? d->opt.http_threads : 64;
  h.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  h.set_payload_max_length(d->opt.max_body_bytes);
  // SO_REUSEADDR only: cpp-httplib's default adds SO_REUSEPORT, which lets a second server bind
  // the same port and silently take half of the connections.
  h.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  h.set_pre_routing_handler([d](const httplib::Request& req, httplib::Response& res) { return d->pre_route(req, res); });
  h.set_logger([d](const httplib::Request& req, const httplib::Response& res) { d->logger(req, res); });
  h.set_error_handler([d](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty() || res.status == 204) return;  // a handler's own error body stays
    if (res.status == 413) {
      d->send_error(res, ApiError(413, "invalid_request_error", "request_too_large", "",
                                  "the request body is larger than " + std::to_string(d->opt.max_body_bytes) + " bytes"));
    } else if (res.status == 404) {
      d->send_error(res, ApiError(404, "invalid_request_error", "unknown_url", "",
                                  "no endpoint " + req.method + " " + req.path));
    } else {
      d->send_error(res, ApiError(res.status, "invalid_request_error", "", "",
                                  "bad request: " + std::to_string(res.status)));
    }
  });
  h.Get("/health", [d](const httplib::Request&, httplib::Response& res) { d->health(res); });
  h.Get("/v1/models", [d](const httplib::Request& req, httplib::Response& res) {
    d->guarded(res, [&] { d->models(req, res); });
  });
  h.Get(R"(/v1/models/(.+))", [d](const httplib::Request& req, httplib::Response& res) {
    d->guarded(res, [&] { d->models(req, res); });
  });
  h.Post("/v1/chat/completions", [d](const httplib::Request& req, httplib::Response& res) {
    d->guarded(res, [&] { d->completion(Endpoint::Chat, req, res); });
  });
  h.Post("/v1/completions", [d](const httplib::Request& req, httplib::Response& res) {
    d->guarded(res, [&] { d->completion(Endpoint::Completion, req, res); });
  });
  if (!d->opt.cors_origins.empty()) {
    h.Options(R"(.*)", [d](const httplib::Request& req, httplib::Response& res) { d->preflight(req, res); });
  }
}

Server::~Server() { stop(); }

void Server::start() {
  if (impl_->started) throw Error("qins serve: the server is already started");
  // A client that goes away must not kill the process (cpp-httplib writes with send()).
  ::signal(SIGPIPE, SIG_IGN);
  httplib::Server& h = impl_->http;
  const std::string& host = impl_->opt.host;
  int port = impl_->opt.port;
  if (port < 0 || port > 65535) throw Error("qins serve: port " + std::to_string(port) + " is out of range (0-65535)");
  if (port == 0) {
    port = h.bind_to_any_port(host);
    if (port <= 0) throw Error("qins serve: cannot bind " + host + " to a free port");
  } else if (!h.bind_to_port(host, port)) {
    throw Error("qins serve: cannot listen on " + host + ":" + std::to_string(port) +
                " (address in use, not local, or not permitted)");
  }
  impl_->port = port;
  impl_->started = true;
  impl_->thread = std::thread([this] { impl_->http.listen_after_bind(); });
  // stop() before the loop runs would be lost (httplib stops only a running server).
  while (!impl_->http.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

int Server::port() const { return impl_->port; }

std::string Server::address() const {
  const std::string& host = impl_->opt.host;
  const bool v6 = host.find(':') != std::string::npos;
  return "http://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(impl_->port);
}

void Server::attach(BatchScheduler* scheduler, const std::string& model_id) {
  std::lock_guard<std::mutex> lk(impl_->state_m);
  impl_->scheduler = scheduler;
  impl_->model_id = model_id.empty() && scheduler ? scheduler->info().name : model_id;
  impl_->context_length = scheduler ? scheduler->info().context_length : 0;
  impl_->ready_since = std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch()).count();
  impl_->load_error.clear();
}

void Server::set_load_error(const std::string& message) {
  std::lock_guard<std::mutex> lk(impl_->state_m);
  impl_->load_error = message;
}

void Server::stop_accepting() { impl_->accepting = false; }

void Server::stop() {
  if (!impl_->started) return;
  impl_->accepting = false;
  {
    // Whatever still runs is cancelled: each on_done follows and its response ends (a stream
    // with an error event). Bounded: a client that does not read cannot hold the stop forever.
    std::unique_lock<std::mutex> lk(impl_->flight_m);
    for (const auto& h : impl_->in_flight) h->cancel();
    impl_->flight_cv.wait_for(lk, std::chrono::seconds(30), [&] { return impl_->in_flight.empty(); });
  }
  impl_->http.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  impl_->started = false;
}

bool Server::running() const { return impl_->started && impl_->http.is_running(); }

ServerCounters Server::counters() const {
  ServerCounters c;
  c.requests = impl_->n_requests;
  c.completions = impl_->n_completions;
  c.errors = impl_->n_errors;
  c.disconnects = impl_->n_disconnects;
  return c;
}

}  // namespace qins::server
