// Per-row scale fit: nearest-code table, the reference (full-pass) fit, and the sorted-summary fit.
#include "scale_fit.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace qins::core::fit {

namespace {
constexpr int32_t kScan = 4;  // bin slots below() counts without branches
constexpr int8_t kBitCount[16] = {0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4};

// Sorts v[0, n), already in bin order (about one element a bin). Four branch-free odd-even
// transposition passes sort every run of <= 4 out-of-order elements, then an insertion pass
// fixes the rest; its inner loop is then rarely entered, so its branch is predicted (an
// insertion pass alone mispredicts on every inversion). Crowded bins (a row whose max is far
// above the rest) would make the insertion pass quadratic: past a budget of moves it gives up
// and returns false (v is then unordered).
bool sort_within_bins(float* v, int64_t n) {
  for (int pass = 0; pass < 4; ++pass) {
    for (int64_t k = pass % 2; k + 1 < n; k += 2) {
      const float x = v[k], y = v[k + 1];
      v[k] = std::min(x, y);
      v[k + 1] = std::max(x, y);
    }
  }
  int64_t budget = n;  // moves; normal rows need far fewer after the four passes
  for (int64_t k = 1; k < n; ++k) {
    if (!(v[k - 1] > v[k])) continue;
    const float x = v[k];
    int64_t i = k;
    while (i > 0 && v[i - 1] > x) {
      v[i] = v[i - 1];
      --i;
    }
    v[i] = x;
    budget -= k - i;
    if (budget < 0) return false;
  }
  return true;
}

}  // namespace

NearestCode::NearestCode(const std::array<float, 128>& lut) : lut_(lut) {
  for (int j = 0; j < 127; ++j) bound_[j] = 0.5f * (lut[j] + lut[j + 1]);
  int j = 0;
  for (int b = 0; b <= kBuckets; ++b) {
    const float edge = static_cast<float>(b) / kBuckets;
    while (j < 127 && bound_[j] < edge) ++j;
    first_[b] = static_cast<uint8_t>(j);
  }
}

void encode_signed(const float* w, int64_t n, float s, const NearestCode& nc, uint8_t* codes) {
  if (!(s > 0.f)) {
    std::fill(codes, codes + n, uint8_t{0});
    return;
  }
  const float inv = 1.f / s;
  for (int64_t i = 0; i < n; ++i) {
    const int j = nc.index(std::fabs(w[i]) * inv);
    codes[i] = static_cast<uint8_t>(j | ((std::signbit(w[i]) && j != 0) ? 0x80 : 0));
  }
}

float row_absmax(const float* w, int64_t n) {
  int64_t i = 0;
  float top = 0.f;
#if defined(__SSE2__)
  // Eight lanes of running maxima of |w| (the row has no NaN: quantize() checks first).
  const __m128 abs_mask = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));
  __m128 m0 = _mm_setzero_ps(), m1 = _mm_setzero_ps();
  for (; i + 8 <= n; i += 8) {
    m0 = _mm_max_ps(m0, _mm_and_ps(_mm_loadu_ps(w + i), abs_mask));
    m1 = _mm_max_ps(m1, _mm_and_ps(_mm_loadu_ps(w + i + 4), abs_mask));
  }
  alignas(16) float lanes[4];
  _mm_store_ps(lanes, _mm_max_ps(m0, m1));
  for (float x : lanes) top = std::max(top, x);
#endif
  for (; i < n; ++i) top = std::max(top, std::fabs(w[i]));
  return top;
}

// Squared error of one row at scale s (double accumulation: it decides the fit).
double row_error_reference(const float* w, int64_t n, float s, const NearestCode& nc) {
  const float inv = 1.f / s;
  double err = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float a = std::fabs(w[i]);
    const float d = a - nc.value(nc.index(a * inv)) * s;
    err += static_cast<double>(d) * d;
  }
  return err;
}

float fit_scale_reference(const float* w, int64_t n, const NearestCode& nc, double* err_out) {
  const float m = row_absmax(w, n);
  if (m <= 0.f) {
    if (err_out) *err_out = 0.0;
    return 0.f;
  }
  return search_scale(m, [&](float s, double) { return row_error_reference(w, n, s, nc); }, err_out);
}

void RowSummary::build(const float* w, int64_t n) {
  row_ = w;
  n_ = n;
  sorted_ = false;
  absmax_ = row_absmax(w, n);
  if (absmax_ <= 0.f) return;  // all zero: the fit returns scale 0 without evaluating
  // At most one element per bin on average: a boundary's bin rarely holds more than kScan.
  bins_ = 16;
  while (bins_ < n && bins_ < (int64_t{1} << 16)) bins_ *= 2;
  // double: bins / absmax overflows float for denormal rows.
  bins_per_unit_ = static_cast<double>(bins_) / absmax_;
  vals_.resize(static_cast<size_t>(n + kScan));
  // Padding below() may read: +inf fails every boundary test.
  std::fill(vals_.begin() + n, vals_.end(), std::numeric_limits<float>::infinity());
  bin_of_.resize(static_cast<size_t>(n));
  start_.assign(static_cast<size_t>(bins_ + 1), 0);
  // Counting sort into the bins: count at b + 1, prefix, scatter (start_ as the fill cursor,
  // shifted back afterwards). The bin product in float where bins / absmax fits one (it is only
  // a hint for below(): its rounding is far inside below()'s edge margin).
  const uint32_t last = static_cast<uint32_t>(bins_ - 1);
  if (bins_per_unit_ < 1e37) {
    const float bpu = static_cast<float>(bins_per_unit_);
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t b = std::min(static_cast<uint32_t>(std::fabs(w[i]) * bpu), last);
      bin_of_[static_cast<size_t>(i)] = b;
      ++start_[b + 1];
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      const double a = std::fabs(w[i]);
      const uint32_t b = std::min(static_cast<uint32_t>(a * bins_per_unit_), last);
      bin_of_[static_cast<size_t>(i)] = b;
      ++start_[b + 1];
    }
  }
  int32_t run = 0;  // prefix in a register (through memory it is a store-to-load chain)
  for (int64_t b = 1; b <= bins_; ++b) start_[static_cast<size_t>(b)] = run += start_[static_cast<size_t>(b)];
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t b = bin_of_[static_cast<size_t>(i)];
    vals_[static_cast<size_t>(start_[b]++)] = std::fabs(w[i]);
  }
  for (int64_t b = bins_; b > 0; --b) start_[static_cast<size_t>(b)] = start_[static_cast<size_t>(b - 1)];
  start_[0] = 0;
  // Order inside the bins (the bins are in order, so the only inversions are inside a bin).
  // Crowded rows (most weights in a few bins, e.g. one weight far above the rest) would also
  // make each boundary search long: they keep the full-pass error (error() checks sorted_).
  const float* v = vals_.data();
  sorted_ = sort_within_bins(vals_.data(), n);
  if (!sorted_) return;
  // Prefix sums, two elements a step: the running sums' add chain is half as long.
  p1_.resize(static_cast<size_t>(n + 1));
  p2_.resize(static_cast<size_t>(n + 1));
  double* p1 = p1_.data();
  double* p2 = p2_.data();
  double s1 = 0.0, s2 = 0.0;
  p1[0] = p2[0] = 0.0;
  int64_t k = 0;
  for (; k + 2 <= n; k += 2) {
    const double a = v[k], a2 = v[k + 1];
    p1[k + 1] = s1 + a;
    p2[k + 1] = s2 + a * a;
    s1 += a + a2;
    s2 += a * a + a2 * a2;
    p1[k + 2] = s1;
    p2[k + 2] = s2;
  }
  if (k < n) {
    const double a = v[k];
    p1[k + 1] = s1 + a;
    p2[k + 1] = s2 + a * a;
  }
}

inline int64_t RowSummary::below(float bound, float inv, double tb) const {
  // Bins wholly below tb's bin pass the test, bins wholly above fail it, unless tb is within
  // float rounding (~2.4e-7 relative: the products a * inv and bound * s) of a bin edge; then
  // the neighbouring bins are searched too (rare; a branch that is predicted).
  constexpr double kEdge = 1e-6;
  const int64_t b = tb < static_cast<double>(bins_) ? static_cast<int64_t>(tb) : bins_ - 1;
  const float* v = vals_.data();
  const int32_t k0 = start_[static_cast<size_t>(b)], k1 = start_[static_cast<size_t>(b + 1)];
  const double frac = tb - static_cast<double>(b), margin = kEdge * (tb + 1.0);
  if ((frac < margin && b > 0) || (1.0 - frac < margin && b + 1 < bins_)) {
    int32_t k = start_[static_cast<size_t>(std::max<int64_t>(b - 1, 0))];
    const int32_t end = start_[static_cast<size_t>(std::min<int64_t>(b + 2, bins_))];
    while (k < end && v[k] * inv <= bound) ++k;
    return k;
  }
  // The test result is data-dependent (a branch on it would be mispredicted about half the
  // time), so the first kScan slots are counted without branches. Slots past the bin hold
  // larger values (later bins, or the +inf padding), which fail the test here (tb is not near a
  // bin edge), so no bounds mask is needed; a bin with more than kScan passing is rare.
  static_assert(kScan == 4, "one 4-float compare");
  const float* p = v + k0;
#if defined(__SSE2__)
  const __m128 pass = _mm_cmple_ps(_mm_mul_ps(_mm_loadu_ps(p), _mm_set1_ps(inv)), _mm_set1_ps(bound));
  int32_t count = kBitCount[_mm_movemask_ps(pass)];
#else
  int32_t count = 0;
  for (int32_t i = 0; i < kScan; ++i) count += static_cast<int32_t>(p[i] * inv <= bound);
#endif
  if (count < kScan || k0 + kScan >= k1) return k0 + count;
  // A bin with more than kScan elements below the boundary (rare): binary search the rest.
  return std::partition_point(v + k0 + kScan, v + k1, [&](float a) { return a * inv <= bound; }) - v;
}

double RowSummary::error(float s, const NearestCode& nc, double limit) const {
  if (!sorted_) return row_error_reference(row_, n_, s, nc);
  const float inv = 1.f / s;
  const double to_bins = static_cast<double>(s) * bins_per_unit_;
  const double* p1 = p1_.data();
  const double* p2 = p2_.data();
  // Codes from the top down: the elements [lo, hi) of the sorted row get code j, and
  // sum (a - q)^2 = S2 - q (2 S1 - c q) with q = fl(lut[j] * s) as dequantize computes it.
  // Every segment is >= 0, so once the partial sum passes `limit` the scale has lost.
  const double stop = limit * (1.0 + kLimitSlack);
  double err = 0.0;
  int64_t hi = n_;
  for (int j = 126; j >= 0 && hi > 0; --j) {
    const float bound = nc.bound(j);
    const int64_t lo = below(bound, inv, static_cast<double>(bound) * to_bins);
    const double q = nc.value(j + 1) * s;
    err += (p2[hi] - p2[lo]) - q * (2.0 * (p1[hi] - p1[lo]) - static_cast<double>(hi - lo) * q);
    if (err > stop) return err;
    hi = lo;
  }
  return err + p2[hi];  // code 0: the value is 0
}

float fit_scale(const RowSummary& row, const NearestCode& nc, double* err_out) {
  const float m = row.absmax();
  if (m <= 0.f) {
    if (err_out) *err_out = 0.0;
    return 0.f;
  }
  return search_scale(m, [&](float s, double limit) { return row.error(s, nc, limit); }, err_out);
}

}  // namespace qins::core::fit
