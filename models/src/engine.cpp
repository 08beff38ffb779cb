// Engine (a loaded model) and Session (one conversation with its KV cache): the generate loop.
#include "qins/models/engine.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "qins/models/engine_impl.h"
#include "qins/models/file_util.h"
#include "qins/models/hf_loader.h"
#include "qins/models/safetensors.h"
#include "qins/models/sampler.h"

namespace fs = std::filesystem;

namespace qins {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }


tok::ChatRole to_tok_role(Role r) {
  switch (r) {
    case Role::System: return tok::ChatRole::System;
    case Role::User: return tok::ChatRole::User;
    case Role::Assistant: return tok::ChatRole::Assistant;
  }
  return tok::ChatRole::User;
}

std::vector<tok::ChatTurn> to_turns(const std::vector<ChatMessage>& messages) {
  std::vector<tok::ChatTurn> turns;
  turns.reserve(messages.size());
  for (const auto& m : messages) turns.push_back({to_tok_role(m.role), m.content});
  return turns;
}

constexpr int64_t kPrefillChunk = 256;  // prompt tokens per forward call; the stop flag is checked between chunks

}  // namespace

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

// ---------------------------------------------------------------------------------------------
// Session

struct Session::Impl {
  Engine::Impl* e = nullptr;
  KvCache cache;
  std::vector<int> cached;  // tokens whose K/V sit in the cache, in order
  // Moves the cache onto huge pages in the background after the session is made (the engine's
  // own move of the weights goes first); holds its own references to K and V, and is cancelled
  // and joined when the session goes.
  std::thread huge_pages;
  std::atomic<bool> huge_pages_cancel{false};

  ~Impl() {
    huge_pages_cancel = true;
    if (huge_pages.joinable()) huge_pages.join();
  }

  GenerationStats run(std::vector<int> prompt, const SamplingParams& params, const TokenFn& on_piece,
                      const std::atomic<bool>* stop, std::vector<int>* out_ids);
  // Runs `ids[from:]` through the model over the cache; returns logits of the last position [vocab] f32.
  torch::Tensor prefill(const std::vector<int>& ids, size_t from, const std::atomic<bool>* stop, bool* cancelled);
};

Session::Session(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Session::~Session() = default;

void Session::reset() {
  impl_->cache.n_past = 0;
  impl_->cached.clear();
}
int64_t Session::kv_cache_bytes() const { return impl_->cache.bytes(); }
int Session::cached_tokens() const { return static_cast<int>(impl_->cached.size()); }

torch::Tensor Session::Impl::prefill(const std::vector<int>& ids, size_t from, const std::atomic<bool>* stop,
                                     bool* cancelled) {
  torch::Tensor logits;
  ForwardOptions fo{e->act_dtype, /*last_only=*/true};
  for (size_t pos = from; pos < ids.size(); pos += kPrefillChunk) {
    if (stop && stop->load(std::memory_order_relaxed)) {
      *cancelled = true;
      return {};
    }
    const size_t n = std::min<size_t>(kPrefillChunk, ids.size() - pos);
    auto chunk = torch::from_blob(const_cast<int*>(ids.data() + pos), {1, static_cast<int64_t>(n)}, torch::kInt32)
                     .to(torch::kInt64);
    logits = forward(e->weights, chunk, &cache, fo);
    cached.insert(cached.end(), ids.begin() + static_cast<long>(pos), ids.begin() + static_cast<long>(pos + n));
  }
  return logits.reshape({-1});
}

GenerationStats Session::Impl::run(std::vector<int> prompt, const SamplingParams& params, const TokenFn& on_piece,
                                   const std::atomic<bool>* stop, std::vector<int>* out_ids) {
  torch::NoGradGuard no_grad;
  const Phi3Config& c = e->weights.config;
  GenerationStats stats;
  const auto t0 = Clock::now();
  stats.prompt_tokens = static_cast<int>(prompt.size());
  const int64_t capacity = cache.capacity();
  if (static_cast<int64_t>(prompt.size()) >= capacity) {
    // Keep the most recent tokens; the caller has already dropped whole turns where it could.
    prompt.erase(prompt.begin(), prompt.end() - (capacity - 1));
  }

  // LongRoPE: a sequence past original_max_position_embeddings is rotated with the long factors;
  // when a conversation first crosses it, the cache is dropped and the whole sequence re-run.
  const bool need_long = rope_needs_long(c, static_cast<int64_t>(prompt.size()) - 1);
  if (need_long != cache.long_rope) {
    cache.long_rope = need_long;
    cache.n_past = 0;
    cached.clear();
  }
  size_t common = 0;
  while (common < cached.size() && common < prompt.size() && cached[common] == prompt[common]) ++common;
  if (common == prompt.size()) --common;  // the last prompt token must run to give logits
  cached.resize(common);
  cache.n_past = static_cast<int64_t>(common);
  stats.prefilled_tokens = static_cast<int>(prompt.size() - common);

  bool cancelled = false;
  torch::Tensor logits = prefill(prompt, common, stop, &cancelled);
  const double prefill_s = seconds_since(t0);
  stats.prefill_tokens_per_s = prefill_s > 0 ? stats.prefilled_tokens / prefill_s : 0.0;
  if (cancelled) {
    stats.stop_reason = "cancelled";
    stats.total_s = seconds_since(t0);
    return stats;
  }

  Sampler sampler(params);
  tok::StreamDecoder decoder(*e->tokenizer);
  // Rows past the tokenizer's vocabulary are padding (Phi-3.5: 32011..32063): never sampled.
  const auto n_vocab = std::min<size_t>(static_cast<size_t>(logits.numel()),
                                         static_cast<size_t>(e->tokenizer->vocab_size()));
  std::vector<float> row(n_vocab);
  // The decode loop allocates nothing per token on the QINS graph: decode_step writes into
  // step_logits and keeps its activations with the cache; `cached` has room for the context.
  std::vector<float> step_logits(static_cast<size_t>(logits.numel()));
  const float* lp = logits.data_ptr<float>();
  cached.reserve(static_cast<size_t>(capacity));
  Clock::time_point t_first{};
  stats.stop_reason = "max_tokens";
  ForwardOptions fo{e->act_dtype, /*last_only=*/true};
  for (int n = 0; n < params.max_new_tokens; ++n) {
    std::copy_n(lp, row.size(), row.begin());
    const int id = sampler.sample(row.data(), static_cast<int>(row.size()), cached);
    if (n == 0) {
      t_first = Clock::now();
      stats.time_to_first_token_s = seconds_since(t0);
    }
    if (std::find(e->stop_ids.begin(), e->stop_ids.end(), id) != e->stop_ids.end()) {
      stats.stop_reason = "stop_token";
      break;
    }
    ++stats.generated_tokens;
    if (out_ids) out_ids->push_back(id);
    const std::string piece = decoder.push(id);
    if (!piece.empty() && on_piece && !on_piece(piece)) {
      stats.stop_reason = "cancelled";
      break;
    }
    if (stop && stop->load(std::memory_order_relaxed)) {
      stats.stop_reason = "cancelled";
      break;
    }
    if (n + 1 == params.max_new_tokens) break;
    if (cache.n_past + 1 > capacity) {
      stats.stop_reason = "context_full";
      break;
    }
    if (!cache.long_rope && rope_needs_long(c, cache.n_past)) {
      // Crossing original_max_position_embeddings: re-run everything with the long factors.
      std::vector<int> all = cached;
      all.push_back(id);
      cache.long_rope = true;
      cache.n_past = 0;
      cached.clear();
      logits = prefill(all, 0, stop, &cancelled);
      if (cancelled) {
        stats.stop_reason = "cancelled";
        break;
      }
      lp = logits.data_ptr<float>();
      continue;
    }
    if (decode_step(e->weights, id, cache, step_logits.data(), e->act_dtype)) {
      lp = step_logits.data();
    } else {  // dense weights, bf16 activations: the general graph
      const int64_t one = id;
      auto input = torch::from_blob(const_cast<int64_t*>(&one), {1, 1}, torch::kInt64);
      logits = forward(e->weights, input, &cache, fo).reshape({-1}).contiguous();
      lp = logits.data_ptr<float>();
    }
    cached.push_back(id);
  }
  const std::string rest = decoder.flush();
  if (!rest.empty() && on_piece) on_piece(rest);
  stats.total_s = seconds_since(t0);
  if (stats.generated_tokens > 1) {
    const double decode_s = std::chrono::duration<double>(Clock::now() - t_first).count();
    stats.tokens_per_s = decode_s > 0 ? (stats.generated_tokens - 1) / decode_s : 0.0;
  }
  return stats;
}

GenerationStats Session::generate(const std::vector<ChatMessage>& messages, const SamplingParams& params,
                                  const TokenFn& on_piece, const std::atomic<bool>* stop,
                                  std::vector<int>* out_ids) {
  const auto& tok = *impl_->e->tokenizer;
  std::vector<ChatMessage> kept = messages;
  std::vector<int> ids = tok.encode_chat(to_turns(kept), /*add_generation_prompt=*/true);
  // Context overflow policy: drop the oldest turns (never the system prompt, never the last
  // message) until the prompt plus room for the reply fits.
  const int64_t capacity = impl_->cache.capacity();
  const int64_t reserve = std::min<int64_t>(std::max(1, params.max_new_tokens), capacity / 2);
  int dropped = 0;
  while (static_cast<int64_t>(ids.size()) + reserve > capacity) {
    auto first = std::find_if(kept.begin(), kept.end(), [](const ChatMessage& m) { return m.role != Role::System; });
    if (first == kept.end() || first + 1 >= kept.end()) break;
    first = kept.erase(first);
    ++dropped;
    // Keep the history starting with a user turn.
    while (first != kept.end() && first + 1 != kept.end() && first->role == Role::Assistant) {
      first = kept.erase(first);
      ++dropped;
    }
    ids = tok.encode_chat(to_turns(kept), true);
  }
  auto stats = impl_->run(std::move(ids), params, on_piece, stop, out_ids);
  stats.dropped_messages = dropped;
  return stats;
}

GenerationStats Session::complete(const std::string& prompt, const SamplingParams& params, const TokenFn& on_piece,
                                  const std::atomic<bool>* stop, bool allow_special, std::vector<int>* out_ids) {
  const auto& tok = *impl_->e->tokenizer;
  std::vector<int> ids;
  const bool bos = tok.add_bos() || prompt.empty();  // an empty prompt generates from BOS alone
  if (bos) ids.push_back(impl_->e->weights.config.bos_token_id);
  const auto body = tok.encode(prompt, allow_special);
  ids.insert(ids.end(), body.begin(), body.end());
  return impl_->run(std::move(ids), params, on_piece, stop, out_ids);
}

// ---------------------------------------------------------------------------------------------
// Engine

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

const ModelInfo& Engine::info() const { return impl_->info; }

std::unique_ptr<Session> Engine::new_session() {
  auto s = std::make_unique<Session::Impl>();
  s->e = impl_.get();
  s->cache = make_kv_cache(impl_->weights.config, impl_->info.context_length, impl_->kv_dtype);
  if (core::huge_pages_enabled() && s->cache.bytes() >= (int64_t{4} << 20)) {
    Engine::Impl* e = impl_.get();
    s->huge_pages = std::thread([cache = s->cache, e, cancel = &s->huge_pages_cancel] {
      // One collapse at a time: wait for the weights' (each takes a core while it runs).
      while (!cancel->load() && !e->background_done.load())
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      promote_kv_cache(cache, cancel);
    });
  }
  return std::unique_ptr<Session>(new Session(std::move(s)));
}

std::vector<int> Engine::tokenize(const std::string& text, bool allow_special) const {
  return impl_->tokenizer->encode(text, allow_special);
}
std::vector<int> Engine::tokenize_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  return impl_->tokenizer->encode_chat(to_turns(messages), add_generation_prompt);
}
std::string Engine::token_piece(int id) const { return impl_->tokenizer->piece(id); }

std::unique_ptr<Engine> make_engine(std::unique_ptr<Engine::Impl> impl) {
  Engine::Impl& e = *impl;
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
  // Device: the optimised path is the CPU one; GPU execution is not wired into the graph yet.
  e.info.device = "cpu";
  const std::string want = e.options.device;
  if (want != "cpu") {
    std::string gpu;
    if (torch::cuda::is_available()) gpu = "cuda";
    else if (at::hasMPS()) gpu = "mps";
    if (want != "auto" || !gpu.empty())
      e.info.device_note = (gpu.empty() ? "no GPU backend in this libtorch build" : gpu + " is available but the engine runs on the CPU in this version") +
                           std::string("; running on the CPU");
  }
  impl->start_background_work();
  return std::make_unique<Engine>(std::move(impl));
}

void Engine::Impl::start_background_work() {
  stop_background_work();
  if (!core::huge_pages_enabled()) return;
  // The buffers decoding streams every token: QINS codes and dense weights of every projection
  // and the lm_head (the embedding is read one row per token and stays as it is).
  std::vector<torch::Tensor> buffers;
  auto add = [&](LinearOp* op) {
    if (auto* q = dynamic_cast<QinsLinear*>(op)) buffers.push_back(q->module()->quantized().codes);
    else if (auto* d = dynamic_cast<DenseLinear*>(op)) buffers.push_back(d->weight());
  };
  for (auto& l : weights.layers)
    for (LinearOp* op : {l.qkv.get(), l.o.get(), l.gate_up.get(), l.down.get()}) add(op);
  if (weights.lm_head) add(weights.lm_head.get());
  background_cancel = false;
  background_done = false;
  background_bytes = 0;
  background = std::thread([this, buffers = std::move(buffers)]() mutable {
    const auto t0 = Clock::now();
    for (torch::Tensor& b : buffers) {
      if (background_cancel.load()) break;
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

std::unique_ptr<Engine> load_hf_engine(const std::string& dir, const LoadOptions& options, const ProgressFn& progress) {
  const auto t0 = Clock::now();
  configure_threads(options.threads);
  auto impl = std::make_unique<Engine::Impl>();
  impl->options = options;
  const HfPaths paths = find_hf_files(dir);
  const Phi3Config config = read_phi3_config(paths.config);
  if (!paths.generation_config.empty())
    impl->generation = parse_generation_config(read_file(paths.generation_config), paths.generation_config);
  impl->tokenizer = std::make_unique<tok::Tokenizer>(tok::Tokenizer::from_files(paths.tokenizer_model, paths.tokenizer_config));
  if (impl->tokenizer->vocab_size() > config.vocab_size)
    throw Error(paths.tokenizer_config + ": the tokenizer has " + std::to_string(impl->tokenizer->vocab_size()) +
                " tokens but config.json says vocab_size " + std::to_string(config.vocab_size));
  auto ckpt = st::Checkpoint::open_dir(dir);
  WeightLoadOptions wo;
  const std::string& fmt = options.weight_format;
  if (fmt == "f32" || fmt.empty() || fmt == "auto") wo.mode = WeightMode::F32;
  else if (fmt == "bf16") wo.mode = WeightMode::BF16;
  else {
    wo.mode = WeightMode::Qins;
    try {
      wo.quant.codebook = core::codebook_from_name(fmt);
    } catch (const std::invalid_argument& ex) {
      throw Error(std::string("weight format: ") + ex.what());
    }
  }
  impl->weights = load_hf_weights(*ckpt, config, wo, [&](double f) { return !progress || progress(f, "loading weights"); });
  impl->info.name = fs::path(dir).filename().string();
  if (impl->info.name.empty()) impl->info.name = fs::path(dir).parent_path().filename().string();
  impl->info.path = dir;
  impl->info.format = "hf";
  impl->info.codebook = wo.mode == WeightMode::Qins ? fmt : "none";
  impl->info.file_bytes = ckpt->total_bytes();
  auto engine = make_engine(std::move(impl));
  engine->impl().info.load_seconds = seconds_since(t0);
  if (progress) progress(1.0, "ready");
  return engine;
}

std::unique_ptr<Engine> Engine::load(const std::string& path, const LoadOptions& options, const ProgressFn& progress) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return load_hf_engine(path, options, progress);
  if (!fs::exists(path, ec)) throw Error(path + ": no such file or directory");
  if (is_qins_file(path)) return load_qins_engine(path, options, progress);
  throw Error(path + ": not a .qins model file nor a Hugging Face model folder");
}

}  // namespace qins
