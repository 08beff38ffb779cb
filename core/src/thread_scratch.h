// Per-thread scratch buffers for the kernels: reused across calls (no allocation per token after
// warm-up), aligned for 64-byte vector loads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace qins::core {

// The calling thread's scratch of at least n elements of T (trivial), one buffer per (T, Tag):
// reused across calls, so a call must not hold it across another use of the same (T, Tag) (kernel
// calls do not nest). Aligned to 128 bytes with 128 spare after: the kernels load 64-byte vectors
// from these buffers, and a vector whose bytes spread over two cache lines, or a line shared with
// another thread's buffer, halved the QINS-4 batched loops' speed (a std::vector's storage is only
// 16-byte aligned). A parallel loop's workers must get the pointer, not call this (a worker's
// thread_local is its own, empty, buffer). Tags: kernels4_x86.cpp 0-3, projective_linear.cpp 10-11.
template <typename T, int Tag>
T* thread_scratch(size_t n) {
  static_assert(std::is_trivially_copyable_v<T> && std::is_trivially_destructible_v<T>);
  thread_local std::vector<unsigned char> buf;
  const size_t bytes = n * sizeof(T) + 256;
  if (buf.size() < bytes) buf.resize(bytes);
  const uintptr_t p = (reinterpret_cast<uintptr_t>(buf.data()) + 127) & ~uintptr_t{127};
  return reinterpret_cast<T*>(p);
}

}  // namespace qins::core
