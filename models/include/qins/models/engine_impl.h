// The torch side of the engine: what Engine and Session hold. Only models/, tests and benchmarks
// include this; the app sees engine.h alone.
#pragma once

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "qins/models/engine.h"
#include "qins/models/phi3_config.h"
#include "qins/models/phi3_model.h"
#include "qins/tokenizer/tokenizer.h"

namespace qins {

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

// Builds the engine around weights and a tokenizer (shared by the HF and .qins loaders).
std::unique_ptr<Engine> make_engine(std::unique_ptr<Engine::Impl> impl);

// Loads a Hugging Face folder (config.json, safetensors, tokenizer files).
std::unique_ptr<Engine> load_hf_engine(const std::string& dir, const LoadOptions& options, const ProgressFn& progress);
// Loads a .qins file (defined by the container code).
std::unique_ptr<Engine> load_qins_engine(const std::string& path, const LoadOptions& options, const ProgressFn& progress);
bool is_qins_file(const std::string& path);

torch::ScalarType kv_scalar_type(KvDtype d);
// Sets the intra-op thread count (0 = all cores). Debian's libtorch starts with 1 thread.
void configure_threads(int threads);

}  // namespace qins
