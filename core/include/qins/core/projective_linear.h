// ProjectiveLinear: a linear layer whose weight lives as QINS codes and is never expanded whole.
#pragma once

#include <torch/torch.h>

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
  // dequantize() then torch::linear: the slow twin the fast path is tested against.
  torch::Tensor forward_reference(const torch::Tensor& x);
  torch::Tensor dequantize() const;

  const QuantizedTensor& quantized() const { return q_; }
  QuantizedTensor& quantized() { return q_; }
  int64_t in_features() const { return q_.codes.size(1); }
  int64_t out_features() const { return q_.codes.size(0); }
  int64_t weight_bytes() const;  // codes + scales + lut (+ bias)

 private:
  QuantizedTensor q_;
  torch::Tensor bias_;
};
TORCH_MODULE(ProjectiveLinear);

// Kernel entry points (also benchmarked directly). y[n, out] = x[n, in] * W^T, fp32.
// Chooses the best implementation for this CPU at run time.
void qins_matmul(const QuantizedTensor& q, const float* x, int64_t n_rows, float* y);
// Name of the kernel path chosen at run time: "avx512", "avx2", "neon" or "scalar".
const char* kernel_isa();

}  // namespace qins::core
