#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "qins/models/sampler.h"

namespace qins {
namespace {

SamplingParams params(float t, float top_p = 1.0f, int top_k = 0, float min_p = 0.0f) {
  SamplingParams p;
  p.temperature = t;
  p.top_p = top_p;
  p.top_k = top_k;
  p.min_p = min_p;
  p.random_seed = false;
  p.seed = 7;
  return p;
}

TEST(Sampler, GreedyPicksTheArgmax) {
  Sampler s(params(0.0f));
  std::vector<float> l{0.1f, 3.0f, -1.0f, 2.9f};
  EXPECT_EQ(s.sample(l.data(), 4, {}), 1);
}

TEST(Sampler, RepetitionPenaltyDemotesSeenTokens) {
  SamplingParams p = params(0.0f);
  p.repetition_penalty = 2.0f;
  Sampler s(p);
  std::vector<float> l{0.1f, 3.0f, -1.0f, 2.9f};
  EXPECT_EQ(s.sample(l.data(), 4, {1}), 3);  // 3.0 / 2 = 1.5 < 2.9
}

TEST(Sampler, TopKOneIsGreedy) {
  Sampler s(params(1.5f, 1.0f, 1));
  for (int i = 0; i < 20; ++i) {
    std::vector<float> l{0.1f, 3.0f, -1.0f, 2.9f};
    EXPECT_EQ(s.sample(l.data(), 4, {}), 1);
  }
}

TEST(Sampler, TopPKeepsOnlyTheNucleus) {
  // Probabilities ~ {0.64, 0.24, 0.09, 0.03}: top_p 0.7 keeps the first two only.
  Sampler s(params(1.0f, 0.7f));
  std::vector<float> base{std::log(0.64f), std::log(0.24f), std::log(0.09f), std::log(0.03f)};
  std::map<int, int> count;
  for (int i = 0; i < 2000; ++i) {
    auto l = base;
    ++count[s.sample(l.data(), 4, {})];
  }
  EXPECT_EQ(count[2] + count[3], 0);
  EXPECT_NEAR(count[0] / 2000.0, 0.64 / 0.88, 0.05);
}

TEST(Sampler, MinPDropsUnlikelyTokens) {
  Sampler s(params(1.0f, 1.0f, 0, 0.2f));
  std::vector<float> base{std::log(0.6f), std::log(0.3f), std::log(0.1f)};  // 0.1 < 0.2 * 0.6
  for (int i = 0; i < 500; ++i) {
    auto l = base;
    EXPECT_NE(s.sample(l.data(), 3, {}), 2);
  }
}

TEST(Sampler, SameSeedSameSequence) {
  std::vector<int> a, b;
  Sampler s1(params(1.0f)), s2(params(1.0f));
  for (int i = 0; i < 50; ++i) {
    std::vector<float> l1(100), l2(100);
    for (int k = 0; k < 100; ++k) l1[k] = l2[k] = std::sin(k * 0.37f);
    a.push_back(s1.sample(l1.data(), 100, {}));
    b.push_back(s2.sample(l2.data(), 100, {}));
  }
  EXPECT_EQ(a, b);
}

TEST(Sampler, DistributionFollowsTemperature) {
  // At temperature 1 the empirical frequency follows softmax(logits).
  Sampler s(params(1.0f));
  std::vector<float> base{0.0f, 1.0f};
  int ones = 0;
  const int n = 4000;
  for (int i = 0; i < n; ++i) {
    auto l = base;
    ones += s.sample(l.data(), 2, {}) == 1;
  }
  EXPECT_NEAR(ones / double(n), std::exp(1.0) / (1.0 + std::exp(1.0)), 0.03);
}

}  // namespace
}  // namespace qins
