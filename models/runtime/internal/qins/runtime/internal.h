// The runtime's internal header: the torch side of Engine, for the tools (eval, bench, synth) and
// the tests. The app never includes it (qins-chat links qins_runtime, whose public include folder
// holds engine.h alone); this folder is on the include path of the qins_runtime_internal target.
//
// What a tool may do through it: read and swap a loaded engine's weights (bench, eval), read its
// tokenizer and stop ids, and set the thread policy the engine uses.
#pragma once

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "qins/graph/phi3_config.h"
#include "qins/graph/phi3_model.h"
#include "qins/io/loaded_model.h"
#include "qins/runtime/engine.h"
#include "qins/tokenizer/tokenizer.h"

namespace qins {

// A prompt with at most this many tokens to prefill (after the cached prefix it reuses) runs its
// projections through their row paths (ForwardOptions::rows_path: the decode step's kernels, row
// by row) rather than the prefill GEMM, whose per-call cost dominates short prompts on QINS-4
// weights (docs/benchmarks.md, "Short prompts through the row path"). Decided per prompt, not per
// chunk, so Session and the BatchScheduler (other chunk sizes) compute every row the same way.
// For QINS-4 layer projections 24 (level with the bf16 GEMM there on AVX512-BF16, faster up to
// ~32 tokens than the fp32 GEMM on AVX2), or 256 where the QINS-4 kernel is AVX-512 VNNI and the
// prefill GEMM the fp32 one (faster up to 128 tokens, as fast at 512); for 8-bit projections 8 with
// the avx512bf16 kernel (2x the bf16 GEMM at 4 tokens), 0 with the others (the AVX2 8-bit path was
// slower already at 8 tokens); 0 (never) for dense ones. QINS_ROWS_PREFILL_MAX=<n> sets it for
// every model (0: never); read once.
int64_t rows_prefill_max(const Phi3Weights& w);

struct Engine::Impl {
  LoadOptions options;
  ModelInfo info;
  GenerationConfig generation;
  std::unique_ptr<tok::Tokenizer> tokenizer;
  Phi3Weights weights;                      // weights.config is the model's Phi3Config
  std::vector<int> stop_ids;                // generation_config eos ids, else config eos + <|end|>
  torch::ScalarType act_dtype = torch::kFloat32;
  torch::ScalarType kv_dtype = torch::kBFloat16;

  // Background work after load: moving the weight buffers onto huge pages
  // (core::promote_to_huge_pages; decoding streams them ~1.5x faster afterwards on Linux).
  std::thread background;
  std::atomic<bool> background_cancel{false};
  std::atomic<bool> background_done{true};
  std::atomic<int64_t> background_bytes{0};
  std::atomic<double> background_seconds{0.0};
  void start_background_work();
  void stop_background_work();  // cancels and joins; safe to call twice
  ~Impl() { stop_background_work(); }
};

// The one door into a loaded engine's internals (Engine::impl is private).
struct EngineInternals {
  static Engine::Impl& of(Engine& e) { return *e.impl_; }
  static const Engine::Impl& of(const Engine& e) { return *e.impl_; }
  // Builds the engine around what a loader read (stop ids, dtypes, info, background work).
  static std::unique_ptr<Engine> make(LoadedModel model, const LoadOptions& options);
};
inline Engine::Impl& engine_internals(Engine& e) { return EngineInternals::of(e); }

torch::ScalarType kv_scalar_type(KvDtype d);
// Sets the intra-op thread count (0 = all cores). Debian's libtorch starts with 1 thread.
void configure_threads(int threads);
// The BLAS thread policy for these weights at the current intra-op thread count
// (qins/core/blas_threads.h): QINS projections on a kernel with its own GEMM
// (core::kernel_uses_bf16) -> BLAS on 1 thread, attention per kv head on our threads; otherwise
// BLAS on at::get_num_threads(), attention in batched matmuls. EngineInternals::make applies it;
// call it again after swapping an engine's projections, changing the kernel path
// (core::set_kernel_isa) or the thread count, and before running weights built outside an engine.
void apply_thread_policy(const Phi3Weights& w);
// Moves e.weights onto e.options.device (the generic device path), or records in e.info why it
// stays on the CPU; fills info.device / device_note / device_mode. EngineInternals::make calls it.
void place_on_device(Engine::Impl& e);
// Engine messages as the tokenizer's chat turns.
std::vector<tok::ChatTurn> to_turns(const std::vector<ChatMessage>& messages);

}  // namespace qins
