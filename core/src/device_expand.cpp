// QINS codes expanded with torch ops on any device: see qins/core/device_expand.h.
#include "qins/core/device_expand.h"

#include <algorithm>

namespace qins::core {

torch::Tensor signed_table(const QuantizedTensor& q, torch::ScalarType dtype, const torch::Device& device) {
  TORCH_CHECK(q.lut.numel() == 128, "signed_table: the table must hold 128 magnitudes");
  // Built on the CPU in f32 (256 floats), then moved and cast once.
  const auto lut = q.lut.to(torch::kCPU, torch::kFloat32).contiguous();
  auto t = torch::cat({lut, -lut});  // [256]: codes 0..127 positive, 128..255 negative
  return t.to(device, dtype);
}

void expand_rows_into(const torch::Tensor& codes, const torch::Tensor& table, const torch::Tensor& scales,
                      torch::Tensor& idx_scratch, torch::Tensor& out) {
  TORCH_CHECK(codes.dim() == 2 && codes.scalar_type() == torch::kUInt8, "expand_rows_into: codes must be [rows, in] uint8");
  TORCH_CHECK(idx_scratch.scalar_type() == torch::kInt32 && idx_scratch.dim() == 1, "expand_rows_into: idx_scratch must be flat int32");
  const int64_t rows = codes.size(0), in = codes.size(1);
  TORCH_CHECK(out.size(0) == rows && out.size(1) == in && out.is_contiguous(), "expand_rows_into: out must be [rows, in] contiguous");
  const int64_t block = std::max<int64_t>(1, std::min<int64_t>(rows, idx_scratch.numel() / std::max<int64_t>(in, 1)));
  TORCH_CHECK(block * in <= idx_scratch.numel(), "expand_rows_into: idx_scratch holds less than one row");
  const auto sc = scales.scalar_type() == table.scalar_type() ? scales : scales.to(table.scalar_type());
  for (int64_t r0 = 0; r0 < rows; r0 += block) {
    const int64_t n = std::min(block, rows - r0);
    auto idx = idx_scratch.narrow(0, 0, n * in);
    idx.copy_(codes.narrow(0, r0, n).reshape({-1}));  // uint8 -> int32 in place
    auto dst = out.narrow(0, r0, n);                  // contiguous rows
    auto flat = dst.view({-1});
    torch::index_select_out(flat, table, 0, idx);     // the one gather
    dst.mul_(sc.narrow(0, r0, n).unsqueeze(1));       // the row scales
  }
}

torch::Tensor expand_rows(const torch::Tensor& codes, const torch::Tensor& table, const torch::Tensor& scales) {
  auto out = torch::empty({codes.size(0), codes.size(1)}, table.options());
  auto idx = torch::empty({codes.numel()}, table.options().dtype(torch::kInt32));
  expand_rows_into(codes, table, scales, idx, out);
  return out;
}

}  // namespace qins::core
