// The Phi-3 forward pass. The spine is forward() at the bottom; helpers above it are the pieces
// PHI3.md §3 names (RMSNorm, half-split LongRoPE, attention with a bottom-right causal mask).
#include "qins/graph/phi3_model.h"

#include <ATen/Parallel.h>

#if defined(__linux__)
#include <dlfcn.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <type_traits>

#include "qins/core/qins.h"
#include "qins/util/errors.h"

namespace qins {

int64_t Phi3Weights::weight_bytes() const {
  int64_t n = embed ? embed->weight_bytes() : 0;
  // A tied lm_head shares the embedding's memory; count it once.
  if (lm_head && !config.tie_word_embeddings) n += lm_head->weight_bytes();
  for (const auto& l : layers) {
    n += l.qkv->weight_bytes() + l.o->weight_bytes() + l.gate_up->weight_bytes() + l.down->weight_bytes();
    n += (l.input_norm.numel() + l.post_norm.numel()) * 4;
  }
  return n + final_norm.numel() * 4;
}

int64_t Phi3Weights::n_params() const {
  int64_t n = embed ? embed->num_embeddings() * embed->dim() : 0;
  if (lm_head && !config.tie_word_embeddings) n += lm_head->in_features() * lm_head->out_features();
  for (const auto& l : layers) {
    for (const LinearOp* op : {l.qkv.get(), l.o.get(), l.gate_up.get(), l.down.get()})
      n += op->in_features() * op->out_features();
    n += l.input_norm.numel() + l.post_norm.numel();
  }
  return n + final_norm.numel();
}

KvCache make_kv_cache(const Phi3Config& c, int64_t capacity, torch::ScalarType dtype) {
  KvCache cache;
  const auto shape = std::vector<int64_t>{c.num_hidden_layers, c.num_key_value_heads, capacity, c.head_dim};
  // Each in its own 2 MiB-aligned mapping (large caches), filled on small pages now (fast), so
  // that promote_kv_cache can later move it onto huge pages.
  cache.k = core::empty_large(shape, dtype).zero_();
  cache.v = core::empty_large(shape, dtype).zero_();
  return cache;
}

int64_t promote_kv_cache(const KvCache& cache, const std::atomic<bool>* cancel) {
  if (!cache.k.defined()) return 0;
  return core::promote_to_huge_pages(cache.k, cancel) + core::promote_to_huge_pages(cache.v, cancel);
}

bool rope_needs_long(const Phi3Config& c, int64_t max_pos) {
  return c.has_longrope() && max_pos + 1 > c.original_max_position_embeddings;
}

torch::Tensor rope_inv_freq(const Phi3Config& c, bool long_factors) {
  const int64_t half = c.rotary_dim / 2;
  // theta^(2j / rotary_dim), computed in fp32 as the reference does.
  auto exponent = torch::arange(0, c.rotary_dim, 2, torch::kInt64).to(torch::kFloat32) / static_cast<float>(c.rotary_dim);
  auto base = torch::pow(static_cast<float>(c.rope_theta), exponent);  // [half] f32
  torch::Tensor ext = torch::ones({half}, torch::kFloat32);
  if (c.has_longrope()) {
    const auto& f = long_factors ? c.long_factor : c.short_factor;
    ext = torch::from_blob(const_cast<float*>(f.data()), {half}, torch::kFloat32).clone();
  }
  return 1.0f / (ext * base);
}

RopeTables rope_tables(const Phi3Config& c, const torch::Tensor& positions, bool long_factors) {
  auto inv_freq = rope_inv_freq(c, long_factors);                                  // [half] f32
  auto freqs = positions.to(torch::kFloat32).unsqueeze(1) * inv_freq.unsqueeze(0);  // [T, half]
  auto emb = torch::cat({freqs, freqs}, 1);                                          // [T, rotary_dim]
  const auto factor = static_cast<float>(c.attention_factor);
  return {emb.cos() * factor, emb.sin() * factor};
}

namespace {

// y = x / sqrt(mean(x^2) + eps) * w for one fp32 row of n (the decode path; no temporaries).
void rms_norm_row(const float* x, const float* w, int64_t n, float eps, float* y) {
  float ss = 0.0f;
  for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const float inv = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * inv * w[i];
}

// y = x / sqrt(mean(x^2) + eps) in fp32, cast back to the activation dtype, THEN times the weight.
// f32 activations (the decode path): one pass per row, no temporaries.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  if (x.scalar_type() == torch::kFloat32 && x.is_contiguous() && weight.scalar_type() == torch::kFloat32 &&
      !x.requires_grad() && !weight.requires_grad()) {
    const int64_t n = x.size(-1), rows = x.numel() / n;
    auto y = torch::empty_like(x);  // [..., hidden] f32
    for (int64_t r = 0; r < rows; ++r)
      rms_norm_row(x.data_ptr<float>() + r * n, weight.data_ptr<float>(), n, static_cast<float>(eps),
                   y.data_ptr<float>() + r * n);
    return y;
  }
  auto xf = x.to(torch::kFloat32);
  auto normed = (xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps)).to(x.scalar_type());
  return (normed * weight).to(x.scalar_type());
}

// y[r][i] = up * silu(gate) for rows of gate_up [rows, 2 * inter] (gate first), fp32. Split over
// the threads: 8192 exp per row of Phi-3.5 were ~1.5 % of a decode step on one thread.
void swiglu_rows(const float* g, int64_t rows, int64_t inter, float* y) {
  at::parallel_for(0, rows * inter, 2048, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      const int64_t r = k / inter, i = k % inter;
      const float a = g[r * 2 * inter + i], u = g[r * 2 * inter + inter + i];
      y[k] = u * a / (1.0f + std::exp(-a));
    }
  });
}

// up * silu(gate) for gate_up [..., 2 * inter] (gate first). f32: one fused pass.
torch::Tensor swiglu(const torch::Tensor& gate_up) {
  const int64_t inter = gate_up.size(-1) / 2;
  if (gate_up.scalar_type() == torch::kFloat32 && gate_up.is_contiguous() && !gate_up.requires_grad()) {
    auto shape = gate_up.sizes().vec();
    shape.back() = inter;
    auto y = torch::empty(shape, gate_up.options());  // [..., inter] f32
    swiglu_rows(gate_up.data_ptr<float>(), gate_up.numel() / (2 * inter), inter, y.data_ptr<float>());
    return y;
  }
  return gate_up.narrow(-1, inter, inter) * torch::silu(gate_up.narrow(-1, 0, inter));
}

// Half-split rotation: dim j pairs with dim j + rotary_dim/2. x: [B, H, T, head_dim].
torch::Tensor apply_rope(const torch::Tensor& x, const RopeTables& rope, int64_t rotary_dim) {
  const int64_t half = rotary_dim / 2;
  auto xf = x.to(torch::kFloat32);
  auto rot = xf.narrow(-1, 0, rotary_dim);
  auto x1 = rot.narrow(-1, 0, half);
  auto x2 = rot.narrow(-1, half, half);
  auto rotate_half = torch::cat({-x2, x1}, -1);
  auto out = rot * rope.cos + rotate_half * rope.sin;  // cos/sin [T, rotary_dim] broadcast
  if (rotary_dim < x.size(-1)) out = torch::cat({out, xf.narrow(-1, rotary_dim, x.size(-1) - rotary_dim)}, -1);
  return out.to(x.scalar_type());
}

// Additive mask [T, S]: query t (absolute position q0 + t) sees key s (absolute position s) when
// s <= q0 + t (bottom-right causal) and, with a sliding window, s > q0 + t - window.
torch::Tensor attention_mask(int64_t q0, int64_t T, int64_t S, const std::optional<int>& window) {
  auto qpos = torch::arange(q0, q0 + T, torch::kInt64).unsqueeze(1);  // [T, 1]
  auto kpos = torch::arange(0, S, torch::kInt64).unsqueeze(0);        // [1, S]
  auto allowed = kpos <= qpos;
  if (window) allowed = allowed & (kpos > qpos - *window);
  auto mask = torch::zeros({T, S}, torch::kFloat32);
  return mask.masked_fill(allowed.logical_not(), -std::numeric_limits<float>::infinity());
}

// q: [B, n_head, T, hd]; k, v: [B, n_kv, S, hd]. Softmax in fp32. Returns [B, T, n_head * hd].
torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& mask, const Phi3Config& c) {
  const int64_t B = q.size(0), T = q.size(2), hd = c.head_dim;
  const int64_t n_kv = c.num_key_value_heads, n_rep = c.n_rep();
  const int64_t S = k.size(2);
  // Grouped-query attention without copying K/V: the n_rep query heads of each kv head are
  // folded into the query length, so one batched matmul per kv head serves them all.
  auto qg = q.to(torch::kFloat32).reshape({B, n_kv, n_rep * T, hd});       // [B, n_kv, n_rep*T, hd]
  auto kf = k.to(torch::kFloat32);                                          // [B, n_kv, S, hd]
  auto vf = v.to(torch::kFloat32);
  auto scores = torch::matmul(qg, kf.transpose(-1, -2)) * (1.0 / std::sqrt(static_cast<double>(hd)));
  scores = scores.view({B, n_kv, n_rep, T, S}) + mask;                       // mask [T, S] broadcast
  auto probs = torch::softmax(scores, -1).view({B, n_kv, n_rep * T, S});
  auto out = torch::matmul(probs, vf).view({B, c.num_attention_heads, T, hd});  // head-major
  return out.transpose(1, 2).reshape({B, T, c.num_attention_heads * hd}).to(q.scalar_type());
}

// The same attention, one kv head per task of an at::parallel_for (each task's matmuls run on one
// thread): for the QINS graph, whose own GEMMs run on the OpenMP threads, so that the BLAS library
// does not bring its own threads (see set_blas_threads). No autograd.
torch::Tensor attention_per_head(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                 const torch::Tensor& mask, const Phi3Config& c) {
  const int64_t B = q.size(0), T = q.size(2), hd = c.head_dim;
  const int64_t n_kv = c.num_key_value_heads, n_rep = c.n_rep();
  const int64_t S = k.size(2);
  const auto qg = q.to(torch::kFloat32).reshape({B, n_kv, n_rep * T, hd}).contiguous();  // [B, n_kv, n_rep*T, hd]
  const auto kf = k.to(torch::kFloat32).contiguous();                                     // [B, n_kv, S, hd]
  const auto vf = v.to(torch::kFloat32).contiguous();
  auto out = torch::empty({B, n_kv, n_rep * T, hd}, torch::kFloat32);  // [B, n_kv, n_rep*T, hd]
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  at::parallel_for(0, B * n_kv, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t bi = i / n_kv, g = i % n_kv;
      auto scores = torch::mm(qg[bi][g], kf[bi][g].t()).mul_(scale);  // [n_rep*T, S]
      scores = scores.view({n_rep, T, S}).add_(mask);
      const auto probs = torch::softmax(scores, -1).view({n_rep * T, S});
      auto dst = out[bi][g];
      torch::mm_out(dst, probs, vf[bi][g]);
    }
  });
  return out.view({B, c.num_attention_heads, T, hd}).transpose(1, 2).reshape({B, T, c.num_attention_heads * hd})
      .to(q.scalar_type());
}

// OpenBLAS (what Debian's libblas.so.3 usually is) keeps its worker threads spinning with
// sched_yield for a long while after each multi-threaded call. In the QINS graph the heavy work
// runs on the OpenMP threads, and a spinning BLAS thread on a 2-core machine took a third of the
// prefill time (perf: one thread in OpenBLAS's yield loop during every QINS GEMM). So the QINS
// graph asks OpenBLAS for one thread (its small attention matmuls run inside our parallel loops)
// and a dense graph (baselines, training) or an exact QINS kernel, whose prefill GEMMs are BLAS
// calls, gets all of them back. No-op without OpenBLAS.
int g_blas_threads = -1;  // what set_blas_threads last set; -1: untouched or no OpenBLAS

void set_blas_threads(int n) {
#if defined(__linux__)
  using SetFn = void (*)(int);
  static const SetFn fn = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (fn && n != g_blas_threads) {
    fn(n);
    g_blas_threads = n;
  }
#else
  (void)n;
#endif
}

bool blas_single_threaded() { return g_blas_threads == 1; }

// h += y: in place when no gradient flows (no new [B, T, hidden] tensor per block).
void add_residual(torch::Tensor& h, const torch::Tensor& y) {
  if (h.requires_grad() || y.requires_grad()) h = h + y;
  else h.add_(y);
}

// ---- Decode path: rotation, cache write and attention fused over the cache in place ----------
// At 1k context the per-token K/V traffic is ~400 MB for Phi-3.5-mini (10 % of the weights);
// reading the bf16 cache directly (no f32 copy of K and V per layer per step) keeps it at that.

constexpr int64_t kFusedMaxT = 16;  // longer chunks (prefill) use the batched matmuls above

inline float bf16_to_f32(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
#define QINS_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define QINS_MULTIVERSION
#endif

// scores[s] = scale * <q, K[s]> for s in [0, n); K rows hd apart. 16 partial sums so the
// compiler keeps full vectors busy.
template <typename KT>
QINS_MULTIVERSION void dot_rows(const float* q, const KT* k, int64_t n, int64_t hd, float scale, float* scores) {
  for (int64_t s = 0; s < n; ++s) {
    const KT* row = k + s * hd;
    float acc[16] = {};
    int64_t d = 0;
    for (; d + 16 <= hd; d += 16)
      for (int j = 0; j < 16; ++j) {
        if constexpr (std::is_same_v<KT, uint16_t>) acc[j] += q[d + j] * bf16_to_f32(row[d + j]);
        else acc[j] += q[d + j] * row[d + j];
      }
    float sum = 0.0f;
    for (int j = 0; j < 16; ++j) sum += acc[j];
    for (; d < hd; ++d) {
      if constexpr (std::is_same_v<KT, uint16_t>) sum += q[d] * bf16_to_f32(row[d]);
      else sum += q[d] * row[d];
    }
    scores[s] = sum * scale;
  }
}

// out[d] = sum_s p[s] * V[s][d].
template <typename KT>
QINS_MULTIVERSION void weighted_rows(const float* p, const KT* v, int64_t n, int64_t hd, float* out) {
  for (int64_t d = 0; d < hd; ++d) out[d] = 0.0f;
  for (int64_t s = 0; s < n; ++s) {
    const KT* row = v + s * hd;
    const float w = p[s];
    for (int64_t d = 0; d < hd; ++d) {
      if constexpr (std::is_same_v<KT, uint16_t>) out[d] += w * bf16_to_f32(row[d]);
      else out[d] += w * row[d];
    }
  }
}

// p[s] = exp(p[s] - max) / sum, in place.
inline void softmax_in_place(float* p, int64_t n) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t s = 0; s < n; ++s) mx = std::max(mx, p[s]);
  float sum = 0.0f;
  for (int64_t s = 0; s < n; ++s) sum += (p[s] = std::exp(p[s] - mx));
  const float inv = 1.0f / sum;
  for (int64_t s = 0; s < n; ++s) p[s] *= inv;
}

#if defined(__x86_64__) && defined(__GNUC__)
// AVX-512 versions for head sizes of 16 * NV (Phi-3.5: 96 = 6 x 16): q, or the NV output
// accumulators, stay in registers for the whole row range, K/V rows are widened from bf16 with one
// zero-extend and one shift per 16 values, and the scores of 4 rows are reduced together (one
// transpose-and-add instead of 4 horizontal sums). The compiler's version of the loops above ran
// at about half the memory bandwidth (perf, Phi-3.5-mini at 1k context); these follow it.
#define QINS_ATTN_AVX512 1
#define QINS_AVX512F __attribute__((target("avx512f")))
// GCC 12's AVX-512 headers start many intrinsics from a self-initialised "undefined" vector and
// then warn about it once inlined here (a known false positive); nothing below reads one.
#if !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

QINS_AVX512F inline __m512 load16(const uint16_t* p) {
  const __m512i w = _mm512_cvtepu16_epi32( _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
QINS_AVX512F inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }

// The sums of a0..a3's 16 lanes, as 4 floats [sum a0, sum a1, sum a2, sum a3].
QINS_AVX512F inline __m128 sum4(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
  const __m512 r01 = _mm512_add_ps(_mm512_unpacklo_ps(a0, a1), _mm512_unpackhi_ps(a0, a1));  // a0 a1 a0 a1 per 128 bits
  const __m512 r23 = _mm512_add_ps(_mm512_unpacklo_ps(a2, a3), _mm512_unpackhi_ps(a2, a3));
  const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(r01, r23, 0x44), _mm512_shuffle_ps(r01, r23, 0xEE));  // a0 a1 a2 a3
  const __m512 h = _mm512_add_ps(r, _mm512_shuffle_f32x4(r, r, 0x4E));  // 128-bit lanes 0+2, 1+3
  return _mm512_castps512_ps128(_mm512_add_ps(h, _mm512_shuffle_f32x4(h, h, 0xB1)));
}

// Rows of K/V requested this far ahead of use (6 KB at head size 96): in an isolated harness 16
// rows ahead gave +10 % over the hardware prefetchers alone (which restart at every head's rows),
// 32 rows another +3 %. Past the last row the requests touch the next head's rows or unused
// cache positions; a prefetch never faults, even past the end.
constexpr int64_t kAheadRows = 32;

// Requests [p + ahead, p + ahead + bytes), computed as an integer address (never dereferenced).
inline void prefetch_rows(const void* p, size_t ahead, size_t bytes) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p) + ahead;
  for (size_t o = 0; o < bytes; o += 64) _mm_prefetch(reinterpret_cast<const char*>(a + o), _MM_HINT_T0);
}

template <int NV, typename KT>
QINS_AVX512F void dot_rows_avx512(const float* q, const KT* k, int64_t n, float scale, float* scores) {
  constexpr int64_t hd = 16 * NV;
  __m512 qv[NV];
  for (int v = 0; v < NV; ++v) qv[v] = _mm512_loadu_ps(q + 16 * v);
  const __m128 sc = _mm_set1_ps(scale);
  int64_t s = 0;
  for (; s + 4 <= n; s += 4) {
    const KT* r = k + s * hd;
    prefetch_rows(r, kAheadRows * hd * sizeof(KT), 4 * hd * sizeof(KT));
    __m512 a0 = _mm512_mul_ps(qv[0], load16(r)), a1 = _mm512_mul_ps(qv[0], load16(r + hd));
    __m512 a2 = _mm512_mul_ps(qv[0], load16(r + 2 * hd)), a3 = _mm512_mul_ps(qv[0], load16(r + 3 * hd));
    for (int v = 1; v < NV; ++v) {
      a0 = _mm512_fmadd_ps(qv[v], load16(r + 16 * v), a0);
      a1 = _mm512_fmadd_ps(qv[v], load16(r + hd + 16 * v), a1);
      a2 = _mm512_fmadd_ps(qv[v], load16(r + 2 * hd + 16 * v), a2);
      a3 = _mm512_fmadd_ps(qv[v], load16(r + 3 * hd + 16 * v), a3);
    }
    _mm_storeu_ps(scores + s, _mm_mul_ps(sum4(a0, a1, a2, a3), sc));
  }
  for (; s < n; ++s) {
    const KT* r = k + s * hd;
    __m512 a = _mm512_mul_ps(qv[0], load16(r));
    for (int v = 1; v < NV; ++v) a = _mm512_fmadd_ps(qv[v], load16(r + 16 * v), a);
    const __m512 z = _mm512_setzero_ps();
    scores[s] = _mm_cvtss_f32(sum4(a, z, z, z)) * scale;
  }
}

template <int NV, typename KT>
QINS_AVX512F void weighted_rows_avx512(const float* p, const KT* v, int64_t n, float* out) {
  constexpr int64_t hd = 16 * NV;
  __m512 acc[NV];
  for (int j = 0; j < NV; ++j) acc[j] = _mm512_setzero_ps();
  for (int64_t s = 0; s < n; ++s) {
    const __m512 w = _mm512_set1_ps(p[s]);
    const KT* r = v + s * hd;
    prefetch_rows(r, kAheadRows * hd * sizeof(KT), hd * sizeof(KT));
    for (int j = 0; j < NV; ++j) acc[j] = _mm512_fmadd_ps(w, load16(r + 16 * j), acc[j]);
  }
  for (int j = 0; j < NV; ++j) _mm512_storeu_ps(out + 16 * j, acc[j]);
}

// exp(x) for x <= 0 (softmax arguments): 2^k * e^r with k = round(x / ln 2) and r = x - k ln 2
// (ln 2 in two parts, so r is exact to a few ulp), |r| <= ln 2 / 2; e^r by its Taylor series to
// r^7 (truncation below 6e-9 relative, under float's half ulp). vscalefps applies 2^k.
QINS_AVX512F inline __m512 exp_nonpositive(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));  // below, exp is 0 in float anyway
  const __m512 k =
      _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT);
  __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 y = _mm512_set1_ps(1.0f / 5040);
  for (const float c : {1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f})
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(c));
  return _mm512_scalef_ps(y, k);
}

// The softmax above, 16 scores at a time (the scalar one was ~16 % of the attention time at 1k
// context: 1024 exp per head with the memory idle meanwhile).
QINS_AVX512F void softmax_in_place_avx512(float* p, int64_t n) {
  const int64_t n16 = n & ~int64_t{15};
  const auto tail = static_cast<__mmask16>((1u << (n - n16)) - 1);
  __m512 m = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t s = 0; s < n16; s += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(p + s));
  m = _mm512_mask_max_ps(m, tail, m, _mm512_maskz_loadu_ps(tail, p + n16));
  // The largest lane, in every lane: swap 256-bit halves, 128-bit quarters, pairs, neighbours.
  m = _mm512_max_ps(m, _mm512_shuffle_f32x4(m, m, 0x4E));
  m = _mm512_max_ps(m, _mm512_shuffle_f32x4(m, m, 0xB1));
  m = _mm512_max_ps(m, _mm512_permute_ps(m, 0x4E));
  const __m512 mx = _mm512_max_ps(m, _mm512_permute_ps(m, 0xB1));
  __m512 sum = _mm512_setzero_ps();
  for (int64_t s = 0; s < n16; s += 16) {
    const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(p + s), mx));
    _mm512_storeu_ps(p + s, e);
    sum = _mm512_add_ps(sum, e);
  }
  if (tail) {
    const __m512 e = _mm512_maskz_mov_ps(tail, exp_nonpositive(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, p + n16), mx)));
    _mm512_mask_storeu_ps(p + n16, tail, e);
    sum = _mm512_add_ps(sum, e);
  }
  const __m512 z = _mm512_setzero_ps();
  const __m512 inv = _mm512_set1_ps(1.0f / _mm_cvtss_f32(sum4(sum, z, z, z)));
  for (int64_t s = 0; s < n16; s += 16) _mm512_storeu_ps(p + s, _mm512_mul_ps(_mm512_loadu_ps(p + s), inv));
  if (tail) _mm512_mask_storeu_ps(p + n16, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, p + n16), inv));
}

bool has_avx512f() {
  static const bool ok = __builtin_cpu_supports("avx512f");
  return ok;
}
#if !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

// The two attention loops for one head: the AVX-512 versions where the CPU and head size allow,
// else the portable ones above.
template <typename KT>
void attend_rows(const float* q, const KT* k, const KT* v, int64_t n, int64_t hd, float scale, float* scores,
                 float* out) {
#if defined(QINS_ATTN_AVX512)
  if (has_avx512f() && (hd == 64 || hd == 96 || hd == 128)) {
    auto run = [&](auto nv) {
      constexpr int NV = decltype(nv)::value;
      dot_rows_avx512<NV>(q, k, n, scale, scores);
      softmax_in_place_avx512(scores, n);
      weighted_rows_avx512<NV>(scores, v, n, out);
    };
    if (hd == 64) run(std::integral_constant<int, 4>{});
    else if (hd == 96) run(std::integral_constant<int, 6>{});
    else run(std::integral_constant<int, 8>{});
    return;
  }
#endif
  dot_rows(q, k, n, hd, scale, scores);
  softmax_in_place(scores, n);
  weighted_rows(scores, v, n, hd, out);
}

// Rotates head vector x (hd floats) in place at table row t: cos/sin [T, half] with the
// attention factor applied (both halves of the rotary dims use the same angle).
void rope_in_place(float* x, const float* cos_t, const float* sin_t, int64_t half) {
  for (int64_t j = 0; j < half; ++j) {
    const float a = x[j], b = x[j + half];
    x[j] = a * cos_t[j] - b * sin_t[j];
    x[j + half] = b * cos_t[j] + a * sin_t[j];
  }
}

template <typename KT>
void store_row(KT* dst, const float* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if constexpr (std::is_same_v<KT, uint16_t>) dst[i] = c10::BFloat16(src[i]).x;  // round to nearest even, as copy_ does
    else dst[i] = src[i];
  }
}

// src: T rows of (n_head + 2 n_kv) * hd f32 (q, k, v), `width` apart. Writes rotated K and V at
// positions q0 .. q0+T-1 of layer `il` and the attention output to out [T, n_head * hd] f32.
// No heap allocation once each thread's scratch has grown to the cache's capacity.
template <typename KT>
void attend_cached_rows(const float* src, int64_t T, int64_t width, KvCache& cache, int64_t il, int64_t q0,
                        const Phi3Config& c, const float* cos_tab, const float* sin_tab, float* po) {
  const int64_t hd = c.head_dim, n_head = c.num_attention_heads, n_kv = c.num_key_value_heads;
  const int64_t half = c.rotary_dim / 2, cap = cache.capacity();
  const int64_t layer_elems = n_kv * cap * hd;  // [n_kv, cap, hd] per layer
  KT* kc = static_cast<KT*>(cache.k.data_ptr()) + il * layer_elems;
  KT* vc = static_cast<KT*>(cache.v.data_ptr()) + il * layer_elems;
  thread_local std::vector<float> tmp;
  if (tmp.size() < static_cast<size_t>(hd)) tmp.resize(static_cast<size_t>(hd));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t g = 0; g < n_kv; ++g) {
      const float* k = src + t * width + (n_head + g) * hd;
      std::copy_n(k, hd, tmp.data());
      rope_in_place(tmp.data(), &cos_tab[t * half], &sin_tab[t * half], half);
      store_row(kc + (g * cap + q0 + t) * hd, tmp.data(), hd);
      store_row(vc + (g * cap + q0 + t) * hd, src + t * width + (n_head + n_kv + g) * hd, hd);
    }
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t window = c.sliding_window ? *c.sliding_window : 0;
  const int64_t n_rep = c.n_rep();
  at::parallel_for(0, n_head * T, 1, [&](int64_t b, int64_t e) {
    thread_local std::vector<float> q, scores;  // grown once to the cache's capacity, reused every step
    if (q.size() < static_cast<size_t>(hd)) q.resize(static_cast<size_t>(hd));
    if (scores.size() < static_cast<size_t>(cap)) scores.resize(static_cast<size_t>(cap));
    for (int64_t i = b; i < e; ++i) {
      const int64_t h = i / T, t = i % T, g = h / n_rep, pos = q0 + t;
      std::copy_n(src + t * width + h * hd, hd, q.data());
      rope_in_place(q.data(), &cos_tab[t * half], &sin_tab[t * half], half);
      const int64_t lo = window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0, n = pos + 1 - lo;
      const KT* k = kc + (g * cap + lo) * hd;
      attend_rows(q.data(), k, vc + (g * cap + lo) * hd, n, hd, scale, scores.data(), po + t * n_head * hd + h * hd);
    }
  });
}

// qkv: [1, T, (n_head + 2 n_kv) * hd] f32 contiguous -> attention output [1, T, n_head * hd] f32.
template <typename KT>
torch::Tensor attend_cached(const torch::Tensor& qkv, KvCache& cache, int64_t il, int64_t q0, const Phi3Config& c,
                            const std::vector<float>& cos_tab, const std::vector<float>& sin_tab) {
  const int64_t T = qkv.size(1);
  auto out = torch::empty({1, T, c.num_attention_heads * c.head_dim}, torch::kFloat32);  // [1, T, n_head * hd]
  attend_cached_rows<KT>(qkv.data_ptr<float>(), T, qkv.size(2), cache, il, q0, c, cos_tab.data(), sin_tab.data(),
                         out.data_ptr<float>());
  return out;
}

// cos/sin [T, half] (attention factor applied) for positions q0 .. q0+T-1 from inv_freq [half],
// computed the way rope_tables does it (fp32 throughout).
void rope_rows_from(const float* inv, float factor, int64_t q0, int64_t T, int64_t half, float* cos_tab,
                    float* sin_tab) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < half; ++j) {
      const float f = static_cast<float>(q0 + t) * inv[j];
      cos_tab[t * half + j] = std::cos(f) * factor;
      sin_tab[t * half + j] = std::sin(f) * factor;
    }
}

void rope_rows(const Phi3Config& c, bool long_rope, int64_t q0, int64_t T, std::vector<float>& cos_tab,
               std::vector<float>& sin_tab) {
  const int64_t half = c.rotary_dim / 2;
  const auto inv = rope_inv_freq(c, long_rope);  // [half] f32
  cos_tab.resize(static_cast<size_t>(T * half));
  sin_tab.resize(static_cast<size_t>(T * half));
  rope_rows_from(inv.data_ptr<float>(), static_cast<float>(c.attention_factor), q0, T, half, cos_tab.data(),
                 sin_tab.data());
}

// Attention block after the qkv projection: rotate q and k, append k and v to the cache, attend.
// Returns [B, T, n_head * hd] in the activation dtype.
torch::Tensor self_attention(const torch::Tensor& qkv, KvCache* cache, int64_t il, int64_t q0, bool long_rope,
                             const Phi3Config& c, std::optional<RopeTables>& rope) {
  const int64_t B = qkv.size(0), T = qkv.size(1);
  const bool fused = cache && T <= kFusedMaxT && qkv.scalar_type() == torch::kFloat32 && qkv.is_contiguous() &&
                     !qkv.requires_grad() &&
                     (cache->k.scalar_type() == torch::kBFloat16 || cache->k.scalar_type() == torch::kFloat32);
  if (fused) {
    thread_local std::vector<float> cos_tab, sin_tab;
    thread_local int64_t tab_q0 = -1, tab_T = -1;
    thread_local bool tab_long = false;
    thread_local const Phi3Config* tab_c = nullptr;
    if (tab_q0 != q0 || tab_T != T || tab_long != long_rope || tab_c != &c || il == 0) {  // once per forward
      rope_rows(c, long_rope, q0, T, cos_tab, sin_tab);
      tab_q0 = q0, tab_T = T, tab_long = long_rope, tab_c = &c;
    }
    return cache->k.scalar_type() == torch::kBFloat16
               ? attend_cached<uint16_t>(qkv, *cache, il, q0, c, cos_tab, sin_tab)
               : attend_cached<float>(qkv, *cache, il, q0, c, cos_tab, sin_tab);
  }
  const int64_t n_head = c.num_attention_heads, n_kv = c.num_key_value_heads, hd = c.head_dim;
  auto q = qkv.narrow(-1, 0, n_head * hd).view({B, T, n_head, hd}).transpose(1, 2);  // [B, n_head, T, hd]
  auto k = qkv.narrow(-1, n_head * hd, n_kv * hd).view({B, T, n_kv, hd}).transpose(1, 2);
  auto v = qkv.narrow(-1, (n_head + n_kv) * hd, n_kv * hd).view({B, T, n_kv, hd}).transpose(1, 2);
  if (!rope) rope = rope_tables(c, torch::arange(q0, q0 + T, torch::kInt64), long_rope);  // once per forward
  q = apply_rope(q, *rope, c.rotary_dim);
  k = apply_rope(k, *rope, c.rotary_dim);
  const int64_t S = q0 + T;
  torch::Tensor k_all = k, v_all = v;  // [B, n_kv, S, hd]
  if (cache) {
    cache->k[il].narrow(1, q0, T).copy_(k[0]);
    cache->v[il].narrow(1, q0, T).copy_(v[0]);
    k_all = cache->k[il].narrow(1, 0, S).unsqueeze(0);
    v_all = cache->v[il].narrow(1, 0, S).unsqueeze(0);
  }
  const auto mask = attention_mask(q0, T, S, c.sliding_window);
  const bool own_threads = !q.requires_grad() && !k_all.requires_grad() && at::get_num_threads() > 1 &&
                           q.scalar_type() == torch::kFloat32;
  return own_threads && blas_single_threaded() ? attention_per_head(q, k_all, v_all, mask, c)
                                               : attention(q, k_all, v_all, mask, c);
}

}  // namespace

// ---- The one-token decode step ------------------------------------------------------------

// Every activation of one token, allocated by the first step of a cache and reused after.
struct DecodeScratch {
  std::vector<float> h, x, qkv, attn, y, gate_up, act;  // [hidden], [hidden], [qkv width], ...
  std::vector<float> inv_freq[2];                        // [rotary_dim / 2]: short, long factors
  std::vector<float> cos, sin;                           // [rotary_dim / 2] for the current position
};

namespace {

bool row_path_ok(const Phi3Weights& w, const KvCache& cache, torch::ScalarType act_dtype) {
  if (act_dtype != torch::kFloat32 || !w.embed || !w.lm_head || !w.lm_head->has_row_path()) return false;
  if (!cache.k.defined() || !cache.k.is_contiguous() || !cache.v.is_contiguous() || !cache.k.device().is_cpu()) return false;
  const auto kv = cache.k.scalar_type();
  if ((kv != torch::kBFloat16 && kv != torch::kFloat32) || cache.v.scalar_type() != kv) return false;
  auto f32 = [](const torch::Tensor& t) { return t.scalar_type() == torch::kFloat32 && t.is_contiguous() && t.device().is_cpu(); };
  if (!f32(w.final_norm)) return false;
  for (const Phi3Layer& L : w.layers)
    if (!L.qkv->has_row_path() || !L.o->has_row_path() || !L.gate_up->has_row_path() || !L.down->has_row_path() ||
        !f32(L.input_norm) || !f32(L.post_norm))
      return false;
  return true;
}

DecodeScratch& scratch_for(KvCache& cache, const Phi3Config& c) {
  if (!cache.scratch) {
    auto s = std::make_shared<DecodeScratch>();
    const auto n = [](int64_t v) { return static_cast<size_t>(v); };
    const int64_t hd = c.head_dim;
    s->h.resize(n(c.hidden_size));
    s->x.resize(n(c.hidden_size));
    s->y.resize(n(c.hidden_size));
    s->qkv.resize(n((c.num_attention_heads + 2 * c.num_key_value_heads) * hd));
    s->attn.resize(n(c.num_attention_heads * hd));
    s->gate_up.resize(n(2 * c.intermediate_size));
    s->act.resize(n(c.intermediate_size));
    for (int l = 0; l < 2; ++l) {
      const auto inv = rope_inv_freq(c, l == 1);  // [half] f32
      s->inv_freq[l].assign(inv.data_ptr<float>(), inv.data_ptr<float>() + inv.numel());
    }
    s->cos.resize(n(c.rotary_dim / 2));
    s->sin.resize(n(c.rotary_dim / 2));
    cache.scratch = std::move(s);
  }
  return *cache.scratch;
}

void add_row(float* h, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) h[i] += y[i];
}

}  // namespace

bool decode_step(Phi3Weights& w, int64_t id, KvCache& cache, float* logits, torch::ScalarType act_dtype) {
  if (!row_path_ok(w, cache, act_dtype)) return false;
  const Phi3Config& c = w.config;
  const int64_t q0 = cache.n_past;
  if (q0 + 1 > cache.capacity())
    throw Error("context full: " + std::to_string(q0 + 1) + " positions needed, the KV cache holds " +
                std::to_string(cache.capacity()));
  DecodeScratch& s = scratch_for(cache, c);
  const int64_t H = c.hidden_size, inter = c.intermediate_size, half = c.rotary_dim / 2;
  const auto eps = static_cast<float>(c.rms_norm_eps);
  rope_rows_from(s.inv_freq[cache.long_rope ? 1 : 0].data(), static_cast<float>(c.attention_factor), q0, 1, half,
                 s.cos.data(), s.sin.data());
  const bool bf16_kv = cache.k.scalar_type() == torch::kBFloat16;
  const auto width = static_cast<int64_t>(s.qkv.size());

  w.embed->lookup_row(id, s.h.data());  // no scaling
  for (size_t il = 0; il < w.layers.size(); ++il) {
    Phi3Layer& L = w.layers[il];
    // Attention block.
    rms_norm_row(s.h.data(), L.input_norm.data_ptr<float>(), H, eps, s.x.data());
    L.qkv->forward_row(s.x.data(), s.qkv.data());
    if (bf16_kv)
      attend_cached_rows<uint16_t>(s.qkv.data(), 1, width, cache, static_cast<int64_t>(il), q0, c, s.cos.data(),
                                   s.sin.data(), s.attn.data());
    else
      attend_cached_rows<float>(s.qkv.data(), 1, width, cache, static_cast<int64_t>(il), q0, c, s.cos.data(),
                                s.sin.data(), s.attn.data());
    L.o->forward_row(s.attn.data(), s.y.data());
    add_row(s.h.data(), s.y.data(), H);
    // MLP block: down(up * silu(gate)), gate is the first half.
    rms_norm_row(s.h.data(), L.post_norm.data_ptr<float>(), H, eps, s.x.data());
    L.gate_up->forward_row(s.x.data(), s.gate_up.data());
    swiglu_rows(s.gate_up.data(), 1, inter, s.act.data());
    L.down->forward_row(s.act.data(), s.y.data());
    add_row(s.h.data(), s.y.data(), H);
  }
  rms_norm_row(s.h.data(), w.final_norm.data_ptr<float>(), H, eps, s.x.data());
  w.lm_head->forward_row(s.x.data(), logits);
  cache.n_past = q0 + 1;
  return true;
}

torch::Tensor forward(Phi3Weights& w, const torch::Tensor& ids, KvCache* cache, const ForwardOptions& opts) {
  const Phi3Config& c = w.config;
  // QINS projections on a kernel with its own GEMM (bf16): BLAS only does attention, on one thread.
  // Exact kernels hand their prefill GEMMs to the BLAS, which then keeps all its threads.
  const bool qins_graph = !w.layers.empty() && dynamic_cast<QinsLinear*>(w.layers[0].qkv.get()) != nullptr;
  set_blas_threads(qins_graph && core::kernel_uses_bf16() ? 1 : at::get_num_threads());
  TORCH_CHECK(ids.dim() == 2, "forward: ids must be [B, T]");
  const int64_t B = ids.size(0), T = ids.size(1);
  const int64_t q0 = cache ? cache->n_past : 0;
  if (cache) {
    TORCH_CHECK(B == 1, "forward: a KV cache holds one sequence");
    if (q0 + T > cache->capacity())
      throw Error("context full: " + std::to_string(q0 + T) + " positions needed, the KV cache holds " +
                  std::to_string(cache->capacity()));
  }
  const bool long_rope = cache ? cache->long_rope : rope_needs_long(c, T - 1);
  std::optional<RopeTables> rope;  // built by the first layer that takes the batched path

  auto h = w.embed->lookup(ids).to(opts.act_dtype).contiguous();  // [B, T, hidden], no scaling
  for (size_t il = 0; il < w.layers.size(); ++il) {
    Phi3Layer& L = w.layers[il];
    // Attention block.
    auto qkv = L.qkv->forward(rms_norm(h, L.input_norm, c.rms_norm_eps));  // [B, T, (n_head + 2 n_kv) hd]
    add_residual(h, L.o->forward(self_attention(qkv, cache, static_cast<int64_t>(il), q0, long_rope, c, rope)));
    // MLP block: down(up * silu(gate)), gate is the first half.
    auto gate_up = L.gate_up->forward(rms_norm(h, L.post_norm, c.rms_norm_eps));  // [B, T, 2 inter]
    add_residual(h, L.down->forward(swiglu(gate_up)));
  }
  if (cache) cache->n_past = q0 + T;
  if (opts.last_only) h = h.narrow(1, T - 1, 1).contiguous();
  return w.lm_head->forward(rms_norm(h, w.final_norm, c.rms_norm_eps)).to(torch::kFloat32);
}

}  // namespace qins
