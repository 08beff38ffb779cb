// Session: one conversation with its KV cache, and the generate loop (prefill, then one token at
// a time through decode_step, sampling, streaming, stopping).
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "qins/core/prefault.h"
#include "qins/core/projective_linear.h"
#include "qins/core/qins4.h"
#include "qins/runtime/engine.h"
#include "qins/runtime/internal.h"
#include "qins/runtime/sampler.h"
#include "qins/util/timing.h"
#include "session_impl.h"

namespace qins {

Session::Session(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Session::~Session() = default;

void Session::reset() {
  impl_->cache.n_past = 0;
  impl_->cached.clear();
}
int64_t Session::kv_cache_bytes() const { return impl_->cache.bytes(); }
int Session::cached_tokens() const { return static_cast<int>(impl_->cached.size()); }

int64_t rows_prefill_max(const Phi3Weights& w) {
  static const int64_t env = [] {  // -1: not set
    const char* v = std::getenv("QINS_ROWS_PREFILL_MAX");
    if (!v || !*v) return int64_t{-1};
    char* end = nullptr;
    const long long x = std::strtoll(v, &end, 10);
    if (end == v || *end != '\0' || x < 0)
      throw Error(std::string("QINS_ROWS_PREFILL_MAX=") + v + ": expected a whole number >= 0 (0 turns the row path off)");
    return static_cast<int64_t>(x);
  }();
  if (env >= 0) return env;
  if (w.layers.empty() || !w.layers[0].qkv) return 0;
  // 8-bit codes with the bf16 kernel: the row path (gemv_rows_bf16, each code decoded once for 3
  // rows) measured 2x the bf16 GEMM at 4 tokens and 1.13-1.17x at 8, slower from 16
  // (docs/benchmarks.md, 2026-12-07 evening); other 8-bit kernels are not measured against it.
  if (dynamic_cast<const QinsLinear*>(w.layers[0].qkv.get()))
    return std::strcmp(core::kernel_isa(), "avx512bf16") == 0 ? 8 : 0;
  if (w.layers[0].qkv->kind() != "qins4") return 0;
  // AVX-512 VNNI: one vpdpbusd per 64 products, 8 rows per pass over the codes; the row path
  // measured faster than the expand + fp32 GEMM up to 128 tokens, as fast at 512. Against the bf16
  // GEMM (AVX512-BF16, tiles filled straight from the codes) it is 2x faster at 8 tokens, level at
  // 24 and 10-30 % slower from 32 on (docs/benchmarks.md, 2026-12-07 evening).
  if (std::strcmp(core::kernel4_isa(), "avx512") != 0) return 24;
  return std::strcmp(core::prefill4_path(), "bf16") == 0 ? 24 : 256;
}

torch::Tensor Session::Impl::prefill_chunk(const std::vector<int>& ids, size_t pos, size_t n, bool rows) {
  ForwardOptions fo{e->act_dtype, /*last_only=*/true};
  fo.rows_path = rows;
  auto chunk = torch::from_blob(const_cast<int*>(ids.data() + pos), {1, static_cast<int64_t>(n)}, torch::kInt32)
                   .to(torch::kInt64);
  torch::Tensor logits = forward(e->weights, chunk, &cache, fo);
  cached.insert(cached.end(), ids.begin() + static_cast<long>(pos), ids.begin() + static_cast<long>(pos + n));
  return logits;
}

torch::Tensor Session::Impl::prefill(const std::vector<int>& ids, size_t from, const std::atomic<bool>* stop,
                                     bool* cancelled, int64_t chunk) {
  torch::Tensor logits;
  const bool rows = static_cast<int64_t>(ids.size() - from) <= rows_prefill_max(e->weights);
  for (size_t pos = from; pos < ids.size(); pos += static_cast<size_t>(chunk)) {
    if (stop && stop->load(std::memory_order_relaxed)) {
      *cancelled = true;
      return {};
    }
    const size_t n = std::min<size_t>(static_cast<size_t>(chunk), ids.size() - pos);
    logits = prefill_chunk(ids, pos, n, rows);
  }
  return logits.reshape({-1});
}

size_t Session::Impl::reuse_cache(std::vector<int>& prompt) {
  const int64_t capacity = cache.capacity();
  if (static_cast<int64_t>(prompt.size()) >= capacity) {
    // Keep the most recent tokens; the caller has already dropped whole turns where it could.
    prompt.erase(prompt.begin(), prompt.end() - (capacity - 1));
  }
  // LongRoPE: a sequence past original_max_position_embeddings is rotated with the long factors;
  // when a conversation first crosses it, the cache is dropped and the whole sequence re-run.
  const bool need_long = rope_needs_long(e->weights.config, static_cast<int64_t>(prompt.size()) - 1);
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
  return common;
}

bool Session::Impl::crosses_into_long_rope() const {
  return !cache.long_rope && rope_needs_long(e->weights.config, cache.n_past);
}

const float* Session::Impl::step(int id, torch::Tensor& logits, std::vector<float>& step_logits,
                                 const std::atomic<bool>* stop) {
  if (crosses_into_long_rope()) {
    // Crossing original_max_position_embeddings: re-run everything with the long factors.
    std::vector<int> all = cached;
    all.push_back(id);
    cache.long_rope = true;
    cache.n_past = 0;
    cached.clear();
    bool cancelled = false;
    logits = prefill(all, 0, stop, &cancelled);
    return cancelled ? nullptr : logits.data_ptr<float>();
  }
  if (decode_step(e->weights, id, cache, step_logits.data(), e->act_dtype)) {
    cached.push_back(id);
    return step_logits.data();
  }
  // Dense weights, bf16 activations: the general graph.
  const int64_t one = id;
  auto input = torch::from_blob(const_cast<int64_t*>(&one), {1, 1}, torch::kInt64);
  logits = forward(e->weights, input, &cache, ForwardOptions{e->act_dtype, /*last_only=*/true}).reshape({-1}).contiguous();
  cached.push_back(id);
  return logits.data_ptr<float>();
}

int Session::Impl::sample_or_explain(Sampler& sampler, std::vector<float>& row, int generated,
                                     size_t generated_from) {
  try {
    return sampler.sample(row.data(), static_cast<int>(row.size()), cached, generated_from);
  } catch (const NonFiniteLogits& ex) {
    // Either a weight holds a NaN/Inf (the loaders refuse those they can see) or an activation
    // or the KV cache overflowed its dtype (bf16/f16 saturate to Inf past ~3.4e38 / 65504).
    throw Error(e->info.name + ": the model produced non-finite logits after " + std::to_string(generated) +
                " generated tokens (" + ex.what() + "); its weights hold a NaN or Inf, or an activation " +
                "overflowed its bf16/f16 range (try --kv f32); the reply was stopped");
  }
}

GenerationStats Session::Impl::run(std::vector<int> prompt, const SamplingParams& params, const TokenFn& on_piece,
                                   const std::atomic<bool>* stop, std::vector<int>* out_ids) {
  torch::NoGradGuard no_grad;
  GenerationStats stats;
  const auto t0 = Clock::now();
  stats.prompt_tokens = static_cast<int>(prompt.size());
  const size_t common = reuse_cache(prompt);
  stats.prefilled_tokens = static_cast<int>(prompt.size() - common);

  bool cancelled = false;
  torch::Tensor logits = prefill(prompt, common, stop, &cancelled);
  if (!cached.empty()) cache_written = true;
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
  cached.reserve(static_cast<size_t>(cache.capacity()));
  Clock::time_point t_first{};
  stats.stop_reason = "max_tokens";
  for (int n = 0; n < params.max_new_tokens; ++n) {
    std::copy_n(lp, row.size(), row.begin());
    const int id = sample_or_explain(sampler, row, stats.generated_tokens);
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
    if ((!piece.empty() && on_piece && !on_piece(piece)) || (stop && stop->load(std::memory_order_relaxed))) {
      stats.stop_reason = "cancelled";
      break;
    }
    if (n + 1 == params.max_new_tokens) break;
    if (cache.n_past + 1 > cache.capacity()) {
      stats.stop_reason = "context_full";
      break;
    }
    lp = step(id, logits, step_logits, stop);
    if (!lp) {
      stats.stop_reason = "cancelled";
      break;
    }
  }
  const std::string rest = decoder.flush();
  if (!rest.empty() && on_piece) on_piece(rest);
  stats.total_s = seconds_since(t0);
  if (stats.generated_tokens > 1) {
    const double decode_s = seconds_since(t_first);
    stats.tokens_per_s = decode_s > 0 ? (stats.generated_tokens - 1) / decode_s : 0.0;
  }
  return stats;
}

// The tokenizer's memory grows with its input (~250 bytes per input byte on a 5 MB message);
// text past kMaxInputBytes could never fit a context anyway (a token is >= 1 byte; the largest
// supported context, 128k tokens, holds ~500 KB of prose), so it is refused before encoding.
void check_input_size(const std::vector<ChatMessage>& messages) {
  size_t bytes = 0;
  for (const ChatMessage& m : messages) bytes += m.content.size();
  if (bytes > kMaxInputBytes)
    throw Error("the conversation is " + std::to_string(bytes) + " bytes of text, more than the " +
                std::to_string(kMaxInputBytes) + " bytes qins takes as input (about " +
                std::to_string(kMaxInputBytes / 4) + " tokens): shorten it");
}

std::vector<int> completion_ids(const Engine::Impl& e, const std::string& prompt, bool allow_special) {
  const auto& tok = *e.tokenizer;
  std::vector<int> ids;
  const bool bos = tok.add_bos() || prompt.empty();  // an empty prompt generates from BOS alone
  if (bos) ids.push_back(e.weights.config.bos_token_id);
  const auto body = tok.encode(prompt, allow_special);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

GenerationStats Session::generate(const std::vector<ChatMessage>& messages, const SamplingParams& params,
                                  const TokenFn& on_piece, const std::atomic<bool>* stop,
                                  std::vector<int>* out_ids) {
  const auto& tok = *impl_->e->tokenizer;
  check_input_size(messages);
  std::vector<ChatMessage> kept = messages;
  std::vector<int> ids = tok.encode_chat(to_turns(kept), /*add_generation_prompt=*/true);
  // Context overflow policy: drop the oldest turns (never the system prompt, never the last
  // message) until the prompt plus room for the reply fits. The reply keeps max_new_tokens or
  // half the context, whichever is smaller; a prompt that cannot fit even with only the system
  // prompt and the last message is refused (never cut at the front, which would lose its
  // <|system|>/<|user|> marker and the start of the message).
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
  if (static_cast<int64_t>(ids.size()) + reserve > capacity)
    throw Error("the message does not fit: the prompt is " + std::to_string(ids.size()) + " tokens" +
                (kept.size() > 1 ? " (the system prompt and the last message alone)" : "") + ", the context holds " +
                std::to_string(capacity) + " and " + std::to_string(reserve) +
                " are kept for the reply; shorten the message or load the model with a longer context");
  auto stats = impl_->run(std::move(ids), params, on_piece, stop, out_ids);
  stats.dropped_messages = dropped;
  return stats;
}

GenerationStats Session::complete(const std::string& prompt, const SamplingParams& params, const TokenFn& on_piece,
                                  const std::atomic<bool>* stop, bool allow_special, std::vector<int>* out_ids) {
  check_input_size({ChatMessage{Role::User, prompt}});
  return impl_->run(completion_ids(*impl_->e, prompt, allow_special), params, on_piece, stop, out_ids);
}

std::unique_ptr<Session> Engine::new_session() {
  auto s = std::make_unique<Session::Impl>();
  s->e = impl_.get();
  s->cache = make_kv_cache(impl_->weights, impl_->info.context_length, impl_->kv_dtype);  // on the weights' device
  if (core::huge_pages_enabled() && s->cache.bytes() >= (int64_t{4} << 20)) {
    Engine::Impl* e = impl_.get();
    s->huge_pages = std::thread([cache = s->cache, e, cancel = &s->huge_pages_cancel, written = &s->cache_written] {
      core::run_at_idle_priority();  // only the CPU time replies leave idle
      // One collapse at a time: wait for the weights' (each takes a core while it runs), and for
      // the first prefill (see session_impl.h).
      while (!cancel->load() && (!e->background_done.load() || !written->load()))
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      promote_kv_cache(cache, cancel);
    });
  }
  return std::unique_ptr<Session>(new Session(std::move(s)));
}

}  // namespace qins
