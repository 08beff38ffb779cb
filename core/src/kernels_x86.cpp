// x86 kernels: AVX-512 (VBMI byte shuffles) and AVX2 (gathers). Compiled with per-function target
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

// AVX2: 8 codes -> 8 floats with one gather from the 128-entry table; sign by XOR.
QINS_AVX2 inline __m256 decode8(const uint8_t* c, const float* lut) {
  const __m128i raw = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(c));
  const __m256i v = _mm256_cvtepu8_epi32(raw);
  const __m256i idx = _mm256_and_si256(v, _mm256_set1_epi32(0x7f));
  const __m256 m = _mm256_i32gather_ps(lut, idx, 4);
  const __m256i sign = _mm256_and_si256(_mm256_slli_epi32(v, 24), _mm256_set1_epi32(INT32_MIN));
  return _mm256_xor_ps(m, _mm256_castsi256_ps(sign));
}

QINS_AVX2 inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

QINS_AVX2 void gemv_avx2(const uint8_t* codes, int64_t in, int64_t r0, int64_t r1,
                         const float* scales, const LutTables& t, const void* xpv, float* y) {
  const float* xp = static_cast<const float*>(xpv);
  const int64_t in16 = in & ~int64_t{15};
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * in;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (int64_t i = 0; i < in16; i += 16) {
      a0 = _mm256_fmadd_ps(decode8(c + i, t.lut), _mm256_loadu_ps(xp + i), a0);
      a1 = _mm256_fmadd_ps(decode8(c + i + 8, t.lut), _mm256_loadu_ps(xp + i + 8), a1);
    }
    float s = hsum256(_mm256_add_ps(a0, a1));
    for (int64_t i = in16; i < in; ++i) s += code_value(c[i], t.lut) * xp[i];
    y[r - r0] = s * scales[r];
  }
}


// The small-batch path (see gemv_rows_avx512): gemv_avx2's two accumulators per row of x.
template <int NB>
QINS_AVX2 inline void fma_rows_avx2(const float* dec, const float* x, int64_t in, int64_t n, __m256* a0, __m256* a1) {
  __m256 s0[NB], s1[NB];
  for (int b = 0; b < NB; ++b) s0[b] = a0[b], s1[b] = a1[b];
  for (int64_t i = 0; i < n; i += 16) {
    const __m256 d0 = _mm256_load_ps(dec + i), d1 = _mm256_load_ps(dec + i + 8);
    for (int b = 0; b < NB; ++b) {
      s0[b] = _mm256_fmadd_ps(d0, _mm256_loadu_ps(x + b * in + i), s0[b]);
      s1[b] = _mm256_fmadd_ps(d1, _mm256_loadu_ps(x + b * in + i + 8), s1[b]);
    }
  }
  for (int b = 0; b < NB; ++b) a0[b] = s0[b], a1[b] = s1[b];
}

QINS_AVX2 void gemv_rows_avx2(const uint8_t* codes, int64_t in, int64_t r0, int64_t r1, const float* scales,
                              const LutTables& t, const void* xpv, int64_t m, float* y, int64_t ldy) {
  const float* xp = static_cast<const float*>(xpv);
  const int64_t in16 = in & ~int64_t{15};
  alignas(32) float dec[kRowsChunk];
  __m256 a0[kRowsMax], a1[kRowsMax];
  for (int64_t m0 = 0; m0 < m; m0 += kRowsMax) {
    const int64_t mb = std::min(kRowsMax, m - m0);
    const float* xm = xp + m0 * in;
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* c = codes + r * in;
      for (int64_t b = 0; b < mb; ++b) a0[b] = a1[b] = _mm256_setzero_ps();
      for (int64_t k0 = 0; k0 < in16; k0 += kRowsChunk) {
        const int64_t n = std::min(kRowsChunk, in16 - k0);
        for (int64_t i = 0; i < n; i += 8) _mm256_store_ps(dec + i, decode8(c + k0 + i, t.lut));
        int64_t b = 0;
        for (; b + kRowsGroup <= mb; b += kRowsGroup) fma_rows_avx2<4>(dec, xm + b * in + k0, in, n, a0 + b, a1 + b);
        if (mb - b == 3) fma_rows_avx2<3>(dec, xm + b * in + k0, in, n, a0 + b, a1 + b);
        if (mb - b == 2) fma_rows_avx2<2>(dec, xm + b * in + k0, in, n, a0 + b, a1 + b);
        if (mb - b == 1) fma_rows_avx2<1>(dec, xm + b * in + k0, in, n, a0 + b, a1 + b);
      }
      for (int64_t b = 0; b < mb; ++b) {
        float s = hsum256(_mm256_add_ps(a0[b], a1[b]));
        for (int64_t i = in16; i < in; ++i) s += code_value(c[i], t.lut) * xm[b * in + i];
        y[(m0 + b) * ldy + (r - r0)] = s * scales[r];
      }
    }
  }
}

QINS_AVX2 void expand_avx2(const uint8_t* codes, int64_t in, int64_t r0, int64_t r1,
                           const float* scales, const LutTables& t, float* out) {
  const int64_t in8 = in & ~int64_t{7};
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * in;
    float* o = out + (r - r0) * in;
    const float s = scales[r];
    const __m256 vs = _mm256_set1_ps(s);
    for (int64_t i = 0; i < in8; i += 8) _mm256_storeu_ps(o + i, _mm256_mul_ps(decode8(c + i, t.lut), vs));
    for (int64_t i = in8; i < in; ++i) o[i] = code_value(c[i], t.lut) * s;
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
  static const Kernel k{"avx2", Order::Natural, gemv_avx2, gemv_rows_avx2, expand_avx2};
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
