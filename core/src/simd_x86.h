// Small AVX-512 helpers shared by the x86 kernel files (each compiled with per-function target
// attributes; an avx512f helper inlines into any function whose target is a superset).
#pragma once

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

namespace qins::core::kernels {

// Horizontal sum, once per row (a store + scalar adds: _mm512_reduce_add_ps trips a GCC 12
// header warning).
__attribute__((target("avx512f"))) inline float hsum512(__m512 v) {
  alignas(64) float b[16];
  _mm512_store_ps(b, v);
  float s = 0.f;
  for (float e : b) s += e;
  return s;
}

}  // namespace qins::core::kernels

#endif
