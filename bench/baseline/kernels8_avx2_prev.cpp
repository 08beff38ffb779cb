// The previous AVX2 QINS 8-bit GEMV kernels, kept as bench_kernels8_avx2's side-by-side baseline
// (the library's kernels now load each code's value from a 256-entry signed table instead).
// Decoding: the 7-bit index picks one of 128 table bytes per byte plane with 8 vpshufb over
// 16-byte sub-tables T_0..T_7. With U_0 = T_0 and U_s = T_s ^ T_{s-1}, and index bytes j - 16 s
// (negative, so vpshufb gives 0, for s > j >> 4), the XOR of the 8 lookups telescopes to
// T_{j>>4}[j & 15]: the exact table byte. The code's sign bit is ORed into the top byte and the
// planes are interleaved with in-lane unpacks (Block64 order).
#include "baseline/kernels8_avx2_prev.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include <algorithm>

#include "simd_x86.h"

namespace qins::bench::kernels8_prev {

using qins::core::kernels::LutTables;
using qins::core::kernels::hsum256;

namespace {

#define QINS_AVX2 __attribute__((target("avx2,fma")))

constexpr int64_t kRowsChunk = 256;
constexpr int64_t kRowsMax = 16;
constexpr int64_t kRowsGroup = 4;

inline float code_value(uint8_t c, const float* lut) {
  const float m = lut[c & 0x7f];
  return (c & 0x80) ? -m : m;
}

// The telescoped sub-tables: u[s][k] = U_s of byte plane k, the 16 bytes in both 128-bit lanes.
struct Shuffle256 {
  alignas(32) uint8_t u[8][4][32];
};

inline void build_shuffle_tables(const LutTables& t, Shuffle256* p) {
  for (int s = 0; s < 8; ++s)
    for (int k = 0; k < 4; ++k)
      for (int j = 0; j < 16; ++j) {
        const uint8_t cur = t.planes[k][16 * s + j];
        const uint8_t prev = s ? t.planes[k][16 * (s - 1) + j] : uint8_t{0};
        p->u[s][k][j] = p->u[s][k][j + 16] = static_cast<uint8_t>(cur ^ prev);
      }
}

// 64 code bytes -> 64 signed fp32 magnitudes (before the row scale). f[0..3]: codes 0..31, f[4..7]:
// codes 32..63; f[h * 4 + q] goes with kernel positions 16 q + 8 h .. + 7 of the Block64 block.
QINS_AVX2 inline void decode64_avx2(const uint8_t* c, const Shuffle256& p, __m256 f[8]) {
  const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c));
  const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 32));
  const __m256i m7f = _mm256_set1_epi8(0x7f), s16 = _mm256_set1_epi8(16);
  __m256i i0 = _mm256_and_si256(v0, m7f), i1 = _mm256_and_si256(v1, m7f);
  __m256i b0[4], b1[4];
  for (int k = 0; k < 4; ++k) {
    const __m256i u = _mm256_load_si256(reinterpret_cast<const __m256i*>(p.u[0][k]));
    b0[k] = _mm256_shuffle_epi8(u, i0);
    b1[k] = _mm256_shuffle_epi8(u, i1);
  }
  for (int s = 1; s < 8; ++s) {
    i0 = _mm256_sub_epi8(i0, s16);
    i1 = _mm256_sub_epi8(i1, s16);
    for (int k = 0; k < 4; ++k) {
      const __m256i u = _mm256_load_si256(reinterpret_cast<const __m256i*>(p.u[s][k]));
      b0[k] = _mm256_xor_si256(b0[k], _mm256_shuffle_epi8(u, i0));
      b1[k] = _mm256_xor_si256(b1[k], _mm256_shuffle_epi8(u, i1));
    }
  }
  // Table magnitudes are >= 0: OR the code's sign bit into the float's sign.
  const __m256i m80 = _mm256_set1_epi8(static_cast<char>(0x80));
  b0[3] = _mm256_or_si256(b0[3], _mm256_and_si256(v0, m80));
  b1[3] = _mm256_or_si256(b1[3], _mm256_and_si256(v1, m80));
  const __m256i* bs[2] = {b0, b1};
  for (int h = 0; h < 2; ++h) {
    const __m256i* b = bs[h];
    const __m256i l01 = _mm256_unpacklo_epi8(b[0], b[1]), h01 = _mm256_unpackhi_epi8(b[0], b[1]);
    const __m256i l23 = _mm256_unpacklo_epi8(b[2], b[3]), h23 = _mm256_unpackhi_epi8(b[2], b[3]);
    f[h * 4 + 0] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(l01, l23));
    f[h * 4 + 1] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(l01, l23));
    f[h * 4 + 2] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(h01, h23));
    f[h * 4 + 3] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(h01, h23));
  }
}

// Kernel-order offset of f[n] (decode64_avx2) inside its 64-column block.
constexpr int kOff256[8] = {0, 16, 32, 48, 8, 24, 40, 56};


// One 64-column block of products into a row's two accumulators, in the order every AVX2 path
// uses (f[0], f[2], f[4], f[6] into a0; f[1], f[3], f[5], f[7] into a1).
QINS_AVX2 inline void fma_block_avx2(const __m256 f[8], const float* x, __m256& a0, __m256& a1) {
  for (int n = 0; n < 8; n += 2) {
    a0 = _mm256_fmadd_ps(f[n], _mm256_loadu_ps(x + kOff256[n]), a0);
    a1 = _mm256_fmadd_ps(f[n + 1], _mm256_loadu_ps(x + kOff256[n + 1]), a1);
  }
}

}  // namespace

QINS_AVX2 void gemv_avx2_prev(const uint8_t* codes, int64_t in, int64_t r0, int64_t r1,
                         const float* scales, const LutTables& t, const void* xpv, float* y) {
  const float* xp = static_cast<const float*>(xpv);
  Shuffle256 p;
  build_shuffle_tables(t, &p);
  const int64_t in64 = in & ~int64_t{63};
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * in;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (int64_t i = 0; i < in64; i += 64) {
      __m256 f[8];
      decode64_avx2(c + i, p, f);
      fma_block_avx2(f, xp + i, a0, a1);
    }
    float s = hsum256(_mm256_add_ps(a0, a1));
    for (int64_t i = in64; i < in; ++i) s += code_value(c[i], t.lut) * xp[i];
    y[r - r0] = s * scales[r];
  }
}

// The small-batch path: gemv_avx2's two accumulators per row of x, the same products in the same
// order, so row i of the result is gemv_avx2's bit for bit, while each code is decoded once for
// all rows of x. The columns go kRowsChunk at a time over kRowsBlock code rows, so the rows of x
// for one chunk (16 x 256 floats at most: 16 KB) stay in L1 while every code row of the block
// uses them; a whole row of x per row of codes (8 rows x 3072 floats: 96 KB) would come from L2
// each time. Up to kRegRows rows of x: the 8 decoded vectors of a block stay in registers and
// go straight into each row's accumulators; more: the chunk is decoded into an L1 buffer and the
// rows take their products from there, kRowsGroup at a time.
namespace {
constexpr int64_t kRegRows = 4;
constexpr int64_t kRowsBlock = 8;

template <int NB>
QINS_AVX2 inline void rows_in_registers_avx2(const uint8_t* c, const float* x, int64_t in, int64_t n,
                                             const Shuffle256& p, __m256* a0, __m256* a1) {
  __m256 s0[NB], s1[NB];
  for (int b = 0; b < NB; ++b) s0[b] = a0[b], s1[b] = a1[b];
  for (int64_t i = 0; i < n; i += 64) {
    __m256 f[8];
    decode64_avx2(c + i, p, f);
    for (int b = 0; b < NB; ++b) fma_block_avx2(f, x + b * in + i, s0[b], s1[b]);
  }
  for (int b = 0; b < NB; ++b) a0[b] = s0[b], a1[b] = s1[b];
}

template <int NB>
QINS_AVX2 inline void fma_rows_avx2(const float* dec, const float* x, int64_t in, int64_t n, __m256* a0, __m256* a1) {
  __m256 s0[NB], s1[NB];
  for (int b = 0; b < NB; ++b) s0[b] = a0[b], s1[b] = a1[b];
  for (int64_t i = 0; i < n; i += 64) {
    __m256 f[8];
    for (int q = 0; q < 8; ++q) f[q] = _mm256_load_ps(dec + i + 8 * q);
    for (int b = 0; b < NB; ++b) fma_block_avx2(f, x + b * in + i, s0[b], s1[b]);
  }
  for (int b = 0; b < NB; ++b) a0[b] = s0[b], a1[b] = s1[b];
}

}  // namespace

QINS_AVX2 void gemv_rows_avx2_prev(const uint8_t* codes, int64_t in, int64_t r0, int64_t r1, const float* scales,
                              const LutTables& t, const void* xpv, int64_t m, float* y, int64_t ldy) {
  const float* xp = static_cast<const float*>(xpv);
  Shuffle256 p;
  build_shuffle_tables(t, &p);
  const int64_t in64 = in & ~int64_t{63};
  alignas(32) float dec[kRowsChunk];
  __m256 a0[kRowsBlock][kRowsMax], a1[kRowsBlock][kRowsMax];
  for (int64_t m0 = 0; m0 < m; m0 += kRowsMax) {
    const int64_t mb = std::min(kRowsMax, m - m0);
    const float* xm = xp + m0 * in;
    for (int64_t rb = r0; rb < r1; rb += kRowsBlock) {
      const int64_t re = std::min(r1, rb + kRowsBlock);
      for (int64_t r = rb; r < re; ++r)
        for (int64_t b = 0; b < mb; ++b) a0[r - rb][b] = a1[r - rb][b] = _mm256_setzero_ps();
      for (int64_t k0 = 0; k0 < in64; k0 += kRowsChunk) {
        const int64_t n = std::min(kRowsChunk, in64 - k0);
        const float* xk = xm + k0;
        for (int64_t r = rb; r < re; ++r) {
          const uint8_t* c = codes + r * in + k0;
          __m256* s0 = a0[r - rb];
          __m256* s1 = a1[r - rb];
          if (mb <= kRegRows) {
            if (mb == 4) rows_in_registers_avx2<4>(c, xk, in, n, p, s0, s1);
            if (mb == 3) rows_in_registers_avx2<3>(c, xk, in, n, p, s0, s1);
            if (mb == 2) rows_in_registers_avx2<2>(c, xk, in, n, p, s0, s1);
            if (mb == 1) rows_in_registers_avx2<1>(c, xk, in, n, p, s0, s1);
            continue;
          }
          for (int64_t i = 0; i < n; i += 64) {
            __m256 f[8];
            decode64_avx2(c + i, p, f);
            for (int q = 0; q < 8; ++q) _mm256_store_ps(dec + i + 8 * q, f[q]);
          }
          int64_t b = 0;
          for (; b + kRowsGroup <= mb; b += kRowsGroup) fma_rows_avx2<4>(dec, xk + b * in, in, n, s0 + b, s1 + b);
          if (mb - b == 3) fma_rows_avx2<3>(dec, xk + b * in, in, n, s0 + b, s1 + b);
          if (mb - b == 2) fma_rows_avx2<2>(dec, xk + b * in, in, n, s0 + b, s1 + b);
          if (mb - b == 1) fma_rows_avx2<1>(dec, xk + b * in, in, n, s0 + b, s1 + b);
        }
      }
      for (int64_t r = rb; r < re; ++r) {
        const uint8_t* c = codes + r * in;
        for (int64_t b = 0; b < mb; ++b) {
          float s = hsum256(_mm256_add_ps(a0[r - rb][b], a1[r - rb][b]));
          for (int64_t i = in64; i < in; ++i) s += code_value(c[i], t.lut) * xm[b * in + i];
          y[(m0 + b) * ldy + (r - r0)] = s * scales[r];
        }
      }
    }
  }
}


}  // namespace qins::bench::kernels8_prev

#endif
