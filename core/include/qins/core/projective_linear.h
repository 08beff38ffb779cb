// ProjectiveLinear: a linear layer whose weight lives as QINS codes and is never expanded whole.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "qins/core/qins.h"

namespace qins::core {

class ProjectiveLinearImpl : public torch::nn::Module {
 public:
  ProjectiveLinearImpl() = default;
  explicit ProjectiveLinearImpl(QuantizedTensor q, torch::Tensor bias = {});

  // Quantize an existing weight [out, in] (+ optional bias [out]).
  static std::shared_ptr<ProjectiveLinearImpl> from_linear(const torch::Tensor& weight,
                                                           const torch::Tensor& bias = {},
                                                           const QuantizeOptions& opts = {});

  // x: [..., in] float32 or bfloat16 -> [..., out] same dtype. Fused table-lookup kernels:
  // GEMV for one row, tile-expand + GEMM for many. Never builds the [out, in] fp32 matrix.
  torch::Tensor forward(const torch::Tensor& x);
  // One row, fp32 in and out, no allocation (the decode step's path): y[out] = W x[in] (+ bias).
  void forward_row(const float* x, float* y) const;
  // n independent rows (a batched decode step): row i of y is exactly what forward_row gives
  // row i of x; the codes are read once for all rows (qins_matmul_rows).
  void forward_rows(const float* x, int64_t n, float* y) const;
  // dequantize() then torch::linear: the slow twin the fast path is tested against.
  torch::Tensor forward_reference(const torch::Tensor& x);
  torch::Tensor dequantize() const;
  const torch::Tensor& bias() const { return bias_; }

  const QuantizedTensor& quantized() const { return q_; }
  QuantizedTensor& quantized() { return q_; }
  int64_t in_features() const { return q_.codes.size(1); }
  int64_t out_features() const { return q_.codes.size(0); }
  int64_t weight_bytes() const;  // codes + scales + lut (+ bias)

 private:
  torch::Tensor forward_on_device(const torch::Tensor& x);

  QuantizedTensor q_;
  torch::Tensor bias_;  // [out] fp32 or undefined
  // Copies of codes / scales / lut on the device of the last non-CPU input (made once).
  torch::Tensor dev_codes_, dev_scales_, dev_lut_, dev_bias_;
};
TORCH_MODULE(ProjectiveLinear);

// Kernel entry points (also benchmarked directly). y[n, out] = x[n, in] * W^T, fp32.
// Chooses the best implementation for this CPU at run time.
void qins_matmul(const QuantizedTensor& q, const float* x, int64_t n_rows, float* y);
// The small-batch decode path: y[n, out] = x[n, in] * W^T for n independent rows (one token of
// each of n sequences). Row i is bit for bit what qins_matmul(q, x + i * in, 1, ...) (the GEMV)
// gives it, while each code is decoded once for all rows (up to 16 per pass): between the GEMV
// and the prefill GEMM, which rounds differently.
void qins_matmul_rows(const QuantizedTensor& q, const float* x, int64_t n_rows, float* y);
// Name of the kernel path chosen at run time: "avx512bf16", "avx512", "avx2", "neon" or "scalar".
const char* kernel_isa();
// True when the active path multiplies in bf16 (table and x rounded to bf16, fp32 accumulation):
// "avx512bf16". The other paths are exact fp32 products.
bool kernel_uses_bf16();
// How many threads an at::parallel_for issued from core's own code actually runs on (with
// at::get_num_threads() items). Equals at::get_num_threads() when core was built with OpenMP; a
// test holds the build to that.
int parallel_threads_used();
// Force a path ("scalar", "avx2", "avx512", "avx512bf16", "neon") or go back to the best one ("auto" or "").
// Throws std::invalid_argument if this CPU / build cannot run it. The environment variable
// QINS_KERNEL=<name> sets the initial choice. Not meant to be changed while kernels run.
void set_kernel_isa(const std::string& isa);
// The paths this CPU and build can run, best last.
std::vector<std::string> available_kernel_isas();

}  // namespace qins::core
