// Private to the runtime: one sequence's state (its KV cache and the tokens in it) and the pieces of
// the generate loop that Session (session.cpp) and BatchScheduler (batch.cpp) share.
#pragma once

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "qins/runtime/engine.h"
#include "qins/runtime/internal.h"
#include "qins/runtime/sampler.h"

namespace qins {

// Prompt tokens per forward call of Session::generate; the stop flag is checked between chunks.
constexpr int64_t kSessionPrefillChunk = 256;
// Text of one request (all messages, or a raw prompt): more is refused before tokenizing.
constexpr size_t kMaxInputBytes = size_t{1} << 20;
// Throws Error when the messages' text exceeds kMaxInputBytes.
void check_input_size(const std::vector<ChatMessage>& messages);
// The ids of a raw completion: BOS when the tokenizer adds one (or the prompt is empty), then the text.
std::vector<int> completion_ids(const Engine::Impl& e, const std::string& prompt, bool allow_special);

struct Session::Impl {
  Engine::Impl* e = nullptr;
  KvCache cache;
  std::vector<int> cached;  // tokens whose K/V sit in the cache, in order
  // Moves the cache onto huge pages in the background, at idle priority, once the engine's own
  // move of the weights is done and a prefill has written the cache (before that its pages are
  // not even mapped: a collapse would fail there, and MADV_HUGEPAGE would make the first prefill
  // zero every 2 MiB it touches). Holds its own references to K and V, and is cancelled and
  // joined when the session goes.
  std::thread huge_pages;
  std::atomic<bool> huge_pages_cancel{false};
  std::atomic<bool> cache_written{false};

  ~Impl() {
    huge_pages_cancel = true;
    if (huge_pages.joinable()) huge_pages.join();
  }

  GenerationStats run(std::vector<int> prompt, const SamplingParams& params, const TokenFn& on_piece,
                      const std::atomic<bool>* stop, std::vector<int>* out_ids);
  // Runs `ids[from:]` through the model over the cache in chunks of `chunk`; returns logits of the
  // last position [vocab] f32.
  torch::Tensor prefill(const std::vector<int>& ids, size_t from, const std::atomic<bool>* stop, bool* cancelled,
                        int64_t chunk = kSessionPrefillChunk);
  // Runs ids[pos, pos + n) (pos == cached.size()) and appends them to the cache; returns the
  // logits of the last of them [1, 1, vocab] f32.
  // rows: ForwardOptions::rows_path (the prompt's choice, rows_prefill_max()).
  torch::Tensor prefill_chunk(const std::vector<int>& ids, size_t pos, size_t n, bool rows = false);
  // Fits the prompt to the cache and keeps the cached prefix it shares; returns that prefix's length.
  size_t reuse_cache(std::vector<int>& prompt);
  // Whether the next decode of this sequence must re-run it with the long LongRoPE factors.
  bool crosses_into_long_rope() const;
  // Logits after token `id` (sampled, not yet cached): decode_step where it can, forward() where
  // it cannot, a re-run with the long factors where the sequence crosses into LongRoPE. Points
  // into step_logits or logits; nullptr when the re-run was cancelled.
  const float* step(int id, torch::Tensor& logits, std::vector<float>& step_logits, const std::atomic<bool>* stop);
  // sampler.sample over `row`; non-finite logits stop the reply with an error naming the model.
  // Penalties over generated tokens (frequency/presence) see cached[generated_from:].
  int sample_or_explain(Sampler& sampler, std::vector<float>& row, int generated,
                        size_t generated_from = static_cast<size_t>(-1));
};

}  // namespace qins
