// The pointwise pieces of a decoder layer (PHI3.md §3): RMSNorm, SwiGLU and the residual add, each
// as a batch (tensor) form and a one-row fp32 form for the decode step.
#include <ATen/Parallel.h>

#include <cmath>

#include "graph_ops.h"

namespace qins::graph_detail {

// y = x / sqrt(mean(x^2) + eps) * w for one fp32 row of n (the decode path; no temporaries).
void rms_norm_row(const float* x, const float* w, int64_t n, float eps, float* y) {
  float ss = 0.0f;
  for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const float inv = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * inv * w[i];
}

// y = x / sqrt(mean(x^2) + eps) in fp32, cast back to the activation dtype, THEN times the weight.
// f32 activations (the decode path): one pass per row, no temporaries.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps, bool generic) {
  if (!generic && x.device().is_cpu() && weight.device().is_cpu() && x.scalar_type() == torch::kFloat32 && x.is_contiguous() && weight.scalar_type() == torch::kFloat32 &&
      !x.requires_grad() && !weight.requires_grad()) {
    const int64_t n = x.size(-1), rows = x.numel() / n;
    auto y = torch::empty_like(x);  // [..., hidden] f32
    for (int64_t r = 0; r < rows; ++r)
      rms_norm_row(x.data_ptr<float>() + r * n, weight.data_ptr<float>(), n, static_cast<float>(eps),
                   y.data_ptr<float>() + r * n);
    return y;
  }
  auto xf = x.to(torch::kFloat32);
  auto normed = (xf * torch::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps)).to(x.scalar_type());
  return (normed * weight).to(x.scalar_type());
}

// y[r][i] = up * silu(gate) for rows of gate_up [rows, 2 * inter] (gate first), fp32. Split over
// the threads: 8192 exp per row of Phi-3.5 were ~1.5 % of a decode step on one thread.
void swiglu_rows(const float* g, int64_t rows, int64_t inter, float* y) {
  at::parallel_for(0, rows * inter, 2048, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      const int64_t r = k / inter, i = k % inter;
      const float a = g[r * 2 * inter + i], u = g[r * 2 * inter + inter + i];
      y[k] = u * a / (1.0f + std::exp(-a));
    }
  });
}

// up * silu(gate) for gate_up [..., 2 * inter] (gate first). f32: one fused pass.
torch::Tensor swiglu(const torch::Tensor& gate_up, bool generic) {
  const int64_t inter = gate_up.size(-1) / 2;
  if (!generic && gate_up.device().is_cpu() && gate_up.scalar_type() == torch::kFloat32 && gate_up.is_contiguous() && !gate_up.requires_grad()) {
    auto shape = gate_up.sizes().vec();
    shape.back() = inter;
    auto y = torch::empty(shape, gate_up.options());  // [..., inter] f32
    swiglu_rows(gate_up.data_ptr<float>(), gate_up.numel() / (2 * inter), inter, y.data_ptr<float>());
    return y;
  }
  return gate_up.narrow(-1, inter, inter) * torch::silu(gate_up.narrow(-1, 0, inter));
}

// h += y: in place when no gradient flows (no new [B, T, hidden] tensor per block).
void add_residual(torch::Tensor& h, const torch::Tensor& y) {
  if (h.requires_grad() || y.requires_grad()) h = h + y;
  else h.add_(y);
}

void add_row(float* h, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) h[i] += y[i];
}

}  // namespace qins::graph_detail
