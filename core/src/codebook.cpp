// Codebooks (the per-tensor tables), the per-row scale fit, quantize / dequantize.
#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "qins/core/qins.h"
#include "qins_kernels.h"
#include "scale_fit.h"

namespace qins::core {

const char* codebook_name(Codebook cb) {
  switch (cb) {
    case Codebook::Inverse: return "inverse";
    case Codebook::Projective: return "projective";
    case Codebook::Uniform: return "uniform";
  }
  return "unknown";
}

Codebook codebook_from_name(const std::string& name) {
  if (name == "inverse") return Codebook::Inverse;
  if (name == "projective") return Codebook::Projective;
  if (name == "uniform") return Codebook::Uniform;
  throw std::invalid_argument("unknown codebook '" + name + "' (expected inverse, projective or uniform)");
}

std::array<float, 128> codebook_lut(Codebook cb, double pole) {
  std::array<float, 128> lut{};
  switch (cb) {
    case Codebook::Inverse:
      // |w| = scale / k, k = 128 - j in 1..127: j = 127 is k = 1 (the row max).
      for (int j = 1; j < 128; ++j) lut[j] = static_cast<float>(1.0 / (128 - j));
      break;
    case Codebook::Projective: {
      if (!(pole > 127.0) || !std::isfinite(pole))
        throw std::invalid_argument("projective codebook: pole C must be > 127, got " + std::to_string(pole));
      // s * j / (C - j), divided by its value at j = 127 so lut[127] == 1 and the row scale is
      // the largest representable magnitude (s = scale * (C - 127) / 127).
      const double top = 127.0 / (pole - 127.0);
      for (int j = 1; j < 128; ++j) lut[j] = static_cast<float>((j / (pole - j)) / top);
      break;
    }
    case Codebook::Uniform:
      for (int j = 1; j < 128; ++j) lut[j] = static_cast<float>(j / 127.0);
      break;
  }
  lut[0] = 0.f;
  return lut;
}

torch::Tensor make_lut(Codebook cb, double pole) {
  const std::array<float, 128> lut = codebook_lut(cb, pole);
  return torch::from_blob(const_cast<float*>(lut.data()), {128}, torch::kFloat32).clone();
}

namespace {

using fit::NearestCode;

// Row scale: the row max for the inverse codebook (the original rule: k = 1 is the max), else the
// fitted scale (search on the row's sorted summary; `summary` is this thread's scratch).
float row_scale(Codebook cb, const float* w, int64_t n, const NearestCode& nc, fit::RowSummary& summary) {
  if (cb == Codebook::Inverse) return fit::row_absmax(w, n);
  summary.build(w, n);
  return fit::fit_scale(summary, nc, nullptr);
}

int64_t grain_for(int64_t rows, int threads) {
  if (threads <= 0) return 1;
  return std::max<int64_t>(1, (rows + threads - 1) / threads);
}

// Pole of the projective codebook fitted by weight MSE over a fixed grid, on up to 128 evenly
// spaced rows (the fit is per tensor; the rows are a deterministic sample).
double fit_pole(const float* w, int64_t rows, int64_t cols, int threads) {
  static const double kPoles[] = {128.0, 130.0, 135.0, 145.0, 160.0, 180.0, 200.0, 250.0,
                                  300.0, 400.0, 600.0, 1000.0, 2000.0};
  constexpr int kNumPoles = static_cast<int>(sizeof(kPoles) / sizeof(kPoles[0]));
  std::vector<NearestCode> ncs;
  for (double pole : kPoles) ncs.emplace_back(codebook_lut(Codebook::Projective, pole));
  const int64_t n_sample = std::min<int64_t>(rows, 128);
  // errs[p * n_sample + k]: each sample row is summarised once and fitted under every pole.
  std::vector<double> errs(static_cast<size_t>(kNumPoles * n_sample), 0.0);
  at::parallel_for(0, n_sample, grain_for(n_sample, threads), [&](int64_t b, int64_t e) {
    fit::RowSummary summary;
    for (int64_t k = b; k < e; ++k) {
      const int64_t r = k * rows / n_sample;
      summary.build(w + r * cols, cols);
      for (int p = 0; p < kNumPoles; ++p)
        fit::fit_scale(summary, ncs[static_cast<size_t>(p)], &errs[static_cast<size_t>(p * n_sample + k)]);
    }
  });
  double best_pole = 300.0, best = std::numeric_limits<double>::infinity();
  for (int p = 0; p < kNumPoles; ++p) {
    double total = 0.0;
    for (int64_t k = 0; k < n_sample; ++k) total += errs[static_cast<size_t>(p * n_sample + k)];  // fixed order
    if (total < best) best = total, best_pole = kPoles[p];
  }
  return best_pole;
}

// No NaN / Inf: an exponent field of all ones. One pass over the bits, no temporaries
// (torch::isfinite(w).all() allocated and filled a bool tensor the size of w).
bool all_finite(const float* p, int64_t n) {
  uint32_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, p + i, sizeof u);
    bad |= static_cast<uint32_t>((u & 0x7f800000u) == 0x7f800000u);
  }
  return bad == 0;
}

torch::Tensor as_cpu_f32(const torch::Tensor& t) {
  return t.to(torch::kCPU, torch::kFloat32).contiguous();
}

}  // namespace

QuantizedTensor quantize(const torch::Tensor& w, const QuantizeOptions& opts) {
  if (!w.defined() || w.dim() != 2)
    throw std::invalid_argument("quantize: weight must be a 2-D tensor [out, in]");
  if (!w.is_floating_point()) throw std::invalid_argument("quantize: weight must be floating point");
  torch::Tensor wf = as_cpu_f32(w);  // [out, in] fp32
  const int64_t rows = wf.size(0), cols = wf.size(1);
  const float* wp = wf.data_ptr<float>();
  if (!all_finite(wp, rows * cols)) throw std::invalid_argument("quantize: weight contains NaN or Inf");

  QuantizedTensor q;
  q.codebook = opts.codebook;
  if (opts.codebook == Codebook::Projective)
    q.pole = opts.pole > 0.0 ? opts.pole : fit_pole(wp, rows, cols, opts.threads);
  const std::array<float, 128> lut = codebook_lut(opts.codebook, q.pole);
  const NearestCode nc(lut);

  q.codes = empty_large({rows, cols}, torch::kUInt8);  // [out, in] uint8, 2 MiB-aligned (huge pages later)
  q.scales = torch::empty({rows}, torch::kFloat32);     // [out] fp32
  q.lut = torch::from_blob(const_cast<float*>(lut.data()), {128}, torch::kFloat32).clone();
  uint8_t* cp = q.codes.data_ptr<uint8_t>();
  float* sp = q.scales.data_ptr<float>();
  at::parallel_for(0, rows, grain_for(rows, opts.threads), [&](int64_t b, int64_t e) {
    fit::RowSummary summary;  // scratch reused across this block's rows
    for (int64_t r = b; r < e; ++r) {
      const float* row = wp + r * cols;
      const float s = row_scale(opts.codebook, row, cols, nc, summary);
      sp[r] = s;
      fit::encode_signed(row, cols, s, nc, cp + r * cols);
    }
  });
  return q;
}

namespace {

void check_quantized(const QuantizedTensor& q) {
  if (!q.codes.defined() || q.codes.dim() != 2 || q.codes.scalar_type() != torch::kUInt8)
    throw std::invalid_argument("QuantizedTensor: codes must be [out, in] uint8");
  if (!q.scales.defined() || q.scales.dim() != 1 || q.scales.size(0) != q.codes.size(0) ||
      q.scales.scalar_type() != torch::kFloat32)
    throw std::invalid_argument("QuantizedTensor: scales must be [out] float32");
  if (!q.lut.defined() || q.lut.numel() != 128 || q.lut.scalar_type() != torch::kFloat32)
    throw std::invalid_argument("QuantizedTensor: lut must be [128] float32");
}

}  // namespace

torch::Tensor dequantize_rows(const QuantizedTensor& q, const torch::Tensor& row_ids) {
  check_quantized(q);
  const torch::Tensor codes = q.codes.to(torch::kCPU).contiguous();  // [out, in] uint8
  const torch::Tensor scales = q.scales.to(torch::kCPU).contiguous();
  const torch::Tensor ids = row_ids.to(torch::kCPU, torch::kInt64).contiguous().view({-1});
  const int64_t rows = codes.size(0), cols = codes.size(1), n = ids.numel();
  const int64_t* idp = ids.data_ptr<int64_t>();
  for (int64_t k = 0; k < n; ++k)
    if (idp[k] < 0 || idp[k] >= rows)
      throw std::out_of_range("dequantize_rows: row id " + std::to_string(idp[k]) + " outside [0, " +
                              std::to_string(rows) + ")");
  kernels::LutTables t;
  kernels::build_tables(q.lut.to(torch::kCPU).contiguous().data_ptr<float>(), &t);
  torch::Tensor out = torch::empty({n, cols}, torch::kFloat32);  // [n, in] fp32
  const auto& k = kernels::scalar_kernel();
  const uint8_t* cp = codes.data_ptr<uint8_t>();
  const float* sp = scales.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, n, std::max<int64_t>(1, 65536 / std::max<int64_t>(cols, 1)), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) k.expand(cp, cols, idp[i], idp[i] + 1, sp, t, op + i * cols);
  });
  return out;
}

void dequantize_row_into(const QuantizedTensor& q, int64_t row, float* out) {
  TORCH_CHECK(q.codes.device().is_cpu() && q.codes.is_contiguous() && q.codes.dim() == 2 &&
                  q.scales.device().is_cpu() && q.scales.is_contiguous() && q.lut.device().is_cpu() &&
                  q.lut.is_contiguous() && q.lut.numel() == 128,
              "dequantize_row_into: codes, scales and lut must be contiguous CPU tensors");
  const int64_t rows = q.codes.size(0), cols = q.codes.size(1);
  if (row < 0 || row >= rows)
    throw std::out_of_range("dequantize_row_into: row id " + std::to_string(row) + " outside [0, " +
                            std::to_string(rows) + ")");
  kernels::LutTables t;
  kernels::build_tables(q.lut.data_ptr<float>(), &t);
  kernels::scalar_kernel().expand(q.codes.data_ptr<uint8_t>(), cols, row, row + 1, q.scales.data_ptr<float>(), t, out);
}

torch::Tensor dequantize(const QuantizedTensor& q) {
  check_quantized(q);
  return dequantize_rows(q, torch::arange(q.codes.size(0), torch::kInt64));
}

ErrorStats measure_error(const torch::Tensor& w, const QuantizedTensor& q) {
  const torch::Tensor wf = as_cpu_f32(w).to(torch::kFloat64);
  const torch::Tensor d = dequantize(q).to(torch::kFloat64);
  if (wf.sizes() != d.sizes()) throw std::invalid_argument("measure_error: shape mismatch");
  const double sig = wf.pow(2).sum().item<double>();
  const double noise = (wf - d).pow(2).sum().item<double>();
  ErrorStats st;
  st.rel_error = sig > 0 ? std::sqrt(noise / sig) : 0.0;
  st.sqnr_db = noise > 0 ? 10.0 * std::log10(sig / noise) : std::numeric_limits<double>::infinity();
  return st;
}

}  // namespace qins::core
