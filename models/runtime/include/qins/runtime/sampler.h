// Next-token sampling over one row of logits: repetition penalty, temperature (0 = greedy),
// top-k, top-p, min-p, seeded randomness (same seed, same tokens).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "qins/runtime/engine.h"

namespace qins {

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // logits: vocab floats (modified in place). history: tokens so far (for the repetition penalty).
  int sample(float* logits, int vocab, const std::vector<int>& history);
  uint64_t seed() const { return seed_; }

 private:
  SamplingParams p_;
  uint64_t seed_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int>> candidates_;  // reused between calls: no per-token allocation
  std::vector<char> seen_;
};

}  // namespace qins
