// qins serve: an OpenAI-compatible HTTP server (app/server) over the batched scheduler.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "commands.h"
#include "qins/runtime/batch.h"
#include "qins/runtime/engine.h"
#include "qins/server/server.h"

namespace qins::cli {
namespace {

std::atomic<bool> g_serve_stop{false};

// The first SIGINT/SIGTERM asks for a drain; a second one ends the process at once.
extern "C" void on_serve_signal(int) {
  if (g_serve_stop.exchange(true)) _exit(1);
}

void install_serve_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_serve_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

struct ServeOptions {
  std::string model;
  server::ServerOptions http;
  SchedulerOptions scheduler;
  int context = 4096;
  int threads = 0;
  std::string kv = "bf16";
  std::string device = "auto";
  std::string model_id;
  size_t max_body_kib = 4096;
};

void log_line(const std::string& s) { std::fprintf(stderr, "%s\n", s.c_str()); }

}  // namespace

Runner add_serve(CLI::App& app) {
  auto o = std::make_shared<ServeOptions>();
  app.add_option("model", o->model, "A .qins file or a Hugging Face model folder")->required();
  app.add_option("--host", o->http.host, "Address to listen on (127.0.0.1: this machine only)")->capture_default_str();
  app.add_option("--port", o->http.port, "TCP port (0: any free port, printed at start)")
      ->capture_default_str()->check(CLI::Range(0, 65535));
  app.add_option("--api-key", o->http.api_key,
                 "Require 'Authorization: Bearer KEY' on the completion endpoints (default: $QINS_API_KEY; none = open)");
  app.add_option("--parallel", o->scheduler.parallel, "Sequences decoded together (each with its own KV cache)")
      ->capture_default_str()->check(CLI::Range(1, 64));
  app.add_option("--max-queue", o->scheduler.max_queue, "Requests waiting beyond --parallel before 429")
      ->capture_default_str()->check(CLI::Range(0, 4096));
  app.add_option("--cors", o->http.cors_origins, "Allow browsers from these origins (e.g. http://localhost:3000, or *)");
  app.add_option("--model-id", o->model_id, "The model id /v1/models lists (default: the model's name)");
  app.add_option("--max-body-kib", o->max_body_kib, "Largest request body in KiB (larger: 413)")
      ->capture_default_str()->check(CLI::Range(1, 1 << 20));
  app.add_option("--context", o->context, "Context length of each sequence (KV cache positions)")
      ->capture_default_str()->check(CLI::Range(16, 1 << 20));
  app.add_option("--threads", o->threads, "Threads (0 = all cores)")->capture_default_str();
  app.add_option("--kv", o->kv, "KV cache precision: f32 | bf16 | f16")->capture_default_str()->check(CLI::IsMember({"f32", "bf16", "f16"}));
  app.add_option("--device", o->device, "auto | cpu | cuda | mps | cpu-generic")
      ->capture_default_str()->check(CLI::IsMember({"auto", "cpu", "cuda", "mps", "cpu-generic"}));
  return [o]() {
    if (o->http.api_key.empty()) {
      if (const char* k = std::getenv("QINS_API_KEY")) o->http.api_key = k;
    }
    o->http.max_body_bytes = o->max_body_kib * 1024;
    // Every waiting or running request holds a connection thread; keep some for health checks.
    o->http.http_threads = 16 + 2 * (o->scheduler.parallel + o->scheduler.max_queue);
    if (o->http.http_threads > 512) o->http.http_threads = 512;
    o->http.log = log_line;
    install_serve_signals();

    // The port is bound before the model loads, so /health answers 503 meanwhile.
    server::Server http(o->http);
    http.start();
    std::fprintf(stderr, "qins serve: listening on %s (loading %s)\n", http.address().c_str(), o->model.c_str());

    LoadOptions lo;
    lo.context_length = o->context;
    lo.threads = o->threads;
    lo.kv_dtype = o->kv == "f32" ? KvDtype::F32 : o->kv == "f16" ? KvDtype::F16 : KvDtype::BF16;
    lo.device = o->device;
    std::unique_ptr<Engine> engine;
    try {
      engine = Engine::load(o->model, lo, [](double, std::string_view) { return !g_serve_stop.load(); });
    } catch (const Cancelled&) {
      http.stop();
      std::fprintf(stderr, "qins serve: stopped while loading\n");
      return 0;
    } catch (const Error& e) {
      http.set_load_error(e.what());
      http.stop();
      throw;
    }
    const ModelInfo& info = engine->info();
    int status = 0;
    {
      BatchScheduler scheduler(*engine, o->scheduler);
      http.attach(&scheduler, o->model_id);
      std::fprintf(stderr,
                   "qins serve: ready at %s/v1 (model %s, %s, %s, %d sequences of %d tokens, queue %d%s). "
                   "Ctrl-C stops.\n",
                   http.address().c_str(), (o->model_id.empty() ? info.name : o->model_id).c_str(), info.codebook.c_str(),
                   info.device_mode.c_str(), o->scheduler.parallel, info.context_length, o->scheduler.max_queue,
                   o->http.api_key.empty() ? ", no API key" : ", API key required");
      while (!g_serve_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      const BatchCounters before = scheduler.counters();
      std::fprintf(stderr, "qins serve: stopping: no new requests; finishing %d running and %d queued\n", before.active,
                   before.queued);
      http.stop_accepting();
      scheduler.drain();
      http.stop();  // before the scheduler goes
      const BatchCounters c = scheduler.counters();
      const server::ServerCounters s = http.counters();
      std::fprintf(stderr,
                   "qins serve: stopped after %lld HTTP requests (%lld completions, %lld errors, %lld disconnects); "
                   "%lld tokens generated\n",
                   static_cast<long long>(s.requests), static_cast<long long>(s.completions),
                   static_cast<long long>(s.errors), static_cast<long long>(s.disconnects),
                   static_cast<long long>(c.generated_tokens));
    }
    return status;
  };
}

}  // namespace qins::cli
