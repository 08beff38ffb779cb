// Internal to the graph: the operations the decoder layer (phi3_model.cpp) is made of, each in a
// batch form over torch tensors (any dtype, autograd) and a one-row form over fp32 buffers (the
// decode step: no allocation).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "qins/graph/phi3_model.h"

namespace qins::graph_detail {

// ---- layer_ops.cpp: RMSNorm, SwiGLU, residual adds -------------------------------------------
// y = x / sqrt(mean(x^2) + eps) * w for one fp32 row of n.
void rms_norm_row(const float* x, const float* w, int64_t n, float eps, float* y);
// x [..., hidden] -> normalised in fp32, cast back to x's dtype, THEN times weight [hidden] f32.
// generic: torch ops only (the device path), never the CPU row loop.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps, bool generic = false);
// y [rows, inter] = up * silu(gate) for gate_up [rows, 2 * inter] (gate first), fp32.
void swiglu_rows(const float* gate_up, int64_t rows, int64_t inter, float* y);
torch::Tensor swiglu(const torch::Tensor& gate_up, bool generic = false);  // [..., 2 inter] -> [..., inter]
// h += y: in place when no gradient flows.
void add_residual(torch::Tensor& h, const torch::Tensor& y);
void add_row(float* h, const float* y, int64_t n);

// ---- rope.cpp: the rotary tables and the half-split rotation -----------------------------------
// x [B, H, T, head_dim] rotated by tables cos, sin [T, rotary_dim].
torch::Tensor apply_rope(const torch::Tensor& x, const RopeTables& rope, int64_t rotary_dim);
// cos/sin [T, half] (attention factor applied) for positions q0 .. q0+T-1 from inv_freq [half].
void rope_rows_from(const float* inv_freq, float factor, int64_t q0, int64_t T, int64_t half, float* cos_tab,
                    float* sin_tab);
void rope_rows(const Phi3Config& c, bool long_rope, int64_t q0, int64_t T, std::vector<float>& cos_tab,
               std::vector<float>& sin_tab);
// Rotates one head vector x [>= 2 half] in place with one table row cos_t, sin_t [half].
void rope_in_place(float* x, const float* cos_t, const float* sin_t, int64_t half);

// ---- self_attention.cpp: rotate, append to the cache, attend -----------------------------------
// qkv [B, T, (n_head + 2 n_kv) hd] -> [B, T, n_head * hd] in qkv's dtype. Writes K (rotated) and
// V of positions q0 .. q0+T-1 into layer il of the cache (if any). `rope` caches the batched
// path's tables across the layers of one forward(). generic: the batched matmuls only (the device
// path), every tensor made on qkv's device, no float64 and no int64 arithmetic there.
torch::Tensor self_attention(const torch::Tensor& qkv, KvCache* cache, int64_t il, int64_t q0, bool long_rope,
                             const Phi3Config& c, std::optional<RopeTables>& rope, bool generic = false);
// The decode form: src holds T rows of qkv, `width` floats apart; cos/sin [T, rotary_dim / 2].
// Writes the attention output to out [T, n_head * hd] f32. The cache's K/V are f32 or bf16.
void attend_cached_rows(const float* src, int64_t T, int64_t width, KvCache& cache, int64_t il, int64_t q0,
                        const Phi3Config& c, const float* cos_tab, const float* sin_tab, float* out);

}  // namespace qins::graph_detail
