// The Phi-3 forward pass (PHI3.md §3). The whole model is phi3_logits() and decoder_layer()
// below, written once over a small set of operations with two implementations: TensorOps (torch
// tensors, any dtype, autograd; forward()) and RowOps (one token of each of B sequences as fp32
// rows in preallocated buffers, no allocation; decode_step() with B = 1, decode_step_batch()). The operations themselves live in layer_ops.cpp,
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
// dimension in front) and B rows of hidden (one per sequence) for RowOps.
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
  Act linear(LinearOp& op, const Act& x) {
    if (opts_.rows_path && !generic_ && op.has_row_path() && x.scalar_type() == torch::kFloat32 && x.device().is_cpu()) {
      const Act x2 = x.reshape({-1, op.in_features()}).contiguous();  // [B*T, in] f32
      Act y = torch::empty({x2.size(0), op.out_features()}, torch::kFloat32);  // [B*T, out] f32
      op.forward_rows(x2.data_ptr<float>(), x2.size(0), y.data_ptr<float>());
      std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
      shape.back() = op.out_features();
      return y.view(shape);
    }
    return op.forward(x);
  }
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
  if (cache) reserve_kv_positions(*cache, cache->n_past + T);
  TensorOps ops(w.config, ids, cache, opts, w.generic);
  torch::Tensor logits = phi3_logits(ops, w);  // [B, T or 1, vocab] f32
  if (cache) cache->n_past += T;
  if (!logits.device().is_cpu()) logits = logits.to(torch::kCPU);  // once per call: for the sampler
  return logits;
}

// ---- The row form: the decode step ---------------------------------------------------------------

// Every activation of one decode step of up to `rows` sequences (one token each), allocated by
// the first step and reused after.
struct DecodeScratch {
  int64_t rows = 0;                // sequences it has room for
  int64_t hidden = 0, arena_per_row = 0, half = 0;
  std::vector<float> h;            // [rows, hidden]: the residual streams
  std::vector<float> arena;        // the rows of one residual block (RowOps::take)
  std::vector<float> inv_freq[2];  // [rotary_dim / 2]: short, long factors
  std::vector<float> cos, sin;     // [rows, rotary_dim / 2] for each sequence's position
};

namespace {

// B fp32 rows of n floats each, back to back, in DecodeScratch.
struct Row {
  float* p;
  int64_t n;
};

// One token of each of B sequences (B = 1: the single-sequence decode step), each at its own
// cache's position. Projections take all B rows at once (LinearOp::forward_rows: the QINS
// kernels decode each code once for all rows); attention runs per sequence against its own cache.
class RowOps {
 public:
  using Act = Row;

  RowOps(const Phi3Config& c, const int64_t* ids, KvCache* const* caches, int64_t B, DecodeScratch& s, float* logits)
      : c_(c), ids_(ids), caches_(caches), B_(B), s_(s), logits_(logits), eps_(static_cast<float>(c.rms_norm_eps)) {}

  Row embed(EmbeddingOp& e) {
    const int64_t H = c_.hidden_size;
    for (int64_t b = 0; b < B_; ++b) e.lookup_row(ids_[b], s_.h.data() + b * H);
    return {s_.h.data(), H};
  }
  Row rms_norm(Row x, const torch::Tensor& weight) {
    const Row y = take(x.n);
    for (int64_t b = 0; b < B_; ++b)
      graph_detail::rms_norm_row(x.p + b * x.n, weight.data_ptr<float>(), x.n, eps_, y.p + b * x.n);
    return y;
  }
  Row linear(LinearOp& op, Row x) {
    const Row y = take(op.out_features());
    if (B_ == 1) op.forward_row(x.p, y.p);
    else op.forward_rows(x.p, B_, y.p);
    return y;
  }
  Row attention(Row qkv, int64_t il) {
    const int64_t width = int64_t{c_.num_attention_heads} * c_.head_dim, half = c_.rotary_dim / 2;
    const Row y = take(width);
    for (int64_t b = 0; b < B_; ++b)
      graph_detail::attend_cached_rows(qkv.p + b * qkv.n, 1, qkv.n, *caches_[b], il, caches_[b]->n_past, c_,
                                       s_.cos.data() + b * half, s_.sin.data() + b * half, y.p + b * width);
    return y;
  }
  Row swiglu(Row gate_up) {
    const Row y = take(gate_up.n / 2);
    graph_detail::swiglu_rows(gate_up.p, B_, gate_up.n / 2, y.p);
    return y;
  }
  // The residual stream is all that lives past a block: every row taken since the last add is free.
  void add_residual(Row& h, Row y) {
    graph_detail::add_row(h.p, y.p, B_ * h.n);
    used_ = 0;
  }
  Row last_rows(Row h) { return h; }
  Row logits(LinearOp& head, Row x) {
    if (B_ == 1) head.forward_row(x.p, logits_);
    else head.forward_rows(x.p, B_, logits_);
    return {logits_, head.out_features()};
  }

  // Floats one block takes per sequence (scratch_for sizes the arena with it).
  static int64_t arena_floats(const Phi3Config& c) {
    const int64_t H = c.hidden_size, attn = int64_t{c.num_attention_heads} * c.head_dim;
    return std::max(2 * H + c.qkv_out() + attn, 2 * H + 3 * int64_t{c.intermediate_size});
  }

 private:
  Row take(int64_t n) {
    TORCH_INTERNAL_ASSERT(used_ + B_ * n <= static_cast<int64_t>(s_.arena.size()), "decode arena too small");
    const Row r{s_.arena.data() + used_, n};
    used_ += B_ * n;
    return r;
  }

  const Phi3Config& c_;
  const int64_t* ids_;        // [B]
  KvCache* const* caches_;    // [B]: token b sits at position caches_[b]->n_past
  const int64_t B_;
  DecodeScratch& s_;
  float* logits_;             // [B, vocab], the caller's
  const float eps_;
  int64_t used_ = 0;          // floats of s_.arena taken
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

// The scratch for `rows` sequences of this model: `held` if it fits, else a new one in its place.
DecodeScratch& scratch_for(std::shared_ptr<DecodeScratch>& held, const Phi3Config& c, int64_t rows) {
  const int64_t half = c.rotary_dim / 2;
  if (!held || held->rows < rows || held->hidden != c.hidden_size || held->arena_per_row != RowOps::arena_floats(c) ||
      held->half != half) {
    auto s = std::make_shared<DecodeScratch>();
    s->rows = rows;
    s->hidden = c.hidden_size;
    s->arena_per_row = RowOps::arena_floats(c);
    s->half = half;
    s->h.resize(static_cast<size_t>(rows * c.hidden_size));
    s->arena.resize(static_cast<size_t>(rows * s->arena_per_row));
    for (int l = 0; l < 2; ++l) {
      const auto inv = rope_inv_freq(c, l == 1);  // [half] f32
      s->inv_freq[l].assign(inv.data_ptr<float>(), inv.data_ptr<float>() + inv.numel());
    }
    s->cos.resize(static_cast<size_t>(rows * half));
    s->sin.resize(static_cast<size_t>(rows * half));
    held = std::move(s);
  }
  return *held;
}

// B tokens through phi3_logits over RowOps; the caller has checked the row path and the room.
void run_rows(Phi3Weights& w, const int64_t* ids, KvCache* const* caches, int64_t B, DecodeScratch& s, float* logits) {
  const Phi3Config& c = w.config;
  const int64_t half = c.rotary_dim / 2;
  for (int64_t b = 0; b < B; ++b)
    graph_detail::rope_rows_from(s.inv_freq[caches[b]->long_rope ? 1 : 0].data(), static_cast<float>(c.attention_factor),
                                 caches[b]->n_past, 1, half, s.cos.data() + b * half, s.sin.data() + b * half);
  for (int64_t b = 0; b < B; ++b) reserve_kv_positions(*caches[b], caches[b]->n_past + 1);
  RowOps ops(c, ids, caches, B, s, logits);
  phi3_logits(ops, w);
  for (int64_t b = 0; b < B; ++b) ++caches[b]->n_past;
}

void check_room(const KvCache& cache) {
  if (cache.n_past + 1 > cache.capacity())
    throw Error("context full: " + std::to_string(cache.n_past + 1) + " positions needed, the KV cache holds " +
                std::to_string(cache.capacity()));
}

}  // namespace

bool decode_step(Phi3Weights& w, int64_t id, KvCache& cache, float* logits, torch::ScalarType act_dtype) {
  if (!row_path_ok(w, cache, act_dtype)) return false;
  check_room(cache);
  KvCache* one = &cache;
  run_rows(w, &id, &one, 1, scratch_for(cache.scratch, w.config, 1), logits);
  return true;
}

bool decode_step_batch(Phi3Weights& w, const int64_t* ids, KvCache* const* caches, int64_t B, float* logits,
                       std::shared_ptr<DecodeScratch>& scratch, torch::ScalarType act_dtype) {
  if (B < 1) return true;
  for (int64_t b = 0; b < B; ++b)
    if (!row_path_ok(w, *caches[b], act_dtype)) return false;
  for (int64_t b = 0; b < B; ++b) {
    check_room(*caches[b]);
    for (int64_t a = 0; a < b; ++a)
      TORCH_CHECK(caches[a] != caches[b], "decode_step_batch: one cache given twice");
  }
  run_rows(w, ids, caches, B, scratch_for(scratch, w.config, B), logits);
  return true;
}

}  // namespace qins
