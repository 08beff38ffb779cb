// QINS-8 grouped: quantize8g / dequantize8g (error bounds, zero groups, padding, determinism,
// validation) and every GEMV kernel path against the scalar twin and the dequantized matrix on
// awkward shapes.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "qins/core/qins.h"
#include "qins/core/qins4.h"
#include "qins/core/qins8g.h"

using namespace qins::core;

namespace {

struct Kernel8gGuard {
  ~Kernel8gGuard() { set_kernel8g_isa("auto"); }
};

torch::Tensor heavy_tailed(int64_t out, int64_t in, uint64_t seed) {
  torch::manual_seed(seed);
  torch::Tensor n = torch::randn({out, in});
  torch::Tensor c = torch::randn({out, in, 3}).pow(2).sum(2).div(3).sqrt();
  return (n / c * 0.02).contiguous();
}

double sse(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).pow(2).sum().item<double>(); }

std::string msg_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Qins8g, RoundTripWithinHalfAStepOfItsGroupScale) {
  for (const Scale8 sc : {Scale8::Log8, Scale8::Fp16})
    for (const int group : {32, 64})
      for (const int64_t in : {int64_t{1}, int64_t{33}, int64_t{100}, int64_t{128}}) {
        SCOPED_TRACE(std::string(scale8_name(sc)) + " g" + std::to_string(group) + " in " + std::to_string(in));
        const torch::Tensor w = heavy_tailed(9, in, 3 + static_cast<uint64_t>(in));
        Quantize8gOptions o;
        o.group = group;
        o.scale = sc;
        const Quantized8gTensor q = quantize8g(w, o);
        q.validate("test");
        const int64_t n_groups = (in + group - 1) / group;
        EXPECT_EQ(q.padded_in(), n_groups * group);
        EXPECT_EQ(q.scales.sizes(), (std::vector<int64_t>{9, n_groups}));
        EXPECT_EQ(q.log_scales(), sc == Scale8::Log8);
        EXPECT_GT(q.pole, 127.0);
        const torch::Tensor d = dequantize8g(q);  // [9, in]
        ASSERT_EQ(d.sizes(), w.sizes());
        const float* lut = q.lut.data_ptr<float>();
        float max_gap = 0.f;
        for (int j = 1; j < 128; ++j) max_gap = std::max(max_gap, lut[j] - lut[j - 1]);
        const float* wp = w.data_ptr<float>();
        const float* dp = d.data_ptr<float>();
        for (int64_t r = 0; r < 9; ++r)
          for (int64_t g = 0; g < n_groups; ++g) {
            const float s = group_scale8g(q, r, g);
            float amax = 0.f;
            for (int64_t i = g * group; i < std::min(in, (g + 1) * group); ++i) amax = std::max(amax, std::fabs(wp[r * in + i]));
            // The scale lies at or a little below the group's absmax (the fit tries 5 grid values
            // from the first one at or above it downwards).
            EXPECT_LE(s, amax * (sc == Scale8::Log8 ? 1.0444f : 1.001f)) << r << "," << g;
            EXPECT_GE(s, amax * 0.80f) << r << "," << g;
            for (int64_t i = g * group; i < std::min(in, (g + 1) * group); ++i) {
              const float a = wp[r * in + i], b = dp[r * in + i];
              const float bound = std::max(0.5f * max_gap * s, std::fabs(a) - s) * 1.0001f + 1e-12f;
              EXPECT_LE(std::fabs(a - b), bound) << r << "," << i;
              EXPECT_FALSE(a * b < 0.f) << "sign flipped at " << r << "," << i;
            }
          }
        // The padding codes are the exact zero.
        const torch::Tensor pad = q.codes.narrow(1, in, q.padded_in() - in);
        EXPECT_EQ(pad.count_nonzero().item<int64_t>(), 0);
      }
}

TEST(Qins8g, GroupScalesBeatOneScalePerRowOnOutlierRows) {
  // Rows whose magnitude changes along the row (an outlier block): a scale per group follows it.
  torch::Tensor w = heavy_tailed(64, 256, 5);
  w.narrow(1, 0, 32).mul_(20.f);
  const torch::Tensor row = dequantize(quantize(w));
  const torch::Tensor g32 = dequantize8g(quantize8g(w));
  Quantize8gOptions o;
  o.scale = Scale8::Fp16;
  const torch::Tensor h32 = dequantize8g(quantize8g(w, o));
  EXPECT_LT(sse(w, g32), 0.5 * sse(w, row));
  EXPECT_LT(sse(w, h32), 0.5 * sse(w, row));
}

TEST(Qins8g, ZeroGroupsAndDeterminism) {
  torch::Tensor w = heavy_tailed(20, 96, 7);
  w[3].zero_();
  w[5].narrow(0, 32, 32).zero_();
  Quantize8gOptions o1, o0;
  o1.threads = 1;
  const Quantized8gTensor a = quantize8g(w, o1), b = quantize8g(w, o0);
  EXPECT_TRUE(torch::equal(a.codes, b.codes));
  EXPECT_TRUE(torch::equal(a.scales, b.scales));
  EXPECT_TRUE(torch::equal(a.lut, b.lut));
  const torch::Tensor d = dequantize8g(a);
  EXPECT_EQ(d[3].count_nonzero().item<int64_t>(), 0);
  EXPECT_EQ(d[5].narrow(0, 32, 32).count_nonzero().item<int64_t>(), 0);
  EXPECT_EQ(a.scales[3].count_nonzero().item<int64_t>(), 0);  // log code 0: the zero scale
  EXPECT_EQ(group_scale8g(a, 5, 1), 0.f);
  // All-zero matrix: a zero table top, every code and scale zero.
  const Quantized8gTensor z = quantize8g(torch::zeros({3, 40}));
  z.validate("zeros");
  EXPECT_EQ(dequantize8g(z).count_nonzero().item<int64_t>(), 0);
}

TEST(Qins8g, FixedPoleAndBytes) {
  const torch::Tensor w = heavy_tailed(8, 64, 9);
  Quantize8gOptions o;
  o.pole = 300.0;
  o.group = 64;
  const Quantized8gTensor q = quantize8g(w, o);
  EXPECT_EQ(q.pole, 300.0);
  EXPECT_TRUE(torch::equal(q.lut, make_lut(Codebook::Projective, 300.0)));
  EXPECT_EQ(q.bytes(), 8 * 64 + 8 * 1 + 128 * 4 + 4);  // codes, log-scale codes, table, top
  o.scale = Scale8::Fp16;
  EXPECT_EQ(quantize8g(w, o).bytes(), 8 * 64 + 8 * 2 + 128 * 4);
}

TEST(Qins8g, BadInputAndValidation) {
  const torch::Tensor w = heavy_tailed(4, 64, 1);
  Quantize8gOptions o;
  o.group = 16;
  EXPECT_NE(msg_of([&] { quantize8g(w, o); }).find("group must be 32 or 64"), std::string::npos);
  o.group = 32;
  o.pole = 100.0;
  EXPECT_NE(msg_of([&] { quantize8g(w, o); }).find("pole"), std::string::npos);
  o.pole = 0.0;
  torch::Tensor bad = w.clone();
  bad[1][2] = std::nanf("");
  EXPECT_NE(msg_of([&] { quantize8g(bad, o); }).find("non-finite"), std::string::npos);
  EXPECT_THROW(quantize8g(torch::zeros({4}), o), std::invalid_argument);
  EXPECT_THROW(quantize8g(torch::zeros({0, 4}), o), std::invalid_argument);

  const Quantized8gTensor good = quantize8g(w, o);
  auto expect_bad = [&](Quantized8gTensor q, const std::string& part) {
    const std::string m = msg_of([&] { q.validate("layer.7"); });
    EXPECT_NE(m.find("layer.7: "), std::string::npos) << m;
    EXPECT_NE(m.find(part), std::string::npos) << m;
  };
  Quantized8gTensor q = good;
  q.codes = good.codes.narrow(1, 0, 32).contiguous();
  expect_bad(q, "columns");
  q = good;
  q.scales = good.scales.narrow(1, 0, 1).contiguous();
  expect_bad(q, "scales are");
  q = good;
  q.sub_table = good.sub_table.clone();
  q.sub_table[100] = q.sub_table[101];
  expect_bad(q, "not the log table");
  q = good;
  q.sub_table = torch::Tensor();
  expect_bad(q, "sub_table");
  q = good;
  q.lut = good.lut.flip(0).contiguous();
  expect_bad(q, "lut");
  q = good;
  q.group = 48;
  expect_bad(q, "group must be 32 or 64");
  q = good;
  q.scales = good.scales.to(torch::kFloat32);
  expect_bad(q, "uint8");
  q = good;
  q.scales = torch::full({4, 2}, -1.0, torch::kHalf);
  q.sub_table = torch::Tensor();
  expect_bad(q, "finite and >= 0");
  EXPECT_THROW(dequantize8g_row_into(good, 4, std::vector<float>(64).data()), std::out_of_range);
}

TEST(Qins8gKernels, EveryPathMatchesTheScalarTwinAndTheDequantizedMatrix) {
  Kernel8gGuard guard;
  const auto isas = available_kernel8g_isas();
  ASSERT_FALSE(isas.empty());
  for (const Scale8 sc : {Scale8::Log8, Scale8::Fp16})
    for (const int group : {32, 64})
      for (const int64_t out : {int64_t{1}, int64_t{7}, int64_t{65}})
        for (const int64_t in : {int64_t{1}, int64_t{31}, int64_t{33}, int64_t{100}, int64_t{257}}) {
          SCOPED_TRACE(std::string(scale8_name(sc)) + " g" + std::to_string(group) + " " + std::to_string(out) + "x" +
                       std::to_string(in));
          const torch::Tensor w = heavy_tailed(out, in, static_cast<uint64_t>(out * 1000 + in));
          Quantize8gOptions o;
          o.group = group;
          o.scale = sc;
          const Quantized8gTensor q = quantize8g(w, o);
          const torch::Tensor d = dequantize8g(q);  // [out, in]
          const int64_t n = 3;
          const torch::Tensor x = torch::randn({n, in});
          const torch::Tensor dense = torch::matmul(x, d.t());  // [n, out]
          // Tolerance: fp32 rounding of sums of |w||x| over the row.
          const torch::Tensor mag = torch::matmul(x.abs(), d.abs().t()) * 1e-5 + 1e-30;
          std::vector<float> ref(static_cast<size_t>(out));
          qins8g_gemv_reference(q, x.data_ptr<float>(), ref.data());
          const torch::Tensor reft = torch::from_blob(ref.data(), {out}, torch::kFloat32);
          EXPECT_TRUE(((reft - dense[0]).abs() <= mag[0]).all().item<bool>());
          for (const std::string& isa : isas) {
            SCOPED_TRACE(isa);
            set_kernel8g_isa(isa);
            EXPECT_STREQ(kernel8g_isa(), isa.c_str());
            torch::Tensor y = torch::full({n, out}, 7.f);
            qins8g_matmul(q, x.data_ptr<float>(), n, y.data_ptr<float>());
            EXPECT_TRUE(((y - dense).abs() <= mag).all().item<bool>()) << (y - dense).abs().max().item<float>();
            EXPECT_TRUE(((y[0] - reft).abs() <= mag[0]).all().item<bool>());
          }
        }
  EXPECT_THROW(set_kernel8g_isa("no-such-isa"), std::invalid_argument);
}

TEST(Qins8gKernels, Avx2PathPresentWhereTheCpuHasIt) {
#if defined(__x86_64__)
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) GTEST_SKIP() << "no AVX2+FMA on this CPU";
  EXPECT_STREQ(kernel8g_isa(), "avx2");
#else
  GTEST_SKIP() << "not an x86-64 build";
#endif
}

// (scripts/test-arm64.sh runs the core tests under qemu.)
TEST(Qins8gKernels, NeonIsDefaultOnArm64) {
#if defined(__aarch64__)
  EXPECT_STREQ(kernel8g_isa(), "neon");
#else
  GTEST_SKIP() << "not an aarch64 build";
#endif
}
