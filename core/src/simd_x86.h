// Small AVX2 / AVX-512 helpers shared by the x86 kernel files (each compiled with per-function target
// attributes; an avx512f helper inlines into any function whose target is a superset).
#pragma once

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace qins::core::kernels {

// Horizontal sum of 8 floats, once per row.
__attribute__((target("avx"))) inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 8-bit QINS codes -> fp32 values on AVX2, by table loads: `sl` is the 256-entry signed table
// (value of each whole code byte, build_signed_lut). Each value is a scalar load inserted into its
// lane; on Zen 3 that beats rebuilding the 4 bytes of each value from 32 vpshufb per 32 codes by
// 1.1-1.2x (bench_kernels8_avx2). lookup8_avx2(c): codes c[0..3] in the low half and c[16..19] in
// the high half, the order the in-lane byte unpacks of the kernels' "Block64"/"Block32" layouts give.
__attribute__((target("avx2"))) inline __m128 lookup4_avx2(uint32_t w, const float* sl) {
  __m128 v = _mm_load_ss(sl + (w & 0xff));
  v = _mm_insert_ps(v, _mm_load_ss(sl + ((w >> 8) & 0xff)), 0x10);
  v = _mm_insert_ps(v, _mm_load_ss(sl + ((w >> 16) & 0xff)), 0x20);
  return _mm_insert_ps(v, _mm_load_ss(sl + (w >> 24)), 0x30);
}

__attribute__((target("avx2"))) inline __m256 lookup8_avx2(const uint8_t* c, const float* sl) {
  uint32_t lo = 0, hi = 0;
  std::memcpy(&lo, c, 4);
  std::memcpy(&hi, c + 16, 4);
  return _mm256_insertf128_ps(_mm256_castps128_ps256(lookup4_avx2(lo, sl)), lookup4_avx2(hi, sl), 1);
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
