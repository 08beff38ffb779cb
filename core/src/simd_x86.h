// Small AVX2 / AVX-512 helpers shared by the x86 kernel files (each compiled with per-function target
// attributes; an avx512f helper inlines into any function whose target is a superset).
#pragma once

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

namespace qins::core::kernels {

// Horizontal sum of 8 floats, once per row.
__attribute__((target("avx"))) inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

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
