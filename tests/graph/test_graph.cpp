// The Phi-3 graph against an independent, deliberately naive re-implementation (plain loops over
// heads, formulas straight from PHI3.md), and the KV cache against full forwards.
#include <gtest/gtest.h>
#include <ATen/Parallel.h>

#include <cmath>
#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

#include "fixture_dir.h"
#include "qins/core/blas_threads.h"
#include "qins/runtime/engine.h"
#include "qins/io/hf_folder.h"
#include "qins/graph/phi3_model.h"
#include "qins/io/safetensors.h"

namespace qins {
namespace {

using Vec = std::vector<double>;
using Mat = std::vector<Vec>;  // [rows][cols]

// ---- The naive twin ------------------------------------------------------------------------
struct NaivePhi3 {
  Phi3Config c;
  std::unique_ptr<st::Checkpoint> ck;

  explicit NaivePhi3(const std::string& dir) : c(read_phi3_config(dir + "/config.json")), ck(st::Checkpoint::open_dir(dir)) {}

  Mat matrix(const std::string& name) const {
    const auto& v = ck->get(name);
    std::vector<float> f(static_cast<size_t>(v.numel()));
    st::to_float32(v, f.data());
    const size_t rows = static_cast<size_t>(v.shape[0]), cols = static_cast<size_t>(v.shape[1]);
    Mat m(rows, Vec(cols));
    for (size_t r = 0; r < rows; ++r)
      for (size_t k = 0; k < cols; ++k) m[r][k] = f[r * cols + k];
    return m;
  }
  Vec vector(const std::string& name) const {
    const auto& v = ck->get(name);
    std::vector<float> f(static_cast<size_t>(v.numel()));
    st::to_float32(v, f.data());
    return Vec(f.begin(), f.end());
  }
  static Vec matvec(const Mat& w, const Vec& x) {
    Vec y(w.size(), 0.0);
    for (size_t r = 0; r < w.size(); ++r)
      for (size_t k = 0; k < x.size(); ++k) y[r] += w[r][k] * x[k];
    return y;
  }
  Vec rmsnorm(const Vec& x, const Vec& w) const {
    double ms = 0;
    for (double v : x) ms += v * v;
    ms /= static_cast<double>(x.size());
    Vec y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] / std::sqrt(ms + c.rms_norm_eps) * w[i];
    return y;
  }
  // Half-split rotation of one head vector at position pos (PHI3.md §3, RoPE).
  void rope(double* v, int64_t pos, bool long_f) const {
    const int hd = c.head_dim, half = hd / 2;
    double factor = 1.0;
    if (c.has_longrope()) {
      const double ratio = double(c.max_position_embeddings) / c.original_max_position_embeddings;
      factor = ratio <= 1.0 ? 1.0 : std::sqrt(1.0 + std::log(ratio) / std::log(double(c.original_max_position_embeddings)));
    }
    std::vector<double> out(static_cast<size_t>(hd));
    for (int j = 0; j < half; ++j) {
      const double ext = c.has_longrope() ? (long_f ? c.long_factor[j] : c.short_factor[j]) : 1.0;
      const double inv_freq = 1.0 / (ext * std::pow(c.rope_theta, 2.0 * j / hd));
      const double th = static_cast<double>(pos) * inv_freq;
      const double cs = std::cos(th) * factor, sn = std::sin(th) * factor;
      out[j] = v[j] * cs - v[j + half] * sn;
      out[j + half] = v[j + half] * cs + v[j] * sn;
    }
    std::copy(out.begin(), out.end(), v);
  }

  // Logits for every position of `ids` (positions 0..T-1).
  Mat logits(const std::vector<int64_t>& ids) const {
    const int H = c.hidden_size, nh = c.num_attention_heads, nkv = c.num_key_value_heads, hd = c.head_dim;
    const size_t T = ids.size();
    const bool long_f = c.has_longrope() && static_cast<int>(T) > c.original_max_position_embeddings;
    const Mat emb = matrix("model.embed_tokens.weight");
    Mat h(T);
    for (size_t t = 0; t < T; ++t) h[t] = emb[static_cast<size_t>(ids[t])];
    for (int il = 0; il < c.num_hidden_layers; ++il) {
      const std::string p = "model.layers." + std::to_string(il) + ".";
      const Mat wqkv = matrix(p + "self_attn.qkv_proj.weight"), wo = matrix(p + "self_attn.o_proj.weight");
      const Mat wgu = matrix(p + "mlp.gate_up_proj.weight"), wd = matrix(p + "mlp.down_proj.weight");
      const Vec nin = vector(p + "input_layernorm.weight"), npost = vector(p + "post_attention_layernorm.weight");
      Mat qkv(T);
      for (size_t t = 0; t < T; ++t) {
        qkv[t] = matvec(wqkv, rmsnorm(h[t], nin));
        for (int hh = 0; hh < nh; ++hh) rope(&qkv[t][static_cast<size_t>(hh * hd)], static_cast<int64_t>(t), long_f);
        for (int g = 0; g < nkv; ++g) rope(&qkv[t][static_cast<size_t>((nh + g) * hd)], static_cast<int64_t>(t), long_f);
      }
      for (size_t t = 0; t < T; ++t) {
        Vec attn(static_cast<size_t>(nh * hd), 0.0);
        for (int hh = 0; hh < nh; ++hh) {
          const int g = hh / (nh / nkv);  // kv head serving this query head
          std::vector<double> score(t + 1, -INFINITY);
          double mx = -INFINITY;
          for (size_t s = 0; s <= t; ++s) {
            if (c.sliding_window && static_cast<int64_t>(s) <= static_cast<int64_t>(t) - *c.sliding_window) continue;
            double d = 0;
            for (int k = 0; k < hd; ++k) d += qkv[t][static_cast<size_t>(hh * hd + k)] * qkv[s][static_cast<size_t>((nh + g) * hd + k)];
            score[s] = d / std::sqrt(double(hd));
            mx = std::max(mx, score[s]);
          }
          double z = 0;
          for (auto& sc : score) z += (sc = std::exp(sc - mx));
          for (size_t s = 0; s <= t; ++s)
            for (int k = 0; k < hd; ++k)
              attn[static_cast<size_t>(hh * hd + k)] += score[s] / z * qkv[s][static_cast<size_t>((nh + nkv + g) * hd + k)];
        }
        const Vec o = matvec(wo, attn);
        for (int i = 0; i < H; ++i) h[t][static_cast<size_t>(i)] += o[static_cast<size_t>(i)];
        const Vec gu = matvec(wgu, rmsnorm(h[t], npost));
        const size_t I = gu.size() / 2;
        Vec m(I);
        for (size_t i = 0; i < I; ++i) m[i] = gu[I + i] * (gu[i] / (1.0 + std::exp(-gu[i])));
        const Vec d = matvec(wd, m);
        for (int i = 0; i < H; ++i) h[t][static_cast<size_t>(i)] += d[static_cast<size_t>(i)];
      }
    }
    const Vec nf = vector("model.norm.weight");
    const Mat lm = c.tie_word_embeddings ? emb : matrix("lm_head.weight");
    Mat out(T);
    for (size_t t = 0; t < T; ++t) out[t] = matvec(lm, rmsnorm(h[t], nf));
    return out;
  }
};

// ---- Helpers -------------------------------------------------------------------------------
Phi3Weights load_f32(const std::string& dir) {
  auto ck = st::Checkpoint::open_dir(dir);
  return load_hf_weights(*ck, read_phi3_config(dir + "/config.json"), {});
}

torch::Tensor ids_tensor(const std::vector<int64_t>& ids) {
  return torch::tensor(ids, torch::kInt64).unsqueeze(0);
}

std::vector<int64_t> some_ids(size_t n, int vocab, int salt = 0) {
  std::vector<int64_t> ids(n);
  for (size_t i = 0; i < n; ++i) ids[i] = static_cast<int64_t>((i * 37 + 11 + salt * 101) % static_cast<size_t>(vocab));
  return ids;
}

// Largest |a - b| over the logits; the naive twin works in double, the graph in float.
double max_diff(const torch::Tensor& logits /*[1, T, V]*/, const Mat& ref) {
  auto l = logits.squeeze(0).contiguous();
  double m = 0;
  for (int64_t t = 0; t < l.size(0); ++t)
    for (int64_t v = 0; v < l.size(1); ++v)
      m = std::max(m, std::abs(double(l[t][v].item<float>()) - ref[static_cast<size_t>(t)][static_cast<size_t>(v)]));
  return m;
}

// Float32 graph vs double reference: logits of magnitude ~1-10 after a few layers.
constexpr double kNaiveLogitBudget = 2e-3;
// Cached vs full forward: the same float operations in a different grouping.
constexpr double kCacheLogitBudget = 1e-4;

struct Variant {
  const char* name;
  FixtureOptions opts;
  size_t T;
};

// Test names print the variant's name, not a byte dump.
void PrintTo(const Variant& v, std::ostream* os) { *os << v.name; }

FixtureOptions opts_with(std::function<void(FixtureOptions&)> f) {
  FixtureOptions o;
  f(o);
  return o;
}

class NaiveAgreement : public ::testing::TestWithParam<Variant> {};

TEST_P(NaiveAgreement, LogitsMatchTheNaiveTwin) {
  const Variant& v = GetParam();
  const std::string dir = test::fixture(v.name, v.opts);
  NaivePhi3 naive(dir);
  auto w = load_f32(dir);
  torch::NoGradGuard ng;
  const auto ids = some_ids(v.T, naive.c.vocab_size);
  const auto logits = forward(w, ids_tensor(ids), nullptr);
  EXPECT_LT(max_diff(logits, naive.logits(ids)), kNaiveLogitBudget);
}

INSTANTIATE_TEST_SUITE_P(
    Variants, NaiveAgreement,
    ::testing::Values(
        Variant{"mha", FixtureOptions{}, 9},
        Variant{"gqa", opts_with([](FixtureOptions& o) { o.num_kv_heads = 2; }), 9},
        Variant{"tied", opts_with([](FixtureOptions& o) { o.tie_embeddings = true; }), 7},
        Variant{"window", opts_with([](FixtureOptions& o) { o.sliding_window = 4; }), 11},
        Variant{"bf16", opts_with([](FixtureOptions& o) { o.bf16 = true; }), 6},
        // LongRoPE with a small original context so both factor sets are reachable: 12 positions
        // use the short factors, 20 the long ones; the attention factor is sqrt(1 + ln 4 / ln 16).
        Variant{"longrope_short", opts_with([](FixtureOptions& o) { o.longrope = true; o.original_max_position = 16; o.max_position = 64; }), 12},
        Variant{"longrope_long", opts_with([](FixtureOptions& o) { o.longrope = true; o.original_max_position = 16; o.max_position = 64; }), 20}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(Rope, AttentionFactorOfPhi35) {
  Phi3Config c = parse_phi3_config(R"({"model_type":"phi3","hidden_size":3072,"intermediate_size":8192,
    "num_hidden_layers":32,"num_attention_heads":32,"vocab_size":32064,"max_position_embeddings":131072,
    "original_max_position_embeddings":4096,"rope_scaling":{"type":"longrope",
    "short_factor":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],
    "long_factor":[2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2]}})",
                                    "phi35.json");
  EXPECT_NEAR(c.attention_factor, 1.1902380714238083, 1e-12);
  EXPECT_FALSE(rope_needs_long(c, 4095));
  EXPECT_TRUE(rope_needs_long(c, 4096));
  auto tables = rope_tables(c, torch::tensor({0, 5}, torch::kInt64), false);
  // Position 0: cos = factor, sin = 0 for every dim.
  EXPECT_NEAR(tables.cos[0][0].item<float>(), 1.1902380714238083, 1e-6);
  EXPECT_NEAR(tables.sin[0][10].item<float>(), 0.0, 1e-7);
  // Half-split: dims j and j + 48 share one angle.
  EXPECT_FLOAT_EQ(tables.cos[1][3].item<float>(), tables.cos[1][51].item<float>());
  auto inv_short = rope_inv_freq(c, false), inv_long = rope_inv_freq(c, true);
  EXPECT_NEAR(inv_short[1].item<float>() / inv_long[1].item<float>(), 2.0, 1e-6);
}

// ---- KV cache ------------------------------------------------------------------------------
class CacheAgreement : public ::testing::TestWithParam<Variant> {};

TEST_P(CacheAgreement, IncrementalDecodingEqualsFullForward) {
  const Variant& v = GetParam();
  const std::string dir = test::fixture(v.name, v.opts);
  auto w = load_f32(dir);
  torch::NoGradGuard ng;
  const auto ids = some_ids(v.T, w.config.vocab_size, 3);
  const auto full = forward(w, ids_tensor(ids), nullptr).squeeze(0);  // [T, V]
  for (auto kv : {torch::kFloat32, torch::kBFloat16}) {
    KvCache cache = make_kv_cache(w.config, 64, kv);
    cache.long_rope = rope_needs_long(w.config, static_cast<int64_t>(v.T) - 1);
    const size_t prompt = v.T / 2;
    auto first = forward(w, ids_tensor({ids.begin(), ids.begin() + static_cast<long>(prompt)}), &cache).squeeze(0);
    // bf16 K/V rounds to 8 bits of mantissa: an error that grows with the logits' scale.
    const double budget =
        kv == torch::kFloat32 ? kCacheLogitBudget : std::max(5e-2, 1e-2 * full.abs().max().item<double>());
    EXPECT_LT((first - full.narrow(0, 0, static_cast<int64_t>(prompt))).abs().max().item<double>(), budget);
    for (size_t t = prompt; t < v.T; ++t) {
      auto step = forward(w, ids_tensor({ids[t]}), &cache).squeeze(0);  // [1, V]
      EXPECT_LT((step[0] - full[static_cast<int64_t>(t)]).abs().max().item<double>(), budget) << "position " << t;
    }
    EXPECT_EQ(cache.n_past, static_cast<int64_t>(v.T));
  }
}

TEST_P(CacheAgreement, ChunkedPrefillEqualsOneShot) {
  const Variant& v = GetParam();
  const std::string dir = test::fixture(v.name, v.opts);
  auto w = load_f32(dir);
  torch::NoGradGuard ng;
  const auto ids = some_ids(v.T, w.config.vocab_size, 5);
  KvCache one = make_kv_cache(w.config, 64, torch::kFloat32), chunked = make_kv_cache(w.config, 64, torch::kFloat32);
  one.long_rope = chunked.long_rope = rope_needs_long(w.config, static_cast<int64_t>(v.T) - 1);
  auto a = forward(w, ids_tensor(ids), &one).squeeze(0);
  std::vector<torch::Tensor> parts;
  for (size_t p = 0; p < v.T; p += 3) {
    const size_t n = std::min<size_t>(3, v.T - p);
    parts.push_back(forward(w, ids_tensor({ids.begin() + static_cast<long>(p), ids.begin() + static_cast<long>(p + n)}), &chunked).squeeze(0));
  }
  auto b = torch::cat(parts, 0);
  EXPECT_LT((a - b).abs().max().item<double>(), kCacheLogitBudget);
  EXPECT_LT((one.k - chunked.k).abs().max().item<double>(), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(
    Variants, CacheAgreement,
    ::testing::Values(Variant{"mha", FixtureOptions{}, 13},
                      Variant{"gqa", opts_with([](FixtureOptions& o) { o.num_kv_heads = 2; }), 13},
                      Variant{"window", opts_with([](FixtureOptions& o) { o.sliding_window = 4; }), 13},
                      Variant{"longrope_long", opts_with([](FixtureOptions& o) { o.longrope = true; o.original_max_position = 16; o.max_position = 64; }), 20},
                      // Head sizes with a vectorised decode attention (64, 96 = Phi-3.5's, 128);
                      // 13 and 22 positions leave rows past the last group of 4 scores.
                      Variant{"hd64_window", opts_with([](FixtureOptions& o) { o.hidden_size = 128; o.num_heads = 2; o.num_kv_heads = 2; o.sliding_window = 5; }), 13},
                      Variant{"hd96_gqa", opts_with([](FixtureOptions& o) { o.hidden_size = 192; o.num_heads = 2; o.num_kv_heads = 1; }), 22},
                      Variant{"hd128", opts_with([](FixtureOptions& o) { o.hidden_size = 256; o.num_heads = 2; o.num_kv_heads = 2; }), 13}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(Forward, LastOnlyEqualsLastRow) {
  const std::string dir = test::fixture("mha", FixtureOptions{});
  auto w = load_f32(dir);
  torch::NoGradGuard ng;
  const auto ids = some_ids(6, w.config.vocab_size);
  auto all = forward(w, ids_tensor(ids), nullptr);
  ForwardOptions fo;
  fo.last_only = true;
  auto last = forward(w, ids_tensor(ids), nullptr, fo);
  EXPECT_EQ(last.size(1), 1);
  EXPECT_LT((last[0][0] - all[0][5]).abs().max().item<double>(), 1e-5);
}

TEST(Forward, Bf16ActivationsStayClose) {
  const std::string dir = test::fixture("mha", FixtureOptions{});
  auto w = load_f32(dir);
  torch::NoGradGuard ng;
  const auto ids = some_ids(8, w.config.vocab_size);
  auto f32 = forward(w, ids_tensor(ids), nullptr);
  ForwardOptions fo;
  fo.act_dtype = torch::kBFloat16;
  auto bf16 = forward(w, ids_tensor(ids), nullptr, fo);
  // bf16 keeps 8 mantissa bits: relative error ~1e-2 of the logit scale.
  EXPECT_LT((f32 - bf16).abs().max().item<double>(), 0.1 * f32.abs().max().item<double>());
}

TEST(Forward, CacheOverflowIsAnError) {
  const std::string dir = test::fixture("mha", FixtureOptions{});
  auto w = load_f32(dir);
  torch::NoGradGuard ng;
  KvCache cache = make_kv_cache(w.config, 4, torch::kFloat32);
  EXPECT_THROW(forward(w, ids_tensor(some_ids(5, w.config.vocab_size)), &cache), Error);
}

#if defined(__linux__)
// Whether the page holding p is mapped into the process (mincore).
bool page_resident(const void* p) {
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  unsigned char v = 0;
  void* a = reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(p) & ~(page - 1));
  return mincore(a, page, &v) == 0 && (v & 1);
}

// The positions a forward or a decode step is about to write are mapped ahead, in every layer's
// and head's rows of K and V, and no further than kKvPagesAhead past them: positions far on stay
// unmapped (a 4k-token cache must not become resident at once). A cache remade elsewhere starts over.
TEST(KvCache, PositionsAreMappedAheadOfTheirWrites) {
  auto w = test::load_qins_weights(test::fixture("mha", FixtureOptions{}));  // QINS codes: decode_step's row path
  torch::NoGradGuard ng;
  const Phi3Config& c = w.config;
  // Rows of 16384 positions (>= 1 MiB each: every row spans its own pages, the last ones far from the first).
  const int64_t cap = 16384;
  KvCache cache = make_kv_cache(c, cap, torch::kFloat32);
  const int64_t row = cap * c.head_dim, rows = int64_t{c.num_hidden_layers} * c.num_key_value_heads;
  const float* k = cache.k.data_ptr<float>();
  const float* v = cache.v.data_ptr<float>();
  ASSERT_FALSE(page_resident(k)) << "a fresh cache is not written";
  forward(w, ids_tensor(some_ids(5, c.vocab_size)), &cache);
  const int64_t to = cache.pages_to;
  if (to == cache.capacity()) GTEST_SKIP() << "MADV_POPULATE_WRITE unsupported here (kernel older than 5.14)";
  EXPECT_EQ(to, 2 * kKvPagesAhead);  // 5 positions: up to 64, and 64 more
  for (int64_t r = 0; r < rows; ++r)
    for (const float* base : {k, v}) {
      EXPECT_TRUE(page_resident(base + r * row + (to - 1) * c.head_dim)) << "row " << r << ", last mapped position";
      EXPECT_FALSE(page_resident(base + r * row + (cap - 1) * c.head_dim)) << "row " << r << ", last position";
    }
  // Decode steps inside the mapped positions add none; the first one past them maps the next ones.
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  while (cache.n_past < to) ASSERT_TRUE(decode_step(w, 3, cache, logits.data(), torch::kFloat32));
  EXPECT_EQ(cache.pages_to, to);
  ASSERT_TRUE(decode_step(w, 3, cache, logits.data(), torch::kFloat32));
  EXPECT_EQ(cache.pages_to, to + 2 * kKvPagesAhead);
  EXPECT_TRUE(page_resident(v + (rows - 1) * row + (cache.pages_to - 1) * c.head_dim));
  // The same cache moved to new memory: its positions are mapped anew.
  cache.k = cache.k.clone();
  cache.v = cache.v.clone();
  reserve_kv_positions(cache, 1);
  EXPECT_EQ(cache.pages_base, cache.k.data_ptr());
  EXPECT_EQ(cache.pages_to, 2 * kKvPagesAhead);
}
#endif

TEST(HfLoader, WrongShapeNamesFileAndTensor) {
  const std::string dir = test::fixture("mha", FixtureOptions{});
  auto c = read_phi3_config(dir + "/config.json");
  c.intermediate_size += 2;  // the checkpoint no longer matches the config
  auto ck = st::Checkpoint::open_dir(dir);
  try {
    load_hf_weights(*ck, c, {});
    FAIL() << "expected a shape error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find("gate_up_proj"), std::string::npos) << msg;
    EXPECT_NE(msg.find("shape"), std::string::npos) << msg;
  }
}


// The QINS graph runs prompt chunks (> 16 tokens) through attention_per_head when it has two
// threads and BLAS runs on one (core::set_blas_threads(1), the engine's policy for a bf16 QINS
// kernel; one kv head per task) and through the batched attention otherwise: both must give the
// same logits, and match token-by-token decoding (the fused path). Without OpenBLAS both runs
// take the batched attention.
TEST(Forward, QinsPrefillAttentionPathsAgree) {
  auto w = test::load_qins_weights(test::fixture("gqa", opts_with([](FixtureOptions& o) { o.num_kv_heads = 2; })));
  torch::NoGradGuard ng;
  // An exact (fp32-product) kernel path: the bf16 one rounds x, which turns the last-bit
  // differences between a GEMM and a GEMV into ~1e-3 logit differences and would hide a real one.
  std::string exact = "scalar";
  for (const std::string& isa : core::available_kernel_isas()) {
    core::set_kernel_isa(isa);
    if (!core::kernel_uses_bf16()) exact = isa;
  }
  core::set_kernel_isa(exact);
  const auto ids = some_ids(24, w.config.vocab_size, 7);
  const int saved = at::get_num_threads();
  auto run = [&](int threads) {
    at::set_num_threads(threads);
    core::set_blas_threads(threads == 1 ? saved : 1);
    KvCache cache = make_kv_cache(w.config, 64, torch::kFloat32);
    return forward(w, ids_tensor(ids), &cache).squeeze(0);  // [T, V]
  };
  const auto one = run(1), two = run(2);
  core::set_blas_threads(saved);
  KvCache cache = make_kv_cache(w.config, 64, torch::kFloat32);
  std::vector<torch::Tensor> steps;
  for (int64_t id : ids) steps.push_back(forward(w, ids_tensor({id}), &cache).squeeze(0));
  at::set_num_threads(saved);
  core::set_kernel_isa("auto");
  EXPECT_LT((one - two).abs().max().item<double>(), kCacheLogitBudget);
  EXPECT_LT((two - torch::cat(steps, 0)).abs().max().item<double>(), kCacheLogitBudget);
}

// ---- The one-token decode step -----------------------------------------------------------------
class DecodeStep : public ::testing::TestWithParam<Variant> {};

// decode_step and forward() run the same kernels on the same numbers: the logits and the cache
// agree to the last bit or nearly (the reductions are the same code), step after step.
TEST_P(DecodeStep, EqualsForwardStepByStep) {
  const Variant& v = GetParam();
  auto w = test::load_qins_weights(test::fixture(v.name, v.opts));
  torch::NoGradGuard ng;
  const auto ids = some_ids(v.T, w.config.vocab_size, 11);
  for (auto kv : {torch::kBFloat16, torch::kFloat32}) {
    KvCache a = make_kv_cache(w.config, 64, kv), b = make_kv_cache(w.config, 64, kv);
    a.long_rope = b.long_rope = rope_needs_long(w.config, static_cast<int64_t>(v.T) - 1);
    const size_t prompt = 3;
    const auto p = ids_tensor({ids.begin(), ids.begin() + static_cast<long>(prompt)});
    forward(w, p, &a);
    forward(w, p, &b);
    std::vector<float> logits(static_cast<size_t>(w.config.vocab_size));
    for (size_t t = prompt; t < v.T; ++t) {
      const auto ref = forward(w, ids_tensor({ids[t]}), &a).reshape({-1});  // [V]
      ASSERT_TRUE(decode_step(w, ids[t], b, logits.data()));
      const auto got = torch::from_blob(logits.data(), {w.config.vocab_size}, torch::kFloat32);
      EXPECT_LT((got - ref).abs().max().item<double>(), 1e-5) << "position " << t;
      EXPECT_EQ(a.n_past, b.n_past);
    }
    EXPECT_LT((a.k.to(torch::kFloat32) - b.k.to(torch::kFloat32)).abs().max().item<double>(), 1e-6);
    EXPECT_LT((a.v.to(torch::kFloat32) - b.v.to(torch::kFloat32)).abs().max().item<double>(), 1e-6);
  }
}

// The batched step: five sequences with prompts of different lengths (each at its own position)
// step together; every row of the logits and every cache equals decode_step alone, bit for bit.
TEST_P(DecodeStep, BatchIsEachSequenceAloneBitForBit) {
  const Variant& v = GetParam();
  auto w = test::load_qins_weights(test::fixture(v.name, v.opts));
  torch::NoGradGuard ng;
  constexpr int64_t B = 5;
  const int64_t V = w.lm_head->out_features();
  for (auto kv : {torch::kBFloat16, torch::kFloat32}) {
    std::vector<KvCache> alone, together;
    for (int64_t b = 0; b < B; ++b) {
      alone.push_back(make_kv_cache(w.config, 64, kv));
      together.push_back(make_kv_cache(w.config, 64, kv));
      const auto ids = some_ids(static_cast<size_t>(b + 1), w.config.vocab_size, 20 + static_cast<int>(b));
      for (KvCache* c : {&alone.back(), &together.back()}) {
        c->long_rope = rope_needs_long(w.config, static_cast<int64_t>(v.T) + B);
        forward(w, ids_tensor(ids), c);
      }
    }
    std::shared_ptr<DecodeScratch> scratch;
    std::vector<float> rows(static_cast<size_t>(B * V)), one(static_cast<size_t>(V));
    std::vector<KvCache*> caches;
    for (auto& c : together) caches.push_back(&c);
    for (size_t t = 0; t < v.T; ++t) {
      const std::vector<int64_t> ids64 = some_ids(static_cast<size_t>(B), w.config.vocab_size, 100 + static_cast<int>(t));
      ASSERT_TRUE(decode_step_batch(w, ids64.data(), caches.data(), B, rows.data(), scratch));
      for (int64_t b = 0; b < B; ++b) {
        ASSERT_TRUE(decode_step(w, ids64[static_cast<size_t>(b)], alone[static_cast<size_t>(b)], one.data()));
        EXPECT_TRUE(std::equal(one.begin(), one.end(), rows.begin() + b * V)) << "step " << t << " sequence " << b;
        EXPECT_EQ(alone[static_cast<size_t>(b)].n_past, together[static_cast<size_t>(b)].n_past);
      }
    }
    for (int64_t b = 0; b < B; ++b) {
      EXPECT_TRUE(torch::equal(alone[static_cast<size_t>(b)].k, together[static_cast<size_t>(b)].k)) << b;
      EXPECT_TRUE(torch::equal(alone[static_cast<size_t>(b)].v, together[static_cast<size_t>(b)].v)) << b;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Variants, DecodeStep,
    ::testing::Values(Variant{"gqa", opts_with([](FixtureOptions& o) { o.num_kv_heads = 2; }), 12},
                      Variant{"window", opts_with([](FixtureOptions& o) { o.sliding_window = 4; }), 12},
                      Variant{"longrope_long", opts_with([](FixtureOptions& o) { o.longrope = true; o.original_max_position = 16; o.max_position = 64; }), 20},
                      Variant{"hd96_gqa", opts_with([](FixtureOptions& o) { o.hidden_size = 192; o.num_heads = 2; o.num_kv_heads = 1; }), 12},
                      Variant{"tied", opts_with([](FixtureOptions& o) { o.tie_embeddings = true; }), 8}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(DecodeStepPath, DeclinesWhatItCannotRunAndLeavesTheCacheAlone) {
  const std::string dir = test::fixture("mha", FixtureOptions{});
  torch::NoGradGuard ng;
  std::vector<float> logits(4096);
  auto dense = load_f32(dir);  // torch::linear weights: no row path
  KvCache c1 = make_kv_cache(dense.config, 8, torch::kBFloat16);
  EXPECT_FALSE(decode_step(dense, 1, c1, logits.data()));
  EXPECT_EQ(c1.n_past, 0);
  auto q = test::load_qins_weights(dir);
  KvCache c2 = make_kv_cache(q.config, 8, torch::kBFloat16);
  EXPECT_FALSE(decode_step(q, 1, c2, logits.data(), torch::kBFloat16));  // bf16 activations
  KvCache c3 = make_kv_cache(q.config, 8, torch::kFloat16);
  EXPECT_FALSE(decode_step(q, 1, c3, logits.data()));  // fp16 cache: forward() handles it
  EXPECT_EQ(c3.n_past, 0);
  // The batched step declines when any of its sequences could not take the row path.
  KvCache c4 = make_kv_cache(q.config, 8, torch::kBFloat16);
  std::vector<KvCache*> both{&c4, &c3};
  const int64_t ids[2] = {1, 2};
  std::shared_ptr<DecodeScratch> scratch;
  std::vector<float> two(2 * 4096);
  EXPECT_FALSE(decode_step_batch(q, ids, both.data(), 2, two.data(), scratch));
  EXPECT_EQ(c4.n_past, 0);
  EXPECT_FALSE(scratch);
  KvCache c5 = make_kv_cache(dense.config, 8, torch::kBFloat16);
  std::vector<KvCache*> dense_caches{&c5};
  EXPECT_FALSE(decode_step_batch(dense, ids, dense_caches.data(), 1, two.data(), scratch));
}

TEST(DecodeStepPath, EmbeddingRowsEqualTheTensorLookup) {
  torch::manual_seed(4);
  const auto table = torch::randn({50, 24});  // [vocab, hidden] f32
  DenseEmbedding f32(table), bf16(table.to(torch::kBFloat16));
  core::QuantizedTensor q = core::quantize(table, {});
  QinsEmbedding qe(q);
  std::vector<float> row(24);
  for (EmbeddingOp* e : std::vector<EmbeddingOp*>{&f32, &bf16, &qe}) {
    for (int64_t id : {0, 17, 49}) {
      e->lookup_row(id, row.data());
      const auto want = e->lookup(torch::tensor({id}, torch::kInt64)).reshape({-1});  // [hidden]
      EXPECT_TRUE(torch::equal(torch::from_blob(row.data(), {24}, torch::kFloat32), want)) << "id " << id;
    }
    EXPECT_THROW(e->lookup_row(50, row.data()), std::out_of_range);
    EXPECT_THROW(e->lookup_row(-1, row.data()), std::out_of_range);
  }
}

TEST(DecodeStepPath, FullCacheAndBadIdAreErrors) {
  auto q = test::load_qins_weights(test::fixture("mha", FixtureOptions{}));
  torch::NoGradGuard ng;
  std::vector<float> logits(static_cast<size_t>(q.config.vocab_size));
  KvCache cache = make_kv_cache(q.config, 2, torch::kBFloat16);
  EXPECT_THROW(decode_step(q, q.config.vocab_size, cache, logits.data()), std::out_of_range);
  EXPECT_THROW(decode_step(q, -1, cache, logits.data()), std::out_of_range);
  EXPECT_EQ(cache.n_past, 0);
  EXPECT_TRUE(decode_step(q, 1, cache, logits.data()));
  EXPECT_TRUE(decode_step(q, 2, cache, logits.data()));
  EXPECT_THROW(decode_step(q, 3, cache, logits.data()), Error);
  EXPECT_EQ(cache.n_past, 2);
}

}  // namespace
}  // namespace qins
