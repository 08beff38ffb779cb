// QINS-4 weights straight into the bf16 GEMM's tiles (AVX512-BF16; see qins4_kernels.h).
//
// Per 64 columns (2 blocks, 4 scale groups): the 16 table values times each group's scale,
// rounded to bf16, make two 32-word tables (groups 0-1, 2-3); the 64 nibbles, in natural column
// order, become word indices into them (nibble + 16 * group) for the even and the odd columns,
// and one two-table word permute per half gives the Split64 block. Each weight is the same fp32
// product expand / expand16 make (scale * lut, one rounding) rounded the way pack_x_bf16 rounds
// it, without writing the fp32 row and reading it back: on a Zen 5 that round trip took 0.6-0.9
// of the time of a 64-token tile's products (docs/qins.md).
#include <cstring>

#include "qins4_kernels.h"
#include "qins_kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define QINS4_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,f16c")))

namespace qins::core::kernels4 {

namespace {

// Group scale of column j of the segment (group 16: sub[2 * block + half]; else the block's group).
inline float column_scale(const uint8_t* sub, const float* st, const uint16_t* scales, int group_blocks, int64_t j) {
  const int64_t b = j / 32;
  return sub ? st[sub[2 * b + (j % 32 >= 16 ? 1 : 0)]] : half_to_float(scales[b / group_blocks]);
}

QINS4_BF16 void expand_bf16(const uint8_t* c, const uint8_t* sub, const float* st, const uint16_t* scales,
                            int group_blocks, const int8_t* lut, int64_t n, uint16_t* out) {
  // (Masked forms with all-ones masks here and below: GCC 12's unmasked ones warn about an
  // undefined source.)
  const __m512 table = _mm512_maskz_cvtepi32_ps(
      0xFFFF, _mm512_maskz_cvtepi8_epi32(0xFFFF, _mm_loadu_si128(reinterpret_cast<const __m128i*>(lut))));
  const __m512i m4 = _mm512_set1_epi8(0x0f), low_byte = _mm512_set1_epi16(0x00ff);
  // Word p of either half is column 2p (+1), whose group is p / 8: table word offset 16 * (p / 8).
  const __m512i group = _mm512_set_epi16(48, 48, 48, 48, 48, 48, 48, 48, 32, 32, 32, 32, 32, 32, 32, 32,  //
                                         16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0);
  const int64_t n64 = n & ~int64_t{63};
  for (int64_t i = 0; i < n64; i += 64) {
    const int64_t b = i / 32;
    float d[4];
    if (sub) {
      for (int g = 0; g < 4; ++g) d[g] = st[sub[2 * b + g]];
    } else {
      d[0] = d[1] = half_to_float(scales[b / group_blocks]);
      d[2] = d[3] = half_to_float(scales[(b + 1) / group_blocks]);
    }
    // cvtne2ps_pbh(a, b): b -> words 0-15, a -> words 16-31.
    const __m512bh t01 = _mm512_cvtne2ps_pbh(_mm512_mul_ps(table, _mm512_set1_ps(d[1])),
                                             _mm512_mul_ps(table, _mm512_set1_ps(d[0])));
    const __m512bh t23 = _mm512_cvtne2ps_pbh(_mm512_mul_ps(table, _mm512_set1_ps(d[3])),
                                             _mm512_mul_ps(table, _mm512_set1_ps(d[2])));
    // The 32 code bytes in 128-bit lanes [c0-15, c0-15, c16-31, c16-31], the high nibbles shifted
    // down in lanes 1 and 3: byte j = the nibble of column j.
    const __m512i bytes = _mm512_maskz_broadcast_i64x4(0xFF, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + i / 2)));
    const __m512i lanes = _mm512_maskz_shuffle_i64x2(0xFF, bytes, bytes, _MM_SHUFFLE(1, 1, 0, 0));
    const __m512i nib = _mm512_and_si512(_mm512_mask_srli_epi16(lanes, 0xFF00FF00, lanes, 4), m4);
    const __m512i even = _mm512_add_epi16(_mm512_and_si512(nib, low_byte), group);
    const __m512i odd = _mm512_add_epi16(_mm512_srli_epi16(nib, 8), group);
    const __m512i a = reinterpret_cast<const __m512i&>(t01), z = reinterpret_cast<const __m512i&>(t23);
    _mm512_storeu_si512(reinterpret_cast<void*>(out + i), _mm512_permutex2var_epi16(a, even, z));
    _mm512_storeu_si512(reinterpret_cast<void*>(out + i + 32), _mm512_permutex2var_epi16(a, odd, z));
  }
  for (int64_t j = n64; j < n; ++j) {  // the partial last block, natural order (pack_x_bf16's tail)
    const uint8_t byte = c[(j / 32) * 16 + j % 16];
    const int nibble = j % 32 >= 16 ? byte >> 4 : byte & 0x0f;
    out[j] = kernels::to_bf16(column_scale(sub, st, scales, group_blocks, j) * static_cast<float>(lut[nibble]));
  }
}

}  // namespace

ExpandBf16 expand_bf16_avx512() { return kernels::avx512bf16_kernel() ? expand_bf16 : nullptr; }

}  // namespace qins::core::kernels4

#else

namespace qins::core::kernels4 {
ExpandBf16 expand_bf16_avx512() { return nullptr; }
}  // namespace qins::core::kernels4

#endif
