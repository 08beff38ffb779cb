// core::attend_rows (fast: AVX-512 or the portable loops) against attend_rows_reference (plain
// loops), and the reference against torch in double precision.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "qins/core/attention.h"

namespace qc = qins::core;

namespace {

// |out_fast - out_ref| <= kMaxAttentionError * max|V| per output element. Both sum in fp32, in a
// different order (16 or 4-row partial sums vs one running sum) over up to 128 terms per score and
// a few hundred per output, and the AVX-512 exp is a degree-7 polynomial (< 1 ulp): ~1e-6
// relative at most. A wrong row, lane, stride or mask gives errors of order 1.
constexpr double kMaxAttentionError = 2e-5;
// The reference against torch in double: only the reference's fp32 rounding.
constexpr double kMaxReferenceError = 2e-5;

uint16_t to_bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>((u + 0x7FFF + ((u >> 16) & 1)) >> 16);  // round to nearest even
}
float from_bf16_bits(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

struct Case {
  std::vector<float> q, k, v;       // q [hd]; k, v [n, hd] f32 (already bf16-exact for a bf16 case)
  std::vector<uint16_t> k16, v16;   // the same as bf16 bits
};

Case make_case(int64_t n, int64_t hd, uint64_t seed) {
  torch::manual_seed(seed);
  auto fill = [](int64_t count) {
    const torch::Tensor t = torch::randn({count}, torch::kFloat32) * 2.0;  // scores of a few units
    return std::vector<float>(t.data_ptr<float>(), t.data_ptr<float>() + count);
  };
  Case c{fill(hd), fill(n * hd), fill(n * hd), {}, {}};
  for (float& x : c.k) c.k16.push_back(to_bf16_bits(x)), x = from_bf16_bits(c.k16.back());
  for (float& x : c.v) c.v16.push_back(to_bf16_bits(x)), x = from_bf16_bits(c.v16.back());
  return c;
}

double max_abs(const std::vector<float>& x) {
  double m = 0;
  for (float f : x) m = std::max(m, std::abs(static_cast<double>(f)));
  return m;
}

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
  return m;
}

// softmax(scale K q) V in double.
std::vector<float> torch_attention(const Case& c, int64_t n, int64_t hd, float scale) {
  const auto opts = torch::TensorOptions().dtype(torch::kFloat32);
  const auto q = torch::from_blob(const_cast<float*>(c.q.data()), {hd}, opts).to(torch::kFloat64);
  const auto k = torch::from_blob(const_cast<float*>(c.k.data()), {n, hd}, opts).to(torch::kFloat64);
  const auto v = torch::from_blob(const_cast<float*>(c.v.data()), {n, hd}, opts).to(torch::kFloat64);
  const auto p = torch::softmax(torch::mv(k, q) * static_cast<double>(scale), 0);
  const auto out = torch::mv(v.t(), p).to(torch::kFloat32).contiguous();
  return std::vector<float>(out.data_ptr<float>(), out.data_ptr<float>() + hd);
}

struct PathGuard {
  ~PathGuard() { qc::set_attention_path("auto"); }
};

const int64_t kHeadDims[] = {64, 96, 128, 40};  // 40: no AVX-512 loop; the portable one's tail
const int64_t kRows[] = {1, 2, 3, 4, 5, 15, 16, 17, 63, 100, 257, 300};

}  // namespace

TEST(Attention, FastMatchesReferenceF32AndBf16) {
  PathGuard guard;
  qc::set_attention_path("fast");
  for (int64_t hd : kHeadDims)
    for (int64_t n : kRows) {
      SCOPED_TRACE("hd " + std::to_string(hd) + ", n " + std::to_string(n) +
                   (qc::attention_has_avx512(hd) ? ", AVX-512" : ", portable"));
      const Case c = make_case(n, hd, static_cast<uint64_t>(1000 * hd + n));
      const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
      std::vector<float> scores(static_cast<size_t>(n)), fast(static_cast<size_t>(hd)), ref(fast);
      const double budget = kMaxAttentionError * max_abs(c.v);
      qc::attend_rows(c.q.data(), c.k.data(), c.v.data(), n, hd, scale, scores.data(), fast.data());
      qc::attend_rows_reference(c.q.data(), c.k.data(), c.v.data(), n, hd, scale, scores.data(), ref.data());
      EXPECT_LE(max_diff(fast, ref), budget) << "f32 K/V";
      qc::attend_rows(c.q.data(), c.k16.data(), c.v16.data(), n, hd, scale, scores.data(), fast.data());
      EXPECT_LE(max_diff(fast, ref), budget) << "bf16 K/V (the f32 reference holds the same values)";
      qc::attend_rows_reference(c.q.data(), c.k16.data(), c.v16.data(), n, hd, scale, scores.data(), fast.data());
      EXPECT_EQ(max_diff(fast, ref), 0.0) << "bf16 reference: the same loops over the same values";
    }
}

TEST(Attention, ReferenceMatchesTorchInDouble) {
  for (int64_t hd : kHeadDims)
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{300}}) {
      SCOPED_TRACE("hd " + std::to_string(hd) + ", n " + std::to_string(n));
      const Case c = make_case(n, hd, static_cast<uint64_t>(7 * hd + n));
      const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
      std::vector<float> scores(static_cast<size_t>(n)), ref(static_cast<size_t>(hd));
      qc::attend_rows_reference(c.q.data(), c.k.data(), c.v.data(), n, hd, scale, scores.data(), ref.data());
      EXPECT_LE(max_diff(ref, torch_attention(c, n, hd, scale)), kMaxReferenceError * max_abs(c.v));
    }
}

// One row: the softmax is 1, so the output is that row of V exactly.
TEST(Attention, OneRowIsThatValueRow) {
  for (int64_t hd : kHeadDims) {
    const Case c = make_case(1, hd, 3);
    std::vector<float> scores(1), out(static_cast<size_t>(hd));
    qc::attend_rows(c.q.data(), c.k16.data(), c.v16.data(), 1, hd, 0.125f, scores.data(), out.data());
    EXPECT_EQ(scores[0], 1.0f);
    EXPECT_EQ(max_diff(out, c.v), 0.0) << "hd " << hd;
  }
}

TEST(Attention, PathSwitch) {
  PathGuard guard;
  EXPECT_THROW(qc::set_attention_path("fastest"), std::invalid_argument);
  qc::set_attention_path("reference");
  EXPECT_STREQ(qc::attention_path(), "reference");
  const int64_t n = 33, hd = 96;
  const Case c = make_case(n, hd, 11);
  std::vector<float> scores(static_cast<size_t>(n)), a(static_cast<size_t>(hd)), b(a);
  qc::attend_rows(c.q.data(), c.k16.data(), c.v16.data(), n, hd, 0.1f, scores.data(), a.data());
  qc::attend_rows_reference(c.q.data(), c.k16.data(), c.v16.data(), n, hd, 0.1f, scores.data(), b.data());
  EXPECT_EQ(max_diff(a, b), 0.0) << "forced reference runs the reference loops";
  qc::set_attention_path("auto");
  EXPECT_STREQ(qc::attention_path(), "fast");
}
