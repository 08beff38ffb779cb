// Scale fit: the sorted-summary row error equals the reference full-pass error, and the fast fit's
// scale is never worse than the reference fit's on Gaussian, Laplace, Student-t(5) and edge rows.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

#include "qins/core/qins.h"
#include "scale_fit.h"

namespace qc = qins::core;
namespace fit = qins::core::fit;

namespace {

// [rows, cols] fp32 rows of one distribution (unit-ish spread times 0.02, like trained weights).
torch::Tensor sample(const std::string& dist, int64_t rows, int64_t cols, uint64_t seed) {
  torch::manual_seed(seed);
  torch::Tensor w;
  if (dist == "gaussian") {
    w = torch::randn({rows, cols});
  } else if (dist == "laplace") {
    const torch::Tensor u = torch::rand({rows, cols}).clamp_min(1e-12);
    w = -u.log() * (torch::randint(0, 2, {rows, cols}).to(torch::kFloat32) * 2 - 1);
  } else {  // student-t, 5 degrees of freedom: z / sqrt(chi2_5 / 5)
    const torch::Tensor z = torch::randn({rows, cols});
    const torch::Tensor chi2 = torch::randn({5, rows, cols}).pow(2).sum(0);
    w = z / (chi2 / 5).sqrt();
  }
  return (w * 0.02).contiguous();
}

std::vector<std::array<float, 128>> tables() {
  std::vector<std::array<float, 128>> t;
  for (double pole : {128.5, 145.0, 300.0, 2000.0}) {
    const torch::Tensor lut = qc::make_lut(qc::Codebook::Projective, pole);
    std::array<float, 128> a{};
    std::copy(lut.data_ptr<float>(), lut.data_ptr<float>() + 128, a.begin());
    t.push_back(a);
  }
  const torch::Tensor lut = qc::make_lut(qc::Codebook::Uniform);
  std::array<float, 128> a{};
  std::copy(lut.data_ptr<float>(), lut.data_ptr<float>() + 128, a.begin());
  t.push_back(a);
  return t;
}

}  // namespace

TEST(ScaleFit, SummaryErrorMatchesFullPass) {
  const auto luts = tables();
  fit::RowSummary summary;
  for (const char* dist : {"gaussian", "laplace", "t5"}) {
    const torch::Tensor w = sample(dist, 4, 3072, 11);
    for (int64_t r = 0; r < w.size(0); ++r) {
      const float* row = w[r].data_ptr<float>();
      summary.build(row, w.size(1));
      EXPECT_EQ(summary.absmax(), fit::row_absmax(row, w.size(1)));
      for (const auto& lut : luts) {
        const fit::NearestCode nc(lut);
        for (float f : {0.01f, 0.3f, 0.5f, 0.77f, 1.f, 1.2999f, 2.f}) {
          const float s = f * summary.absmax();
          const double ref = fit::row_error_reference(row, w.size(1), s, nc);
          // The reference rounds each difference a - q to float (~6e-8 relative), which shows
          // where many weights are clipped (f << 1); the summary sums in double.
          EXPECT_NEAR(summary.error(s, nc), ref, 1e-7 * ref) << dist << " f=" << f;
        }
      }
    }
  }
}

TEST(ScaleFit, FastFitNeverWorseThanReference) {
  const auto luts = tables();
  fit::RowSummary summary;
  int rows_checked = 0, same_scale = 0;
  for (const char* dist : {"gaussian", "laplace", "t5"}) {
    for (int64_t cols : {3072, 8192, 130}) {
      const torch::Tensor w = sample(dist, 6, cols, 12 + static_cast<uint64_t>(cols));
      for (int64_t r = 0; r < w.size(0); ++r) {
        const float* row = w[r].data_ptr<float>();
        summary.build(row, cols);
        for (const auto& lut : luts) {
          const fit::NearestCode nc(lut);
          double ref_err = 0.0, fast_err = 0.0;
          const float ref_s = fit::fit_scale_reference(row, cols, nc, &ref_err);
          const float fast_s = fit::fit_scale(summary, nc, &fast_err);
          // The fast scale's error, measured by the reference pass, is no worse.
          const double got = fit::row_error_reference(row, cols, fast_s, nc);
          EXPECT_LE(got, ref_err * (1 + 1e-9)) << dist << " cols=" << cols << " row=" << r;
          EXPECT_NEAR(fast_err, got, 1e-9 * got);
          ++rows_checked;
          same_scale += fast_s == ref_s;
        }
      }
    }
  }
  // The search is the same, so the scales agree except at near-ties of two candidates.
  EXPECT_GE(same_scale, rows_checked * 9 / 10);
}

TEST(ScaleFit, EdgeRows) {
  const auto luts = tables();
  fit::RowSummary summary;
  std::vector<std::vector<float>> rows = {
      {0.f, 0.f, 0.f},                          // all zero: scale 0, error 0
      {0.f, -0.f, 3.f},                         // one nonzero
      {0.5f, -0.5f, 0.5f, 0.5f},                // constant magnitude
      {1e-30f, 2e-30f, -1e-30f},                // denormal-adjacent tiny values
      {1e-3f, -2e-3f, 5e-4f, 1.f, -1e-3f},      // one outlier
      {7.f},                                    // a single weight
  };
  // Crowded bins: one weight far above 3000 small ones (build() sorts them with std::sort and
  // below() binary-searches the boundary's bin).
  {
    const torch::Tensor w = sample("gaussian", 1, 3072, 31) * 1e-3;
    std::vector<float> r(w.data_ptr<float>(), w.data_ptr<float>() + 3072);
    r[100] = 5.f;
    rows.push_back(r);
  }
  for (const auto& row : rows) {
    const int64_t n = static_cast<int64_t>(row.size());
    summary.build(row.data(), n);
    for (const auto& lut : luts) {
      const fit::NearestCode nc(lut);
      double ref_err = 0.0, fast_err = 0.0;
      const float ref_s = fit::fit_scale_reference(row.data(), n, nc, &ref_err);
      const float fast_s = fit::fit_scale(summary, nc, &fast_err);
      if (ref_s == 0.f) {
        EXPECT_EQ(fast_s, 0.f);
        EXPECT_EQ(fast_err, 0.0);
        continue;
      }
      EXPECT_LE(fit::row_error_reference(row.data(), n, fast_s, nc), ref_err * (1 + 1e-9) + 1e-300);
    }
  }
}
