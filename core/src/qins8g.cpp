// QINS-8 grouped quantization: the per-tensor pole fit, the per-group scale fit (a few candidate
// scales at and below the group's absmax, on the stored grid: log-scale codes or fp16), encode and
// the reference dequantize. Where the time goes: per weight, one nearest-code lookup per candidate
// scale (5 candidates), threaded over rows; the pole fit runs the same on up to 64 sample rows per
// candidate pole.
#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "qins/core/qins.h"
#include "qins/core/qins4.h"
#include "qins/core/qins8g.h"
#include "dequantize_rows.h"
#include "qins4_kernels.h"
#include "scale_fit.h"

namespace qins::core {

using kernels4::float_to_half;
using kernels4::half_to_float;

const char* scale8_name(Scale8 s) { return s == Scale8::Log8 ? "log8" : "fp16"; }

int64_t Quantized8gTensor::bytes() const {
  return (codes.defined() ? codes.numel() : 0) + (scales.defined() ? scales.numel() * scales.element_size() : 0) +
         (lut.defined() ? lut.numel() * 4 : 0) + (sub_table.defined() ? 4 : 0);
}

void Quantized8gTensor::validate(const std::string& what) const {
  auto bad = [&](const std::string& m) { throw std::invalid_argument(what + ": " + m); };
  if (group != 32 && group != 64) bad("group must be 32 or 64, got " + std::to_string(group));
  if (!codes.defined() || codes.dim() != 2 || codes.scalar_type() != torch::kUInt8) bad("codes must be [out, in_pad] uint8");
  if (in_features <= 0) bad("in_features must be positive, got " + std::to_string(in_features));
  const int64_t n_groups = (in_features + group - 1) / group;
  if (codes.size(1) != n_groups * group)
    bad("codes have " + std::to_string(codes.size(1)) + " columns, expected " + std::to_string(n_groups * group) + " for " +
        std::to_string(in_features) + " columns in groups of " + std::to_string(group));
  if (!scales.defined() || scales.dim() != 2 ||
      (scales.scalar_type() != torch::kUInt8 && scales.scalar_type() != torch::kHalf))
    bad("scales must be [out, groups] uint8 (log-scale codes) or float16");
  if (scales.size(0) != codes.size(0) || scales.size(1) != n_groups)
    bad("scales are [" + std::to_string(scales.size(0)) + ", " + std::to_string(scales.size(1)) + "], expected [" +
        std::to_string(codes.size(0)) + ", " + std::to_string(n_groups) + "]");
  if (scales.scalar_type() == torch::kUInt8) {
    if (!sub_table.defined() || sub_table.numel() != 256 || sub_table.scalar_type() != torch::kFloat32)
      bad("log-scale codes need sub_table [256] float32");
    const torch::Tensor st = sub_table.to(torch::kCPU).contiguous().view({-1});
    const float top = st.data_ptr<float>()[255];
    if (!(top >= 0.f) || !std::isfinite(top)) bad("the top scale is not a finite value >= 0");
    if (!torch::equal(st, sub_scale_table(top))) bad("sub_table is not the log table of its top scale");
  } else if (sub_table.defined()) {
    bad("sub_table is only for log-scale codes (uint8 scales)");
  } else {
    const torch::Tensor s = scales.to(torch::kCPU).to(torch::kFloat32);
    if (!torch::isfinite(s).all().item<bool>() || (s < 0).any().item<bool>()) bad("fp16 scales must be finite and >= 0");
  }
  if (!lut.defined() || lut.numel() != 128 || lut.scalar_type() != torch::kFloat32) bad("lut must be [128] float32");
  const torch::Tensor l = lut.to(torch::kCPU).contiguous();
  const float* p = l.data_ptr<float>();
  if (p[0] != 0.f) bad("lut[0] must be 0");
  for (int j = 1; j < 128; ++j)
    if (!std::isfinite(p[j]) || !(p[j] >= p[j - 1]))
      bad("lut must be finite and non-decreasing (entry " + std::to_string(j) + ")");
}

namespace {

using fit::NearestCode;

std::array<float, 128> projective_lut(double pole) {
  const torch::Tensor t = make_lut(Codebook::Projective, pole);
  std::array<float, 128> a{};
  std::copy(t.data_ptr<float>(), t.data_ptr<float>() + 128, a.begin());
  return a;
}

// Squared error of one group coded at scale s (s > 0).
double group_sse(const float* w, int64_t n, float s, const NearestCode& nc) {
  const float inv = 1.f / s;
  double e = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float a = std::fabs(w[i]);
    const float d = a - s * nc.value(nc.index(a * inv));
    e += static_cast<double>(d) * d;
  }
  return e;
}

// The stored scale grid of a tensor: log codes into `table` (log8) or fp16 values.
struct ScaleGrid {
  Scale8 kind = Scale8::Log8;
  const float* table = nullptr;  // log8: the 256 scales

  // Candidates for a group with absmax m > 0, best first when equal: the smallest grid value >= m,
  // then the next 4 below it (down to ~0.84 m for log8, 0.88 m for fp16). Returns how many.
  int candidates(float m, uint16_t* code, float* value) const {
    int n = 0;
    if (kind == Scale8::Log8) {
      const float top = table[255];
      int k = static_cast<int>(std::clamp(std::ceil(255.f + 16.f * std::log2(m / top)), 1.f, 255.f));
      while (k < 255 && table[k] < m) ++k;  // the log can round either way: fix it in value
      while (k > 1 && table[k - 1] >= m) --k;
      for (int d = 0; d < 5 && k - d >= 1; ++d) code[n] = static_cast<uint16_t>(k - d), value[n] = table[k - d], ++n;
    } else {
      for (int d = 0; d < 5; ++d) {
        uint16_t h = float_to_half(m * (1.f - 0.03f * static_cast<float>(d)));
        float v = half_to_float(h);
        if (!(v > 0.f) || !std::isfinite(v)) {  // outside fp16's range: the nearest usable half
          h = v > 0.f ? uint16_t{0x7bff} : uint16_t{0x0001};
          v = half_to_float(h);
        }
        code[n] = h, value[n] = v, ++n;
      }
    }
    return n;
  }
};

struct GroupChoice {
  uint16_t code = 0;  // log8 code (0 = zero group) or fp16 bits
  float scale = 0.f;
  double sse = 0.0;
};

GroupChoice fit_group(const float* w, int64_t n, const ScaleGrid& grid, const NearestCode& nc) {
  float m = 0.f;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(w[i]));
  GroupChoice best;
  if (!(m > 0.f)) return best;  // all zero: code 0 / +0 half, codes 0
  uint16_t codes[5];
  float values[5];
  const int nc_count = grid.candidates(m, codes, values);
  best.sse = std::numeric_limits<double>::infinity();
  for (int c = 0; c < nc_count; ++c) {
    const double e = group_sse(w, n, values[c], nc);
    if (e < best.sse) best.sse = e, best.code = codes[c], best.scale = values[c];
  }
  return best;
}

int64_t grain_for(int64_t rows, int threads) {
  if (threads <= 0) return std::max<int64_t>(1, rows / 64);
  return std::max<int64_t>(1, (rows + threads - 1) / threads);
}

// The pole by squared error (with each group's scale fitted) on up to 64 evenly spaced rows.
double fit_pole8g(const float* w, int64_t rows, int64_t cols, int group, const ScaleGrid& grid, int threads) {
  static const double kPoles[] = {130.0, 145.0, 160.0, 200.0, 300.0, 600.0, 2000.0, 10000.0};
  constexpr int kNum = static_cast<int>(sizeof(kPoles) / sizeof(kPoles[0]));
  std::vector<NearestCode> ncs;
  for (double p : kPoles) ncs.emplace_back(projective_lut(p));
  const int64_t n_sample = std::min<int64_t>(rows, 64);
  std::vector<double> errs(static_cast<size_t>(kNum * n_sample), 0.0);
  at::parallel_for(0, n_sample, grain_for(n_sample, threads), [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      const float* row = w + (k * rows / n_sample) * cols;
      for (int p = 0; p < kNum; ++p) {
        double s = 0;
        for (int64_t c0 = 0; c0 < cols; c0 += group)
          s += fit_group(row + c0, std::min<int64_t>(group, cols - c0), grid, ncs[static_cast<size_t>(p)]).sse;
        errs[static_cast<size_t>(p * n_sample + k)] = s;
      }
    }
  });
  double best_pole = 300.0, best = std::numeric_limits<double>::infinity();
  for (int p = 0; p < kNum; ++p) {
    double total = 0.0;
    for (int64_t k = 0; k < n_sample; ++k) total += errs[static_cast<size_t>(p * n_sample + k)];  // fixed order
    if (total < best) best = total, best_pole = kPoles[p];
  }
  return best_pole;
}

}  // namespace

Quantized8gTensor quantize8g(const torch::Tensor& w_in, const Quantize8gOptions& o) {
  if (!w_in.defined() || w_in.dim() != 2 || !w_in.is_floating_point())
    throw std::invalid_argument("quantize8g: expected a floating-point [out, in] matrix");
  if (o.group != 32 && o.group != 64) throw std::invalid_argument("quantize8g: group must be 32 or 64, got " + std::to_string(o.group));
  if (o.pole > 0 && (!(o.pole > 127.0) || !std::isfinite(o.pole)))
    throw std::invalid_argument("quantize8g: the projective pole C must be > 127 (or <= 0 to fit it), got " + std::to_string(o.pole));
  if (w_in.size(0) == 0 || w_in.size(1) == 0) throw std::invalid_argument("quantize8g: empty matrix");
  const torch::Tensor wt = w_in.to(torch::kCPU, torch::kFloat32).contiguous();  // [out, in] f32
  if (!torch::isfinite(wt).all().item<bool>()) throw std::invalid_argument("quantize8g: the matrix has non-finite values");
  const int64_t out = wt.size(0), in = wt.size(1);
  const int group = o.group;
  const int64_t n_groups = (in + group - 1) / group, in_pad = n_groups * group;
  const float* w = wt.data_ptr<float>();

  Quantized8gTensor q;
  q.in_features = in;
  q.group = group;
  ScaleGrid grid;
  grid.kind = o.scale;
  if (o.scale == Scale8::Log8) {
    // The table's top is the tensor's absmax: every group's absmax has an entry at or above it.
    const float top = wt.abs().max().item<float>();
    q.sub_table = sub_scale_table(top);
    grid.table = q.sub_table.data_ptr<float>();
  }
  q.pole = o.pole > 0 ? o.pole : fit_pole8g(w, out, in, group, grid, o.threads);
  const std::array<float, 128> lut = projective_lut(q.pole);
  const NearestCode nc(lut);
  q.lut = torch::from_blob(const_cast<float*>(lut.data()), {128}, torch::kFloat32).clone();
  q.codes = empty_large({out, in_pad}, torch::kUInt8);  // [out, in_pad] uint8
  q.scales = torch::empty({out, n_groups}, o.scale == Scale8::Log8 ? torch::kUInt8 : torch::kHalf);
  uint8_t* codes = q.codes.data_ptr<uint8_t>();
  uint8_t* sub = o.scale == Scale8::Log8 ? q.scales.data_ptr<uint8_t>() : nullptr;
  uint16_t* hs = o.scale == Scale8::Fp16 ? reinterpret_cast<uint16_t*>(q.scales.data_ptr<at::Half>()) : nullptr;
  at::parallel_for(0, out, grain_for(out, o.threads), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      uint8_t* c = codes + r * in_pad;
      std::fill(c + in, c + in_pad, uint8_t{0});  // padding: the exact zero
      for (int64_t g = 0; g < n_groups; ++g) {
        const int64_t c0 = g * group, n = std::min<int64_t>(group, in - c0);
        const GroupChoice ch = fit_group(w + r * in + c0, n, grid, nc);
        if (sub) sub[r * n_groups + g] = static_cast<uint8_t>(ch.code);
        else hs[r * n_groups + g] = ch.code;
        fit::encode_signed(w + r * in + c0, n, ch.scale, nc, c + c0);
      }
    }
  });
  return q;
}

float group_scale8g(const Quantized8gTensor& q, int64_t row, int64_t g) {
  const int64_t n = q.scales.size(1);
  if (q.log_scales()) return q.sub_table.data_ptr<float>()[q.scales.data_ptr<uint8_t>()[row * n + g]];
  return half_to_float(reinterpret_cast<const uint16_t*>(q.scales.data_ptr<at::Half>())[row * n + g]);
}

void dequantize8g_row_into(const Quantized8gTensor& q, int64_t row, float* out) {
  if (row < 0 || row >= q.out_features())
    throw std::out_of_range("QINS-8 grouped: row " + std::to_string(row) + " outside [0, " +
                            std::to_string(q.out_features()) + ")");
  const uint8_t* c = q.codes.data_ptr<uint8_t>() + row * q.codes.size(1);
  const float* lut = q.lut.data_ptr<float>();
  for (int64_t i = 0; i < q.in_features; ++i) {
    const float m = group_scale8g(q, row, i / q.group) * lut[c[i] & 0x7f];
    out[i] = (c[i] & 0x80) ? -m : m;
  }
}

torch::Tensor dequantize8g(const Quantized8gTensor& q) { return dequantize_rows(q, "dequantize8g", &dequantize8g_row_into); }

}  // namespace qins::core
