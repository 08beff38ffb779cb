// The Phi-3 graph (PHI3.md §3): plain structs for the weights and the KV cache, and one
// forward() that reads like the paper. Model code never opens files: loaders hand it tensors.
#pragma once

#include <torch/torch.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "qins/graph/linear.h"
#include "qins/graph/phi3_config.h"

namespace qins {

struct Phi3Layer {
  torch::Tensor input_norm;          // [hidden], f32
  std::unique_ptr<LinearOp> qkv;     // [(n_head + 2 n_kv_head) * head_dim, hidden]: rows q | k | v
  std::unique_ptr<LinearOp> o;       // [hidden, n_head * head_dim]
  torch::Tensor post_norm;           // [hidden], f32
  std::unique_ptr<LinearOp> gate_up; // [2 * intermediate, hidden]: rows gate | up
  std::unique_ptr<LinearOp> down;    // [hidden, intermediate]
};

struct Phi3Weights {
  Phi3Config config;
  std::unique_ptr<EmbeddingOp> embed;   // [vocab, hidden]
  std::vector<Phi3Layer> layers;
  torch::Tensor final_norm;             // [hidden], f32
  std::unique_ptr<LinearOp> lm_head;    // [vocab, hidden] (with tied embeddings: the same table)
  // The generic device path (qins/graph/device.h): every op through torch ops on `device`, no
  // CPU-only fast path (also on the CPU: the `cpu-generic` device the tests run). decode_step
  // declines such a graph; forward() keeps the KV cache on the device and returns CPU logits.
  torch::Device device = torch::kCPU;
  bool generic = false;

  int64_t weight_bytes() const;         // everything the weights hold in memory
  int64_t n_params() const;
};

// Preallocated per-conversation cache. K is stored AFTER rotation. Writes go in place at
// positions [n_past, n_past + T); no per-token copy of the whole cache.
struct DecodeScratch;  // the one-token step's activations (phi3_model.cpp)

struct KvCache {
  torch::Tensor k;          // [n_layers, n_kv_head, capacity, head_dim], kv dtype
  torch::Tensor v;          // [n_layers, n_kv_head, capacity, head_dim], kv dtype
  int64_t n_past = 0;       // positions filled
  bool long_rope = false;   // which LongRoPE factors rotated the cached K
  std::shared_ptr<DecodeScratch> scratch;  // made by the first decode_step, reused after
  // Positions [0, pages_to) of the CPU cache's memory at pages_base are mapped for writing
  // (reserve_kv_positions); compared with k's data pointer, so a cache moved or remade starts over.
  int64_t pages_to = 0;
  const void* pages_base = nullptr;

  int64_t capacity() const { return k.defined() ? k.size(2) : 0; }
  int64_t bytes() const { return k.defined() ? 2 * k.numel() * k.element_size() : 0; }
};

KvCache make_kv_cache(const Phi3Config& c, int64_t capacity, torch::ScalarType dtype);
// The cache for these weights: on w.device (zeroed there) for a device graph, else as above.
KvCache make_kv_cache(const Phi3Weights& w, int64_t capacity, torch::ScalarType dtype);
// Moves a cache's K and V onto transparent huge pages in place (Linux, MADV_COLLAPSE; see
// core::promote_to_huge_pages): attention streams them ~8 % faster. Safe while the cache is in
// use; `cancel` is checked between 32 MiB pieces. Returns the bytes moved (0 where unsupported).
int64_t promote_kv_cache(const KvCache& cache, const std::atomic<bool>* cancel = nullptr);
// Maps the pages of positions up to `end`, and up to kKvPagesAhead more, of every layer's and
// head's rows of K and V into the process before they are written (core::populate_for_write): one
// call per row for kKvPagesAhead positions instead of a page fault every ~21 positions in each of
// the n_layers x n_kv_head x 2 rows (2048 on Phi-3.5-mini; bench/first_touch measures the two). A
// CPU cache only; a no-op where those positions are mapped already or the system lacks the call.
// forward() and the decode steps call it.
constexpr int64_t kKvPagesAhead = 64;
void reserve_kv_positions(KvCache& cache, int64_t end);

// Rotary tables for absolute positions: cos, sin [T, rotary_dim] f32, attention factor applied.
struct RopeTables {
  torch::Tensor cos;  // [T, rotary_dim]
  torch::Tensor sin;  // [T, rotary_dim]
};
// inv_freq[j] = 1 / (ext[j] * theta^(2j / rotary_dim)); ext = long or short factors (1 without longrope).
torch::Tensor rope_inv_freq(const Phi3Config& c, bool long_factors);  // [rotary_dim / 2] f32
RopeTables rope_tables(const Phi3Config& c, const torch::Tensor& positions /*[T] int64*/, bool long_factors);
// Whether a sequence whose largest position is max_pos needs the long factors.
bool rope_needs_long(const Phi3Config& c, int64_t max_pos);

struct ForwardOptions {
  torch::ScalarType act_dtype = torch::kFloat32;  // activations: f32 or bf16
  bool last_only = false;                         // compute logits for the last position only
  // Projections with a row path take the T rows through LinearOp::forward_rows (each row with the
  // decode step's kernels and numerics) instead of forward (the prefill GEMM). For short prompts:
  // the GEMM path costs about as much for 2 rows as for 30 on QINS weights (it expands every weight
  // tile once per call), the row path about a GEMV per row. f32 CPU activations only (else ignored).
  bool rows_path = false;
};

// ids: [B, T] int64. With a cache (B must be 1) the tokens sit at positions
// cache->n_past .. n_past + T - 1 and the cache advances; without one they sit at 0 .. T-1.
// Returns logits [B, T, vocab] (or [B, 1, vocab] with last_only), f32, on the CPU (a device
// graph copies them back once per call; a CPU cache given to a device graph is moved there first).
torch::Tensor forward(Phi3Weights& w, const torch::Tensor& ids, KvCache* cache, const ForwardOptions& opts = {});

// One token at position cache.n_past through the same graph as forward(), for the decode loop:
// every activation lives in buffers kept with the cache (made by the first call), so a step makes
// no heap allocation after warm-up. Writes logits[vocab_size] (fp32) and advances n_past.
// Returns false, touching nothing, where the graph needs forward(): a projection or embedding
// without a row path (the dense baselines), bf16 activations, a KV dtype other than f32/bf16, or
// a device graph (w.generic).
// Throws Error when the cache is full and std::out_of_range for a token id outside the vocabulary.
bool decode_step(Phi3Weights& w, int64_t id, KvCache& cache, float* logits,
                 torch::ScalarType act_dtype = torch::kFloat32);

// The batched decode step (continuous batching): one token ids[b] for each of B sequences, each
// at its own caches[b]->n_past (distinct caches), through the same graph in one pass: every
// projection takes the B rows at once (the QINS kernels decode each code once for all of them,
// core::qins_matmul_rows), attention runs per sequence against its own cache. Row b of
// logits [B, vocab] is bit for bit what decode_step gives that sequence alone. `scratch` holds the
// activations (made or grown by the call, reused after: no allocation once warm). Returns false,
// touching nothing, where decode_step would for any of the caches; the caller handles a sequence
// that crosses into LongRoPE (rope_needs_long) before calling. Throws Error when a cache is full.
bool decode_step_batch(Phi3Weights& w, const int64_t* ids, KvCache* const* caches, int64_t B, float* logits,
                       std::shared_ptr<DecodeScratch>& scratch, torch::ScalarType act_dtype = torch::kFloat32);

}  // namespace qins
