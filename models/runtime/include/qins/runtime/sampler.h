// Next-token sampling over one row of logits: repetition penalty, OpenAI frequency/presence
// penalties, temperature (0 = greedy), top-k, top-p, min-p, seeded randomness (same seed, same tokens).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "qins/runtime/engine.h"
#include "qins/util/errors.h"

namespace qins {

// A row of logits holding a NaN or an Inf (a broken weight, or an activation that overflowed in
// bf16/f16): no token can be drawn from it. The session rethrows it naming the model.
class NonFiniteLogits : public Error {
 public:
  using Error::Error;
};

class Sampler {
 public:
  // frequency_penalty / presence_penalty: OpenAI semantics (0 = off): each token's logit is
  // lowered by count * frequency_penalty + (count > 0) * presence_penalty, counting the
  // generated tokens (history[generated_from:]).
  explicit Sampler(const SamplingParams& params, float frequency_penalty = 0.0f, float presence_penalty = 0.0f);
  // logits: vocab floats (modified in place). history: tokens so far (for the repetition penalty,
  // the whole history; for the frequency/presence penalties, history[generated_from:]).
  // Throws NonFiniteLogits when a logit is NaN or infinite.
  int sample(float* logits, int vocab, const std::vector<int>& history,
             size_t generated_from = static_cast<size_t>(-1));
  uint64_t seed() const { return seed_; }

 private:
  static void check_finite(const float* logits, int vocab);
  void apply_repetition_penalty(float* logits, int vocab, const std::vector<int>& history);
  void apply_openai_penalties(float* logits, int vocab, const std::vector<int>& history, size_t generated_from);
  void softmax_candidates(const float* logits, int vocab);
  void apply_min_p();
  void order_candidates();
  void sort_top_p_head();
  double cut_top_p();
  int draw(double total);

  SamplingParams p_;
  float frequency_penalty_ = 0.0f, presence_penalty_ = 0.0f;
  uint64_t seed_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int>> candidates_;  // reused between calls: no per-token allocation
  std::vector<char> seen_;
  std::vector<int> counts_;  // per token id, the generated occurrences (OpenAI penalties)
};

}  // namespace qins
