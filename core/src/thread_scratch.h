// Per-thread scratch buffers for the kernels: reused across calls (no allocation per token after
// warm-up), aligned for 64-byte vector loads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace qins::core {

// The calling thread's scratch of at least n elements of T (trivial), one buffer per (T, Tag):
// reused across calls, so a call must not hold it across another use of the same (T, Tag) (kernel
// calls do not nest). Aligned to 128 bytes with 128 spare after: the kernels load 64-byte vectors
// from these buffers, and a vector whose bytes spread over two cache lines, or a line shared with
// another thread's buffer, halved the QINS-4 batched loops' speed (a std::vector's storage is only
// 16-byte aligned). A parallel loop's workers must get the pointer, not call this (a worker's
// thread_local is its own, empty, buffer). Tags: kernels4_x86.cpp 0-3, projective_linear.cpp 10-11,
// qins4_linear.cpp 20.
template <typename T, int Tag>
T* thread_scratch(size_t n) {
  static_assert(std::is_trivially_copyable_v<T> && std::is_trivially_destructible_v<T>);
  thread_local std::vector<unsigned char> buf;
  const size_t bytes = n * sizeof(T) + 256;
  if (buf.size() < bytes) buf.resize(bytes);
  const uintptr_t p = (reinterpret_cast<uintptr_t>(buf.data()) + 127) & ~uintptr_t{127};
  return reinterpret_cast<T*>(p);
}

// Whether the calling thread's last build into a Tag's scratch was made from the same inputs: x
// (the bytes at a and b, compared, not the pointers) and the shape k. True means the buffer still
// holds what a build would write; false records these inputs, and the caller must build. A GEMV
// whose rows are handed to the threads in many pieces (parallel_rows.h) so prepares its x once per
// thread and call, not once per piece.
template <int Tag>
bool built_from(const void* a, size_t na, const void* b, size_t nb, int64_t k0, int64_t k1, int64_t k2) {
  thread_local std::vector<unsigned char> last;
  thread_local int64_t keys[3] = {-1, -1, -1};
  const bool same = keys[0] == k0 && keys[1] == k1 && keys[2] == k2 && last.size() == na + nb &&
                    std::memcmp(last.data(), a, na) == 0 && std::memcmp(last.data() + na, b, nb) == 0;
  if (same) return true;
  last.resize(na + nb);
  std::memcpy(last.data(), a, na);
  std::memcpy(last.data() + na, b, nb);
  keys[0] = k0;
  keys[1] = k1;
  keys[2] = k2;
  return false;
}

}  // namespace qins::core
