// Self-attention after the qkv projection (PHI3.md §3): rotate q and k, append k and v to the
// cache, attend with a bottom-right causal (and optionally sliding-window) mask. Three forms:
// batched matmuls (prefill, training), the same per kv head on our own threads (prefill of a QINS
// graph whose BLAS runs on one thread), and rows fused over the cache in place (decode, <= 16 tokens).
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "graph_ops.h"
#include "qins/core/attention.h"
#include "qins/core/blas_threads.h"

namespace qins::graph_detail {

namespace {

// Additive mask [T, S]: query t (absolute position q0 + t) sees key s (absolute position s) when
// s <= q0 + t (bottom-right causal) and, with a sliding window, s > q0 + t - window.
torch::Tensor attention_mask(int64_t q0, int64_t T, int64_t S, const std::optional<int>& window,
                             const torch::Device& device) {
  // Positions as int32 made on the device (MPS: no int64 arithmetic needed, no host copy).
  const auto i32 = torch::TensorOptions().dtype(torch::kInt32).device(device);
  auto qpos = torch::arange(q0, q0 + T, i32).unsqueeze(1);  // [T, 1]
  auto kpos = torch::arange(0, S, i32).unsqueeze(0);        // [1, S]
  auto allowed = kpos <= qpos;
  if (window) allowed = allowed & (kpos > qpos - *window);
  auto mask = torch::zeros({T, S}, torch::TensorOptions().dtype(torch::kFloat32).device(device));
  return mask.masked_fill(allowed.logical_not(), -std::numeric_limits<float>::infinity());
}

// q: [B, n_head, T, hd]; k, v: [B, n_kv, S, hd]. Softmax in fp32. Returns [B, T, n_head * hd].
torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& mask, const Phi3Config& c) {
  const int64_t B = q.size(0), T = q.size(2), hd = c.head_dim;
  const int64_t n_kv = c.num_key_value_heads, n_rep = c.n_rep();
  // Grouped-query attention without copying K/V (S = k.size(2) keys): the n_rep query heads of each kv head are
  // folded into the query length, so one batched matmul per kv head serves them all.
  auto qg = q.to(torch::kFloat32).reshape({B, n_kv, n_rep * T, hd});       // [B, n_kv, n_rep*T, hd]
  auto kf = k.to(torch::kFloat32);                                          // [B, n_kv, S, hd]
  auto vf = v.to(torch::kFloat32);
  auto scores = torch::matmul(qg, kf.transpose(-1, -2)) * (1.0 / std::sqrt(static_cast<double>(hd)));
  // mask [T, S] repeated for the n_rep heads folded into the rows: every tensor stays 4-D (some
  // devices' kernels handle at most 4 dimensions).
  scores = scores + (n_rep > 1 ? mask.repeat({n_rep, 1}) : mask);           // [B, n_kv, n_rep*T, S]
  auto probs = torch::softmax(scores, -1);
  auto out = torch::matmul(probs, vf).view({B, c.num_attention_heads, T, hd});  // head-major
  return out.transpose(1, 2).reshape({B, T, c.num_attention_heads * hd}).to(q.scalar_type());
}

// The same attention, one kv head per task of an at::parallel_for (each task's matmuls run on one
// thread): for the QINS graph, whose own GEMMs run on the OpenMP threads, so that the BLAS library
// does not bring its own threads (qins/core/blas_threads.h). No autograd.
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

template <typename KT>
void store_row(KT* dst, const float* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if constexpr (std::is_same_v<KT, uint16_t>) dst[i] = c10::BFloat16(src[i]).x;  // round to nearest even, as copy_ does
    else dst[i] = src[i];
  }
}

constexpr int64_t kFusedMaxT = 16;  // longer chunks (prefill) use the batched matmuls above

// src: T rows of (n_head + 2 n_kv) * hd f32 (q, k, v), `width` apart. Writes rotated K and V at
// positions q0 .. q0+T-1 of layer `il` and the attention output to out [T, n_head * hd] f32.
// No heap allocation once each thread's scratch has grown to the cache's capacity.
template <typename KT>
void attend_cached_rows_as(const float* src, int64_t T, int64_t width, KvCache& cache, int64_t il, int64_t q0,
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
      core::attend_rows(q.data(), k, vc + (g * cap + lo) * hd, n, hd, scale, scores.data(), po + t * n_head * hd + h * hd);
    }
  });
}

}  // namespace

void attend_cached_rows(const float* src, int64_t T, int64_t width, KvCache& cache, int64_t il, int64_t q0,
                        const Phi3Config& c, const float* cos_tab, const float* sin_tab, float* out) {
  if (cache.k.scalar_type() == torch::kBFloat16)
    attend_cached_rows_as<uint16_t>(src, T, width, cache, il, q0, c, cos_tab, sin_tab, out);
  else
    attend_cached_rows_as<float>(src, T, width, cache, il, q0, c, cos_tab, sin_tab, out);
}

namespace {

// qkv: [1, T, (n_head + 2 n_kv) * hd] f32 contiguous -> attention output [1, T, n_head * hd] f32.
torch::Tensor attend_cached(const torch::Tensor& qkv, KvCache& cache, int64_t il, int64_t q0, const Phi3Config& c,
                            const std::vector<float>& cos_tab, const std::vector<float>& sin_tab) {
  const int64_t T = qkv.size(1);
  auto out = torch::empty({1, T, c.num_attention_heads * c.head_dim}, torch::kFloat32);  // [1, T, n_head * hd]
  attend_cached_rows(qkv.data_ptr<float>(), T, qkv.size(2), cache, il, q0, c, cos_tab.data(), sin_tab.data(),
                     out.data_ptr<float>());
  return out;
}

}  // namespace

// Attention block after the qkv projection: rotate q and k, append k and v to the cache, attend.
// Returns [B, T, n_head * hd] in the activation dtype.
torch::Tensor self_attention(const torch::Tensor& qkv, KvCache* cache, int64_t il, int64_t q0, bool long_rope,
                             const Phi3Config& c, std::optional<RopeTables>& rope, bool generic) {
  const int64_t B = qkv.size(0), T = qkv.size(1);
  const bool fused = !generic && cache && qkv.device().is_cpu() && cache->k.device().is_cpu() && T <= kFusedMaxT && qkv.scalar_type() == torch::kFloat32 && qkv.is_contiguous() &&
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
    return attend_cached(qkv, *cache, il, q0, c, cos_tab, sin_tab);
  }
  const int64_t n_head = c.num_attention_heads, n_kv = c.num_key_value_heads, hd = c.head_dim;
  auto q = qkv.narrow(-1, 0, n_head * hd).view({B, T, n_head, hd}).transpose(1, 2);  // [B, n_head, T, hd]
  auto k = qkv.narrow(-1, n_head * hd, n_kv * hd).view({B, T, n_kv, hd}).transpose(1, 2);
  auto v = qkv.narrow(-1, (n_head + n_kv) * hd, n_kv * hd).view({B, T, n_kv, hd}).transpose(1, 2);
  if (!rope) {  // once per forward; made on the CPU in f32 (T x rotary_dim floats), then moved
    rope = rope_tables(c, torch::arange(q0, q0 + T, torch::kInt64), long_rope);
    if (!qkv.device().is_cpu()) rope = RopeTables{rope->cos.to(qkv.device()), rope->sin.to(qkv.device())};
  }
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
  const auto mask = attention_mask(q0, T, S, c.sliding_window, qkv.device());
  const bool own_threads = !generic && qkv.device().is_cpu() && !q.requires_grad() && !k_all.requires_grad() && at::get_num_threads() > 1 &&
                           q.scalar_type() == torch::kFloat32;
  return own_threads && core::blas_single_threaded() ? attention_per_head(q, k_all, v_all, mask, c)
                                               : attention(q, k_all, v_all, mask, c);
}

}  // namespace qins::graph_detail
