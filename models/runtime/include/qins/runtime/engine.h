// The engine's public API: everything the app (GUI and CLI) may see of a model.
// Free of torch and Qt on purpose (DESIGN.md): callers never see a tensor.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "qins/util/errors.h"    // Error, Cancelled: every error the engine reports
#include "qins/util/progress.h"  // ProgressFn: returns false to cancel; fraction in [0, 1]

namespace qins {

enum class Role { System, User, Assistant };

struct ChatMessage {
  Role role = Role::User;
  std::string content;
};

// Immutable per request: a reply in flight keeps the settings it started with.
struct SamplingParams {
  float temperature = 0.7f;         // 0 = greedy
  float top_p = 0.95f;              // 1 = off
  int top_k = 0;                    // 0 = off
  float min_p = 0.0f;               // 0 = off
  float repetition_penalty = 1.0f;  // 1 = off
  uint64_t seed = 0;
  bool random_seed = true;          // true: seed is drawn from the clock
  int max_new_tokens = 512;
};

enum class KvDtype { F32, BF16, F16 };

struct LoadOptions {
  // auto | cpu | cuda | mps | cpu-generic. auto prefers MPS, then CUDA, then the CPU (the fused
  // QINS kernels). cuda/mps run the generic device path (the whole graph through torch ops, QINS
  // codes expanded per layer on the device); cpu-generic runs that same path on CPU tensors (what
  // the tests check against the fused CPU path). A device that cannot be used falls back to the
  // CPU with the reason in ModelInfo::device_note.
  std::string device = "auto";
  // Device path only: "expand" (codes stay 1 byte per weight on the device, each projection is
  // expanded into a shared scratch buffer when it runs) or "resident" (every projection kept
  // expanded in the compute dtype: faster, 2 bytes per weight; stops where device memory runs out).
  std::string gpu_weights = "expand";
  int threads = 0;               // 0 = all cores
  int context_length = 4096;     // KV cache is preallocated for this many positions
  KvDtype kv_dtype = KvDtype::BF16;
  bool verify_checksums = true;  // .qins: verify every chunk's checksum while decoding
  // Hugging Face folders only: "f32" (default, the unquantized reference), "bf16", or a QINS
  // codebook ("inverse" | "projective" | "uniform") to quantize every projection at load.
  std::string weight_format = "f32";
  bool bf16_activations = false;  // compute activations in bf16 instead of f32
};

// What a caller may show about a loaded model.
struct ModelInfo {
  std::string name;            // directory or file stem
  std::string path;
  std::string format;          // "hf" (safetensors directory) or "qins"
  std::string codebook;        // "none" for float weights, else inverse|projective|uniform|qins4
  std::string device;          // cpu | cuda | mps | cpu-generic: where the graph runs
  std::string device_note;     // why a preferred device was not used, if it was not
  std::string device_mode;     // how it runs there, e.g. "fused CPU kernels (avx2)" or
                               // "generic path, f16, weights expanded per layer (scratch 96 MiB)"
  int64_t n_params = 0;
  int64_t file_bytes = 0;      // bytes on disk (all shards, or the .qins file)
  int64_t weight_bytes = 0;    // bytes the weights occupy in memory
  int64_t kv_cache_bytes = 0;  // bytes preallocated for one session's KV cache
  int context_length = 0;      // positions the KV cache holds
  int vocab_size = 0;
  int n_layers = 0;
  int hidden_size = 0;
  double load_seconds = 0.0;
  std::string chat_template_note;  // non-empty when the file's chat template is not Phi-3's
};

struct GenerationStats {
  int prompt_tokens = 0;       // tokens of the rendered conversation
  int prefilled_tokens = 0;    // of those, how many had to be run (the rest came from the cache)
  int generated_tokens = 0;
  double time_to_first_token_s = 0.0;
  double prefill_tokens_per_s = 0.0;
  double tokens_per_s = 0.0;   // decode speed, generated tokens after the first
  double total_s = 0.0;
  int dropped_messages = 0;    // oldest turns dropped to fit the context (system prompt kept)
  std::string stop_reason;     // "stop_token" | "max_tokens" | "cancelled" | "context_full"
};

// Receives each decoded piece (whole UTF-8 characters only). Returns false to stop.
using TokenFn = std::function<bool(std::string_view piece)>;

class Engine;
class BatchScheduler;

// One conversation: owns its KV cache. Not thread-safe; use from one thread at a time.
class Session {
 public:
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Renders `messages` through the chat template (adding the generation prompt), reuses the
  // cached prefix, prefills the rest and streams the reply. `stop` (may be null) is checked
  // between tokens and inside long prefills.
  GenerationStats generate(const std::vector<ChatMessage>& messages, const SamplingParams& params,
                           const TokenFn& on_piece, const std::atomic<bool>* stop = nullptr,
                           std::vector<int>* out_ids = nullptr);

  // Raw completion: no chat template. Added-token strings in `prompt` are plain text unless
  // `allow_special`. BOS is prepended only when the tokenizer config says add_bos_token.
  GenerationStats complete(const std::string& prompt, const SamplingParams& params, const TokenFn& on_piece,
                           const std::atomic<bool>* stop = nullptr, bool allow_special = false,
                           std::vector<int>* out_ids = nullptr);

  void reset();                      // forget the cached conversation
  int64_t kv_cache_bytes() const;    // preallocated KV bytes
  int cached_tokens() const;

 private:
  friend class Engine;
  friend class BatchScheduler;  // batch.h: its sequences are sessions
  struct Impl;
  explicit Session(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class Engine {
 public:
  // `path`: a .qins file or a Hugging Face model directory.
  static std::unique_ptr<Engine> load(const std::string& path, const LoadOptions& options = {},
                                      const ProgressFn& progress = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const ModelInfo& info() const;
  // A conversation with its own preallocated KV cache (moved onto huge pages in the background
  // once the weights are). A session uses the engine: destroy it before the engine.
  std::unique_ptr<Session> new_session();

  // Tokenizer access for tools (`qins tokenize`).
  std::vector<int> tokenize(const std::string& text, bool allow_special) const;
  std::vector<int> tokenize_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  std::string token_piece(int id) const;

  // After loading, one background thread moves the weights onto huge pages (Linux; faster
  // decoding, see core/src/large_buffer.cpp). The engine is fully usable meanwhile.
  struct BackgroundWork {
    bool done = true;
    double seconds = 0.0;  // wall time it took (when done)
    int64_t bytes = 0;     // bytes moved so far
  };
  BackgroundWork background_work() const;
  void wait_for_background_work();
  void stop_background_work();  // cancel what is left (e.g. before replacing the weights)

  struct Impl;  // the torch side, runtime/internal.h

 private:
  friend struct EngineInternals;  // runtime/internal.h: the tools' and tests' way in
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Converts a Hugging Face folder into one .qins file (the torch-free entry to the converter, for
// the app). codebook: inverse | projective | uniform (8-bit), or qins4 (layer projections 4-bit
// QINS-4 at group 16, as `qins convert --codebook qins4`; embedding and lm_head 8-bit projective). progress returning false cancels (throws
// Cancelled; nothing is left under out_path).
void convert_model(const std::string& hf_dir, const std::string& out_path, const std::string& codebook,
                   const ProgressFn& progress = {});
// Where a converted model came from, recorded in the file (`qins inspect` shows it): `name` is the
// model's display name ("" = the folder's name); `origin_json` a JSON object (the Hub pull: hub,
// repo, revision, commit, files with sha256), "" for none.
struct ModelOrigin {
  std::string name;
  std::string origin_json;
};
void convert_model(const std::string& hf_dir, const std::string& out_path, const std::string& codebook,
                   const ModelOrigin& origin, const ProgressFn& progress = {});

// What a .qins file says about itself, read from its directory and metadata only (no tensor is
// decoded: cheap enough for listing a folder of models). Throws Error for a file that is not a
// readable .qins.
struct ModelFileInfo {
  std::string name;         // the converter's "source" (the model's display name)
  std::string codebook;     // inverse | projective | uniform | qins4 | "none"
  int64_t n_params = 0;
  int64_t file_bytes = 0;
  std::string origin_repo;    // "" unless converted from a Hub pull
  std::string origin_commit;
  std::string origin_json;    // the whole origin object ("" when none)
};
ModelFileInfo read_model_file_info(const std::string& path);

// Where LoadOptions::device would run on this machine and build, before loading anything:
// device is cpu | cuda | mps | cpu-generic; note says why a requested device is not used (empty
// when it is). Throws Error for an unknown name. (Engine::load can still fall back to the CPU
// later, e.g. when moving the weights fails; its ModelInfo says so.)
struct DeviceChoice {
  std::string device;
  std::string note;
};
DeviceChoice resolve_device(const std::string& requested);

// Resident memory of this process as the OS reports it (Linux /proc, macOS task_info).
struct MemoryReading {
  int64_t resident_bytes = 0;
  int64_t peak_resident_bytes = 0;
  int64_t total_bytes = 0;      // machine
  int64_t available_bytes = 0;  // machine
  int64_t huge_page_bytes = 0;  // of resident_bytes, on transparent huge pages (Linux; else 0)
};
MemoryReading read_memory();

}  // namespace qins
