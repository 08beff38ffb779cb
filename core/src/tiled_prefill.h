// The prefill GEMM of every QINS code: Y[n, out] = X[n, in] @ W^T, W never held whole — `rt` rows
// at a time are expanded to fp32 by the code's own kernel, then multiplied by the BLAS.
//
// Two schedules, chosen by the BLAS's thread count (blas_threads.h):
// - one-thread BLAS (the engine's policy for QINS graphs): the tiles are spread over our OpenMP
//   threads, each expanding and multiplying its own, so the expansion runs on every core and no
//   thread spins waiting for another's half of the work;
// - BLAS with its own threads: one tile at a time, expanded on this thread, one GEMM on all.
//   (An OpenMP region for the expansion here would leave its workers spinning while the BLAS's
//   threads run the GEMM: measured 30x slower once the loops really ran in parallel.)
#pragma once

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "qins/core/blas_threads.h"

namespace qins::core {

// expand(r0, r1, buf) writes rows [r0, r1) of W as fp32 into buf, row stride `ld` (>= in: the
// columns past `in`, a code's padding, are skipped by the stride). x: [n_rows, in], y: [n_rows, out].
template <class Expand>
void tiled_prefill(const float* x, int64_t n_rows, int64_t in, int64_t ld, int64_t out, int64_t rt, float* y,
                   const Expand& expand) {
  const torch::Tensor xt = torch::from_blob(const_cast<float*>(x), {n_rows, in}, torch::kFloat32);  // [n, in]
  torch::Tensor yt = torch::from_blob(y, {n_rows, out}, torch::kFloat32);                          // [n, out]
  const auto multiply = [&](float* tile, int64_t r0, int64_t r1) {
    expand(r0, r1, tile);
    const torch::Tensor w = torch::from_blob(tile, {r1 - r0, ld}, torch::kFloat32).narrow(1, 0, in);  // [rows, in]
    torch::Tensor dst = yt.narrow(1, r0, r1 - r0);
    at::mm_out(dst, xt, w.t());
  };
  const size_t tile_floats = static_cast<size_t>(rt * ld);
  if (blas_single_threaded() && at::get_num_threads() > 1) {
    at::parallel_for(0, (out + rt - 1) / rt, 1, [&](int64_t tb, int64_t te) {
      thread_local std::vector<float> tile;  // this worker's own [rt, ld] buffer
      if (tile.size() < tile_floats) tile.resize(tile_floats);
      for (int64_t ti = tb; ti < te; ++ti) multiply(tile.data(), ti * rt, std::min(out, ti * rt + rt));
    });
    return;
  }
  thread_local std::vector<float> buf;  // [rt, ld], one expanded tile
  if (buf.size() < tile_floats) buf.resize(tile_floats);
  for (int64_t r0 = 0; r0 < out; r0 += rt) multiply(buf.data(), r0, std::min(out, r0 + rt));
}

}  // namespace qins::core
