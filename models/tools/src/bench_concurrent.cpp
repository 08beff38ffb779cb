// `qins bench --concurrent`: aggregate and per-stream decode speed of N streams decoded together
// by the BatchScheduler (continuous batching), for several N side by side in one run.
#include <ATen/Parallel.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <numeric>

#include "bench_system.h"
#include "qins/core/projective_linear.h"
#include "qins/runtime/batch.h"
#include "qins/runtime/engine.h"
#include "qins/runtime/internal.h"
#include "qins/tools/bench.h"
#include "qins/util/timing.h"

namespace qins {

namespace {

// A raw prompt of about n tokens, different per stream (no shared prefix between streams).
std::string stream_prompt(const Engine& e, int stream, int n) {
  static const char* kWords[] = {"river", "harbour", "stone", "lantern", "meadow", "copper", "orchard", "signal",
                                 "winter", "bridge", "canvas", "thread", "valley", "engine", "garden", "ladder"};
  std::string text = "Stream " + std::to_string(stream) + ":";
  for (int i = 0; static_cast<int>(e.tokenize(text, false).size()) < n && i < 100000; ++i)
    text += std::string(" ") + kWords[(i * 7 + stream * 3) % 16];
  return text;
}

SamplingParams greedy_params(int n) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.random_seed = false;
  p.max_new_tokens = n;
  return p;
}

}  // namespace

ConcurrentBenchResult run_concurrent_bench(const std::string& path, const BenchOptions& o,
                                           const std::vector<int>& streams, const BenchLog& log) {
  for (int n : streams)
    if (n < 1 || n > 64) throw Error("--concurrent: stream counts must be in [1, 64], got " + std::to_string(n));
  if (streams.empty()) throw Error("--concurrent: no stream counts given");
  configure_threads(o.threads);
  LoadOptions lo;
  lo.threads = o.threads;
  lo.context_length = std::max(o.context, o.prompt_tokens + o.gen_tokens + 64);
  auto engine = Engine::load(path, lo);
  engine->wait_for_background_work();
  ConcurrentBenchResult r;
  r.model_path = path;
  r.model_name = engine->info().name;
  r.cpu = cpuinfo_field("model name");
  r.kernel_isa = kernel_paths();
  r.threads = at::get_num_threads();
  r.gen_tokens = o.gen_tokens;
  const int max_streams = *std::max_element(streams.begin(), streams.end());
  std::vector<std::string> prompts;
  for (int i = 0; i < max_streams; ++i) prompts.push_back(stream_prompt(*engine, i, o.prompt_tokens));
  r.prompt_tokens = static_cast<int>(engine->tokenize(prompts[0], false).size());

  {  // One stream without the scheduler: what Session does alone (warms the caches and pages too).
    auto s = engine->new_session();
    const GenerationStats st = s->complete(prompts[0], greedy_params(o.gen_tokens), {});
    r.session_tps = st.tokens_per_s;
    if (log) log("session alone: " + std::to_string(st.tokens_per_s) + " tok/s over " +
                 std::to_string(st.generated_tokens) + " tokens");
  }

  for (int n : streams) {
    SchedulerOptions so;
    so.parallel = n;
    BatchScheduler sched(*engine, so);
    std::mutex m;
    std::condition_variable cv;
    std::vector<BatchResult> results;
    std::vector<Clock::time_point> submitted(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      BatchRequest req;
      req.raw = true;
      req.prompt = prompts[static_cast<size_t>(i)];
      req.params = greedy_params(o.gen_tokens);
      BatchCallbacks cb;
      cb.on_done = [&](const BatchResult& res) {
        std::lock_guard<std::mutex> lock(m);
        results.push_back(res);
        cv.notify_all();
      };
      submitted[static_cast<size_t>(i)] = Clock::now();
      sched.submit(std::move(req), std::move(cb));
    }
    {
      std::unique_lock<std::mutex> lock(m);
      cv.wait(lock, [&] { return static_cast<int>(results.size()) == n; });
    }
    sched.drain();
    // Each stream's first token and end as offsets from the first submit (all were submitted
    // within microseconds; the results carry times from their own submit).
    ConcurrentLevel L;
    L.streams = n;
    double first = 1e300, last = 0.0, tps_sum = 0.0, ttft_sum = 0.0;
    L.per_stream_min_tps = 1e300;
    for (const BatchResult& res : results) {
      if (res.finish_reason == "error") throw Error(path + ": a benchmark stream failed: " + res.error);
      first = std::min(first, res.stats.time_to_first_token_s);
      last = std::max(last, res.stats.total_s);
      L.decode_tokens += std::max(0, res.stats.generated_tokens - 1);
      L.finished_early += res.stats.generated_tokens < o.gen_tokens ? 1 : 0;
      tps_sum += res.stats.tokens_per_s;
      L.per_stream_min_tps = std::min(L.per_stream_min_tps, res.stats.tokens_per_s);
      ttft_sum += res.stats.time_to_first_token_s;
    }
    L.window_s = last - first;
    L.aggregate_tps = L.window_s > 0 ? static_cast<double>(L.decode_tokens) / L.window_s : 0.0;
    L.per_stream_tps = tps_sum / n;
    L.ttft_mean_s = ttft_sum / n;
    const BatchCounters c = sched.counters();
    L.decode_steps = c.decode_steps;
    L.decode_only_tps = c.decode_s > 0 ? static_cast<double>(c.decode_rows) / c.decode_s : 0.0;
    L.steady_tokens = c.full_decode_rows;
    L.steady_s = c.full_decode_s;
    L.steady_tps = c.full_decode_s > 0 ? static_cast<double>(c.full_decode_rows) / c.full_decode_s : 0.0;
    if (log)
      log(std::to_string(n) + " streams: aggregate " + std::to_string(L.aggregate_tps) + " tok/s, per stream " +
          std::to_string(L.per_stream_tps) + " tok/s, decode steps alone " + std::to_string(L.decode_only_tps) +
          " tok/s, all " + std::to_string(n) + " decoding " + std::to_string(L.steady_tps) + " tok/s");
    r.levels.push_back(L);
  }
  const auto one = std::find_if(r.levels.begin(), r.levels.end(), [](const ConcurrentLevel& l) { return l.streams == 1; });
  if (one != r.levels.end() && one->aggregate_tps > 0 && one->per_stream_tps > 0) {
    const double agg1 = one->aggregate_tps, per1 = one->per_stream_tps;
    for (ConcurrentLevel& l : r.levels) {
      l.aggregate_ratio = l.aggregate_tps / agg1;
      l.per_stream_ratio = l.per_stream_tps / per1;
    }
  }
  if (one != r.levels.end() && one->decode_only_tps > 0 && one->steady_tps > 0)
    for (ConcurrentLevel& l : r.levels) {
      l.decode_only_ratio = l.decode_only_tps / one->decode_only_tps;
      l.steady_ratio = l.steady_tps / one->steady_tps;
    }
  return r;
}

}  // namespace qins
