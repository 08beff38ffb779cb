// The generic device path (qins/graph/device.h) on CPU tensors: the code CUDA and MPS run, checked
// on every commit against the fused CPU path. Expansion through the signed table, one projection,
// the whole graph (logits within a stated tolerance on the fixture variants, one-shot and over the
// cache), greedy ids through the engine on a fixture and the demo model, resident weights, the
// fallback of an unavailable device, and the stop flag.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>

#include "fixture_dir.h"
#include "qins/core/device_expand.h"
#include "qins/core/projective_linear.h"
#include "qins/graph/device.h"
#include "qins/runtime/engine.h"
#include "qins/runtime/internal.h"

#ifndef QINS_SOURCE_DIR
#error "QINS_SOURCE_DIR must name the repository (tests/runtime/CMakeLists.txt)"
#endif

namespace qins {
namespace {

using test::greedy;

// Logits of the generic path (f32 products) against the fused kernels: the two differ only in
// summation order, so 2e-3 absolute on logits of order 1-10 is generous; the measured values are
// printed to stdout ("[device path] ...").
constexpr double kLogitTol = 2e-3;

core::QuantizedTensor random_q(int64_t out, int64_t in, uint64_t seed) {
  torch::manual_seed(seed);
  return core::quantize(torch::randn({out, in}) * 0.05);
}

TEST(DeviceExpand, SignedTableIsOneGatherOfTheDequantizedWeight) {
  const auto q = random_q(37, 53, 1);
  const auto t = core::signed_table(q, torch::kFloat32, torch::kCPU);
  ASSERT_EQ(t.numel(), 256);
  EXPECT_EQ(t[0].item<float>(), 0.0f);
  for (int j : {1, 5, 127}) {
    EXPECT_EQ(t[j].item<float>(), q.lut[j].item<float>());
    EXPECT_EQ(t[128 + j].item<float>(), -q.lut[j].item<float>());
  }
  // f32 expansion is the dequantized matrix exactly (same products, same rounding).
  const auto w = core::expand_rows(q.codes, t, q.scales);
  EXPECT_TRUE(torch::equal(w, core::dequantize(q)));
  // Row blocks smaller than the matrix (the int32 scratch holds 3 rows): same result.
  auto idx = torch::empty({3 * 53}, torch::kInt32);
  auto out = torch::empty({37, 53}, torch::kFloat32);
  core::expand_rows_into(q.codes, t, q.scales, idx, out);
  EXPECT_TRUE(torch::equal(out, w));
}

TEST(DeviceExpand, HalfAndBf16ExpansionRoundOnlyOnce) {
  const auto q = random_q(64, 96, 2);
  const auto ref = core::dequantize(q);
  for (auto dt : {torch::kHalf, torch::kBFloat16}) {
    torch::Tensor w;
    try {
      w = core::expand_rows(q.codes, core::signed_table(q, dt, torch::kCPU), q.scales.to(dt));
    } catch (const c10::Error& e) {
      GTEST_SKIP() << "this libtorch's CPU lacks an op for " << c10::toString(dt) << ": " << e.what_without_backtrace();
    }
    ASSERT_EQ(w.scalar_type(), dt);
    // table entry, scale and product each rounded: relative error <= ~3 ulps of the dtype.
    const double ulp = dt == torch::kHalf ? 1.0 / 1024 : 1.0 / 128;
    const auto rel = ((w.to(torch::kFloat32) - ref).abs() / ref.abs().clamp_min(1e-12)).masked_fill(ref.eq(0), 0);
    EXPECT_LE(rel.max().item<double>(), 3 * ulp) << c10::toString(dt);
    EXPECT_TRUE(torch::equal(w.to(torch::kFloat32).eq(0), ref.eq(0)));  // zero codes stay exactly zero
  }
}

// The fused kernels compared against run on an exact (fp32-product) path while this is alive: the
// bf16 kernel (the default where the CPU has AVX512_BF16) rounds x and the table to bf16, a
// difference the tests below would mistake for the device path's.
struct ExactFusedKernel {
  const std::string before = core::kernel_isa();
  ExactFusedKernel() {
    std::string exact = "scalar";
    for (const std::string& isa : core::available_kernel_isas()) {
      core::set_kernel_isa(isa);
      if (!core::kernel_uses_bf16()) exact = isa;
    }
    core::set_kernel_isa(exact);
  }
  ~ExactFusedKernel() { core::set_kernel_isa(before); }
};

TEST(DeviceQinsLinearTest, AgreesWithTheFusedKernel) {
  const ExactFusedKernel exact;
  const auto q = random_q(80, 112, 3);
  QinsLinear fused{core::ProjectiveLinear(q)};
  auto scratch = std::make_shared<DeviceScratch>();
  DeviceQinsLinear f32(q, {}, torch::kCPU, torch::kFloat32, scratch, false);
  DeviceQinsLinear resident(q, {}, torch::kCPU, torch::kFloat32, scratch, true);
  torch::manual_seed(4);
  const auto x = torch::randn({5, 112});
  const auto y = fused.forward(x);
  EXPECT_LE((f32.forward(x) - y).abs().max().item<double>(), 1e-5);
  EXPECT_LE((resident.forward(x) - y).abs().max().item<double>(), 1e-5);
  EXPECT_EQ(f32.forward(x).scalar_type(), torch::kFloat32);
  EXPECT_EQ(f32.weight_bytes() - 80 * 112, resident.weight_bytes() - 80 * 112 * 4);
  // bf16 products (CUDA's compute dtype) on the CPU: bf16 rounding of table, scales and x.
  DeviceQinsLinear bf16(q, {}, torch::kCPU, torch::kBFloat16, scratch, false);
  const auto yb = bf16.forward(x);
  EXPECT_EQ(yb.scalar_type(), torch::kFloat32);
  EXPECT_LE((yb - y).abs().max().item<double>(), 0.03 * y.abs().max().item<double>());
  // The scratch serves the largest projection made with it.
  EXPECT_GE(scratch->weight.numel(), 80 * 112);
  EXPECT_EQ(scratch->index.scalar_type(), torch::kInt32);
}

struct Variant {
  std::string name;
  FixtureOptions o;
};

std::vector<Variant> variants() {
  std::vector<Variant> v;
  v.push_back({"dev_gqa", [] { FixtureOptions o; o.num_kv_heads = 2; return o; }()});
  v.push_back({"dev_longrope", [] {
                 FixtureOptions o;
                 o.longrope = true;
                 o.original_max_position = 24;  // the test sequences cross it
                 o.max_position = 96;
                 return o;
               }()});
  v.push_back({"dev_window", [] { FixtureOptions o; o.sliding_window = 5; return o; }()});
  v.push_back({"dev_tied", [] { FixtureOptions o; o.tie_embeddings = true; return o; }()});
  return v;
}

torch::Tensor some_ids(int64_t T, int64_t vocab, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randint(0, vocab, {1, T}, torch::kInt64);
}

// forward() of the whole graph, one-shot and over the cache (a prefill chunk, then one token at a
// time: the calls the generate loop makes on a device graph) against the fused CPU graph.
TEST(DeviceGraph, LogitsAgreeWithTheFusedPathOnEveryFixtureVariant) {
  const ExactFusedKernel exact;
  torch::NoGradGuard ng;
  for (const auto& [name, o] : variants()) {
    const auto dir = test::fixture(name, o);
    Phi3Weights fused = test::load_qins_weights(dir);
    DeviceReport rep;
    Phi3Weights generic = to_device_graph(fused, {torch::kCPU, torch::kFloat32, false}, &rep);
    ASSERT_TRUE(generic.generic);
    EXPECT_EQ(rep.projections, 4 * fused.config.num_hidden_layers + 1) << name;
    EXPECT_GT(rep.scratch_bytes, 0) << name;
    const Phi3Config& c = fused.config;
    const int64_t T = 40;
    const auto ids = some_ids(T, c.vocab_size, 7);
    const auto a = forward(fused, ids, nullptr), b = forward(generic, ids, nullptr);
    const double one_shot = (a - b).abs().max().item<double>();
    EXPECT_LE(one_shot, kLogitTol) << name;

    // Over the cache: 30 tokens of prefill, then 10 single tokens (generic: forward with T = 1;
    // fused: decode_step).
    KvCache cf = make_kv_cache(c, 64, torch::kFloat32), cg = make_kv_cache(generic, 64, torch::kFloat32);
    cf.long_rope = cg.long_rope = rope_needs_long(c, T - 1);
    ForwardOptions last{torch::kFloat32, true};
    auto lf = forward(fused, ids.narrow(1, 0, 30), &cf, last).reshape({-1});
    auto lg = forward(generic, ids.narrow(1, 0, 30), &cg, last).reshape({-1});
    double cached = (lf - lg).abs().max().item<double>();
    std::vector<float> step(static_cast<size_t>(c.vocab_size));
    for (int64_t t = 30; t < T; ++t) {
      const int64_t id = ids[0][t].item<int64_t>();
      std::vector<float> unused(step.size());
      EXPECT_FALSE(decode_step(generic, id, cg, unused.data())) << "a device graph must decline the row path";
      ASSERT_TRUE(decode_step(fused, id, cf, step.data()));
      lg = forward(generic, ids.narrow(1, t, 1), &cg, last).reshape({-1});
      ASSERT_TRUE(lg.device().is_cpu());
      const auto sf = torch::from_blob(step.data(), {c.vocab_size}, torch::kFloat32);
      cached = std::max(cached, (sf - lg).abs().max().item<double>());
    }
    EXPECT_EQ(cg.n_past, T);
    EXPECT_LE(cached, kLogitTol) << name;
    std::printf("[device path] %-13s max |logit diff| one-shot %.2e, over the cache %.2e\n", name.c_str(), one_shot,
                cached);
  }
}

TEST(DeviceGraph, Bf16ProductsStayCloseOnTheCpu) {
  torch::NoGradGuard ng;
  const auto dir = test::fixture("dev_gqa", variants()[0].o);
  Phi3Weights fused = test::load_qins_weights(dir);
  Phi3Weights generic = to_device_graph(fused, {torch::kCPU, torch::kBFloat16, false});
  const auto ids = some_ids(24, fused.config.vocab_size, 9);
  const auto a = forward(fused, ids, nullptr), b = forward(generic, ids, nullptr);
  const double diff = (a - b).abs().max().item<double>(), scale = a.abs().max().item<double>();
  std::printf("[device path] bf16 products: max |logit diff| %.3e (max |logit| %.2f)\n", diff, scale);
  EXPECT_LE(diff, 0.05 * scale);
}

std::unique_ptr<Engine> load(const std::string& path, const std::string& device, const std::string& weights = "projective",
                             const std::string& gpu_weights = "expand") {
  LoadOptions lo;
  lo.context_length = 256;
  lo.weight_format = weights;
  lo.device = device;
  lo.gpu_weights = gpu_weights;
  return Engine::load(path, lo);
}

std::vector<int> greedy_ids(Engine& e, const std::string& prompt, int n) {
  auto s = e.new_session();
  std::vector<int> ids;
  s->generate({{Role::User, prompt}}, greedy(n), {}, nullptr, &ids);
  return ids;
}

TEST(DeviceEngine, GreedyIdsMatchTheFusedPathOnAFixture) {
  const auto dir = test::fixture("dev_gqa", variants()[0].o);
  auto cpu = load(dir, "cpu"), gen = load(dir, "cpu-generic");
  EXPECT_EQ(cpu->info().device, "cpu");
  EXPECT_EQ(gen->info().device, "cpu-generic");
  EXPECT_NE(gen->info().device_mode.find("generic path, f32"), std::string::npos) << gen->info().device_mode;
  EXPECT_TRUE(gen->info().device_note.empty()) << gen->info().device_note;
  const auto a = greedy_ids(*cpu, "What does the word harbour mean?", 24);
  EXPECT_EQ(a, greedy_ids(*gen, "What does the word harbour mean?", 24));
  auto res = load(dir, "cpu-generic", "projective", "resident");
  EXPECT_NE(res->info().device_mode.find("resident"), std::string::npos) << res->info().device_mode;
  EXPECT_EQ(a, greedy_ids(*res, "What does the word harbour mean?", 24));
}

TEST(DeviceEngine, GreedyIdsMatchTheFusedPathOnTheDemoModel) {
  const std::string demo = std::string(QINS_SOURCE_DIR) + "/models/demo";
  auto cpu = load(demo, "cpu"), gen = load(demo, "cpu-generic");
  for (const char* prompt : {"What does ephemeral mean?", "Define the word harbour."}) {
    const auto a = greedy_ids(*cpu, prompt, 48), b = greedy_ids(*gen, prompt, 48);
    EXPECT_FALSE(a.empty());
    EXPECT_EQ(a, b) << prompt;
  }
  // A second turn in the same session reuses the device cache.
  auto s1 = cpu->new_session(), s2 = gen->new_session();
  std::vector<int> i1, i2;
  const std::vector<ChatMessage> m{{Role::User, "What does ephemeral mean?"}};
  s1->generate(m, greedy(16), {}, nullptr, &i1);
  s2->generate(m, greedy(16), {}, nullptr, &i2);
  auto m2 = m;
  m2.push_back({Role::Assistant, "lasting a very short time"});
  m2.push_back({Role::User, "And transient?"});
  i1.clear(), i2.clear();
  const auto st1 = s1->generate(m2, greedy(16), {}, nullptr, &i1);
  const auto st2 = s2->generate(m2, greedy(16), {}, nullptr, &i2);
  EXPECT_EQ(i1, i2);
  EXPECT_EQ(st1.prefilled_tokens, st2.prefilled_tokens);
}

TEST(DeviceEngine, AnUnavailableGpuFallsBackToTheCpuWithTheReason) {
  const auto dir = test::fixture("dev_gqa", variants()[0].o);
  for (const std::string dev : {"cuda", "mps"}) {
    const DeviceChoice d = resolve_device(dev);
    if (d.device == dev) continue;  // this machine has it: nothing to fall back from
    auto e = load(dir, dev);
    EXPECT_EQ(e->info().device, "cpu") << dev;
    EXPECT_NE(e->info().device_note.find(dev), std::string::npos) << e->info().device_note;
    EXPECT_NE(e->info().device_note.find("running on the CPU"), std::string::npos) << e->info().device_note;
    EXPECT_NE(e->info().device_mode.find("fused CPU kernels"), std::string::npos);
    EXPECT_FALSE(greedy_ids(*e, "Hello", 4).empty());
  }
  // auto never leaves a note when it simply finds no GPU.
  if (resolve_device("auto").device == "cpu") {
    EXPECT_TRUE(load(dir, "auto")->info().device_note.empty());
  }
  EXPECT_THROW(resolve_device("tpu"), Error);
  EXPECT_THROW(load(dir, "cpu-generic", "projective", "sometimes"), Error);
}

TEST(DeviceEngine, TheStopFlagStillWorks) {
  const auto dir = test::fixture("dev_gqa", variants()[0].o);
  auto e = load(dir, "cpu-generic");
  auto s = e->new_session();
  std::atomic<bool> stop{true};
  auto st = s->generate({{Role::User, "Hello there"}}, greedy(20), {}, &stop);
  EXPECT_EQ(st.stop_reason, "cancelled");  // set before the prefill: nothing runs
  EXPECT_EQ(st.generated_tokens, 0);
  stop = false;
  int pieces = 0;
  SamplingParams p = greedy(50);
  std::vector<int> ids;
  st = s->generate({{Role::User, "Tell me about the sea and the harbour"}}, p,
                   [&](std::string_view) {
                     if (++pieces == 2) stop = true;
                     return true;
                   },
                   &stop, &ids);
  if (st.stop_reason != "stop_token") {
    EXPECT_EQ(st.stop_reason, "cancelled");
    EXPECT_LE(st.generated_tokens, 3);
  }
}

TEST(DeviceEngine, DenseWeightsRunOnTheGenericPathToo) {
  const auto dir = test::fixture("dev_gqa", variants()[0].o);
  auto cpu = load(dir, "cpu", "f32"), gen = load(dir, "cpu-generic", "f32");
  EXPECT_EQ(gen->info().device, "cpu-generic");
  EXPECT_EQ(greedy_ids(*cpu, "Hello", 12), greedy_ids(*gen, "Hello", 12));
}

}  // namespace
}  // namespace qins
