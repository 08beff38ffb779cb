// The bench report: text and JSON of a BenchResult.
#include "qins/util/timing.h"
#include "qins/tools/bench.h"

#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "qins/core/qins.h"
#include "qins/runtime/engine.h"
#include "qins/runtime/internal.h"
#include "qins/tools/fixture.h"
#include "qins/graph/linear.h"
#include "qins/graph/phi3_model.h"
#include "qins/runtime/sampler.h"
#include "bench_system.h"

namespace qins {

namespace {

// Machine, load and memory figures.
void text_setup(std::ostringstream& t, const BenchResult& r) {
  char line[400];
  t << "model: " << r.model_path << " (" << r.n_params / 1e9 << " G params, file " << gb(r.file_bytes) << ")\n";
  if (r.huge_page_bytes > 0 || r.huge_page_s > 0)
    t << "huge pages: " << gb(r.huge_page_bytes) << " of weights moved onto 2 MiB pages in " << r.huge_page_s
      << " s after load (background; speeds below measured after it); process memory on huge pages: "
      << gb(r.resident_huge_bytes) << "\n";
  t << "cpu: " << r.cpu << ", " << r.threads << " threads, flags: " << r.cpu_flags << ", kernel " << r.kernel_isa << "\n";
  std::snprintf(line, sizeof line, "plain-read bandwidth: %.1f GB/s at the start (%d threads); \"bw GB/s\" below: the median of plain reads made right before each round of ~8 decode tokens, \"%% bw\" the median over those rounds of each round's bytes/s over its own read\n", r.bandwidth_gbs, r.threads);
  t << line;
  if (r.load_cold_s >= 0)
    std::snprintf(line, sizeof line, "load: cold %.2f s (%s; %.0f %% of the file cached before), warm %.2f s\n",
                  r.load_cold_s, r.cold_method.c_str(), 100.0 * r.cold_resident_fraction, r.load_warm_s);
  else
    std::snprintf(line, sizeof line, "load: warm %.2f s (cold: %s)\n", r.load_warm_s, r.cold_method.c_str());
  t << line;
  const int64_t other = r.rss_after_load - r.weight_bytes;
  std::snprintf(line, sizeof line,
                "memory: RSS after load %s (weights %s, other %s), peak during load %s = %.3fx after load\n",
                gb(r.rss_after_load).c_str(), gb(r.weight_bytes).c_str(), gb(other).c_str(),
                gb(r.peak_rss_load).c_str(), static_cast<double>(r.peak_rss_load) / std::max<int64_t>(1, r.rss_after_load));
  t << line;
  std::snprintf(line, sizeof line,
                "memory: RSS with a %d-position bf16 KV cache after a reply %s = weights %s + KV %s + other %s "
                "(peak %s)\n",
                r.context, gb(r.rss_after_session).c_str(), gb(r.weight_bytes).c_str(), gb(r.kv_cache_bytes).c_str(),
                gb(r.rss_after_session - r.weight_bytes - r.kv_cache_bytes).c_str(), gb(r.peak_rss_run).c_str());
  t << line;
}

// One row per variant.
void text_table(std::ostringstream& t, const BenchResult& r) {
  char line[400];
  t << "prompt " << r.prompt_tokens << " tokens, " << r.gen_tokens << " generated; decode also at depth " << r.depth
    << "\n\n";
  std::snprintf(line, sizeof line, "%-7s %8s %9s %8s %10s %10s %10s %9s %7s %7s %9s %9s %9s\n", "variant", "setup s",
                "weights", "TTFT s", "prefill/s", "decode/s", "@depth/s", "GB/token", "bw GB/s", "% bw", "gemv ms",
                "step ms", "overhead");
  t << line;
  for (const auto& run : r.runs) {
    if (!run.ran) {
      t << run.variant << ": " << run.note << "\n";
      continue;
    }
    const double overhead = run.step_s > 0 ? 100.0 * (run.step_s - run.gemv_only_s) / run.step_s : 0.0;
    std::snprintf(line, sizeof line, "%-7s %8.2f %9s %8.3f %10.2f %10.2f %10.2f %9.3f %7.1f %6.1f%% %9.1f %9.1f %8.1f%%\n",
                  run.variant.c_str(), run.setup_s, gb(run.weight_bytes).c_str(), run.ttft_s, run.prefill_tps,
                  run.decode_tps, run.decode_tps_depth, run.bytes_per_token / 1e9, run.bandwidth_gbs, run.bandwidth_pct,
                  run.gemv_only_s * 1e3, run.step_s * 1e3, overhead);
    t << line;
  }
}

// Where the QINS step's time goes, and its ratios to the baselines.
void text_summary(std::ostringstream& t, const BenchResult& r) {
  char line[400];
  double bf16_decode = 0, fp32_prefill = 0, bf16_4k_decode = 0;
  for (const auto& run : r.runs) {
    if (run.variant == "bf16" && run.ran) bf16_decode = run.decode_tps;
    if (run.variant == "bf16-4k" && run.ran) bf16_4k_decode = run.decode_tps;
    if (run.variant == "fp32" && run.ran) fp32_prefill = run.prefill_tps;
  }
  const BenchRun& q = r.runs.front();
  t << "\n";
  if (q.ran && q.step_s > 0) {
    std::snprintf(line, sizeof line,
                  "qins at depth %d (projections and whole steps measured in turns, token by token): step %.1f ms = "
                  "projections %.1f ms + %.1f ms the rest (%.1f %%); the step reads %.3f GB of K/V besides %.3f GB of "
                  "weights (K/V = %.1f %% of its bytes)\n",
                  r.depth, q.step_s * 1e3, q.gemv_only_s * 1e3, (q.step_s - q.gemv_only_s) * 1e3,
                  100.0 * (q.step_s - q.gemv_only_s) / q.step_s, q.kv_bytes_depth / 1e9, q.bytes_per_token / 1e9,
                  100.0 * static_cast<double>(q.kv_bytes_depth) / static_cast<double>(q.kv_bytes_depth + q.bytes_per_token));
    t << line;
  }
  if (q.ran && q.faults_per_token >= 0) {
    std::snprintf(line, sizeof line, "qins decode: %.1f minor page faults per token after warm-up\n", q.faults_per_token);
    t << line;
  }
  for (const PairedDecode& pd : r.paired) {
    t << "paired decode vs " << pd.baseline << " (both loaded, alternating rounds): qins/" << pd.baseline << " =";
    for (size_t i = 0; i < pd.qins_tps.size(); ++i) {
      std::snprintf(line, sizeof line, " %.2f/%.2f", pd.qins_tps[i], pd.base_tps[i]);
      t << line;
    }
    std::snprintf(line, sizeof line, " tok/s; median ratio %.2fx\n", pd.median_ratio);
    t << line;
  }
  if (q.ran && (bf16_decode > 0 || fp32_prefill > 0)) {
    if (bf16_decode > 0) {
      std::snprintf(line, sizeof line, "qins decode = %.2fx the bf16 baseline\n", q.decode_tps / bf16_decode);
      t << line;
    }
    if (fp32_prefill > 0) {
      std::snprintf(line, sizeof line, "qins prefill = %.2fx the fp32 baseline\n", q.prefill_tps / fp32_prefill);
      t << line;
    }
  }
  if (q.ran && bf16_4k_decode > 0) {
    std::snprintf(line, sizeof line, "qins decode = %.2fx the bf16 baseline on torch's default (4 KiB) pages\n",
                  q.decode_tps / bf16_4k_decode);
    t << line;
  }
}

}  // namespace

std::string bench_text(const BenchResult& r) {
  std::ostringstream t;
  text_setup(t, r);
  text_table(t, r);
  text_summary(t, r);
  return t.str();
}

std::string bench_json(const BenchResult& r) {
  nlohmann::json j = {{"model", r.model_path},
                      {"name", r.model_name},
                      {"cpu", r.cpu},
                      {"cpu_flags", r.cpu_flags},
                      {"kernel_isa", r.kernel_isa},
                      {"huge_page_s", r.huge_page_s},
                      {"paired", nlohmann::json::array()},
                      {"huge_page_bytes", r.huge_page_bytes},
                      {"resident_huge_bytes", r.resident_huge_bytes},
                      {"threads", r.threads},
                      {"n_params", r.n_params},
                      {"file_bytes", r.file_bytes},
                      {"weight_bytes", r.weight_bytes},
                      {"kv_cache_bytes", r.kv_cache_bytes},
                      {"context", r.context},
                      {"depth", r.depth},
                      {"prompt_tokens", r.prompt_tokens},
                      {"gen_tokens", r.gen_tokens},
                      {"bandwidth_gbs", r.bandwidth_gbs},
                      {"load_cold_s", r.load_cold_s},
                      {"cold_method", r.cold_method},
                      {"cold_resident_fraction", r.cold_resident_fraction},
                      {"load_warm_s", r.load_warm_s},
                      {"rss_after_load", r.rss_after_load},
                      {"peak_rss_load", r.peak_rss_load},
                      {"rss_after_session", r.rss_after_session},
                      {"peak_rss_run", r.peak_rss_run}};
  for (const auto& run : r.runs)
    j["runs"].push_back({{"variant", run.variant},
                         {"ran", run.ran},
                         {"note", run.note},
                         {"setup_s", run.setup_s},
                         {"weight_bytes", run.weight_bytes},
                         {"bytes_per_token", run.bytes_per_token},
                         {"ttft_s", run.ttft_s},
                         {"prefill_tps", run.prefill_tps},
                         {"decode_tps", run.decode_tps},
                         {"decode_tps_depth", run.decode_tps_depth},
                         {"gemv_only_s", run.gemv_only_s},
                         {"kv_bytes_depth", run.kv_bytes_depth},
                         {"step_s", run.step_s},
                         {"bandwidth_pct", run.bandwidth_pct},
                         {"bandwidth_gbs", run.bandwidth_gbs},
                         {"round_tps", run.round_tps},
                         {"round_bw_gbs", run.round_bw_gbs},
                         {"faults_per_token", run.faults_per_token}});
  for (const PairedDecode& pd : r.paired)
    j["paired"].push_back({{"baseline", pd.baseline},
                           {"tokens", pd.tokens},
                           {"qins_tps", pd.qins_tps},
                           {"base_tps", pd.base_tps},
                           {"median_ratio", pd.median_ratio}});
  return j.dump(2) + "\n";
}

// ---- qins bench --concurrent ----

std::string concurrent_bench_text(const ConcurrentBenchResult& r) {
  std::ostringstream o;
  char line[256];
  o << "model: " << r.model_name << " (" << r.model_path << ")\n";
  o << "cpu: " << r.cpu << ", " << r.threads << " threads, kernel " << r.kernel_isa << "\n";
  o << "prompt: " << r.prompt_tokens << " tokens per stream, " << r.gen_tokens << " greedy tokens per stream\n";
  std::snprintf(line, sizeof line, "one stream through Session (no scheduler): %.3f tok/s\n\n", r.session_tps);
  o << line;
  o << "streams  aggregate tok/s  x one stream  per-stream tok/s  x one stream  min per-stream  mean TTFT s  steps\n";
  for (const ConcurrentLevel& l : r.levels) {
    std::snprintf(line, sizeof line, "%7d  %15.3f  %12.2f  %16.3f  %12.2f  %14.3f  %11.2f  %5lld%s\n", l.streams,
                  l.aggregate_tps, l.aggregate_ratio, l.per_stream_tps, l.per_stream_ratio, l.per_stream_min_tps,
                  l.ttft_mean_s, static_cast<long long>(l.decode_steps),
                  l.finished_early ? (" (" + std::to_string(l.finished_early) + " stopped early)").c_str() : "");
    o << line;
  }
  o << "\ndecode steps alone (scheduler counters; prefill chunks between steps excluded):\n";
  o << "streams  decode-only tok/s  x one stream  all-N-decoding tok/s  x one stream  per-stream  x one stream"
       "  tokens  seconds\n";
  for (const ConcurrentLevel& l : r.levels) {
    const double per = l.streams > 0 ? l.steady_tps / l.streams : 0.0;
    const ConcurrentLevel* one = nullptr;
    for (const ConcurrentLevel& k : r.levels)
      if (k.streams == 1) one = &k;
    const double per_ratio = one && one->steady_tps > 0 ? per / one->steady_tps : 0.0;
    std::snprintf(line, sizeof line, "%7d  %17.3f  %12.2f  %20.3f  %12.2f  %10.3f  %12.2f  %6lld  %7.2f\n", l.streams,
                  l.decode_only_tps, l.decode_only_ratio, l.steady_tps, l.steady_ratio, per, per_ratio,
                  static_cast<long long>(l.steady_tokens), l.steady_s);
    o << line;
  }
  return o.str();
}

std::string concurrent_bench_json(const ConcurrentBenchResult& r) {
  nlohmann::json j;
  j["model_path"] = r.model_path;
  j["model_name"] = r.model_name;
  j["cpu"] = r.cpu;
  j["kernel_isa"] = r.kernel_isa;
  j["threads"] = r.threads;
  j["prompt_tokens"] = r.prompt_tokens;
  j["gen_tokens"] = r.gen_tokens;
  j["session_tps"] = r.session_tps;
  j["levels"] = nlohmann::json::array();
  for (const ConcurrentLevel& l : r.levels)
    j["levels"].push_back({{"streams", l.streams},
                           {"finished_early", l.finished_early},
                           {"decode_tokens", l.decode_tokens},
                           {"window_s", l.window_s},
                           {"aggregate_tps", l.aggregate_tps},
                           {"per_stream_tps", l.per_stream_tps},
                           {"per_stream_min_tps", l.per_stream_min_tps},
                           {"ttft_mean_s", l.ttft_mean_s},
                           {"decode_steps", l.decode_steps},
                           {"aggregate_ratio", l.aggregate_ratio},
                           {"per_stream_ratio", l.per_stream_ratio},
                           {"decode_only_tps", l.decode_only_tps},
                           {"decode_only_ratio", l.decode_only_ratio},
                           {"steady_tps", l.steady_tps},
                           {"steady_ratio", l.steady_ratio},
                           {"steady_tokens", l.steady_tokens},
                           {"steady_s", l.steady_s}});
  return j.dump(2) + "\n";
}

}  // namespace qins
