// `qins bench`: load time, memory, time to first token, prefill and decode speed of a model,
// the memory-bandwidth roofline measured in the same run, and baselines (the same graph with
// fp32 / bf16 torch::linear weights, and the naive dequantize-then-linear) run one after another.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace qins {

struct BenchOptions {
  int prompt_tokens = 64;
  int gen_tokens = 32;
  int threads = 0;           // 0 = all cores
  int context = 4096;        // KV cache capacity (bf16)
  int depth = 1024;          // also decode with this many positions already in the cache (0 = skip)
  std::vector<std::string> baselines;  // any of "naive", "bf16", "fp32"
  double bandwidth_gib = 1.0;          // buffer for the plain-read bandwidth measurement
  int64_t decode_bandwidth_bytes = int64_t{256} << 20;  // the re-measurement before each decode (8x L3)
  // Paired decode: keep the QINS engine and the bf16 baseline loaded together and alternate
  // short decode rounds, so both see the same memory bandwidth (0 = off).
  int paired_rounds = 0;
  // Profile mode (run_decode_profile): only this many decode steps at `depth`, nothing else.
  int profile_steps = 0;
};

// One variant of the graph (qins, naive, bf16, fp32).
struct BenchRun {
  std::string variant;
  bool ran = false;
  std::string note;              // why it did not run, if it did not
  double setup_s = 0.0;          // load (+ conversion of the weights for baselines)
  int64_t weight_bytes = 0;      // in memory
  int64_t bytes_per_token = 0;   // weight bytes streamed per decoded token
  double ttft_s = 0.0;           // prompt in -> first token sampled (prefill + lm_head + sampling)
  double prefill_tps = 0.0;
  double decode_tps = 0.0;       // decode right after the prompt
  double decode_tps_depth = 0.0; // decode with `depth` positions in the cache
  double gemv_only_s = 0.0;      // one token's projections alone (every LinearOp at batch 1; with a depth:
                                 // measured in turns with the steps at depth)
  double step_s = 0.0;           // one decode step at depth (whole forward + sampling)
  int64_t kv_bytes_depth = 0;    // K/V bytes one decode step at depth reads
  // The decode runs in rounds, each right after a plain read of the same threads (this host's
  // bandwidth moves from minute to minute): per round its tok/s and that read's GB/s.
  std::vector<double> round_tps, round_bw_gbs;
  double bandwidth_gbs = 0.0;    // median of round_bw_gbs
  double bandwidth_pct = 0.0;    // median over rounds of bytes_per_token * round_tps / round_bw_gbs
  double faults_per_token = -1;  // minor page faults per decode step after warm-up (fresh pages touched)
};

// One paired comparison: alternating rounds of `tokens` decode steps, QINS then the baseline.
struct PairedDecode {
  std::string baseline;
  int tokens = 0;
  std::vector<double> qins_tps, base_tps;  // per round
  double median_ratio = 0.0;               // median over rounds of qins_tps / base_tps
};

struct BenchResult {
  std::string model_path, model_name, cpu, cpu_flags, kernel_isa;
  int threads = 0;
  int64_t n_params = 0, file_bytes = 0, weight_bytes = 0, kv_cache_bytes = 0;
  int context = 0, depth = 0, prompt_tokens = 0, gen_tokens = 0;
  double bandwidth_gbs = 0.0;          // plain parallel read, GB/s (1e9)
  double load_cold_s = -1.0;           // < 0: could not drop the page cache
  std::string cold_method;             // how the page cache was dropped, or why not
  double cold_resident_fraction = -1;  // share of the file in the page cache before the cold load
  double load_warm_s = 0.0;
  double huge_page_s = 0.0;     // background move of the weights onto huge pages after the warm load
  int64_t huge_page_bytes = 0;
  int64_t resident_huge_bytes = 0;  // AnonHugePages of the process after that
  int64_t rss_after_load = 0, peak_rss_load = 0;  // warm load: VmRSS after, VmHWM during
  int64_t rss_after_session = 0;                  // after the KV cache is allocated and a reply ran
  int64_t peak_rss_run = 0;
  std::vector<BenchRun> runs;
  std::vector<PairedDecode> paired;
};

using BenchLog = std::function<void(const std::string&)>;

// Throws qins::Error for an unreadable model.
BenchResult run_bench(const std::string& model_path, const BenchOptions& options, const BenchLog& log = {});
std::string bench_text(const BenchResult& r);
std::string bench_json(const BenchResult& r);

// Plain streaming read bandwidth (bytes / s) over `bytes` with `threads` threads (best of passes).
double measure_read_bandwidth(int64_t bytes, int threads);

// The same read, its buffer made once and read again at each read(): a decode's rounds each
// re-measure the bandwidth without paying, every round, the new buffer's first touch and its move
// onto huge pages (about 1 s for 256 MB on the development VM, longer than the round it rates).
class ReadProbe {
 public:
  ReadProbe(int64_t bytes, int threads);
  double read();  // bytes / s, the best of 5 passes

 private:
  std::shared_ptr<void> storage_;  // the buffer's owner (a tensor on huge pages where there are any)
  const uint64_t* buf_ = nullptr;
  int threads_;
  int64_t words_;
};
// The median of v (the mean of the middle two for an even count; 0 for none).
double median(std::vector<double> v);

// For `perf record`: loads the model, waits for the background work, fills the cache to
// `o.depth` positions and runs `o.profile_steps` decode steps there (each at the same depth)
// after two warm-up steps; nothing else runs, so a profile of the process is a profile of the
// decode step. Returns seconds per step.
double run_decode_profile(const std::string& path, const BenchOptions& o, const BenchLog& log);

// `qins bench --concurrent 1,2,4,8`: N greedy streams at once through the BatchScheduler
// (parallel = N), for each N in one run, on one loaded engine.
struct ConcurrentLevel {
  int streams = 0;
  int finished_early = 0;        // streams that hit a stop token before gen_tokens
  int64_t decode_tokens = 0;     // tokens decoded after each stream's first, all streams
  double window_s = 0.0;         // earliest first token of the level -> last stream done
  double aggregate_tps = 0.0;    // decode_tokens / window_s
  double per_stream_tps = 0.0;   // mean over the streams of each one's own decode speed
  double per_stream_min_tps = 0.0;
  double ttft_mean_s = 0.0;      // submit -> first token, mean over the streams
  int64_t decode_steps = 0;      // scheduler steps (each runs every decoding stream)
  double aggregate_ratio = 0.0;  // vs one stream (the level with 1 stream of this run; 0 if none)
  double per_stream_ratio = 0.0;
  // Decode steps alone, from the scheduler's counters (prefill chunks between steps excluded):
  // decode_only_tps = tokens from decode steps / seconds in them; steady_tps = the same over the
  // steps in which all N streams were decoding (steady_s seconds, steady_tokens tokens).
  double decode_only_tps = 0.0, steady_tps = 0.0, steady_s = 0.0;
  int64_t steady_tokens = 0;
  double decode_only_ratio = 0.0, steady_ratio = 0.0;  // vs one stream, as aggregate_ratio
};

struct ConcurrentBenchResult {
  std::string model_path, model_name, cpu, kernel_isa;
  int threads = 0, prompt_tokens = 0, gen_tokens = 0;
  double session_tps = 0.0;  // one stream through Session::complete (no scheduler), same prompt
  std::vector<ConcurrentLevel> levels;
};

// Loads the model, then for each count in `streams` runs that many streams (raw prompts of about
// o.prompt_tokens tokens, o.gen_tokens greedy tokens each) submitted together. Throws Error for an
// unreadable model or a bad count.
ConcurrentBenchResult run_concurrent_bench(const std::string& model_path, const BenchOptions& o,
                                           const std::vector<int>& streams, const BenchLog& log = {});
std::string concurrent_bench_text(const ConcurrentBenchResult& r);
std::string concurrent_bench_json(const ConcurrentBenchResult& r);

}  // namespace qins
