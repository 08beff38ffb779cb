// QINS-4 quantization: the 16-level table fit, the per-group scale fit, encode and the reference
// dequantize. Where the time goes: encoding (per weight, 15 threshold compares per scale tried;
// refine_scales tries 22 scales per group), threaded over rows. The table fit runs on a sorted
// sample of at most 2^20 normalised weights with prefix sums (a Lloyd step is 16 binary searches).
#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "qins/core/qins4.h"
#include "dequantize_rows.h"
#include "qins4_kernels.h"

namespace qins::core {

using kernels4::float_to_half;
using kernels4::half_to_float;

const char* table4_name(Table4 t) {
  switch (t) {
    case Table4::Lloyd: return "lloyd";
    case Table4::Projective: return "projective";
    case Table4::Uniform: return "uniform";
  }
  return "unknown";
}

Table4 table4_from_name(const std::string& name) {
  if (name == "lloyd") return Table4::Lloyd;
  if (name == "projective") return Table4::Projective;
  if (name == "uniform") return Table4::Uniform;
  throw std::invalid_argument("unknown QINS-4 table '" + name + "' (expected lloyd, projective or uniform)");
}

int64_t Quantized4Tensor::bytes() const {
  return (codes.defined() ? codes.numel() : 0) + (scales.defined() ? scales.numel() * scales.element_size() : 0) +
         (lut.defined() ? lut.numel() : 0) + (sub_table.defined() ? 4 : 0);
}

torch::Tensor sub_scale_table(float top) {
  torch::Tensor t = torch::empty({256}, torch::kFloat32);
  float* p = t.data_ptr<float>();
  p[0] = 0.f;
  for (int k = 1; k < 256; ++k) p[k] = top * std::exp2(static_cast<float>(k - 255) / 16.f);
  return t;
}

void Quantized4Tensor::validate(const std::string& what) const {
  auto bad = [&](const std::string& m) { throw std::invalid_argument(what + ": " + m); };
  if (group != 16 && group != 32 && group != 64) bad("group must be 16, 32 or 64, got " + std::to_string(group));
  if (!codes.defined() || codes.dim() != 2 || codes.scalar_type() != torch::kUInt8) bad("codes must be [out, in_pad/2] uint8");
  if (group == 16) {
    if (!scales.defined() || scales.dim() != 2 || scales.scalar_type() != torch::kUInt8)
      bad("group 16 needs scales [out, groups] uint8 (sub-scales)");
    if (!sub_table.defined() || sub_table.numel() != 256 || sub_table.scalar_type() != torch::kFloat32)
      bad("group 16 needs sub_table [256] float32");
    const torch::Tensor st = sub_table.to(torch::kCPU).contiguous().view({-1});
    const float top = st.data_ptr<float>()[255];
    if (!(top >= 0.f) || !std::isfinite(top)) bad("group 16's top scale is not a finite value >= 0");
    if (!torch::equal(st, sub_scale_table(top))) bad("sub_table is not the log table of its top scale");
  } else {
    if (!scales.defined() || scales.dim() != 2 || scales.scalar_type() != torch::kHalf) bad("scales must be [out, groups] float16");
    if (sub_table.defined()) bad("sub_table is only for group 16");
  }
  if (!lut.defined() || lut.numel() != 16 || lut.scalar_type() != torch::kInt8) bad("lut must be [16] int8");
  if (in_features <= 0) bad("in_features must be positive, got " + std::to_string(in_features));
  const int64_t n_groups = (in_features + group - 1) / group;
  // Rows are whole 32-column blocks (a group of 16 is one half of a block).
  const int64_t row_bytes = (n_groups * group + 31) / 32 * 16;
  if (codes.size(1) != row_bytes)
    bad("codes have " + std::to_string(codes.size(1)) + " bytes per row, expected " + std::to_string(row_bytes) +
        " for " + std::to_string(in_features) + " columns in groups of " + std::to_string(group));
  const int64_t stored_groups = codes.size(1) * 2 / group;
  if (scales.size(0) != codes.size(0) || scales.size(1) != stored_groups)
    bad("scales are [" + std::to_string(scales.size(0)) + ", " + std::to_string(scales.size(1)) + "], expected [" +
        std::to_string(codes.size(0)) + ", " + std::to_string(stored_groups) + "]");
  const torch::Tensor l = lut.to(torch::kCPU).contiguous();
  const int8_t* p = l.data_ptr<int8_t>();
  for (int k = 0; k < 16; ++k)
    if (p[k] == -128) bad("lut entry " + std::to_string(k) + " is -128 (levels must lie in [-127, 127])");
}

namespace {

using Levels = std::array<float, 16>;  // sorted ascending, in [-127, 127]

// Thresholds between consecutive levels; nearest(v) = number of thresholds below v.
struct Nearest {
  std::array<float, 15> mid;
  explicit Nearest(const Levels& lv) {
    for (int k = 0; k < 15; ++k) mid[static_cast<size_t>(k)] = 0.5f * (lv[static_cast<size_t>(k)] + lv[static_cast<size_t>(k) + 1]);
  }
  int operator()(float v) const {
    int k = 0;
    for (float m : mid) k += v > m;
    return k;
  }
};

Levels round_levels(const std::array<double, 16>& t) {
  // int8 levels, sorted, distinct (a collision after rounding moves the upper one up by one).
  std::array<double, 16> s = t;
  std::sort(s.begin(), s.end());
  Levels lv{};
  for (int k = 0; k < 16; ++k) lv[static_cast<size_t>(k)] = static_cast<float>(std::clamp(std::nearbyint(s[static_cast<size_t>(k)]), -127.0, 127.0));
  for (int k = 1; k < 16; ++k)
    if (lv[static_cast<size_t>(k)] <= lv[static_cast<size_t>(k) - 1]) lv[static_cast<size_t>(k)] = lv[static_cast<size_t>(k) - 1] + 1;
  // Pushed past 127 by collisions at the top: shift the tail back down.
  for (int k = 15; k >= 0 && lv[static_cast<size_t>(k)] > 127.f - static_cast<float>(15 - k); --k)
    lv[static_cast<size_t>(k)] = std::min(lv[static_cast<size_t>(k)], 127.f - static_cast<float>(15 - k));
  return lv;
}

// Projective family mirrored: level(p) = sign(p) |p| / (C - |p|), p = -7.5, .., 7.5, scaled so the
// ends are +-127. C -> infinity is uniform.
std::array<double, 16> projective_levels(double C) {
  std::array<double, 16> t{};
  const double top = 7.5 / (C - 7.5);
  for (int k = 0; k < 16; ++k) {
    const double p = k - 7.5, a = std::fabs(p);
    t[static_cast<size_t>(k)] = (p < 0 ? -1.0 : 1.0) * (a / (C - a)) / top * 127.0;
  }
  return t;
}

// The sample: normalised weights u = 127 w / absmax(group), sorted, with prefix sums.
struct Sample {
  std::vector<float> u;        // sorted
  std::vector<double> prefix;  // prefix[i] = sum u[0, i)
  std::vector<double> prefix2;

  double sse(const Levels& lv) const {  // sum of squared distances to the nearest level
    const Nearest nearest(lv);
    double e = 0;
    size_t a = 0;
    for (int k = 0; k < 16; ++k) {
      const size_t b = k == 15 ? u.size()
                               : static_cast<size_t>(std::upper_bound(u.begin(), u.end(), nearest.mid[static_cast<size_t>(k)]) - u.begin());
      const double n = static_cast<double>(b - a), s = prefix[b] - prefix[a], s2 = prefix2[b] - prefix2[a];
      const double l = lv[static_cast<size_t>(k)];
      e += s2 - 2 * l * s + n * l * l;
      a = b;
    }
    return e;
  }
};

Sample make_sample(const float* w, int64_t out, int64_t in, int group, const std::vector<float>& amax) {
  const int64_t n_groups = (in + group - 1) / group;
  const int64_t total = out * n_groups;
  const int64_t cap_groups = std::max<int64_t>(1, (int64_t{1} << 20) / group);
  const int64_t stride = std::max<int64_t>(1, total / cap_groups);
  Sample s;
  for (int64_t g = 0; g < total; g += stride) {
    const float m = amax[static_cast<size_t>(g)];
    if (!(m > 0.f)) continue;
    const int64_t r = g / n_groups, c0 = (g % n_groups) * group, c1 = std::min(in, c0 + group);
    for (int64_t i = c0; i < c1; ++i) s.u.push_back(127.f * w[r * in + i] / m);
  }
  std::sort(s.u.begin(), s.u.end());
  s.prefix.assign(s.u.size() + 1, 0.0);
  s.prefix2.assign(s.u.size() + 1, 0.0);
  for (size_t i = 0; i < s.u.size(); ++i) {
    s.prefix[i + 1] = s.prefix[i] + s.u[i];
    s.prefix2[i + 1] = s.prefix2[i] + static_cast<double>(s.u[i]) * s.u[i];
  }
  return s;
}

Levels fit_projective(const Sample& s) {
  static constexpr double kPoles[] = {8.0, 8.5, 9.0, 10.0, 11.0, 12.0, 14.0, 16.0, 20.0, 24.0, 32.0, 48.0, 64.0, 128.0, 1e6};
  Levels best = round_levels(projective_levels(1e6));
  double best_e = std::numeric_limits<double>::infinity();
  for (double C : kPoles) {
    const Levels lv = round_levels(projective_levels(C));
    const double e = s.u.empty() ? 0.0 : s.sse(lv);
    if (e < best_e) best_e = e, best = lv;
  }
  return best;
}

// Lloyd-Max on the sorted sample: each level moves to the mean of its cell.
Levels fit_lloyd(const Sample& s, const Levels& start) {
  if (s.u.empty()) return start;
  std::array<double, 16> t{};
  for (int k = 0; k < 16; ++k) t[static_cast<size_t>(k)] = start[static_cast<size_t>(k)];
  for (int it = 0; it < 40; ++it) {
    size_t a = 0;
    std::array<double, 16> nt = t;
    for (int k = 0; k < 16; ++k) {
      const double mid = k == 15 ? 0.0 : 0.5 * (t[static_cast<size_t>(k)] + t[static_cast<size_t>(k) + 1]);
      const size_t b = k == 15 ? s.u.size()
                               : static_cast<size_t>(std::upper_bound(s.u.begin(), s.u.end(), static_cast<float>(mid)) - s.u.begin());
      if (b > a) nt[static_cast<size_t>(k)] = (s.prefix[b] - s.prefix[a]) / static_cast<double>(b - a);
      a = b;
    }
    t = nt;
  }
  const Levels lv = round_levels(t);
  return s.sse(lv) < s.sse(start) ? lv : start;
}

// Columns of a stored row: whole groups, then whole 32-column blocks (a group of 16 is half a block).
int64_t padded_columns(int64_t in, int group) {
  const int64_t g = (in + group - 1) / group * group;
  return (g + 31) / 32 * 32;
}

// One group: codes (one index per column, natural order) and its scale. With `exact`, the scale is
// `fixed` as given (group 16's sub-scale grid); otherwise fitted (absmax, refined by squared error
// if asked) and rounded to fp16. *scale_out gets the scale the codes were chosen for. Returns the
// squared error.
double encode_group(const float* w, int64_t n, float amax, const Levels& lv, const Nearest& nearest, bool refine,
                    bool exact, float fixed, float* scale_out, uint8_t* idx) {
  const float top = std::max(-lv[0], lv[15]);
  auto sse_at = [&](float d) {
    double e = 0;
    const float inv = 1.f / d;
    for (int64_t i = 0; i < n; ++i) {
      const float q = d * lv[static_cast<size_t>(nearest(w[i] * inv))];
      e += static_cast<double>(w[i] - q) * (w[i] - q);
    }
    return e;
  };
  if (!(amax > 0.f) || (exact && !(fixed > 0.f))) {
    *scale_out = 0.f;
    const int z = nearest(0.f);
    std::fill(idx, idx + n, static_cast<uint8_t>(z));
    double e = 0;
    for (int64_t i = 0; i < n; ++i) e += static_cast<double>(w[i]) * w[i];
    return e;
  }
  float dh = fixed;
  if (!exact) {
    float d = amax / top;
    if (refine) {
      double best = sse_at(d);
      const float d0 = d;
      for (int f = -10; f <= 10; ++f) {
        if (f == 0) continue;
        const float c = d0 * (1.f + 0.02f * static_cast<float>(f));
        const double e = sse_at(c);
        if (e < best) best = e, d = c;
      }
      // Least-squares scale for the chosen assignment.
      double num = 0, den = 0;
      const float inv = 1.f / d;
      for (int64_t i = 0; i < n; ++i) {
        const double l = lv[static_cast<size_t>(nearest(w[i] * inv))];
        num += w[i] * l;
        den += l * l;
      }
      if (den > 0 && num > 0) {
        const float c = static_cast<float>(num / den);
        if (sse_at(c) < best) d = c;
      }
    }
    uint16_t h = float_to_half(d);
    dh = half_to_float(h);
    if (!(dh > 0.f) || !std::isfinite(dh)) {  // below fp16's range (or above): the nearest usable half
      h = dh > 0.f ? uint16_t{0x7bff} : uint16_t{0x0001};
      dh = half_to_float(h);
    }
  }
  *scale_out = dh;
  const float inv = 1.f / dh;
  double e = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int k = nearest(w[i] * inv);
    idx[i] = static_cast<uint8_t>(k);
    const float q = dh * lv[static_cast<size_t>(k)];
    e += static_cast<double>(w[i] - q) * (w[i] - q);
  }
  return e;
}

struct Encoded {
  std::vector<uint8_t> idx;      // [out, in_pad] one index per byte
  std::vector<float> scale;      // [out, n_stored] the scale each group's codes were chosen for
  std::vector<uint8_t> sub;      // group 16: [out, n_stored] log-scale codes
  float top = 0.f;               // group 16: the table's top
  double sse = 0;
};

// Group 16: each group's fitted scale moves to the nearest (in log) entry of the tensor's table,
// never 0 for a non-zero group, and the group's codes are chosen again for it.
double requantize_sub_scales(const float* w, int64_t r, int64_t in, int group, int64_t n_stored,
                             const std::vector<float>& amax, const Levels& lv, const Nearest& nearest,
                             const float* table, Encoded& e) {
  const int64_t n_groups = (in + group - 1) / group, in_pad = n_stored * group;
  const float top = table[255];
  double sse = 0;
  for (int64_t g = 0; g < n_stored; ++g) {
    const size_t gi = static_cast<size_t>(r * n_stored + g);
    const float s = e.scale[gi];
    int k = 0;
    if (s > 0.f && top > 0.f) {
      k = static_cast<int>(std::clamp(std::nearbyint(255.f + 16.f * std::log2(s / top)), 1.f, 255.f));
      // The rounding in log can miss the nearer entry by one: take the nearer in value.
      if (k < 255 && std::fabs(table[k + 1] - s) < std::fabs(table[k] - s)) ++k;
      if (k > 1 && std::fabs(table[k - 1] - s) < std::fabs(table[k] - s)) --k;
    }
    e.sub[gi] = static_cast<uint8_t>(k);
    if (g >= n_groups) continue;  // padding group: codes already zero-level, code 0
    const int64_t c0 = g * group, c1 = std::min(in, c0 + group);
    sse += encode_group(w + r * in + c0, c1 - c0, amax[static_cast<size_t>(r * n_groups + g)], lv, nearest, false, true,
                        table[k], &e.scale[gi], e.idx.data() + r * in_pad + c0);
  }
  return sse;
}

Encoded encode_all(const float* w, int64_t out, int64_t in, int group, const std::vector<float>& amax, const Levels& lv,
                   bool refine, int64_t grain) {
  const int64_t n_groups = (in + group - 1) / group, in_pad = padded_columns(in, group), n_stored = in_pad / group;
  Encoded e;
  const Nearest nearest(lv);
  const uint8_t zero_idx = static_cast<uint8_t>(nearest(0.f));
  e.idx.assign(static_cast<size_t>(out * in_pad), zero_idx);  // padding columns: the zero level
  e.scale.assign(static_cast<size_t>(out * n_stored), 0.f);
  if (group == 16) e.sub.assign(static_cast<size_t>(out * n_stored), 0);
  std::vector<double> row_sse(static_cast<size_t>(out), 0.0);
  at::parallel_for(0, out, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      double sse = 0;
      for (int64_t g = 0; g < n_groups; ++g) {
        const int64_t c0 = g * group, c1 = std::min(in, c0 + group);
        sse += encode_group(w + r * in + c0, c1 - c0, amax[static_cast<size_t>(r * n_groups + g)], lv, nearest, refine,
                            false, 0.f, &e.scale[static_cast<size_t>(r * n_stored + g)], e.idx.data() + r * in_pad + c0);
      }
      row_sse[static_cast<size_t>(r)] = sse;
    }
  });
  if (group == 16) {
    // The table's top is the largest fitted scale of the tensor; then every group moves onto it.
    for (float s : e.scale) e.top = std::max(e.top, s);
    const torch::Tensor table = sub_scale_table(e.top);
    const float* tp = table.data_ptr<float>();
    at::parallel_for(0, out, grain, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        row_sse[static_cast<size_t>(r)] = requantize_sub_scales(w, r, in, group, n_stored, amax, lv, nearest, tp, e);
    });
  }
  for (double s : row_sse) e.sse += s;
  return e;
}

// Given the assignment and scales, the least-squares level of each table entry:
// t_k = sum w d / sum d^2 over the weights coded k, rescaled so the largest |level| is 127.
std::array<double, 16> refit_levels(const float* w, int64_t out, int64_t in, int group, const Encoded& e,
                                    const Levels& lv) {
  const int64_t in_pad = padded_columns(in, group), n_stored = in_pad / group;
  std::vector<std::array<double, 32>> acc(static_cast<size_t>(out));
  at::parallel_for(0, out, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      std::array<double, 32>& a = acc[static_cast<size_t>(r)];
      a.fill(0.0);
      for (int64_t i = 0; i < in; ++i) {
        const double d = e.scale[static_cast<size_t>(r * n_stored + i / group)];
        const int k = e.idx[static_cast<size_t>(r * in_pad + i)];
        a[static_cast<size_t>(k)] += w[r * in + i] * d;
        a[static_cast<size_t>(16 + k)] += d * d;
      }
    }
  });
  std::array<double, 32> tot{};
  for (const auto& a : acc)
    for (size_t k = 0; k < 32; ++k) tot[k] += a[k];
  std::array<double, 16> t{};
  double top = 0;
  for (size_t k = 0; k < 16; ++k) {
    t[k] = tot[16 + k] > 0 ? tot[k] / tot[16 + k] : lv[k];
    top = std::max(top, std::fabs(t[k]));
  }
  if (top > 0)
    for (double& v : t) v *= 127.0 / top;
  return t;
}

}  // namespace

Quantized4Tensor quantize4(const torch::Tensor& w_in, const Quantize4Options& o) {
  if (!w_in.defined() || w_in.dim() != 2 || !w_in.is_floating_point())
    throw std::invalid_argument("quantize4: expected a floating-point [out, in] matrix");
  if (o.group != 16 && o.group != 32 && o.group != 64)
    throw std::invalid_argument("quantize4: group must be 16, 32 or 64, got " + std::to_string(o.group));
  if (w_in.size(0) == 0 || w_in.size(1) == 0) throw std::invalid_argument("quantize4: empty matrix");
  const torch::Tensor wt = w_in.to(torch::kCPU, torch::kFloat32).contiguous();  // [out, in] f32
  if (!torch::isfinite(wt).all().item<bool>()) throw std::invalid_argument("quantize4: the matrix has non-finite values");
  const int64_t out = wt.size(0), in = wt.size(1);
  const int group = o.group;
  const int64_t n_groups = (in + group - 1) / group, in_pad = padded_columns(in, group), n_stored = in_pad / group;
  const float* w = wt.data_ptr<float>();
  // threads > 0 caps the parallelism through the grain (as quantize() does); the result does not
  // depend on it.
  const int64_t grain = o.threads > 0 ? std::max<int64_t>(1, (out + o.threads - 1) / o.threads)
                                      : std::max<int64_t>(1, 65536 / in);

  std::vector<float> amax(static_cast<size_t>(out * n_groups), 0.f);
  at::parallel_for(0, out, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t i = 0; i < in; ++i) {
        float& m = amax[static_cast<size_t>(r * n_groups + i / group)];
        m = std::max(m, std::fabs(w[r * in + i]));
      }
  });

  const Sample sample = make_sample(w, out, in, group, amax);
  Levels lv = o.table == Table4::Uniform ? round_levels(projective_levels(1e6)) : fit_projective(sample);
  if (o.table == Table4::Lloyd) lv = fit_lloyd(sample, lv);
  Encoded e = encode_all(w, out, in, group, amax, lv, o.refine_scales, grain);
  if (o.table == Table4::Lloyd && o.refine_scales) {
    // Alternate: levels by least squares given the scales, then scales given the levels; keep the
    // best (two rounds measured enough on the demo model: a third changed the error < 0.1 %).
    for (int round = 0; round < 2; ++round) {
      const Levels nl = round_levels(refit_levels(w, out, in, group, e, lv));
      Encoded ne = encode_all(w, out, in, group, amax, nl, true, grain);
      if (ne.sse >= e.sse) break;
      e = std::move(ne);
      lv = nl;
    }
  }

  Quantized4Tensor q;
  q.in_features = in;
  q.group = group;
  q.table = o.table;
  q.codes = torch::empty({out, in_pad / 2}, torch::kUInt8);
  q.lut = torch::empty({16}, torch::kInt8);
  for (int k = 0; k < 16; ++k) q.lut.data_ptr<int8_t>()[k] = static_cast<int8_t>(lv[static_cast<size_t>(k)]);
  if (group == 16) {
    q.scales = torch::empty({out, n_stored}, torch::kUInt8);
    std::copy(e.sub.begin(), e.sub.end(), q.scales.data_ptr<uint8_t>());
    q.sub_table = sub_scale_table(e.top);
  } else {
    q.scales = torch::empty({out, n_stored}, torch::kHalf);
    uint16_t* hs = reinterpret_cast<uint16_t*>(q.scales.data_ptr<at::Half>());
    for (size_t i = 0; i < e.scale.size(); ++i) hs[i] = float_to_half(e.scale[i]);  // exact: the scales are halves
  }
  uint8_t* codes = q.codes.data_ptr<uint8_t>();
  const int64_t n_blocks = in_pad / 32;
  for (int64_t r = 0; r < out; ++r)
    for (int64_t b = 0; b < n_blocks; ++b) {
      const uint8_t* idx = e.idx.data() + r * in_pad + b * 32;
      uint8_t* c = codes + r * (in_pad / 2) + b * 16;
      for (int i = 0; i < 16; ++i) c[i] = static_cast<uint8_t>(idx[i] | (idx[16 + i] << 4));
    }
  return q;
}

float group_scale4(const Quantized4Tensor& q, int64_t row, int64_t g) {
  const int64_t n = q.scales.size(1);
  if (q.sub_scales()) return q.sub_table.data_ptr<float>()[q.scales.data_ptr<uint8_t>()[row * n + g]];
  return half_to_float(reinterpret_cast<const uint16_t*>(q.scales.data_ptr<at::Half>())[row * n + g]);
}

void dequantize4_row_into(const Quantized4Tensor& q, int64_t row, float* out) {
  if (row < 0 || row >= q.out_features())
    throw std::out_of_range("QINS-4: row " + std::to_string(row) + " outside [0, " + std::to_string(q.out_features()) + ")");
  const int64_t in = q.in_features;
  const uint8_t* c = q.codes.data_ptr<uint8_t>() + row * q.codes.size(1);
  const int8_t* lut = q.lut.data_ptr<int8_t>();
  for (int64_t i = 0; i < in; ++i) {
    const int64_t b = i / 32, p = i % 32;
    const uint8_t byte = c[b * 16 + (p & 15)];
    const int k = p < 16 ? (byte & 0x0f) : (byte >> 4);
    out[i] = group_scale4(q, row, i / q.group) * static_cast<float>(lut[k]);
  }
}

torch::Tensor dequantize4(const Quantized4Tensor& q) { return dequantize_rows(q, "dequantize4", &dequantize4_row_into); }

}  // namespace qins::core
