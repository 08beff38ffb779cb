#include <gtest/gtest.h>

#include <cmath>
#include <algorithm>
#include <map>
#include <random>

#include "qins/runtime/sampler.h"

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

// OpenAI frequency/presence penalties: logit -= count * frequency + presence, over the generated
// tokens only (history[generated_from:]); the prompt part of the history does not count.
TEST(Sampler, FrequencyAndPresencePenaltiesCountGeneratedTokensOnly) {
  std::vector<float> l{0.0f, 3.0f, 2.5f, 1.2f};
  const std::vector<int> history{2, 2, 2, 1, 1, 3};  // prompt: 2 2 2; generated: 1 1 3
  {
    Sampler s(params(0.0f), /*frequency=*/0.2f, /*presence=*/0.0f);
    auto x = l;
    EXPECT_EQ(s.sample(x.data(), 4, history, 3), 1);  // 3.0 - 2 * 0.2 = 2.6 > 2.5
    EXPECT_FLOAT_EQ(x[1], 2.6f);
    EXPECT_FLOAT_EQ(x[2], 2.5f);  // only in the prompt
    EXPECT_FLOAT_EQ(x[3], 1.0f);
  }
  {
    Sampler s(params(0.0f), 0.3f, 0.0f);
    auto x = l;
    EXPECT_EQ(s.sample(x.data(), 4, history, 3), 2);  // 3.0 - 0.6 = 2.4 < 2.5
  }
  {
    Sampler s(params(0.0f), 0.0f, 0.6f);  // presence once per distinct token
    auto x = l;
    EXPECT_EQ(s.sample(x.data(), 4, history, 3), 2);
    EXPECT_FLOAT_EQ(x[1], 2.4f);
    EXPECT_FLOAT_EQ(x[3], 0.6f);
  }
  {
    Sampler s(params(0.0f), -0.6f, 0.0f);  // negative: encourages repeats
    auto x = l;
    EXPECT_EQ(s.sample(x.data(), 4, history, 0), 2);  // 2.5 + 1.8 = 4.3 > 3.0 + 1.2
  }
  {
    Sampler s(params(0.0f), 1.0f, 1.0f);  // without generated_from nothing counts
    auto x = l;
    EXPECT_EQ(s.sample(x.data(), 4, history), 1);
    EXPECT_EQ(x, l);
  }
}

// Issue 16 item 1: a NaN or Inf logit once left no candidate and the sampler took .back() of an
// empty vector (SIGSEGV); greedy returned garbage. Every mode now throws NonFiniteLogits.
TEST(Sampler, NonFiniteLogitsThrowInEveryMode) {
  for (const float bad : {std::nanf(""), INFINITY, -INFINITY}) {
    for (const SamplingParams& p : {params(0.0f), params(0.8f), params(0.8f, 0.9f), params(0.8f, 1.0f, 5),
                                    params(0.8f, 1.0f, 0, 0.05f)}) {
      Sampler s(p);
      std::vector<float> l(64, bad);
      EXPECT_THROW(s.sample(l.data(), 64, {}), NonFiniteLogits);
      l.assign(64, 0.5f);
      l[17] = bad;
      EXPECT_THROW(s.sample(l.data(), 64, {}), NonFiniteLogits);
    }
  }
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

// The reference the sampler must equal: every candidate sorted, then the same top-p cut and draw.
int reference_top_p(std::vector<float> logits, float t, float top_p, std::mt19937_64& rng) {
  const float mx = *std::max_element(logits.begin(), logits.end());
  std::vector<std::pair<float, int>> c;
  for (int i = 0; i < static_cast<int>(logits.size()); ++i) {
    const float pr = std::exp((logits[i] - mx) * (1.0f / t));
    if (pr > 0.0f) c.emplace_back(pr, i);
  }
  std::sort(c.begin(), c.end(), [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  double total = 0.0;
  for (const auto& e : c) total += e.first;
  double mass = 0.0;
  size_t n = 0;
  while (n < c.size()) {
    mass += c[n++].first;
    if (mass >= top_p * total) break;
  }
  std::uniform_real_distribution<double> uni(0.0, mass);
  double r = uni(rng);
  for (size_t i = 0; i < n; ++i)
    if ((r -= c[i].first) <= 0.0) return c[i].second;
  return c[n - 1].second;
}

TEST(Sampler, TopPOnAPhiSizedVocabularyEqualsAFullSort) {
  // 32064 logits, from peaked (a nucleus of a few tokens) to flat (tens of thousands): the
  // sampler sorts only a growing head of the candidates; the draws must be the reference's.
  std::mt19937_64 gen(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float spread : {8.0f, 3.0f, 1.0f, 0.05f}) {
    for (float top_p : {0.5f, 0.9f, 0.95f}) {
      SamplingParams p = params(0.8f, top_p);
      Sampler s(p);
      std::mt19937_64 ref_rng(p.seed);
      for (int i = 0; i < 6; ++i) {
        std::vector<float> l(32064);
        for (float& v : l) v = spread * normal(gen);
        const int want = reference_top_p(l, 0.8f, top_p, ref_rng);
        EXPECT_EQ(s.sample(l.data(), static_cast<int>(l.size()), {}), want) << "spread " << spread << " top_p " << top_p;
      }
    }
  }
}

}  // namespace
}  // namespace qins
