// `qins bench`. Order matters for the memory figures: the bandwidth buffer is freed and the
// peak-RSS counter reset before the model loads; the QINS run comes first, then the baselines,
// each loaded afresh (warm page cache) and freed before the next.
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

#if defined(__linux__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace qins {

namespace {


// ---- plain-read bandwidth -------------------------------------------------------------------

#if defined(__x86_64__)
__attribute__((target("avx512f"))) uint64_t sum_avx512(const uint64_t* p, int64_t n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {  // 256 bytes per iteration, four independent accumulators
    a0 = _mm512_add_epi64(a0, _mm512_loadu_si512(p + i));
    a1 = _mm512_add_epi64(a1, _mm512_loadu_si512(p + i + 8));
    a2 = _mm512_add_epi64(a2, _mm512_loadu_si512(p + i + 16));
    a3 = _mm512_add_epi64(a3, _mm512_loadu_si512(p + i + 24));
  }
  alignas(64) uint64_t lanes[8];
  _mm512_store_si512(lanes, _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
  uint64_t s = 0;
  for (uint64_t v : lanes) s += v;
  for (; i < n; ++i) s += p[i];
  return s;
}
#endif

uint64_t sum_plain(const uint64_t* p, int64_t n) {  // integer adds: the compiler may vectorise freely
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += p[i];
    s1 += p[i + 1];
    s2 += p[i + 2];
    s3 += p[i + 3];
  }
  for (; i < n; ++i) s0 += p[i];
  return s0 + s1 + s2 + s3;
}

uint64_t sum_words(const uint64_t* p, int64_t n) {
#if defined(__x86_64__)
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  if (avx512) return sum_avx512(p, n);
#endif
  return sum_plain(p, n);
}

// ---- the measured runs ----------------------------------------------------------------------

std::vector<int> prompt_ids(Engine& engine, int n) {
  std::vector<int> text = engine.tokenize(fixture_corpus(), false);
  std::vector<int> ids{engine_internals(engine).weights.config.bos_token_id};
  if (text.empty()) text.push_back(engine_internals(engine).weights.config.bos_token_id);
  for (size_t i = 0; static_cast<int>(ids.size()) < n; ++i) ids.push_back(text[i % text.size()]);
  ids.resize(static_cast<size_t>(std::max(1, n)));
  return ids;
}

int64_t streamed_bytes(const Phi3Weights& w) {
  int64_t n = w.lm_head->weight_bytes() + w.embed->dim() + 4;  // the embedding lookup reads one row
  for (const auto& l : w.layers)
    n += l.qkv->weight_bytes() + l.o->weight_bytes() + l.gate_up->weight_bytes() + l.down->weight_bytes();
  return n;
}

// Swaps every projection (and the lm_head) for a baseline; the embedding stays (one row per token).
// variant: naive | bf16 | fp32, or bf16-4k | fp32-4k: the dense weights left where torch
// allocates them (4 KiB pages here), i.e. plain torch::linear as a user would get it.
void convert_weights(Phi3Weights& w, const std::string& variant) {
  const bool small_pages = variant.size() > 3 && variant.compare(variant.size() - 3, 3, "-4k") == 0;
  const std::string base = small_pages ? variant.substr(0, variant.size() - 3) : variant;
  auto swap = [&](std::unique_ptr<LinearOp>& op) {
    auto* q = dynamic_cast<QinsLinear*>(op.get());
    if (!q) return;
    if (base == "naive") {
      op = std::make_unique<NaiveQinsLinear>(q->module());
      return;
    }
    const torch::ScalarType dt = base == "bf16" ? torch::kBFloat16 : torch::kFloat32;
    const torch::Tensor full = q->module()->dequantize();  // [out, in] f32
    torch::Tensor dense;
    if (small_pages) {
      dense = full.to(dt).contiguous();
    } else {
      // Baseline weights on huge pages like the codes (core::empty_large), so the comparison is
      // about the kernels, not the page size.
      dense = core::empty_large(full.sizes(), dt);
      dense.copy_(full);
      core::promote_to_huge_pages(dense);  // as the engine does for its own weights
    }
    op.reset();  // free the codes before the next layer's expansion
    op = std::make_unique<DenseLinear>(dense);
  };
  for (auto& l : w.layers)
    for (auto* op : {&l.qkv, &l.o, &l.gate_up, &l.down}) swap(*op);
  swap(w.lm_head);
}


// A KV cache where a chat session's ends up: preallocated, then moved onto huge pages (the
// session does that in the background; here it is done before measuring). Returns the bytes moved.
KvCache session_like_cache(const Engine::Impl& e, int64_t capacity, int64_t* moved = nullptr) {
  KvCache cache = make_kv_cache(e.weights.config, capacity, e.kv_dtype);
  const int64_t n = promote_kv_cache(cache);
  if (moved) *moved = n;
  return cache;
}

// The first `depth` positions of every layer filled with random K/V (attention costs the same
// whatever the values); n_past is left to the caller.
void fill_depth(KvCache& cache, int64_t depth) {
  cache.k.narrow(2, 0, depth).normal_();
  cache.v.narrow(2, 0, depth).normal_();
}

// One decoded token as the chat loop runs it: decode_step where the graph has row paths (QINS),
// else forward() (the dense baselines). Returns the logits: buf's, or held by `held`.
const float* step(Phi3Weights& w, int64_t id, KvCache& cache, const ForwardOptions& fo, std::vector<float>& buf,
                  torch::Tensor& held) {
  if (buf.size() < static_cast<size_t>(w.lm_head->out_features())) buf.resize(static_cast<size_t>(w.lm_head->out_features()));
  if (decode_step(w, id, cache, buf.data(), fo.act_dtype)) return buf.data();
  int64_t one = id;
  held = forward(w, torch::from_blob(&one, {1, 1}, torch::kInt64), &cache, fo).reshape({-1}).contiguous();
  return held.data_ptr<float>();
}

int greedy(Sampler& s, const float* logits, int n_vocab, std::vector<float>& row, std::vector<int>& hist) {
  std::copy_n(logits, n_vocab, row.begin());
  const int id = s.sample(row.data(), n_vocab, hist);
  hist.push_back(id);
  return id;
}

// What one variant's measurements share: the graph, a session-like cache, greedy sampling.
struct VariantRig {
  Engine::Impl& e;
  Phi3Weights& w;
  KvCache cache;
  ForwardOptions fo;
  Sampler sampler;
  int n_vocab;
  std::vector<float> row, step_buf;
  std::vector<int> hist;
  torch::Tensor held;
  int id = 0;  // the last token sampled

  // Greedy next token after `id`, one decode step.
  void next() { id = greedy(sampler, step(w, id, cache, fo, step_buf, held), n_vocab, row, hist); }
};

SamplingParams greedy_params() {
  SamplingParams sp;
  sp.temperature = 0.0f;
  sp.random_seed = false;
  return sp;
}

torch::Tensor ids_tensor(const std::vector<int>& v) {
  return torch::tensor(std::vector<int64_t>(v.begin(), v.end()), torch::kInt64).unsqueeze(0);  // [1, T]
}

// Warm-up (first-call allocations, lazy initialisation): a short prompt and two steps.
void warm_up(VariantRig& r, const std::vector<int>& ids) {
  forward(r.w, ids_tensor(std::vector<int>(ids.begin(), ids.begin() + std::min<size_t>(8, ids.size()))), &r.cache, r.fo);
  std::vector<float> buf;
  torch::Tensor held;
  for (int i = 0; i < 2; ++i) step(r.w, ids[0], r.cache, r.fo, buf, held);
  r.cache.n_past = 0;
}

// The projections alone at batch 1, called the way the decode step calls them (row path
// where there is one): what a perfect graph would cost per token.
class ProjectionPass {
 public:
  ProjectionPass(Phi3Weights& w, torch::ScalarType act_dtype) {
    int64_t widest = 0;
    for (auto& l : w.layers)
      for (LinearOp* op : {l.qkv.get(), l.o.get(), l.gate_up.get(), l.down.get()}) ops_.emplace_back(op, torch::Tensor());
    ops_.emplace_back(w.lm_head.get(), torch::Tensor());
    for (auto& [op, x] : ops_) {
      x = torch::randn({1, 1, op->in_features()}).to(act_dtype);  // [1, 1, in]
      widest = std::max(widest, op->out_features());
    }
    y_row_.resize(static_cast<size_t>(widest));
  }
  double seconds() {
    const auto t = Clock::now();
    for (auto& [op, x] : ops_) {
      if (op->has_row_path() && x.scalar_type() == torch::kFloat32) op->forward_row(x.data_ptr<float>(), y_row_.data());
      else op->forward(x);
    }
    return seconds_since(t);
  }

 private:
  std::vector<std::pair<LinearOp*, torch::Tensor>> ops_;
  std::vector<float> y_row_;
};

// Prompt -> first token; then `gen` tokens right after the prompt.
void measure_prompt_and_decode(VariantRig& r, const std::vector<int>& ids, int gen, BenchRun& run,
                               const BenchOptions& o, const BenchLog& log) {
  auto t0 = Clock::now();
  ForwardOptions pf = r.fo;  // the prompt's path as Session picks it (short prompts: the row paths)
  pf.rows_path = static_cast<int64_t>(ids.size()) <= rows_prefill_max(r.w);
  torch::Tensor logits = forward(r.w, ids_tensor(ids), &r.cache, pf).reshape({-1});
  const double prefill_s = seconds_since(t0);
  r.id = greedy(r.sampler, logits.data_ptr<float>(), r.n_vocab, r.row, r.hist);
  run.ttft_s = seconds_since(t0);
  run.prefill_tps = o.prompt_tokens / prefill_s;
  if (log) log(run.variant + ": prefill " + std::to_string(run.prefill_tps) + " tok/s");

  // The memory bandwidth of this shared machine moves from minute to minute (other tenants of the
  // host; one reading before the whole decode gave 47-79 % for the same build within minutes): the
  // decode runs in rounds of about 8 tokens, each right after a plain read, and is rated round by
  // round against its own read (median over the rounds, in run_benchmark).
  const int rounds = std::clamp(gen / 8, 1, 16);
  ReadProbe probe(o.decode_bandwidth_bytes, at::get_num_threads());  // one buffer for every round's read
  double decode_s = 0.0;
  long faults = 0;
  bool faults_ok = true;
  run.round_tps.clear();
  run.round_bw_gbs.clear();
  for (int k = 0; k < rounds; ++k) {
    const int n = gen * (k + 1) / rounds - gen * k / rounds;
    run.round_bw_gbs.push_back(probe.read() / 1e9);
    const long faults0 = minor_faults();
    const auto t = Clock::now();
    for (int i = 0; i < n; ++i) r.next();
    const double s = seconds_since(t);
    const long faults1 = minor_faults();
    faults_ok = faults_ok && faults0 >= 0 && faults1 >= 0;
    faults += faults1 - faults0;
    decode_s += s;
    run.round_tps.push_back(n / s);
  }
  run.decode_tps = gen / decode_s;
  run.bandwidth_gbs = median(run.round_bw_gbs);
  if (faults_ok) run.faults_per_token = static_cast<double>(faults) / gen;
  if (log) log(run.variant + ": decode " + std::to_string(run.decode_tps) + " tok/s");
}

// Decode deeper in the context: the cache holds `depth` positions (random K/V: attention costs
// the same whatever the values). Token by token, a projections-only pass and a whole step take
// turns (each step at the same depth), so both see the same memory bandwidth: the host's moves
// by tens of percent from one minute to the next, which made two separate measurements
// disagree about the graph's own overhead.
void measure_depth(VariantRig& r, ProjectionPass& gemv, BenchRun& run, const BenchOptions& o, const BenchLog& log) {
  const Phi3Config& c = r.w.config;
  fill_depth(r.cache, o.depth);
  run.kv_bytes_depth = 2 * c.num_hidden_layers * c.num_key_value_heads * o.depth * c.head_dim * r.cache.k.element_size();
  double steps = 0.0, gemvs = 0.0;
  for (int i = 0; i < o.gen_tokens; ++i) {
    gemvs += gemv.seconds();
    r.cache.n_past = o.depth;
    const auto t = Clock::now();
    r.next();
    steps += seconds_since(t);
  }
  run.decode_tps_depth = o.gen_tokens / steps;
  run.step_s = steps / o.gen_tokens;
  run.gemv_only_s = gemvs / o.gen_tokens;
  if (log) log(run.variant + ": decode at depth " + std::to_string(o.depth) + ": " + std::to_string(run.decode_tps_depth) + " tok/s");
}

// `res` is given for the QINS run only (its memory figures); baselines decode fewer tokens
// (min(gen, 8), naive 2) and skip the depth run: they are 3-30x slower and only their ratio matters.
void run_variant(Engine& engine, BenchRun& run, const BenchOptions& o, const BenchLog& log, BenchResult* res) {
  const bool baseline = res == nullptr;
  // The naive baseline expands every matrix on every call (~20 s a token at Phi-3.5 size): 2 tokens.
  const bool naive = run.variant == "naive";
  const int gen = baseline ? std::min(o.gen_tokens, naive ? 2 : 8) : o.gen_tokens;
  torch::NoGradGuard no_grad;
  auto& e = engine_internals(engine);
  run.weight_bytes = e.weights.weight_bytes();
  run.bytes_per_token = streamed_bytes(e.weights);
  const std::vector<int> ids = prompt_ids(engine, o.prompt_tokens);
  const int capacity = std::max<int>(o.context, o.prompt_tokens + o.gen_tokens + 8);
  const auto t_cache = Clock::now();
  int64_t moved = 0;
  KvCache cache = session_like_cache(e, capacity, &moved);
  if (log && moved > 0)
    log(run.variant + ": KV cache " + gb(moved) + " moved onto huge pages in " + std::to_string(seconds_since(t_cache)) + " s");
  const int n_vocab = std::min<int>(e.weights.config.vocab_size, e.tokenizer->vocab_size());
  VariantRig r{e, e.weights, std::move(cache), ForwardOptions{e.act_dtype, /*last_only=*/true}, Sampler(greedy_params()),
               n_vocab, std::vector<float>(static_cast<size_t>(n_vocab)), {}, ids, torch::Tensor()};

  warm_up(r, ids);
  measure_prompt_and_decode(r, ids, gen, run, o, log);
  if (res && res->rss_after_session == 0) {
    const MemoryReading m = read_memory();
    res->rss_after_session = m.resident_bytes;
    res->peak_rss_run = m.peak_resident_bytes;
  }
  ProjectionPass gemv(r.w, e.act_dtype);
  if (!baseline && o.depth > 0 && o.depth + o.gen_tokens + 1 <= r.cache.capacity()) {
    measure_depth(r, gemv, run, o, log);
  } else if (!naive) {
    double best = 1e30;
    for (int rep = 0; rep < (baseline ? 1 : 3); ++rep) best = std::min(best, gemv.seconds());
    run.gemv_only_s = best;
  }
  run.ran = true;
}

}  // namespace

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

ReadProbe::ReadProbe(int64_t bytes, int threads) : threads_(std::max(1, threads)), words_(std::max<int64_t>(bytes / 8, 1)) {
  // On huge pages, like the model's weights (core::empty_large + promote_to_huge_pages below).
  auto tensor = std::make_shared<torch::Tensor>(core::empty_large({words_}, torch::kInt64));
  uint64_t* const buf = reinterpret_cast<uint64_t*>(tensor->data_ptr());
  storage_ = tensor;
  buf_ = buf;
  const int64_t words = words_;
  const int T = threads_;
  // First touch from the threads that will read it.
  std::vector<std::thread> pool;
  for (int t = 0; t < T; ++t)
    pool.emplace_back([=] {
      for (int64_t i = words * t / T; i < words * (t + 1) / T; ++i) buf[i] = static_cast<uint64_t>(i);
    });
  for (auto& th : pool) th.join();
  core::promote_to_huge_pages(*tensor);
}

double ReadProbe::read() {
  const uint64_t* const buf = buf_;
  const int64_t words = words_;
  const int T = threads_;
  double best = 0;
  volatile uint64_t sink = 0;
  for (int pass = 0; pass < 5; ++pass) {
    std::vector<uint64_t> sums(static_cast<size_t>(T));
    std::vector<std::thread> pool;
    const auto t0 = Clock::now();
    for (int t = 0; t < T; ++t)
      pool.emplace_back([&, t] {
        const int64_t a = words * t / T, b = words * (t + 1) / T;
        sums[static_cast<size_t>(t)] = sum_words(buf + a, b - a);
      });
    for (auto& th : pool) th.join();
    const double s = seconds_since(t0);
    for (auto v : sums) sink = sink + v;
    best = std::max(best, static_cast<double>(words * 8) / s);
  }
  return best;
}

double measure_read_bandwidth(int64_t bytes, int threads) { return ReadProbe(bytes, threads).read(); }

namespace {

// Decode `n` greedy tokens after `ids` on a fresh cache; tokens/s of the decode part.
struct DecodeRig {
  Engine* engine;
  KvCache cache;
  std::vector<int> hist;
  int id = 0;
};

double decode_round(DecodeRig& d, int n) {
  auto& e = engine_internals(*d.engine);
  const ForwardOptions fo{e.act_dtype, /*last_only=*/true};
  SamplingParams sp;
  sp.temperature = 0.0f;
  sp.random_seed = false;
  Sampler sampler(sp);
  const int n_vocab = std::min<int>(e.weights.config.vocab_size, e.tokenizer->vocab_size());
  std::vector<float> row(static_cast<size_t>(n_vocab));
  if (d.cache.n_past + n + 1 > d.cache.capacity()) d.cache.n_past = 0;  // speed only: start over
  std::vector<float> buf;
  torch::Tensor held;
  const auto t = Clock::now();
  for (int i = 0; i < n; ++i) d.id = greedy(sampler, step(e.weights, d.id, d.cache, fo, buf, held), n_vocab, row, d.hist);
  return n / seconds_since(t);
}

// Both engines stay loaded (QINS + one dense baseline at a time) and decode in alternating rounds.
void run_paired(const std::string& path, const LoadOptions& lo_in, const BenchOptions& o, const BenchLog& log,
                BenchResult* r) {
  torch::NoGradGuard no_grad;
  LoadOptions lo = lo_in;
  lo.context_length = 512;
  for (const std::string& v : o.baselines) {
    // bf16 only: the decode target is set against it, and an fp32 copy next to the codes would
    // need 5x the model's memory.
    if (v != "bf16") continue;
    PairedDecode pd;
    pd.baseline = v;
    pd.tokens = 8;
    auto qe = Engine::load(path, lo);
    qe->wait_for_background_work();
    auto be = Engine::load(path, lo);
    be->stop_background_work();
    convert_weights(engine_internals(*be).weights, v);
    apply_thread_policy(engine_internals(*be).weights);  // dense baselines get the BLAS threads back
    DecodeRig a{qe.get(), session_like_cache(engine_internals(*qe), 512), {}, 1};
    DecodeRig b{be.get(), session_like_cache(engine_internals(*be), 512), {}, 1};
    decode_round(a, 2);  // warm-up
    decode_round(b, 2);
    std::vector<double> ratios;
    for (int round = 0; round < o.paired_rounds; ++round) {
      pd.qins_tps.push_back(decode_round(a, pd.tokens * 4));  // QINS is ~4x faster: similar wall time
      pd.base_tps.push_back(decode_round(b, pd.tokens));
      ratios.push_back(pd.qins_tps.back() / pd.base_tps.back());
      if (log)
        log("paired " + v + " round " + std::to_string(round + 1) + ": qins " + std::to_string(pd.qins_tps.back()) +
            " tok/s, " + v + " " + std::to_string(pd.base_tps.back()) + " tok/s");
    }
    std::sort(ratios.begin(), ratios.end());
    pd.median_ratio = ratios.empty() ? 0.0 : ratios[ratios.size() / 2];
    r->paired.push_back(pd);
  }
}

}  // namespace

double run_decode_profile(const std::string& path, const BenchOptions& o, const BenchLog& log) {
  configure_threads(o.threads);
  LoadOptions lo;
  lo.threads = o.threads;
  lo.context_length = std::max(o.context, o.depth + 8);
  auto engine = Engine::load(path, lo);
  engine->wait_for_background_work();
  torch::NoGradGuard no_grad;
  auto& e = engine_internals(*engine);
  Phi3Weights& w = e.weights;
  KvCache cache = session_like_cache(e, lo.context_length);
  if (o.depth > 0) fill_depth(cache, o.depth);
  const ForwardOptions fo{e.act_dtype, /*last_only=*/true};
  std::vector<float> buf;
  torch::Tensor held;
  auto one = [&](int64_t id) {
    cache.n_past = o.depth;
    step(w, id, cache, fo, buf, held);
  };
  for (int i = 0; i < 2; ++i) one(1);
  if (log) log("profile: " + std::to_string(o.profile_steps) + " decode steps at depth " + std::to_string(o.depth));
  const auto t = Clock::now();
  for (int i = 0; i < o.profile_steps; ++i) one(1 + i % 64);
  return o.profile_steps > 0 ? seconds_since(t) / o.profile_steps : 0.0;
}

namespace {

// Cold load (page cache dropped for the file, if we can), then a warm one for the memory figures;
// returns the warm engine once its background move onto huge pages is done.
std::unique_ptr<Engine> load_measured(const std::string& path, const LoadOptions& lo, BenchResult& r, const BenchLog& log) {
  r.cold_method = drop_page_cache(path);
  if (!r.cold_method.empty()) {
    r.cold_resident_fraction = page_cache_fraction(path);
    auto t = Clock::now();
    auto cold = Engine::load(path, lo);
    r.load_cold_s = seconds_since(t);
    if (log) log("cold load: " + std::to_string(r.load_cold_s) + " s (" + r.cold_method + ")");
  } else {
    r.cold_method = "not possible here (no drop_caches, no posix_fadvise)";
  }
  reset_peak_rss();
  auto t = Clock::now();
  auto engine = Engine::load(path, lo);
  r.load_warm_s = seconds_since(t);
  const MemoryReading m = read_memory();
  r.rss_after_load = m.resident_bytes;
  r.peak_rss_load = m.peak_resident_bytes;
  const ModelInfo& info = engine->info();
  r.model_name = info.name;
  r.n_params = info.n_params;
  r.file_bytes = info.file_bytes;
  r.weight_bytes = info.weight_bytes;
  r.kv_cache_bytes = info.kv_cache_bytes;
  if (log) log("warm load: " + std::to_string(r.load_warm_s) + " s, RSS " + gb(r.rss_after_load) + ", peak " + gb(r.peak_rss_load));
  // The engine moves its weights onto huge pages in the background after load; measure speed
  // once that is done (and report how long it took).
  engine->wait_for_background_work();
  const Engine::BackgroundWork bw = engine->background_work();
  r.huge_page_s = bw.seconds;
  r.huge_page_bytes = bw.bytes;
  r.resident_huge_bytes = read_memory().huge_page_bytes;
  if (log)
    log("huge pages: " + gb(bw.bytes) + " moved in " + std::to_string(bw.seconds) + " s after load (background); " +
        gb(r.resident_huge_bytes) + " of the process on huge pages");
  return engine;
}

// One dense / naive baseline: loaded afresh, its projections swapped, measured; skipped where
// the machine has not the memory for it.
BenchRun run_baseline(const std::string& path, const LoadOptions& lo, const std::string& v, const BenchOptions& o,
                      const BenchResult& r, const BenchLog& log) {
  BenchRun b;
  b.variant = v;
  // Memory the baseline needs: its weights plus the KV cache plus working room.
  const int64_t elem = v.rfind("fp32", 0) == 0 ? 4 : v.rfind("bf16", 0) == 0 ? 2 : 1;
  const int64_t need = r.n_params * elem + r.kv_cache_bytes + (int64_t(1) << 29);
  const int64_t avail = read_memory().available_bytes;
  if (avail > 0 && need > avail) {
    b.note = "skipped: needs about " + gb(need) + ", " + gb(avail) + " available";
    if (log) log(v + ": " + b.note);
    return b;
  }
  try {
    const auto t = Clock::now();
    auto eng = Engine::load(path, lo);
    eng->stop_background_work();  // the codes are about to be replaced
    convert_weights(engine_internals(*eng).weights, v);
    apply_thread_policy(engine_internals(*eng).weights);  // dense baselines get the BLAS threads back
    b.setup_s = seconds_since(t);
    run_variant(*eng, b, o, log, nullptr);
  } catch (const std::bad_alloc&) {
    b.note = "out of memory";
  } catch (const c10::Error& ex) {
    b.note = std::string("failed: ") + ex.what_without_backtrace();
  }
  return b;
}

}  // namespace

BenchResult run_bench(const std::string& path, const BenchOptions& o, const BenchLog& log) {
  BenchResult r;
  r.model_path = path;
  configure_threads(o.threads);
  r.threads = at::get_num_threads();
  r.cpu = cpuinfo_field("model name");
  r.cpu_flags = relevant_flags();
  r.kernel_isa = kernel_paths();
  r.context = o.context;
  r.depth = o.depth;
  r.prompt_tokens = o.prompt_tokens;
  r.gen_tokens = o.gen_tokens;

  r.bandwidth_gbs = measure_read_bandwidth(static_cast<int64_t>(o.bandwidth_gib * (1 << 30)), r.threads) / 1e9;
  if (log) log("plain-read bandwidth: " + std::to_string(r.bandwidth_gbs) + " GB/s with " + std::to_string(r.threads) + " threads");

  LoadOptions lo;
  lo.threads = o.threads;
  lo.context_length = std::max(o.context, o.prompt_tokens + o.gen_tokens + 8);
  auto engine = load_measured(path, lo, r, log);

  BenchRun q;
  q.variant = "qins";
  q.setup_s = r.load_warm_s;
  run_variant(*engine, q, o, log, &r);
  r.runs.push_back(q);
  engine.reset();

  for (const std::string& v : o.baselines) r.runs.push_back(run_baseline(path, lo, v, o, r, log));
  if (o.paired_rounds > 0) run_paired(path, lo, o, log, &r);
  const double bw = r.bandwidth_gbs * 1e9;
  for (auto& run : r.runs) {
    if (!run.ran) continue;
    std::vector<double> pct;
    for (size_t k = 0; k < run.round_tps.size() && k < run.round_bw_gbs.size(); ++k)
      if (run.round_bw_gbs[k] > 0)
        pct.push_back(100.0 * static_cast<double>(run.bytes_per_token) * run.round_tps[k] / (run.round_bw_gbs[k] * 1e9));
    run.bandwidth_pct = !pct.empty() ? median(pct) : 100.0 * static_cast<double>(run.bytes_per_token) * run.decode_tps / bw;
  }
  return r;
}

}  // namespace qins
