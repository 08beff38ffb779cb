// Per-row scale fit behind quantize(): the nearest-code search of a codebook table and the search
// for the row scale that minimises the row's squared error. Internal (plain C++, no torch); the
// benchmark and the core tests include it to compare the fast fit with the reference one.
//
// Where the time goes: the search evaluates the row error at 29 scales. The reference evaluates
// each with a pass over the row (n nearest-code lookups, ~1.2 ns each here). The fast fit sorts
// |w| once (a counting sort into ~n bins, O(n)) with prefix sums, so one evaluation is a table
// read plus a branch-free count per code boundary (127 of them, independent of n), and
// evaluations that cannot win stop early.
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <vector>

namespace qins::core::fit {

// Nearest-code search for a monotone table: the decision boundaries between neighbouring codes
// plus a bucket index over [0, 1] so each lookup starts next to its answer (O(1) on average,
// whatever the table's shape).
class NearestCode {
 public:
  explicit NearestCode(const std::array<float, 128>& lut);
  // a = |w| / scale >= 0 -> index j in 0..127 with |a - lut[j]| minimal (ties to the smaller).
  // Equivalently: the number of boundaries bound(k) < min(a, 1).
  int index(float a) const {
    if (!(a < 1.f)) a = 1.f;  // beyond the top code (or NaN-free clip): the largest magnitude
    int j = first_[static_cast<int>(a * kBuckets)];
    while (j < 127 && bound_[j] < a) ++j;
    return j;
  }
  float value(int j) const { return lut_[j]; }
  float bound(int j) const { return bound_[j]; }  // between codes j and j + 1, j in 0..126

 private:
  static constexpr int kBuckets = 8192;
  std::array<float, 128> lut_;
  std::array<float, 127> bound_{};
  std::array<uint8_t, kBuckets + 1> first_{};
};

// Relative slack of an early stop: a partial error is only called a loss when it exceeds the
// limit by more than any rounding of the full sum could (terms >= 0 up to ~1e-16 relative).
constexpr double kLimitSlack = 1e-12;

// The scale search shared by both fits: a coarse grid of f * max (f in [0.5, 1.3], step 0.05),
// then a golden-section refinement around the best grid point; returns the best scale seen.
// `error(s, limit)` is the row's squared error at scale s; it may return early any value above
// limit * (1 + kLimitSlack) when the error is that large (such a scale can only lose the
// comparison it is evaluated for, so the result is the same as with full evaluations).
// The grid is visited from its middle outwards so that a good limit is known early; ties go to
// the smaller f, as in a left-to-right scan. Deterministic.
template <class ErrorFn>
float search_scale(float absmax, ErrorFn&& error, double* err_out) {
  constexpr int kGrid = 17;
  constexpr float kLo = 0.5f, kStep = 0.05f;
  // f = 1 first (the optimum of most rows: Gaussian, Laplace, t5 with projective or uniform
  // tables land within 0.05 of it), then alternately outwards.
  constexpr int kOrder[kGrid] = {10, 9, 11, 8, 12, 7, 13, 6, 14, 5, 15, 4, 16, 3, 2, 1, 0};
  int best_g = -1;
  double best = std::numeric_limits<double>::infinity();
  for (int g : kOrder) {
    const float f = kLo + kStep * g;
    const double e = error(f * absmax, best);
    if (e < best || (e == best && g < best_g)) best = e, best_g = g;
  }
  const float best_f = kLo + kStep * best_g;
  const double phi = 0.6180339887498949;
  double a = best_f - kStep, b = best_f + kStep;
  double c = b - phi * (b - a), d = a + phi * (b - a);
  // Each new point is compared with its partner next (ec < ed): that value is its limit.
  double ec = error(static_cast<float>(c * absmax), std::numeric_limits<double>::infinity());
  double ed = error(static_cast<float>(d * absmax), ec);
  for (int it = 0; it < 10; ++it) {
    if (ec < ed) {
      b = d, d = c, ed = ec;
      c = b - phi * (b - a);
      ec = error(static_cast<float>(c * absmax), ed);
    } else {
      a = c, c = d, ec = ed;
      d = a + phi * (b - a);
      ed = error(static_cast<float>(d * absmax), ec);
    }
  }
  float s = best_f * absmax;
  if (ec < best) best = ec, s = static_cast<float>(c * absmax);
  if (ed < best) best = ed, s = static_cast<float>(d * absmax);
  if (err_out) *err_out = best;
  return s;
}

float row_absmax(const float* w, int64_t n);

// The 8-bit codes of w[0..n) at scale s: the nearest table index of |w| / s, the sign in bit 7
// (never on index 0, so zero has one code). A scale that is not > 0 (zero, NaN) gives all zeros.
void encode_signed(const float* w, int64_t n, float s, const NearestCode& nc, uint8_t* codes);

// Reference fit: one full pass over the row per evaluated scale (the algorithm quantize() used
// before the sorted summary; kept as the yardstick for the test and the benchmark).
double row_error_reference(const float* w, int64_t n, float s, const NearestCode& nc);
float fit_scale_reference(const float* w, int64_t n, const NearestCode& nc, double* err_out);

// One row reduced to what its squared error at any scale depends on: |w| sorted ascending with
// prefix sums of |w| and |w|^2 (double), and `bins` equal-width bins over [0, max] indexing the
// sorted array. The sort is a counting sort into the bins (about one element each) and an
// insertion pass that orders the few elements inside a bin. The elements below a code boundary
// are then a prefix of the sorted array: its length is the start of the boundary's bin plus a
// branch-free count inside that bin. Rows whose bins are crowded (most weights far below the
// max) fall back to full passes. Buffers are reused across build() calls (one RowSummary per
// thread); the row must outlive the evaluations.
class RowSummary {
 public:
  void build(const float* w, int64_t n);
  float absmax() const { return absmax_; }
  int64_t size() const { return n_; }
  // Squared error of the row at scale s > 0: the same code assignment as a pass with
  // NearestCode::index(|w| * (1 / s)) and the same dequantized values fl(lut[j] * s), summed in
  // closed form per code (equal to row_error_reference up to double rounding).
  // With a finite `limit` it may stop early once the error exceeds limit * (1 + kLimitSlack),
  // returning a partial sum that is still above that: enough to lose a comparison with limit.
  double error(float s, const NearestCode& nc,
               double limit = std::numeric_limits<double>::infinity()) const;

 private:
  // Number of elements with fl(|w| * inv) <= bound (a prefix of the sorted array); tb = bound * s
  // in bin units.
#if defined(__GNUC__)
  [[gnu::always_inline]]
#endif
  inline int64_t below(float bound, float inv, double tb) const;

  const float* row_ = nullptr;     // the row build() saw (the caller keeps it alive)
  int64_t n_ = 0;
  float absmax_ = 0.f;
  bool sorted_ = false;            // false: crowded bins, error() makes full passes over row_
  int64_t bins_ = 0;
  double bins_per_unit_ = 0.0;     // bins / absmax: bin of a = floor(a * bins_per_unit_)
  std::vector<float> vals_;        // [n + kScan] |w| ascending (padded for below()'s reads)
  std::vector<uint32_t> bin_of_;   // [n] scratch: bin of w[i]
  std::vector<int32_t> start_;     // [bins + 1] first index of bin b in vals_; start_[bins] = n
  std::vector<double> p1_, p2_;    // [n + 1] sums of |w| and |w|^2 over vals_[0, k)
};

// Fast fit: the same search as the reference on the summary's errors. Equal scale to the
// reference except where two candidates' errors tie within double rounding.
float fit_scale(const RowSummary& row, const NearestCode& nc, double* err_out);

}  // namespace qins::core::fit
