// x86 kernels: AVX-512 (VBMI byte shuffles) and AVX2 (byte shuffles over 16-entry sub-tables). Compiled with per-function target
// attributes so the library builds without -march=native; dispatch checks the CPU at run time.
//
// Where the time goes (batch-1 GEMV): the work is memory-bound, one code byte per weight. The
// AVX-512 path turns 64 code bytes into 64 fp32 weights with 4 vpermi2b lookups (one per byte of
// the fp32 table entry; the 7-bit index selects among 128 bytes, the sign bit is ignored by the
// instruction), ORs the code's sign bit into the top byte, and interleaves the four byte planes
// with 8 unpacks. The unpacks work inside 128-bit lanes, so the floats come out in "Block64"
// order; x is put into the same order once per call, and the dot product does not care.
#include "qins_kernels.h"
#include "simd_x86.h"
#include <algorithm>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

namespace qins::core::kernels {

namespace {

inline float code_value(uint8_t c, const float* lut) {
  const float m = lut[c & 0x7f];
  return (c & 0x80) ? -m : m;
}

#define QINS_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi,fma")))
#define QINS_AVX2 __attribute__((target("avx2,fma")))

struct Planes512 {
  __m512i lo[4];  // bytes k of lut[0..63]
  __m512i hi[4];  // bytes k of lut[64..127]
};

QINS_AVX512 inline void load_planes(const LutTables& t, Planes512* p) {
  for (int k = 0; k < 4; ++k) {
    p->lo[k] = _mm512_load_si512(reinterpret_cast<const void*>(t.planes[k]));
    p->hi[k] = _mm512_load_si512(reinterpret_cast<const void*>(t.planes[k] + 64));
  }
}

// 64 code bytes -> 64 signed fp32 magnitudes (before the row scale), Block64 order in f[0..3].
QINS_AVX512 inline void decode64(const uint8_t* c, const Planes512& p, __m512 f[4]) {
  const __m512i v = _mm512_loadu_si512(reinterpret_cast<const void*>(c));
  const __m512i b0 = _mm512_permutex2var_epi8(p.lo[0], v, p.hi[0]);
  const __m512i b1 = _mm512_permutex2var_epi8(p.lo[1], v, p.hi[1]);
  const __m512i b2 = _mm512_permutex2var_epi8(p.lo[2], v, p.hi[2]);
  __m512i b3 = _mm512_permutex2var_epi8(p.lo[3], v, p.hi[3]);
  // b3 | (v & 0x80): table magnitudes are >= 0, so OR puts the code's sign into the float sign.
  b3 = _mm512_ternarylogic_epi32(b3, v, _mm512_set1_epi8(static_cast<char>(0x80)), 0xF8);
  const __m512i l01 = _mm512_unpacklo_epi8(b0, b1);
  const __m512i h01 = _mm512_unpackhi_epi8(b0, b1);
  const __m512i l23 = _mm512_unpacklo_epi8(b2, b3);
  const __m512i h23 = _mm512_unpackhi_epi8(b2, b3);
  f[0] = _mm512_castsi512_ps(_mm512_unpacklo_epi16(l01, l23));
  f[1] = _mm512_castsi512_ps(_mm512_unpackhi_epi16(l01, l23));
  f[2] = _mm512_castsi512_ps(_mm512_unpacklo_epi16(h01, h23));
  f[3] = _mm512_castsi512_ps(_mm512_unpackhi_epi16(h01, h23));
}

// Software prefetch distance along a thread's block of rows (contiguous memory). Measured on
// this Zen 4 with codes in DRAM (one thread, bytes per CPU-second): none 26 GB/s, 2 KB 27,
// 8-12 KB 28-32; with the codes in L2 the kernel decodes 40 GB/s.
constexpr int64_t kPrefetchBytes = 8192;

// Dot product of the row segment c[i0, i1) (multiples of 64) with xp[i0, i1), prefetching the
// same offsets of `next` (the segment read after this one).
QINS_AVX512 inline float dot_segment(const uint8_t* c, const float* xp, int64_t i0, int64_t i1,
                                     const Planes512& p, const uint8_t* next) {
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  __m512 a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
  for (int64_t i = i0; i < i1; i += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(next + i), _MM_HINT_T0);
    __m512 f[4];
    decode64(c + i, p, f);
    a0 = _mm512_fmadd_ps(f[0], _mm512_loadu_ps(xp + i), a0);
    a1 = _mm512_fmadd_ps(f[1], _mm512_loadu_ps(xp + i + 16), a1);
    a2 = _mm512_fmadd_ps(f[2], _mm512_loadu_ps(xp + i + 32), a2);
    a3 = _mm512_fmadd_ps(f[3], _mm512_loadu_ps(xp + i + 48), a3);
  }
  return hsum512(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

// Columns per pass: x for one pass (16 KB) must stay in L1 (48 KB) next to the code stream;
// a whole 8192-column x (32 KB) did not: 13.5 GB/s per core unchunked, 18 with 4096-column
// passes, 13.6 with 2048 (too many short segments for the prefetchers).
constexpr int64_t kChunkCols = 4096;
constexpr int64_t kChunkRows = 4;

QINS_AVX512 void gemv_avx512(const uint8_t* codes, int64_t in, int64_t r0, int64_t r1,
                             const float* scales, const LutTables& t, const void* xpv, float* y) {
  const float* xp = static_cast<const float*>(xpv);
  Planes512 p;
  load_planes(t, &p);
  const int64_t in64 = in & ~int64_t{63};
  const int64_t chunk = kChunkCols;
  if (in64 <= chunk) {
    // One row at a time: the thread's rows are one contiguous stream, which the hardware
    // prefetcher and the software prefetch (8 KB ahead) follow. Two rows interleaved measured
    // 2x slower from DRAM. Four accumulators so FMA latency never limits the decode.
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* c = codes + r * in;
      float s = dot_segment(c, xp, 0, in64, p, c + kPrefetchBytes);
      for (int64_t i = in64; i < in; ++i) s += code_value(c[i], t.lut) * xp[i];
      y[r - r0] = s * scales[r];
    }
    return;
  }
  // Long rows: a few rows at a time, one column chunk after another; prefetch the segment that
  // comes next in this visiting order.
  for (int64_t rb = r0; rb < r1; rb += kChunkRows) {
    const int64_t re = std::min(r1, rb + kChunkRows);
    float acc[kChunkRows] = {};
    for (int64_t k0 = 0; k0 < in64; k0 += chunk) {
      const int64_t k1 = std::min(in64, k0 + chunk);
      for (int64_t r = rb; r < re; ++r) {
        // Next segment: same chunk of the next row, else next chunk of the first row, else
        // the first chunk of the next block (offsets shift by the chunk start).
        const uint8_t* next = r + 1 < re ? codes + (r + 1) * in
                              : k1 < in64 ? codes + rb * in + chunk
                                          : codes + re * in - k0;
        acc[r - rb] += dot_segment(codes + r * in, xp, k0, k1, p, next);
      }
    }
    for (int64_t r = rb; r < re; ++r) {
      const uint8_t* c = codes + r * in;
      float s = acc[r - rb];
      for (int64_t i = in64; i < in; ++i) s += code_value(c[i], t.lut) * xp[i];
      y[r - r0] = s * scales[r];
    }
  }
}


// ---- The small-batch decode path (gemv_rows): m rows of x against one pass over the codes ----
//
// Each code row is decoded kRowsChunk columns at a time into a small fp32 buffer (in L1), and
// every row of x takes its products from there, so the codes are decoded once for all m rows.
// Each row of x keeps the accumulators gemv would use and adds the same products in the same
// order: row i of the result is gemv's, bit for bit (a batched request decodes exactly the
// tokens it would alone). Rows of x go kRowsGroup at a time with their accumulators in registers.
constexpr int64_t kRowsChunk = 256;  // columns decoded per pass (multiple of 64)
constexpr int64_t kRowsMax = 16;     // rows of x per pass over the codes
constexpr int64_t kRowsGroup = 4;

// Accumulates dec[0, n) (Block64 order) times rows b of x (x + b * in) into a[b][0..3], as
// dot_segment does for one row.
template <int NB>
QINS_AVX512 inline void fma_rows_avx512(const float* dec, const float* x, int64_t in, int64_t n, __m512 (*a)[4]) {
  __m512 s[NB][4];
  for (int b = 0; b < NB; ++b)
    for (int q = 0; q < 4; ++q) s[b][q] = a[b][q];
  for (int64_t i = 0; i < n; i += 64) {
    const __m512 d0 = _mm512_load_ps(dec + i), d1 = _mm512_load_ps(dec + i + 16);
    const __m512 d2 = _mm512_load_ps(dec + i + 32), d3 = _mm512_load_ps(dec + i + 48);
    for (int b = 0; b < NB; ++b) {
      const float* xb = x + b * in + i;
      s[b][0] = _mm512_fmadd_ps(d0, _mm512_loadu_ps(xb), s[b][0]);
      s[b][1] = _mm512_fmadd_ps(d1, _mm512_loadu_ps(xb + 16), s[b][1]);
      s[b][2] = _mm512_fmadd_ps(d2, _mm512_loadu_ps(xb + 32), s[b][2]);
      s[b][3] = _mm512_fmadd_ps(d3, _mm512_loadu_ps(xb + 48), s[b][3]);
    }
  }
  for (int b = 0; b < NB; ++b)
    for (int q = 0; q < 4; ++q) a[b][q] = s[b][q];
}

QINS_AVX512 void gemv_rows_avx512(const uint8_t* codes, int64_t in, int64_t r0, int64_t r1, const float* scales,
                                  const LutTables& t, const void* xpv, int64_t m, float* y, int64_t ldy) {
  const float* xp = static_cast<const float*>(xpv);
  Planes512 p;
  load_planes(t, &p);
  const int64_t in64 = in & ~int64_t{63};
  // gemv_avx512's segments: the whole row, or kChunkCols-column passes summed in a float.
  const bool passes = in64 > kChunkCols;
  alignas(64) float dec[kRowsChunk];
  __m512 a[kRowsMax][4];
  float sum[kRowsMax];
  for (int64_t m0 = 0; m0 < m; m0 += kRowsMax) {
    const int64_t mb = std::min(kRowsMax, m - m0);
    const float* xm = xp + m0 * in;
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* c = codes + r * in;
      for (int64_t b = 0; b < mb; ++b) sum[b] = 0.f;
      for (int64_t k0 = 0; k0 < in64; k0 += kChunkCols) {
        const int64_t k1 = std::min(in64, k0 + kChunkCols);
        for (int64_t b = 0; b < mb; ++b)
          for (int q = 0; q < 4; ++q) a[b][q] = _mm512_setzero_ps();
        for (int64_t j0 = k0; j0 < k1; j0 += kRowsChunk) {
          const int64_t n = std::min(kRowsChunk, k1 - j0);
          for (int64_t i = 0; i < n; i += 64) {
            __m512 f[4];
            decode64(c + j0 + i, p, f);
            for (int q = 0; q < 4; ++q) _mm512_store_ps(dec + i + 16 * q, f[q]);
          }
          int64_t b = 0;
          for (; b + kRowsGroup <= mb; b += kRowsGroup) fma_rows_avx512<4>(dec, xm + b * in + j0, in, n, a + b);
          if (mb - b == 3) fma_rows_avx512<3>(dec, xm + b * in + j0, in, n, a + b);
          if (mb - b == 2) fma_rows_avx512<2>(dec, xm + b * in + j0, in, n, a + b);
          if (mb - b == 1) fma_rows_avx512<1>(dec, xm + b * in + j0, in, n, a + b);
        }
        for (int64_t b = 0; b < mb; ++b) {
          const float seg = hsum512(_mm512_add_ps(_mm512_add_ps(a[b][0], a[b][1]), _mm512_add_ps(a[b][2], a[b][3])));
          sum[b] = passes ? sum[b] + seg : seg;
        }
      }
      for (int64_t b = 0; b < mb; ++b) {
        float s = sum[b];
        for (int64_t i = in64; i < in; ++i) s += code_value(c[i], t.lut) * xm[b * in + i];
        y[(m0 + b) * ldy + (r - r0)] = s * scales[r];
      }
    }
  }
}

QINS_AVX512 void expand_avx512(const uint8_t* codes, int64_t in, int64_t r0, int64_t r1,
                               const float* scales, const LutTables& t, float* out) {
  Planes512 p;
  load_planes(t, &p);
  const int64_t in64 = in & ~int64_t{63};
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * in;
    float* o = out + (r - r0) * in;
    const float s = scales[r];
    const __m512 vs = _mm512_set1_ps(s);
    for (int64_t i = 0; i < in64; i += 64) {
      __m512 f[4];
      decode64(c + i, p, f);
      _mm512_storeu_ps(o + i, _mm512_mul_ps(f[0], vs));
      _mm512_storeu_ps(o + i + 16, _mm512_mul_ps(f[1], vs));
      _mm512_storeu_ps(o + i + 32, _mm512_mul_ps(f[2], vs));
      _mm512_storeu_ps(o + i + 48, _mm512_mul_ps(f[3], vs));
    }
    for (int64_t i = in64; i < in; ++i) o[i] = code_value(c[i], t.lut) * s;
  }
}

// AVX2 has no byte permute across 128 entries. Each code's value is loaded from the 256-entry
// signed table (t.signed_lut: lut[c & 0x7f] with bit 7 as the float's sign, the exact fp32 value)
// with a scalar load and inserted into its lane; the loads run on Zen 3's three load ports and the
// inserts beside them. Measured against the alternatives on Zen 3 (bench_kernels8_avx2, one
// thread): the previous decode, 8 telescoped vpshufb lookups per byte plane of the table (32
// vpshufb and 28 xors per 32 codes; bench/baseline/kernels8_avx2_prev.cpp), ran at 0.62-0.66x; vpgatherdd
// and indices stored by vpmovzxbd for the scalar loads were slower still. 64 codes come out as 8
// vectors in the AVX-512 path's Block64 order (x is put in that order once per call).

// Kernel-order offset of f[n] (lookup64_avx2 below) inside its 64-column block, and the offset of its
// first code.
constexpr int kOff256[8] = {0, 16, 32, 48, 8, 24, 40, 56};
constexpr int kCode256[8] = {0, 4, 8, 12, 32, 36, 40, 44};

// Vector n = h * 4 + q of a 64-code block: lookup8_avx2 (simd_x86.h) at code 32 h + 4 q.
QINS_AVX2 inline void lookup64_avx2(const uint8_t* c, const float* sl, __m256 f[8]) {
#pragma GCC unroll 8
  for (int n = 0; n < 8; ++n) f[n] = lookup8_avx2(c + kCode256[n], sl);
}


// One 64-column block of products into a row's two accumulators, in the order every AVX2 path
// uses (f[0], f[2], f[4], f[6] into a0; f[1], f[3], f[5], f[7] into a1).
QINS_AVX2 inline void fma_block_avx2(const __m256 f[8], const float* x, __m256& a0, __m256& a1) {
#pragma GCC unroll 4
  for (int n = 0; n < 8; n += 2) {
    a0 = _mm256_fmadd_ps(f[n], _mm256_loadu_ps(x + kOff256[n]), a0);
    a1 = _mm256_fmadd_ps(f[n + 1], _mm256_loadu_ps(x + kOff256[n + 1]), a1);
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
constexpr int64_t kRegRows = 4;
constexpr int64_t kRowsBlock = 8;

template <int NB>
QINS_AVX2 inline void rows_in_registers_avx2(const uint8_t* c, const float* x, int64_t in, int64_t n,
                                             const float* sl, __m256* a0, __m256* a1) {
  __m256 s0[NB], s1[NB];
  for (int b = 0; b < NB; ++b) s0[b] = a0[b], s1[b] = a1[b];
  // One vector of values at a time straight into every row's accumulator (few live registers),
  // in fma_block_avx2's order. Unrolled: GCC 12 at -O2 keeps this 4-trip loop otherwise (1.4x
  // slower on Zen 3).
  for (int64_t i = 0; i < n; i += 64) {
#pragma GCC unroll 4
    for (int k = 0; k < 8; k += 2) {
      const __m256 f0 = lookup8_avx2(c + i + kCode256[k], sl);
      for (int b = 0; b < NB; ++b) s0[b] = _mm256_fmadd_ps(f0, _mm256_loadu_ps(x + b * in + i + kOff256[k]), s0[b]);
      const __m256 f1 = lookup8_avx2(c + i + kCode256[k + 1], sl);
      for (int b = 0; b < NB; ++b) s1[b] = _mm256_fmadd_ps(f1, _mm256_loadu_ps(x + b * in + i + kOff256[k + 1]), s1[b]);
    }
  }
  for (int b = 0; b < NB; ++b) a0[b] = s0[b], a1[b] = s1[b];
}

// Batch 1: the small-batch loop with one row of x.
QINS_AVX2 void gemv_avx2(const uint8_t* codes, int64_t in, int64_t r0, int64_t r1,
                         const float* scales, const LutTables& t, const void* xpv, float* y) {
  const float* xp = static_cast<const float*>(xpv);
  const float* sl = t.signed_lut;
  const int64_t in64 = in & ~int64_t{63};
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * in;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    rows_in_registers_avx2<1>(c, xp, in, in64, sl, &a0, &a1);
    float s = hsum256(_mm256_add_ps(a0, a1));
    for (int64_t i = in64; i < in; ++i) s += code_value(c[i], t.lut) * xp[i];
    y[r - r0] = s * scales[r];
  }
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

QINS_AVX2 void gemv_rows_avx2(const uint8_t* codes, int64_t in, int64_t r0, int64_t r1, const float* scales,
                              const LutTables& t, const void* xpv, int64_t m, float* y, int64_t ldy) {
  const float* xp = static_cast<const float*>(xpv);
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
            if (mb == 4) rows_in_registers_avx2<4>(c, xk, in, n, t.signed_lut, s0, s1);
            if (mb == 3) rows_in_registers_avx2<3>(c, xk, in, n, t.signed_lut, s0, s1);
            if (mb == 2) rows_in_registers_avx2<2>(c, xk, in, n, t.signed_lut, s0, s1);
            if (mb == 1) rows_in_registers_avx2<1>(c, xk, in, n, t.signed_lut, s0, s1);
            continue;
          }
          for (int64_t i = 0; i < n; i += 64) {
            __m256 f[8];
            lookup64_avx2(c + i, t.signed_lut, f);
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

QINS_AVX2 void expand_avx2(const uint8_t* codes, int64_t in, int64_t r0, int64_t r1,
                           const float* scales, const LutTables& t, float* out) {
  const int64_t in64 = in & ~int64_t{63};
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * in;
    float* o = out + (r - r0) * in;
    const float s = scales[r];
    const __m256 vs = _mm256_set1_ps(s);
    for (int64_t i = 0; i < in64; i += 64) {
      __m256 f[8];
      lookup64_avx2(c + i, t.signed_lut, f);
#pragma GCC unroll 8
      for (int n = 0; n < 8; ++n) _mm256_storeu_ps(o + i + kOff256[n], _mm256_mul_ps(f[n], vs));
    }
    for (int64_t i = in64; i < in; ++i) o[i] = code_value(c[i], t.lut) * s;
  }
}

}  // namespace

const Kernel* avx512_kernel() {
  static const Kernel k{"avx512", Order::Block64, gemv_avx512, gemv_rows_avx512, expand_avx512};
  __builtin_cpu_init();
  const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vbmi") &&
                  __builtin_cpu_supports("fma");
  return ok ? &k : nullptr;
}

const Kernel* avx2_kernel() {
  static const Kernel k{"avx2", Order::Block64, gemv_avx2, gemv_rows_avx2, expand_avx2};
  __builtin_cpu_init();
  const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok ? &k : nullptr;
}

}  // namespace qins::core::kernels

#else  // not x86

namespace qins::core::kernels {
const Kernel* avx512_kernel() { return nullptr; }
const Kernel* avx2_kernel() { return nullptr; }
}  // namespace qins::core::kernels

#endif
