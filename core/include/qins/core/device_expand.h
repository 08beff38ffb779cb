// Expanding QINS codes on a torch device (CUDA, MPS, or CPU tensors for the generic path's tests)
// with torch ops only. A code byte c maps to sign(c) * lut[c & 127] through a 256-entry SIGNED
// table, so expanding a row is one gather. Indices are int32 (MPS has no float64, and neither
// uint8 nor int64 indices are needed); nothing here makes a float64 tensor.
#pragma once

#include <torch/torch.h>

#include "qins/core/qins.h"

namespace qins::core {

// [256] in `dtype` on `device`: entry c = (c & 128 ? -1 : +1) * lut[c & 127] (entry 128 is -0).
torch::Tensor signed_table(const QuantizedTensor& q, torch::ScalarType dtype, const torch::Device& device);

// out[r, i] = table[codes[r, i]] * scales[r] for every row of codes [rows, in] (uint8), written
// into `out` ([rows, in], the table's dtype, same device). Rows are done in blocks of at most
// `idx_scratch.numel() / in` through idx_scratch (int32, flat, on the device; reused by the
// caller from call to call), so the int32 copy of the codes never exists whole. scales: [rows],
// the table's dtype or f32 (then cast per block).
void expand_rows_into(const torch::Tensor& codes, const torch::Tensor& table, const torch::Tensor& scales,
                      torch::Tensor& idx_scratch, torch::Tensor& out);

// The same, allocating: [rows, in] in the table's dtype. For one-off expansions (resident weights,
// tests) and an embedding's looked-up rows.
torch::Tensor expand_rows(const torch::Tensor& codes, const torch::Tensor& table, const torch::Tensor& scales);

}  // namespace qins::core
