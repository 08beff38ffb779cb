// The previous AVX2 QINS-4 GEMV kernels (one block of 32 weights per step, a 128-bit lane insert
// per block), kept verbatim from commit e2e5882 (core/src/kernels4_x86.cpp) except for their
// namespace and names (their block helpers are the library's, core/src/kernels4_avx2.h), as the side-by-side baseline of bench_qins4's kernel rows: the machine is
// shared and noisy, so the new kernels' speed-up is only meaningful as a ratio measured in the
// same run. Not linked into the library.
#include "kernels4_avx2_prev.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "kernels4_avx2.h"

#define QINS4_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace qins::bench::kernels4_prev {

using qins::core::kernels4::dot32;
using qins::core::kernels4::hsum256;
using qins::core::kernels4::lookup32;

QINS4_AVX2 void gemv_avx2_prev(const uint8_t* codes, int64_t n_blocks, int group_blocks, int64_t r0, int64_t r1,
                               const uint16_t* scales, const int8_t* lut, const int8_t* xq, const float* dx, float* y) {
  const __m256i tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lut)));
  const int64_t n_groups = n_blocks / group_blocks;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * n_blocks * 16;
    const uint16_t* s = scales + r * n_groups;
    // Two accumulators (even / odd blocks) so the FMA latency does not chain every block.
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= n_blocks; b += 2) {
      const float d0 = _cvtsh_ss(s[b / group_blocks]), d1 = _cvtsh_ss(s[(b + 1) / group_blocks]);
      const __m256i p0 = dot32(lookup32(c + b * 16, tbl), xq + b * 32);
      const __m256i p1 = dot32(lookup32(c + b * 16 + 16, tbl), xq + b * 32 + 32);
      a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(d0 * dx[b]), a0);
      a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(d1 * dx[b + 1]), a1);
    }
    if (b < n_blocks) {
      const float d0 = _cvtsh_ss(s[b / group_blocks]);
      const __m256i p0 = dot32(lookup32(c + b * 16, tbl), xq + b * 32);
      a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(d0 * dx[b]), a0);
    }
    y[r - r0] = hsum256(_mm256_add_ps(a0, a1));
  }
}

// Group 16: the 8 int32 partial sums of dot32 are columns 0-15 (lanes 0-3) and 16-31 (lanes 4-7),
// so one FMA by [st[sub_lo] dx x4, st[sub_hi] dx x4] weighs both halves of a block.
QINS4_AVX2 static inline __m256 scale16(const uint8_t* s, const float* st, float dx) {
  return _mm256_set_m128(_mm_set1_ps(st[s[1]] * dx), _mm_set1_ps(st[s[0]] * dx));
}

QINS4_AVX2 void gemv16_avx2_prev(const uint8_t* codes, int64_t n_blocks, int64_t r0, int64_t r1, const uint8_t* sub,
                                 const float* st, const int8_t* lut, const int8_t* xq, const float* dx, float* y) {
  const __m256i tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lut)));
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * n_blocks * 16;
    const uint8_t* s = sub + r * n_blocks * 2;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= n_blocks; b += 2) {
      const __m256i p0 = dot32(lookup32(c + b * 16, tbl), xq + b * 32);
      const __m256i p1 = dot32(lookup32(c + b * 16 + 16, tbl), xq + b * 32 + 32);
      a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), scale16(s + 2 * b, st, dx[b]), a0);
      a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), scale16(s + 2 * b + 2, st, dx[b + 1]), a1);
    }
    if (b < n_blocks) {
      const __m256i p0 = dot32(lookup32(c + b * 16, tbl), xq + b * 32);
      a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), scale16(s + 2 * b, st, dx[b]), a0);
    }
    y[r - r0] = hsum256(_mm256_add_ps(a0, a1));
  }
}

}  // namespace qins::bench::kernels4_prev

#endif
