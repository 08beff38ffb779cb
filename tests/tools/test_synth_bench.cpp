// qins synth (the random generator, the file it writes) and qins bench (every variant runs and
// reports consistent byte counts). No timing thresholds: only that figures exist and add up.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <vector>

#include "fixture_dir.h"
#include "qins/tools/bench.h"
#include "qins/runtime/engine.h"
#include "qins/tools/synth.h"

namespace qins {
namespace {

struct Moments {
  double mean = 0, sd = 0;
};
Moments moments(const std::vector<float>& v) {
  double s = 0, s2 = 0;
  for (float x : v) s += x, s2 += double(x) * x;
  const double n = static_cast<double>(v.size());
  return {s / n, std::sqrt(s2 / n - (s / n) * (s / n))};
}

TEST(SynthFill, DeterministicPerSeedAndStream) {
  std::vector<float> a(1000), b(1000), c(1000), d(1000);
  synth_fill(a.data(), 1000, SynthDist::Gaussian, 0.02, 7, 3);
  synth_fill(b.data(), 1000, SynthDist::Gaussian, 0.02, 7, 3);
  synth_fill(c.data(), 1000, SynthDist::Gaussian, 0.02, 7, 4);
  synth_fill(d.data(), 1000, SynthDist::Gaussian, 0.02, 8, 3);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_NE(a, d);
}

TEST(SynthFill, MeanAndStdMatchForEveryDistribution) {
  for (auto dist : {SynthDist::Gaussian, SynthDist::Laplace, SynthDist::StudentT5}) {
    std::vector<float> v(400000);
    synth_fill(v.data(), static_cast<int64_t>(v.size()), dist, 0.02, 1, 0);
    const Moments m = moments(v);
    EXPECT_NEAR(m.mean, 0.0, 0.0005) << static_cast<int>(dist);
    EXPECT_NEAR(m.sd, 0.02, 0.02 * (dist == SynthDist::StudentT5 ? 0.05 : 0.02)) << static_cast<int>(dist);
  }
  // Heavier tails than the Gaussian: more mass beyond 3 sigma.
  auto beyond3 = [](SynthDist d) {
    std::vector<float> v(400000);
    synth_fill(v.data(), static_cast<int64_t>(v.size()), d, 1.0, 2, 0);
    int64_t n = 0;
    for (float x : v) n += std::fabs(x) > 3.0f;
    return n;
  };
  EXPECT_GT(beyond3(SynthDist::Laplace), 2 * beyond3(SynthDist::Gaussian));
}

TEST(Synth, UnknownNamesAreErrors) {
  EXPECT_THROW(synth_dist_from_name("cauchy"), Error);
  SynthOptions o;
  o.like = "phi-9";
  EXPECT_THROW(write_synthetic_model((test::temp_root() / "x.qins").string(), o), Error);
}

std::string tiny_model() {
  static const std::string path = [] {
    const std::string p = (test::temp_root() / "tiny-synth.qins").string();
    SynthOptions o;
    o.like = "tiny";
    const SynthReport r = write_synthetic_model(p, o);
    EXPECT_GT(r.file_bytes, 0);
    return p;
  }();
  return path;
}

TEST(Synth, TinyModelLoadsAndGenerates) {
  auto engine = Engine::load(tiny_model());
  const ModelInfo& info = engine->info();
  EXPECT_EQ(info.format, "qins");
  EXPECT_EQ(info.n_layers, 2);
  EXPECT_EQ(info.hidden_size, 64);
  EXPECT_EQ(info.codebook, "projective");
  auto session = engine->new_session();
  SamplingParams sp;
  sp.temperature = 0.0f;
  sp.max_new_tokens = 4;
  std::vector<int> ids;
  session->complete("Hello world.", sp, {}, nullptr, false, &ids);
  EXPECT_FALSE(ids.empty());
}

TEST(Bench, EveryVariantRunsAndBytesAddUp) {
  BenchOptions o;
  o.prompt_tokens = 8;
  o.gen_tokens = 3;
  o.context = 64;
  o.depth = 16;
  o.baselines = {"naive", "bf16", "fp32"};
  o.bandwidth_gib = 0.01;
  const BenchResult r = run_bench(tiny_model(), o);
  ASSERT_EQ(r.runs.size(), 4u);
  for (const auto& run : r.runs) {
    EXPECT_TRUE(run.ran) << run.variant << ": " << run.note;
    EXPECT_GT(run.prefill_tps, 0) << run.variant;
    EXPECT_GT(run.decode_tps, 0) << run.variant;
    EXPECT_GT(run.bandwidth_pct, 0) << run.variant;
    ASSERT_EQ(run.round_tps.size(), 1u) << run.variant;  // 3 tokens: one round
    ASSERT_EQ(run.round_bw_gbs.size(), 1u) << run.variant;
    EXPECT_DOUBLE_EQ(run.bandwidth_gbs, run.round_bw_gbs[0]) << run.variant;
    EXPECT_NEAR(run.bandwidth_pct,
                100.0 * static_cast<double>(run.bytes_per_token) * run.round_tps[0] / (run.round_bw_gbs[0] * 1e9),
                1e-9 * run.bandwidth_pct)
        << run.variant;
  }
  EXPECT_GT(r.runs[0].decode_tps_depth, 0);
  EXPECT_GT(r.bandwidth_gbs, 0);
  EXPECT_GT(r.rss_after_load, r.weight_bytes);
  EXPECT_GE(r.peak_rss_load, r.rss_after_load);
  // Streamed bytes: QINS = 1 byte per weight + 4 per row + the 512-byte table per matrix;
  // fp32 = 4 bytes per weight, bf16 = 2 (the embedding row read is the same for all).
  const int64_t H = 64, I = 128, V = 384, hd = 16, qkv = (4 + 2 * 2) * hd;
  const int64_t weights = 2 * (qkv * H + H * 4 * hd + 2 * I * H + H * I) + V * H;
  const int64_t rows = 2 * (qkv + H + 2 * I + H) + V;
  const int64_t embed_row = H + 4;
  EXPECT_EQ(r.runs[0].bytes_per_token, weights + 4 * rows + 9 * 512 + embed_row);
  EXPECT_EQ(r.runs[2].bytes_per_token, 2 * weights + embed_row);
  EXPECT_EQ(r.runs[3].bytes_per_token, 4 * weights + embed_row);
  const auto j = nlohmann::json::parse(bench_json(r));
  EXPECT_EQ(j["runs"].size(), 4u);
  EXPECT_NE(bench_text(r).find("qins decode"), std::string::npos);
}

// The decode is rated in rounds of ~8 tokens, each against a plain read made right before it.
TEST(Bench, DecodeRoundsEachAfterTheirOwnRead) {
  BenchOptions o;
  o.prompt_tokens = 4;
  o.gen_tokens = 17;
  o.context = 64;
  o.depth = 0;
  o.baselines = {};
  o.bandwidth_gib = 0.01;
  o.decode_bandwidth_bytes = int64_t{8} << 20;
  const BenchResult r = run_bench(tiny_model(), o);
  ASSERT_EQ(r.runs.size(), 1u);
  const BenchRun& q = r.runs[0];
  ASSERT_EQ(q.round_tps.size(), 2u);
  ASSERT_EQ(q.round_bw_gbs.size(), 2u);
  // decode_tps: 17 tokens over the two rounds' time (8 and 9 tokens).
  EXPECT_NEAR(q.decode_tps, 17.0 / (8.0 / q.round_tps[0] + 9.0 / q.round_tps[1]), 1e-9 * q.decode_tps);
  EXPECT_DOUBLE_EQ(q.bandwidth_gbs, 0.5 * (q.round_bw_gbs[0] + q.round_bw_gbs[1]));
  const auto j = nlohmann::json::parse(bench_json(r));
  EXPECT_EQ(j["runs"][0]["round_tps"].size(), 2u);
  EXPECT_EQ(j["runs"][0]["round_bw_gbs"].size(), 2u);
}

TEST(Bench, Median) {
  EXPECT_EQ(median({}), 0.0);
  EXPECT_EQ(median({5.0}), 5.0);
  EXPECT_EQ(median({3.0, 1.0, 2.0}), 2.0);
  EXPECT_EQ(median({4.0, 1.0, 3.0, 2.0}), 2.5);
}

TEST(Bench, ProfileModeRunsOnlyDecodeSteps) {
  BenchOptions o;
  o.context = 64;
  o.depth = 20;
  o.profile_steps = 5;
  std::vector<std::string> lines;
  const double s = run_decode_profile(tiny_model(), o, [&](const std::string& l) { lines.push_back(l); });
  EXPECT_GT(s, 0.0);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("5 decode steps at depth 20"), std::string::npos);
  o.profile_steps = 0;
  EXPECT_EQ(run_decode_profile(tiny_model(), o, {}), 0.0);
}

}  // namespace
}  // namespace qins
