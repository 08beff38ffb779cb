// One block of QINS-4 on AVX2 (32 weights, 16 code bytes): the lookup and the integer dot
// product the x86 kernels (kernels4_x86.cpp) and the benchmark's baseline kernels share.
#pragma once

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include <cstdint>

#include "simd_x86.h"

namespace qins::core::kernels4 {

using kernels::hsum256;

// 16 code bytes -> the block's 32 signed int8 weights (table levels), natural column order.
__attribute__((target("avx2"))) inline __m256i lookup32(const uint8_t* c, __m256i tbl) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(c));
  const __m128i m4 = _mm_set1_epi8(0x0f);
  const __m128i lo = _mm_and_si128(v, m4);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
  return _mm256_shuffle_epi8(tbl, _mm256_set_m128i(hi, lo));
}

// 8 int32 partial sums of w . x over one block (their total is the block's exact dot product).
__attribute__((target("avx2"))) inline __m256i dot32(__m256i w, const int8_t* xq) {
  const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq));
  const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
  return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

}  // namespace qins::core::kernels4

#endif
