// The Phi-3 forward pass. The spine is forward() at the bottom; helpers above it are the pieces
// PHI3.md §3 names (RMSNorm, half-split LongRoPE, attention with a bottom-right causal mask).
#include "qins/models/phi3_model.h"

#include <cmath>

#include "qins/models/engine.h"

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
  cache.k = torch::zeros(shape, torch::TensorOptions().dtype(dtype));
  cache.v = torch::zeros(shape, torch::TensorOptions().dtype(dtype));
  return cache;
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

// y = x / sqrt(mean(x^2) + eps) in fp32, cast back to the activation dtype, THEN times the weight.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  auto xf = x.to(torch::kFloat32);
  auto normed = (xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps)).to(x.scalar_type());
  return (normed * weight).to(x.scalar_type());
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
  const int64_t B = q.size(0), T = q.size(2), S = k.size(2), hd = c.head_dim;
  const int64_t n_kv = c.num_key_value_heads, n_rep = c.n_rep();
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

}  // namespace

torch::Tensor forward(Phi3Weights& w, const torch::Tensor& ids, KvCache* cache, const ForwardOptions& opts) {
  const Phi3Config& c = w.config;
  TORCH_CHECK(ids.dim() == 2, "forward: ids must be [B, T]");
  const int64_t B = ids.size(0), T = ids.size(1);
  const int64_t n_head = c.num_attention_heads, n_kv = c.num_key_value_heads, hd = c.head_dim;
  const int64_t q0 = cache ? cache->n_past : 0;
  if (cache) {
    TORCH_CHECK(B == 1, "forward: a KV cache holds one sequence");
    if (q0 + T > cache->capacity())
      throw Error("context full: " + std::to_string(q0 + T) + " positions needed, the KV cache holds " +
                  std::to_string(cache->capacity()));
  }
  const bool long_rope = cache ? cache->long_rope : rope_needs_long(c, T - 1);
  const auto rope = rope_tables(c, torch::arange(q0, q0 + T, torch::kInt64), long_rope);
  const int64_t S = q0 + T;
  const auto mask = attention_mask(q0, T, S, c.sliding_window);

  auto h = w.embed->lookup(ids).to(opts.act_dtype);  // [B, T, hidden], no scaling
  for (size_t il = 0; il < w.layers.size(); ++il) {
    Phi3Layer& L = w.layers[il];
    // Attention block.
    auto qkv = L.qkv->forward(rms_norm(h, L.input_norm, c.rms_norm_eps));  // [B, T, (n_head + 2 n_kv) hd]
    auto q = qkv.narrow(-1, 0, n_head * hd).view({B, T, n_head, hd}).transpose(1, 2);  // [B, n_head, T, hd]
    auto k = qkv.narrow(-1, n_head * hd, n_kv * hd).view({B, T, n_kv, hd}).transpose(1, 2);
    auto v = qkv.narrow(-1, (n_head + n_kv) * hd, n_kv * hd).view({B, T, n_kv, hd}).transpose(1, 2);
    q = apply_rope(q, rope, c.rotary_dim);
    k = apply_rope(k, rope, c.rotary_dim);
    torch::Tensor k_all = k, v_all = v;  // [B, n_kv, S, hd]
    if (cache) {
      cache->k[il].narrow(1, q0, T).copy_(k[0]);
      cache->v[il].narrow(1, q0, T).copy_(v[0]);
      k_all = cache->k[il].narrow(1, 0, S).unsqueeze(0);
      v_all = cache->v[il].narrow(1, 0, S).unsqueeze(0);
    }
    h = h + L.o->forward(attention(q, k_all, v_all, mask, c));
    // MLP block: down(up * silu(gate)), gate is the first half.
    auto gate_up = L.gate_up->forward(rms_norm(h, L.post_norm, c.rms_norm_eps));  // [B, T, 2 inter]
    const int64_t inter = gate_up.size(-1) / 2;
    auto gate = gate_up.narrow(-1, 0, inter);
    auto up = gate_up.narrow(-1, inter, inter);
    h = h + L.down->forward(up * torch::silu(gate));
  }
  if (cache) cache->n_past = S;
  if (opts.last_only) h = h.narrow(1, T - 1, 1);
  return w.lm_head->forward(rms_norm(h, w.final_norm, c.rms_norm_eps)).to(torch::kFloat32);
}

}  // namespace qins
