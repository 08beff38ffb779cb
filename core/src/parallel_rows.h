// The rows of a decode-step GEMV over the threads, in pieces taken in turn.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace qins::core {

// How many pieces per thread parallel_rows cuts a range into.
constexpr int64_t kRowPiecesPerThread = 8;

// f(b, e) over [0, n) on the intra-op threads, like at::parallel_for, but in pieces of at least
// grain rows that each thread takes from a shared counter as it finishes the last one, instead of
// one fixed share per thread. A decode step's GEMV is over in a few hundred microseconds and the
// step waits for its slowest thread: with fixed halves on a 2-core VM, one thread finished on
// average ~70 us (19 % of the GEMV time, measured at the end of every QINS-4 projection of a
// Phi-3.5-mini step) before the other, its core taken by the host or slowed by the other's traffic;
// with pieces the thread that is ahead takes over the rest. Which thread runs a row changes
// between calls, what a row gets does not (every row is computed alone).
template <typename F>
void parallel_rows(int64_t n, int64_t grain, const F& f) {
  const int64_t threads = at::in_parallel_region() ? 1 : std::max(1, at::get_num_threads());
  if (n <= 0) return;
  if (threads == 1 || n <= grain) {
    f(int64_t{0}, n);
    return;
  }
  const int64_t piece = std::max(grain, (n + threads * kRowPiecesPerThread - 1) / (threads * kRowPiecesPerThread));
  const int64_t workers = std::min(threads, (n + piece - 1) / piece);
  std::atomic<int64_t> next{0};
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    for (int64_t b = next.fetch_add(piece, std::memory_order_relaxed); b < n;
         b = next.fetch_add(piece, std::memory_order_relaxed))
      f(b, std::min(n, b + piece));
  });
}

}  // namespace qins::core
