// The slow twin shared by the grouped codes (QINS-4, QINS-8 grouped): copy the parts to the CPU,
// then every row through the code's own row decoder, rows in parallel.
#pragma once

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cstdint>

namespace qins::core {

// Q: a grouped code (codes, scales, lut, optional sub_table; validate, out_features, in_features).
template <class Q>
torch::Tensor dequantize_rows(const Q& q, const char* what, void (*row_into)(const Q&, int64_t, float*)) {
  q.validate(what);
  Q c = q;
  c.codes = q.codes.to(torch::kCPU).contiguous();
  c.scales = q.scales.to(torch::kCPU).contiguous();
  c.lut = q.lut.to(torch::kCPU).contiguous();
  if (q.sub_table.defined()) c.sub_table = q.sub_table.to(torch::kCPU).contiguous();
  torch::Tensor w = torch::empty({c.out_features(), c.in_features}, torch::kFloat32);  // [out, in] f32
  float* p = w.data_ptr<float>();
  at::parallel_for(0, c.out_features(), 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) row_into(c, r, p + r * c.in_features);
  });
  return w;
}

}  // namespace qins::core
