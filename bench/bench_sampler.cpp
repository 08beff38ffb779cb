// The sampler at Phi-3.5-mini's vocabulary (32064 logits) with the chat defaults (temperature
// 0.7, top-p 0.95): the partial sort of a growing head against the full sort of every candidate
// (top-p off), in the same run. Logits: Gaussian with a spread that leaves a nucleus of a few
// dozen (peaked), a few hundred (mid) or thousands (flat) of tokens.
//
//   ./build/bench/bench_sampler
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "qins/runtime/sampler.h"

namespace {

std::vector<float> logits(float spread) {
  std::mt19937_64 gen(5);
  std::normal_distribution<float> normal(0.0f, spread);
  std::vector<float> l(32064);
  for (float& v : l) v = normal(gen);
  return l;
}

void bm_sample(benchmark::State& st, float spread, float top_p) {
  qins::SamplingParams p;
  p.temperature = 0.7f;
  p.top_p = top_p;
  p.random_seed = false;
  qins::Sampler s(p);
  const auto base = logits(spread);
  std::vector<float> row(base.size());
  const std::vector<int> history;
  for (auto _ : st) {
    row = base;
    benchmark::DoNotOptimize(s.sample(row.data(), static_cast<int>(row.size()), history));
  }
}

}  // namespace

BENCHMARK_CAPTURE(bm_sample, peaked_top_p_0_95, 4.0f, 0.95f);
BENCHMARK_CAPTURE(bm_sample, peaked_full_sort, 4.0f, 1.0f);
BENCHMARK_CAPTURE(bm_sample, mid_top_p_0_95, 2.0f, 0.95f);
BENCHMARK_CAPTURE(bm_sample, mid_full_sort, 2.0f, 1.0f);
BENCHMARK_CAPTURE(bm_sample, flat_top_p_0_95, 0.5f, 0.95f);
BENCHMARK_CAPTURE(bm_sample, flat_full_sort, 0.5f, 1.0f);
BENCHMARK_MAIN();
