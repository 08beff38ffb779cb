// Per-row scale fit: nearest-code table, the reference (full-pass) fit, and the sorted-summary fit.
#include "scale_fit.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>


namespace qins::core::fit {

namespace {
constexpr int32_t kScan = 4;  // bin slots below() sums without branches
}  // namespace

NearestCode::NearestCode(const std::array<float, 128>& lut) : lut_(lut) {
  for (int j = 0; j < 127; ++j) bound_[j] = 0.5f * (lut[j] + lut[j + 1]);
  bound_[127] = 1.f;  // padding for 8-wide loads; index() never reads it
  int j = 0;
  for (int b = 0; b <= kBuckets; ++b) {
    const float edge = static_cast<float>(b) / kBuckets;
    while (j < 127 && bound_[j] < edge) ++j;
    first_[b] = static_cast<uint8_t>(j);
  }
}

float row_absmax(const float* w, int64_t n) {
  // On the bit patterns with the sign cleared (same order as the magnitudes): an integer max
  // the compiler vectorises, unlike std::max on floats.
  uint32_t m = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, w + i, sizeof u);
    m = std::max(m, u & 0x7fffffffu);
  }
  float f;
  std::memcpy(&f, &m, sizeof f);
  return f;
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
  n_ = n;
  absmax_ = row_absmax(w, n);
  if (absmax_ <= 0.f) return;  // all zero: the fit returns scale 0 without evaluating
  // At most one element per bin on average: the exact scan per boundary stays short, the tables small.
  bins_ = 16;
  while (bins_ < n && bins_ < (int64_t{1} << 16)) bins_ *= 2;
  // double: bins / absmax overflows float for denormal rows.
  bins_per_unit_ = static_cast<double>(bins_) / absmax_;
  vals_.assign(static_cast<size_t>(n + kScan), 0.f);  // + kScan: below() reads that many per bin
  bin_of_.resize(static_cast<size_t>(n));
  start_.assign(static_cast<size_t>(bins_ + 1), 0);
  cum_.assign(static_cast<size_t>(bins_ + 1), Sums{});
  // Pass 1: bin of each element, per-bin count and sums (accumulated at b + 1, summed below).
  const uint32_t last = static_cast<uint32_t>(bins_ - 1);
  for (int64_t i = 0; i < n; ++i) {
    const float a = std::fabs(w[i]);
    const uint32_t b = std::min(static_cast<uint32_t>(static_cast<double>(a) * bins_per_unit_), last);
    bin_of_[static_cast<size_t>(i)] = b;
    ++start_[b + 1];
    Sums& c = cum_[b + 1];
    c.s1 += a;
    c.s2 += static_cast<double>(a) * a;
  }
  // Prefix over bins in registers (fixed order: deterministic).
  int32_t count = 0;
  double s1 = 0.0, s2 = 0.0;
  for (int64_t b = 1; b <= bins_; ++b) {
    count += start_[static_cast<size_t>(b)];
    Sums& c = cum_[static_cast<size_t>(b)];
    s1 += c.s1;
    s2 += c.s2;
    start_[static_cast<size_t>(b)] = count;
    c = Sums{static_cast<double>(count), s1, s2};
  }
  // Pass 2: scatter |w| into bin order (start_ is used as the fill cursor, then shifted back).
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t b = bin_of_[static_cast<size_t>(i)];
    vals_[static_cast<size_t>(start_[b]++)] = std::fabs(w[i]);
  }
  for (int64_t b = bins_; b > 0; --b) start_[static_cast<size_t>(b)] = start_[static_cast<size_t>(b - 1)];
  start_[0] = 0;
}

inline RowSummary::Sums RowSummary::below(float bound, float inv, double tb) const {
  // Bins wholly below tb's bin pass the test, bins wholly above fail it, unless tb is within
  // float rounding (~2.4e-7 relative: the products a * inv and bound * s) of a bin edge; then the
  // neighbouring bin is scanned too.
  constexpr double kEdge = 1e-6;
  const int64_t b = tb < static_cast<double>(bins_) ? static_cast<int64_t>(tb) : bins_ - 1;
  Sums r = cum_[static_cast<size_t>(b)];
  const float* v = vals_.data();
  // Adds (sign +1) or removes (sign -1) the elements of `bin` whose test result is `passing`
  // (the rare edge cases below).
  auto scan = [&](int64_t bin, double sign, bool passing) {
    for (int32_t k = start_[static_cast<size_t>(bin)]; k < start_[static_cast<size_t>(bin + 1)]; ++k) {
      const float a = v[k];
      if ((a * inv <= bound) == passing) {
        r.c += sign;
        r.s1 += sign * a;
        r.s2 += sign * static_cast<double>(a) * a;
      }
    }
  };
  // tb's own bin. The test result is data-dependent (a branch on it would be mispredicted about
  // half the time, which dominated the run time), so the first kScan slots are summed with 0/1
  // weights and no branches; vals_ is padded so they are readable. Longer bins are rare.
  const int32_t k0 = start_[static_cast<size_t>(b)], k1 = start_[static_cast<size_t>(b + 1)];
  for (int32_t i = 0; i < kScan; ++i) {
    const float a = v[k0 + i];
    // int from the comparisons, not a ?: (GCC turns that into the branches this avoids)
    const double m = static_cast<double>(static_cast<int>(k0 + i < k1) & static_cast<int>(a * inv <= bound));
    r.c += m;
    r.s1 += m * a;
    r.s2 += m * (static_cast<double>(a) * a);
  }
  for (int32_t k = k0 + kScan; k < k1; ++k) {
    const float a = v[k];
    if (a * inv <= bound) r.c += 1.0, r.s1 += a, r.s2 += static_cast<double>(a) * a;
  }
  const double frac = tb - static_cast<double>(b), margin = kEdge * (tb + 1.0);
  if (frac < margin && b > 0) scan(b - 1, -1.0, false);
  if (1.0 - frac < margin && b + 1 < bins_) scan(b + 1, 1.0, true);
  return r;
}

double RowSummary::error(float s, const NearestCode& nc, double limit) const {
  const float inv = 1.f / s;
  const double to_bins = static_cast<double>(s) * bins_per_unit_;
  // Codes from the top down: elements between boundaries j - 1 and j get code j, and
  // sum (a - q)^2 = S2 - q (2 S1 - c q) with q = fl(lut[j] * s) as dequantize computes it.
  // Every segment is >= 0, so once the partial sum passes `limit` the scale has lost.
  auto segment = [](const Sums& hi, const Sums& lo, float q32) {
    const double q = q32;
    return (hi.s2 - lo.s2) - q * (2.0 * (hi.s1 - lo.s1) - (hi.c - lo.c) * q);
  };
  const double stop = limit * (1.0 + kLimitSlack);
  double err = 0.0;
  Sums hi = cum_[static_cast<size_t>(bins_)];  // the whole row
  for (int j = 126; j >= 0 && hi.c > 0.0; --j) {
    const float bound = nc.bound(j);
    const Sums lo = below(bound, inv, static_cast<double>(bound) * to_bins);
    err += segment(hi, lo, nc.value(j + 1) * s);
    if (err > stop) return err;
    hi = lo;
  }
  return err + hi.s2;  // code 0: the value is 0
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
