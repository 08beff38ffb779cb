// QINS-8 grouped: the 8-bit QINS code (sign bit + 7-bit index j into the tensor's 128-entry
// projective table, lut[0] == 0, lut[127] == 1) with one scale per group of `group` consecutive
// weights of a row instead of one per row:
//   w[r, i] = sign(code) * scale[r, i / group] * lut[code & 0x7f]
// Scales are either 8-bit log-scale codes into the tensor's table sub_scale_table(top) (the one
// QINS-4 group 16 uses: top * 2^((k - 255) / 16), steps of 4.4 %), or fp16:
//   group 32: 8 + 8/32 = 8.25 bits per weight (log scales), 8.5 (fp16, as llama.cpp's Q8_0);
//   group 64: 8.125 (log scales), 8.25 (fp16);
// plus the 512-byte table (and, log scales, the fp32 top) per tensor.
//
// Layout of one row: the columns are padded to a multiple of `group` (padding codes are 0, the
// exact zero); codes in natural order, one byte each.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace qins::core {

enum class Scale8 : uint8_t { Log8 = 0, Fp16 = 1 };
const char* scale8_name(Scale8 s);  // "log8" | "fp16"

struct Quantize8gOptions {
  int group = 32;               // 32 or 64 columns per scale
  Scale8 scale = Scale8::Log8;  // how a group's scale is stored
  double pole = 0.0;            // projective pole C (> 127); <= 0: fitted per tensor by squared error
  int threads = 0;              // 0 = at::get_num_threads()
};

struct Quantized8gTensor {
  torch::Tensor codes;      // [out, in_pad] uint8 (bit 7 sign, bits 0..6 index)
  torch::Tensor scales;     // [out, in_pad / group]: uint8 log-scale codes or float16
  torch::Tensor lut;        // [128] float32, the projective table
  torch::Tensor sub_table;  // [256] float32, log scales only: sub_scale_table(top)
  int64_t in_features = 0;
  int group = 32;
  double pole = 0.0;  // informative

  int64_t out_features() const { return codes.defined() ? codes.size(0) : 0; }
  int64_t padded_in() const { return codes.defined() ? codes.size(1) : 0; }
  int64_t n_groups() const { return scales.defined() ? scales.size(1) : 0; }
  bool log_scales() const { return scales.defined() && scales.scalar_type() == torch::kUInt8; }
  // codes + scales + table (+ the log table's fp32 top), in bytes: what a file would store.
  int64_t bytes() const;
  // Checks shapes, dtypes, group and tables against each other; throws std::invalid_argument
  // naming `what` and the problem.
  void validate(const std::string& what) const;
};

// Deterministic (same input and options, same bytes; threads do not change the result).
Quantized8gTensor quantize8g(const torch::Tensor& w, const Quantize8gOptions& opts = {});
// The slow twin: the full fp32 matrix [out, in].
torch::Tensor dequantize8g(const Quantized8gTensor& q);
// Scale of group g of a row (CPU tensors).
float group_scale8g(const Quantized8gTensor& q, int64_t row, int64_t g);
// One row into out[in] fp32; throws std::out_of_range for a row outside [0, out).
void dequantize8g_row_into(const Quantized8gTensor& q, int64_t row, float* out);

// y[n, out] = x[n, in] W^T, fp32 activations (no rounding of x): per group, the fp32 sum of
// lut values times x, times the group's scale. Rows of x one at a time through the GEMV kernel,
// rows of W in parallel.
void qins8g_matmul(const Quantized8gTensor& q, const float* x, int64_t n_rows, float* y);
// The same GEMV by the scalar twin (tests compare every SIMD path to it).
void qins8g_gemv_reference(const Quantized8gTensor& q, const float* x, float* y);

// Kernel paths: "scalar", "avx2", "neon". The default is the best this CPU runs; QINS_KERNEL8G=<name>
// sets the initial choice.
const char* kernel8g_isa();
void set_kernel8g_isa(const std::string& isa);  // "" or "auto" = best; throws std::invalid_argument
std::vector<std::string> available_kernel8g_isas();

}  // namespace qins::core
