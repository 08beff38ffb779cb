// The Phi-3 forward pass (PHI3.md §3). The whole model is phi3_logits() and decoder_layer()
// below, written once over a small set of operations with two implementations: TensorOps (torch
// tensors, any dtype, autograd; forward()) and RowOps (one token's fp32 rows in buffers kept with
// the cache, no allocation; decode_step()). The operations themselves live in layer_ops.cpp,
// rope.cpp and self_attention.cpp.
#include "qins/graph/phi3_model.h"

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "graph_ops.h"
#include "qins/util/errors.h"

namespace qins {

namespace {

// One decoder layer: two pre-norm residual blocks. Act is [T, hidden] for TensorOps (with a batch
// dimension in front) and one row of hidden for RowOps.
template <class Ops>
void decoder_layer(Ops& ops, Phi3Layer& L, int64_t il, typename Ops::Act& h) {
  // Attention block: h += o(attention(qkv(norm(h)))); attention rotates q and k and appends k, v
  // to the cache.
  auto qkv = ops.linear(*L.qkv, ops.rms_norm(h, L.input_norm));  // [T, (n_head + 2 n_kv_head) * head_dim]
  ops.add_residual(h, ops.linear(*L.o, ops.attention(qkv, il)));
  // MLP block: h += down(up * silu(gate)), gate the first half of gate_up.
  auto gate_up = ops.linear(*L.gate_up, ops.rms_norm(h, L.post_norm));  // [T, 2 * intermediate]
  ops.add_residual(h, ops.linear(*L.down, ops.swiglu(gate_up)));
}

// Embedding (no scaling) -> the layers -> final norm -> lm_head. Returns the logits [T, vocab] f32.
template <class Ops>
typename Ops::Act phi3_logits(Ops& ops, Phi3Weights& w) {
  typename Ops::Act h = ops.embed(*w.embed);  // [T, hidden]: the residual stream
  for (size_t il = 0; il < w.layers.size(); ++il) decoder_layer(ops, w.layers[il], static_cast<int64_t>(il), h);
  return ops.logits(*w.lm_head, ops.rms_norm(ops.last_rows(h), w.final_norm));
}

// ---- The batch form: torch tensors --------------------------------------------------------------

class TensorOps {
 public:
  using Act = torch::Tensor;  // [B, T, width] in the activation dtype

  TensorOps(const Phi3Config& c, const torch::Tensor& ids, KvCache* cache, const ForwardOptions& opts, bool generic)
      : c_(c), ids_(ids), cache_(cache), opts_(opts), generic_(generic), q0_(cache ? cache->n_past : 0),
        long_rope_(cache ? cache->long_rope : rope_needs_long(c, ids.size(1) - 1)) {}

  Act embed(EmbeddingOp& e) { return e.lookup(ids_).to(opts_.act_dtype).contiguous(); }
  Act rms_norm(const Act& x, const torch::Tensor& weight) { return graph_detail::rms_norm(x, weight, c_.rms_norm_eps, generic_); }
  Act linear(LinearOp& op, const Act& x) { return op.forward(x); }
  Act attention(const Act& qkv, int64_t il) {
    return graph_detail::self_attention(qkv, cache_, il, q0_, long_rope_, c_, rope_, generic_);
  }
  Act swiglu(const Act& gate_up) { return graph_detail::swiglu(gate_up, generic_); }
  void add_residual(Act& h, const Act& y) { graph_detail::add_residual(h, y); }
  Act last_rows(const Act& h) { return opts_.last_only ? h.narrow(1, h.size(1) - 1, 1).contiguous() : h; }
  Act logits(LinearOp& head, const Act& x) { return head.forward(x).to(torch::kFloat32); }

 private:
  const Phi3Config& c_;
  const torch::Tensor& ids_;  // [B, T] int64
  KvCache* cache_;
  const ForwardOptions& opts_;
  const bool generic_;              // torch ops only (the device path): no CPU-only fast path
  const int64_t q0_;                // position of the first token
  const bool long_rope_;
  std::optional<RopeTables> rope_;  // built by the first layer that takes the batched attention
};

}  // namespace

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

torch::Tensor forward(Phi3Weights& w, const torch::Tensor& ids, KvCache* cache, const ForwardOptions& opts) {
  TORCH_CHECK(ids.dim() == 2, "forward: ids must be [B, T]");
  const int64_t B = ids.size(0), T = ids.size(1);
  if (cache) {
    TORCH_CHECK(B == 1, "forward: a KV cache holds one sequence");
    if (cache->n_past + T > cache->capacity())
      throw Error("context full: " + std::to_string(cache->n_past + T) + " positions needed, the KV cache holds " +
                  std::to_string(cache->capacity()));
  }
  if (cache && cache->k.defined() && cache->k.device() != w.device) {  // a cache made for the CPU: move it once
    cache->k = cache->k.to(w.device);
    cache->v = cache->v.to(w.device);
    cache->scratch.reset();
  }
  TensorOps ops(w.config, ids, cache, opts, w.generic);
  torch::Tensor logits = phi3_logits(ops, w);  // [B, T or 1, vocab] f32
  if (cache) cache->n_past += T;
  if (!logits.device().is_cpu()) logits = logits.to(torch::kCPU);  // once per call: for the sampler
  return logits;
}

// ---- The one-row form: the decode step ----------------------------------------------------------

// Every activation of one token, allocated by the first step of a cache and reused after.
struct DecodeScratch {
  std::vector<float> h;            // [hidden]: the residual stream
  std::vector<float> arena;        // the rows of one residual block (RowOps::take)
  std::vector<float> inv_freq[2];  // [rotary_dim / 2]: short, long factors
  std::vector<float> cos, sin;     // [rotary_dim / 2] for the current position
};

namespace {

// One fp32 row of n floats in DecodeScratch.
struct Row {
  float* p;
  int64_t n;
};

class RowOps {
 public:
  using Act = Row;

  RowOps(const Phi3Config& c, int64_t id, KvCache& cache, DecodeScratch& s, float* logits)
      : c_(c), id_(id), cache_(cache), s_(s), logits_(logits), eps_(static_cast<float>(c.rms_norm_eps)) {}

  Row embed(EmbeddingOp& e) {
    e.lookup_row(id_, s_.h.data());
    return {s_.h.data(), static_cast<int64_t>(s_.h.size())};
  }
  Row rms_norm(Row x, const torch::Tensor& weight) {
    const Row y = take(x.n);
    graph_detail::rms_norm_row(x.p, weight.data_ptr<float>(), x.n, eps_, y.p);
    return y;
  }
  Row linear(LinearOp& op, Row x) {
    const Row y = take(op.out_features());
    op.forward_row(x.p, y.p);
    return y;
  }
  Row attention(Row qkv, int64_t il) {
    const Row y = take(int64_t{c_.num_attention_heads} * c_.head_dim);
    graph_detail::attend_cached_rows(qkv.p, 1, qkv.n, cache_, il, cache_.n_past, c_, s_.cos.data(), s_.sin.data(), y.p);
    return y;
  }
  Row swiglu(Row gate_up) {
    const Row y = take(gate_up.n / 2);
    graph_detail::swiglu_rows(gate_up.p, 1, gate_up.n / 2, y.p);
    return y;
  }
  // The residual stream is all that lives past a block: every row taken since the last add is free.
  void add_residual(Row& h, Row y) {
    graph_detail::add_row(h.p, y.p, h.n);
    used_ = 0;
  }
  Row last_rows(Row h) { return h; }
  Row logits(LinearOp& head, Row x) {
    head.forward_row(x.p, logits_);
    return {logits_, head.out_features()};
  }

  // Floats one block takes (scratch_for sizes the arena with it).
  static int64_t arena_floats(const Phi3Config& c) {
    const int64_t H = c.hidden_size, attn = int64_t{c.num_attention_heads} * c.head_dim;
    return std::max(2 * H + c.qkv_out() + attn, 2 * H + 3 * int64_t{c.intermediate_size});
  }

 private:
  Row take(int64_t n) {
    TORCH_INTERNAL_ASSERT(used_ + n <= static_cast<int64_t>(s_.arena.size()), "decode arena too small");
    const Row r{s_.arena.data() + used_, n};
    used_ += n;
    return r;
  }

  const Phi3Config& c_;
  const int64_t id_;
  KvCache& cache_;  // the token sits at position cache_.n_past
  DecodeScratch& s_;
  float* logits_;   // [vocab], the caller's
  const float eps_;
  int64_t used_ = 0;  // floats of s_.arena taken
};

bool row_path_ok(const Phi3Weights& w, const KvCache& cache, torch::ScalarType act_dtype) {
  if (w.generic || !w.device.is_cpu()) return false;
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
    s->h.resize(static_cast<size_t>(c.hidden_size));
    s->arena.resize(static_cast<size_t>(RowOps::arena_floats(c)));
    for (int l = 0; l < 2; ++l) {
      const auto inv = rope_inv_freq(c, l == 1);  // [half] f32
      s->inv_freq[l].assign(inv.data_ptr<float>(), inv.data_ptr<float>() + inv.numel());
    }
    s->cos.resize(static_cast<size_t>(c.rotary_dim / 2));
    s->sin.resize(static_cast<size_t>(c.rotary_dim / 2));
    cache.scratch = std::move(s);
  }
  return *cache.scratch;
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
  graph_detail::rope_rows_from(s.inv_freq[cache.long_rope ? 1 : 0].data(), static_cast<float>(c.attention_factor), q0,
                               1, c.rotary_dim / 2, s.cos.data(), s.sin.data());
  RowOps ops(c, id, cache, s, logits);
  phi3_logits(ops, w);
  cache.n_past = q0 + 1;
  return true;
}

}  // namespace qins
