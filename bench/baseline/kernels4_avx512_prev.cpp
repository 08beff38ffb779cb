// The previous AVX-512BW QINS-4 GEMV kernels (vpmaddubsw / vpmaddwd per block pair, no VNNI, no
// small-batch loop), kept verbatim from commit a408d45 (core/src/kernels4_x86.cpp) except for
// their namespace and names (their block helpers are the library's, core/src/kernels4_avx2.h, and
// the library's AVX2 scale16, repeated here), as
// the side-by-side baseline of bench_qins4's kernel rows on AVX-512 CPUs: the machine is shared
// and noisy, so the new kernels' speed-up is only meaningful as a ratio measured in the same run.
// Not linked into the library.
#include "kernels4_avx2_prev.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "kernels4_avx2.h"

#define QINS4_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

namespace qins::bench::kernels4_prev {

using qins::core::kernels4::dot32;
using qins::core::kernels4::hsum256;
using qins::core::kernels4::lookup32;

namespace {

// Group 16's scales of one block (as the library's AVX2 scale16).
QINS4_AVX512 inline __m256 scale16(const uint8_t* s, const float* st, float dx) {
  return _mm256_set_m128(_mm_set1_ps(st[s[1]] * dx), _mm_set1_ps(st[s[0]] * dx));
}

// AVX-512BW: two blocks (64 weights, 32 code bytes) per step. The nibble split of 32 bytes gives
// 128-bit lanes [lo(b0), lo(b1), hi(b0), hi(b1)]; one lane shuffle puts them in natural order
// [lo(b0), hi(b0), lo(b1), hi(b1)]. There is no 512-bit vpsignb: |w| by vpabsb, and x negated
// under the mask of w's sign bits.
QINS4_AVX512 inline __m512i lookup64(const uint8_t* c, __m512i tbl) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c));
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  const __m256i lo = _mm256_and_si256(v, m4);
  const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
  // (The masked forms with an all-ones mask: GCC 12's unmasked ones warn about an undefined source.)
  const __m512i z = _mm512_setzero_si512();
  const __m512i l = _mm512_mask_inserti64x4(z, 0xFF, z, lo, 0);
  const __m512i lh = _mm512_mask_inserti64x4(l, 0xFF, l, hi, 1);
  return _mm512_shuffle_epi8(tbl, _mm512_mask_shuffle_i64x2(z, 0xFF, lh, lh, _MM_SHUFFLE(3, 1, 2, 0)));
}

QINS4_AVX512 inline __m512i dot64(__m512i w, const int8_t* xq) {
  const __m512i x = _mm512_loadu_si512(reinterpret_cast<const void*>(xq));
  const __mmask64 neg = _mm512_movepi8_mask(w);
  const __m512i sx = _mm512_mask_sub_epi8(x, neg, _mm512_setzero_si512(), x);
  const __m512i p = _mm512_maddubs_epi16(_mm512_abs_epi8(w), sx);
  return _mm512_madd_epi16(p, _mm512_set1_epi16(1));
}

}  // namespace

QINS4_AVX512 void gemv_avx512_prev(const uint8_t* codes, int64_t n_blocks, int group_blocks, int64_t r0, int64_t r1,
                              const uint16_t* scales, const int8_t* lut, const int8_t* xq, const float* dx,
                              float* y) {
  const __m128i t128 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(lut));
  alignas(64) int8_t t4[64];
  for (int k = 0; k < 64; ++k) t4[k] = lut[k & 15];
  const __m512i tbl = _mm512_load_si512(reinterpret_cast<const void*>(t4));
  const __m256i tbl256 = _mm256_broadcastsi128_si256(t128);
  const int64_t n_groups = n_blocks / group_blocks;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * n_blocks * 16;
    const uint16_t* s = scales + r * n_groups;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= n_blocks; b += 4) {
      const __m512i p0 = dot64(lookup64(c + b * 16, tbl), xq + b * 32);
      const __m512i p1 = dot64(lookup64(c + b * 16 + 32, tbl), xq + b * 32 + 64);
      // Lanes 0-7 of each product belong to the first block of the pair, 8-15 to the second.
      const __m512 s0 = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(_cvtsh_ss(s[b / group_blocks]) * dx[b]),
                                             _mm512_set1_ps(_cvtsh_ss(s[(b + 1) / group_blocks]) * dx[b + 1]));
      const __m512 s1 = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(_cvtsh_ss(s[(b + 2) / group_blocks]) * dx[b + 2]),
                                             _mm512_set1_ps(_cvtsh_ss(s[(b + 3) / group_blocks]) * dx[b + 3]));
      a0 = _mm512_fmadd_ps(_mm512_mask_cvtepi32_ps(_mm512_setzero_ps(), 0xFFFF, p0), s0, a0);
      a1 = _mm512_fmadd_ps(_mm512_mask_cvtepi32_ps(_mm512_setzero_ps(), 0xFFFF, p1), s1, a1);
    }
    // Up to three blocks left: 256-bit steps.
    __m256 t = _mm256_setzero_ps();
    for (; b < n_blocks; ++b) {
      const __m256i p = dot32(lookup32(c + b * 16, tbl256), xq + b * 32);
      t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(_cvtsh_ss(s[b / group_blocks]) * dx[b]), t);
    }
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, _mm512_add_ps(a0, a1));
    float sum = hsum256(t);
    for (float e : lanes) sum += e;
    y[r - r0] = sum;
  }
}

// Group 16: the 16 int32 partial sums of dot64 are four groups of 16 columns, 4 lanes each, in
// order (block b low, block b high, block b+1 low, block b+1 high): one FMA by the four group
// weights, each spread over its 4 lanes.
QINS4_AVX512 void gemv16_avx512_prev(const uint8_t* codes, int64_t n_blocks, int64_t r0, int64_t r1, const uint8_t* sub,
                                const float* st, const int8_t* lut, const int8_t* xq, const float* dx, float* y) {
  alignas(64) int8_t t4[64];
  for (int k = 0; k < 64; ++k) t4[k] = lut[k & 15];
  const __m512i tbl = _mm512_load_si512(reinterpret_cast<const void*>(t4));
  const __m256i tbl256 = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lut)));
  const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * n_blocks * 16;
    const uint8_t* s = sub + r * n_blocks * 2;
    __m512 a0 = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= n_blocks; b += 2) {
      const __m512i p = dot64(lookup64(c + b * 16, tbl), xq + b * 32);
      const __m128 g = _mm_mul_ps(_mm_setr_ps(st[s[2 * b]], st[s[2 * b + 1]], st[s[2 * b + 2]], st[s[2 * b + 3]]),
                                  _mm_setr_ps(dx[b], dx[b], dx[b + 1], dx[b + 1]));
      const __m512 sv = _mm512_maskz_permutexvar_ps(0xFFFF, spread, _mm512_maskz_broadcast_f32x4(0xFFFF, g));
      a0 = _mm512_fmadd_ps(_mm512_mask_cvtepi32_ps(_mm512_setzero_ps(), 0xFFFF, p), sv, a0);
    }
    __m256 t = _mm256_setzero_ps();
    if (b < n_blocks) {
      const __m256i p = dot32(lookup32(c + b * 16, tbl256), xq + b * 32);
      t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), scale16(s + 2 * b, st, dx[b]), t);
    }
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, a0);
    float sum = hsum256(t);
    for (float e : lanes) sum += e;
    y[r - r0] = sum;
  }
}

}  // namespace qins::bench::kernels4_prev

#endif
