// Engine: a loaded model (weights, tokenizer, settings) and its set-up; sessions are in session.cpp.
#include "qins/runtime/engine.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "qins/core/blas_threads.h"
#include "qins/core/prefault.h"
#include "qins/core/projective_linear.h"
#include "qins/graph/device.h"
#include "qins/io/hf_folder.h"
#include "qins/io/qins_file.h"
#include "qins/runtime/internal.h"
#include "qins/util/timing.h"

namespace fs = std::filesystem;

namespace qins {

namespace {

tok::ChatRole to_tok_role(Role r) {
  switch (r) {
    case Role::System: return tok::ChatRole::System;
    case Role::User: return tok::ChatRole::User;
    case Role::Assistant: return tok::ChatRole::Assistant;
  }
  return tok::ChatRole::User;
}

}  // namespace

std::vector<tok::ChatTurn> to_turns(const std::vector<ChatMessage>& messages) {
  std::vector<tok::ChatTurn> turns;
  turns.reserve(messages.size());
  for (const auto& m : messages) turns.push_back({to_tok_role(m.role), m.content});
  return turns;
}


torch::ScalarType kv_scalar_type(KvDtype d) {
  switch (d) {
    case KvDtype::F32: return torch::kFloat32;
    case KvDtype::BF16: return torch::kBFloat16;
    case KvDtype::F16: return torch::kFloat16;
  }
  return torch::kBFloat16;
}

void configure_threads(int threads) {
  const int n = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (at::get_num_threads() != n) at::set_num_threads(n);
}

void apply_thread_policy(const Phi3Weights& w) {
  const bool own_gemm = !w.layers.empty() && w.layers[0].qkv->uses_qins_kernels();
  core::set_blas_threads(own_gemm ? 1 : at::get_num_threads());
}

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

const ModelInfo& Engine::info() const { return impl_->info; }

std::vector<int> Engine::tokenize(const std::string& text, bool allow_special) const {
  return impl_->tokenizer->encode(text, allow_special);
}
std::vector<int> Engine::tokenize_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  return impl_->tokenizer->encode_chat(to_turns(messages), add_generation_prompt);
}
std::string Engine::token_piece(int id) const { return impl_->tokenizer->piece(id); }

DeviceChoice resolve_device(const std::string& want) {
  if (want == "cpu" || want == "cpu-generic") return {want, ""};
  const bool mps = at::hasMPS(), cuda = torch::cuda::is_available();
  if (want == "auto") return {mps ? "mps" : cuda ? "cuda" : "cpu", ""};
  if (want == "cuda" && !cuda)
    return {"cpu", "cuda requested but not available (" +
                       std::string(torch::cuda::device_count() > 0 ? "CUDA devices found but unusable"
                                                                   : "no CUDA device, or a libtorch built without CUDA") +
                       "); running on the CPU"};
  if (want == "mps" && !mps)
    return {"cpu", "mps requested but not available (not a Mac with Metal, or a libtorch built without MPS); running on the CPU"};
  if (want == "cuda" || want == "mps") return {want, ""};
  throw Error("device: unknown '" + want + "' (expected auto, cpu, cuda, mps or cpu-generic)");
}

namespace {

std::string mib(int64_t bytes) { return std::to_string((bytes + (1 << 19)) >> 20) + " MiB"; }

const char* dtype_name(torch::ScalarType t) {
  return t == torch::kHalf ? "f16" : t == torch::kBFloat16 ? "bf16" : t == torch::kFloat32 ? "f32" : "?";
}

}  // namespace

// Puts the graph where options.device asks (resolve_device), or leaves it on the CPU with the
// reason in info.device_note when that device cannot be used.
void place_on_device(Engine::Impl& e) {
  const std::string mode = e.options.gpu_weights;
  if (mode != "expand" && mode != "resident")
    throw Error("gpu-weights: unknown '" + mode + "' (expected expand or resident)");
  const DeviceChoice choice = resolve_device(e.options.device);
  e.info.device = "cpu";
  e.info.device_note = choice.note;
  e.info.device_mode = std::string("fused CPU kernels (") + core::kernel_isa() + ")";
  if (choice.device == "cpu") return;
  DeviceOptions o;
  o.device = choice.device == "cpu-generic" ? torch::Device(torch::kCPU) : torch::Device(choice.device);
  o.resident = mode == "resident";
  try {
    o.compute = default_compute_dtype(o.device);
    DeviceReport rep;
    Phi3Weights moved = to_device_graph(e.weights, o, &rep);
    e.weights = std::move(moved);  // the CPU weights go here (unless the device is the CPU)
    e.info.device = choice.device;
    e.info.weight_bytes = e.weights.weight_bytes();
    std::string m = std::string("generic path, ") + dtype_name(o.compute) + " products, ";
    if (rep.qins_projections == 0) m += "dense weights";
    else if (rep.resident_projections == rep.qins_projections) m += "weights resident (expanded)";
    else if (rep.resident_projections > 0) m += std::to_string(rep.resident_projections) + " of " + std::to_string(rep.qins_projections) + " projections resident, the rest expanded per layer";
    else m += "weights expanded per layer";
    if (rep.scratch_bytes > 0) m += " (scratch " + mib(rep.scratch_bytes) + ")";
    m += ", " + mib(rep.device_bytes) + " on the device";
    // MPS has bf16 only on recent macOS/libtorch: keep its KV cache in f16.
    if (o.device.is_mps() && e.kv_dtype == torch::kBFloat16) {
      e.kv_dtype = torch::kHalf;
      m += ", KV cache f16";
    }
    e.info.device_mode = m;
    if (!rep.note.empty()) e.info.device_note = rep.note;
  } catch (const std::exception& ex) {  // e.weights is untouched: run on the CPU
    std::string what = ex.what();
    if (const auto nl = what.find('\n'); nl != std::string::npos) what.resize(nl);
    e.info.device_note = "could not run on " + choice.device + " (" + what + "); running on the CPU";
  }
}

std::unique_ptr<Engine> EngineInternals::make(LoadedModel m, const LoadOptions& options) {
  auto impl = std::make_unique<Engine::Impl>();
  Engine::Impl& e = *impl;
  e.options = options;
  e.weights = std::move(m.weights);
  e.generation = std::move(m.generation);
  e.tokenizer = std::move(m.tokenizer);
  e.info.name = m.name;
  e.info.path = m.path;
  e.info.format = m.format;
  e.info.codebook = m.codebook;
  e.info.file_bytes = m.file_bytes;
  const Phi3Config& c = e.weights.config;
  // Stop ids: generation_config.json's list, else config.json's eos plus <|end|> (PHI3.md §5).
  e.stop_ids = e.generation.eos_token_ids;
  if (e.stop_ids.empty()) {
    e.stop_ids = c.eos_token_ids;
    for (const char* t : {"<|end|>", "<|endoftext|>"}) {
      const int id = e.tokenizer->token_id(t);
      if (id >= 0 && std::find(e.stop_ids.begin(), e.stop_ids.end(), id) == e.stop_ids.end()) e.stop_ids.push_back(id);
    }
  }
  e.act_dtype = e.options.bf16_activations ? torch::kBFloat16 : torch::kFloat32;
  e.kv_dtype = kv_scalar_type(e.options.kv_dtype);
  const int max_ctx = c.max_position_embeddings;
  e.info.context_length = std::max(16, std::min(e.options.context_length, max_ctx));
  e.info.n_params = e.weights.n_params();
  e.info.weight_bytes = e.weights.weight_bytes();
  e.info.vocab_size = c.vocab_size;
  e.info.n_layers = c.num_hidden_layers;
  e.info.hidden_size = c.hidden_size;
  e.info.chat_template_note = e.tokenizer->chat_template_note();
  const int64_t kv_elem = e.kv_dtype == torch::kFloat32 ? 4 : 2;
  e.info.kv_cache_bytes = 2LL * c.num_hidden_layers * c.num_key_value_heads * e.info.context_length * c.head_dim * kv_elem;
  place_on_device(e);
  apply_thread_policy(e.weights);
  impl->start_background_work();
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

void Engine::Impl::start_background_work() {
  stop_background_work();
  if (!core::huge_pages_enabled() && !core::prefault_enabled()) return;
  // The buffers decoding streams every token: QINS codes and dense weights of every projection
  // and the lm_head (the embedding is read one row per token and stays as it is).
  std::vector<torch::Tensor> buffers;
  auto add = [&](LinearOp* op) {
    if (auto* q = dynamic_cast<QinsLinear*>(op)) buffers.push_back(q->module()->quantized().codes);
    else if (auto* q4 = dynamic_cast<Qins4LinearOp*>(op)) buffers.push_back(q4->module()->quantized().codes);
    else if (auto* d = dynamic_cast<DenseLinear*>(op); d && d->weight().device().is_cpu()) buffers.push_back(d->weight());
  };
  for (auto& l : weights.layers)
    for (LinearOp* op : {l.qkv.get(), l.o.get(), l.gate_up.get(), l.down.get()}) add(op);
  if (weights.lm_head) add(weights.lm_head.get());
  background_cancel = false;
  background_done = false;
  background_bytes = 0;
  background = std::thread([this, buffers = std::move(buffers)]() mutable {
    core::run_at_idle_priority();  // never slows a reply: only the CPU time replies leave idle
    const auto t0 = Clock::now();
    for (torch::Tensor& b : buffers) {
      if (background_cancel.load()) break;
      core::prefault_pages(b, &background_cancel);  // mapped file pages: no faults in the first reply
      background_bytes += core::promote_to_huge_pages(b, &background_cancel);
      b = torch::Tensor();  // drop the reference: a replaced weight can be freed at once
    }
    background_seconds = seconds_since(t0);
    background_done = true;
  });
}

void Engine::Impl::stop_background_work() {
  background_cancel = true;
  if (background.joinable()) background.join();
}

Engine::BackgroundWork Engine::background_work() const {
  BackgroundWork w;
  w.done = impl_->background_done.load();
  w.seconds = impl_->background_seconds.load();
  w.bytes = impl_->background_bytes.load();
  return w;
}

void Engine::wait_for_background_work() {
  if (impl_->background.joinable()) impl_->background.join();
}

void Engine::stop_background_work() { impl_->stop_background_work(); }

std::unique_ptr<Engine> Engine::load(const std::string& path, const LoadOptions& options, const ProgressFn& progress) {
  std::error_code ec;
  const auto t0 = Clock::now();
  configure_threads(options.threads);
  core::keep_freed_heap_memory();  // activations reuse the heap instead of fresh pages each call
  LoadedModel model;
  if (fs::is_directory(path, ec)) model = read_hf_model(path, options.weight_format, progress);
  else if (!fs::exists(path, ec)) throw Error(path + ": no such file or directory");
  else if (is_qins_file(path)) model = read_qins_model(path, options.threads, options.verify_checksums, progress);
  else throw Error(path + ": not a .qins model file nor a Hugging Face model folder");
  auto engine = EngineInternals::make(std::move(model), options);
  engine->impl_->info.load_seconds = seconds_since(t0);
  if (progress) progress(1.0, "ready");
  return engine;
}

}  // namespace qins
