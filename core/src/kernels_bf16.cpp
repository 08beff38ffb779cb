// AVX-512 BF16 kernels (Zen 4/5, Sapphire Rapids and later; also needs VBMI and VBMI2): the code table and x are rounded to
// bf16 and multiplied with vdpbf16ps (two bf16 products per fp32 lane, fp32 accumulation).
//
// Why: the exact AVX-512 kernel (kernels_x86.cpp) needs 4 table lookups and 8 unpacks to turn 64
// codes into fp32, which costs as much time as DRAM takes to deliver the codes. Here 64 codes
// become 64 bf16 weights with 2 lookups (low and high byte of the bf16 table entry), 2 funnel
// shifts and 2 bitwise selects, no cross-lane shuffles: the even codes of each 16-bit word pair give one
// vector of 32 bf16, the odd codes another ("Split64" order; x is put into the same order once).
// Cost in accuracy: bf16 keeps 8 significant bits, so each product is off by at most ~2^-8
// relative, far below the 8-bit code's own error (a 43 dB codebook is ~0.7 % rms per weight);
// docs/qins.md measures the effect on perplexity.
//
// Prefill (many rows of x) runs a blocked GEMM on the same decode: a tile of rows x columns of
// codes is expanded to bf16 in L2, x is packed as [column pair][token][2] and a 6 x 64 register
// tile (24 accumulators) is updated per column pair with broadcast weight pairs.
#include "qins_kernels.h"
#include "simd_x86.h"

#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>

namespace qins::core::kernels {

namespace {

#define QINS_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi,avx512vbmi2,avx512bf16")))

inline float tail_value(uint8_t c, const LutTables& t) {
  const float m = from_bf16(t.lut_bf16[c & 0x7f]);
  return (c & 0x80) ? -m : m;
}

struct PlanesBf16 {
  __m512i lo0, lo1;  // low byte of bf16(lut[0..63]), (lut[64..127])
  __m512i hi0, hi1;  // high byte
};

QINS_BF16 inline PlanesBf16 load_planes(const LutTables& t) {
  PlanesBf16 p;
  p.lo0 = _mm512_load_si512(reinterpret_cast<const void*>(t.bf16_planes[0]));
  p.lo1 = _mm512_load_si512(reinterpret_cast<const void*>(t.bf16_planes[0] + 64));
  p.hi0 = _mm512_load_si512(reinterpret_cast<const void*>(t.bf16_planes[1]));
  p.hi1 = _mm512_load_si512(reinterpret_cast<const void*>(t.bf16_planes[1] + 64));
  return p;
}

// 64 code bytes -> bf16 weights (before the row scale): *e = codes 0, 2, .., 62, *o = codes
// 1, 3, .., 63, one 16-bit lane each. vpermi2b uses the low 7 bits of each index byte, so the
// sign bit is ignored by the lookups and ORed into the high byte afterwards (table magnitudes are
// >= 0). The high-byte lookup runs on the codes byte-swapped within each word, which puts both
// bytes of every weight where one funnel shift (odd codes) or one bitwise select (even codes)
// joins them: 6 operations besides the two dot products, against 7 with two plain shifts (the
// loop is bound by these operations when the data comes from cache: 62 vs 51 GB/s per core,
// measured on Zen 5).
QINS_BF16 inline void decode64(__m512i v, const PlanesBf16& p, __m512i* e, __m512i* o) {
  const __m512i vs = _mm512_shldi_epi16(v, v, 8);  // word i: low byte = code 2i+1, high byte = code 2i
  const __m512i lo = _mm512_permutex2var_epi8(p.lo0, v, p.lo1);  // low byte = lo(2i), high = lo(2i+1)
  __m512i hi = _mm512_permutex2var_epi8(p.hi0, vs, p.hi1);       // low byte = hi(2i+1), high = hi(2i)
  hi = _mm512_ternarylogic_epi32(hi, vs, _mm512_set1_epi8(static_cast<char>(0x80)), 0xF8);  // hi | (vs & 0x80)
  // Even codes: high byte of hi, low byte of lo ((A & C) | (B & ~C) with C = 0xff00).
  *e = _mm512_ternarylogic_epi32(hi, lo, _mm512_set1_epi16(static_cast<short>(0xff00)), 0xE4);
  // Odd codes: (hi << 8) | (lo >> 8) in one funnel shift.
  *o = _mm512_shldi_epi16(hi, lo, 8);
}

QINS_BF16 inline __m512 dot2(__m512 acc, __m512i a, __m512i b) {
  return _mm512_dpbf16_ps(acc, reinterpret_cast<__m512bh&>(a), reinterpret_cast<__m512bh&>(b));
}

// fp32 x -> bf16 in Split64 order. 64 columns: convert (round to nearest even), then gather the
// even and the odd words of the two 32-word halves with one permute each.
QINS_BF16 void pack_x_bf16(const float* x, int64_t in, uint16_t* xp) {
  alignas(64) static const uint16_t kEven[32] = {0,  2,  4,  6,  8,  10, 12, 14, 16, 18, 20,
                                                 22, 24, 26, 28, 30, 32, 34, 36, 38, 40, 42,
                                                 44, 46, 48, 50, 52, 54, 56, 58, 60, 62};
  const __m512i even = _mm512_load_si512(reinterpret_cast<const void*>(kEven));
  const __m512i odd = _mm512_add_epi16(even, _mm512_set1_epi16(1));
  const int64_t in64 = in & ~int64_t{63};
  for (int64_t i = 0; i < in64; i += 64) {
    // cvtne2ps_pbh(a, b): b -> words 0..15, a -> words 16..31.
    const __m512bh w0 = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
    const __m512bh w1 = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 48), _mm512_loadu_ps(x + i + 32));
    const __m512i a = reinterpret_cast<const __m512i&>(w0), b = reinterpret_cast<const __m512i&>(w1);
    _mm512_storeu_si512(reinterpret_cast<void*>(xp + i), _mm512_permutex2var_epi16(a, even, b));
    _mm512_storeu_si512(reinterpret_cast<void*>(xp + i + 32), _mm512_permutex2var_epi16(a, odd, b));
  }
  for (int64_t i = in64; i < in; ++i) xp[i] = to_bf16(x[i]);
}

// Software prefetch of the codes (a thread's code rows are contiguous, and the loop below walks two of them
// side by side: it prefetches them as one stream, two lines per block). One row of x (the GEMV) streams at DRAM
// speed with the codes asked into L1 8 KB of that stream ahead. Several rows of x make each 64 codes 2-4x the
// work, and then an L1 ask that far ahead came too late: a 3- or 4-row pass read 13-17 GB/s of codes from DRAM
// on one thread where the same pass in L3 ran 31-37 and the plain read 33 (Zen 5 VM; the out-of-order window
// covers only ~20 blocks of that loop, so few lines are in flight). Asking into L2 32 KB ahead and into L1 1 KB
// ahead gave 26-29 (3 rows) and 19-24 (4 rows) there.
constexpr int64_t kPrefetchBytes = 8192;    // one row of x: into L1, this far ahead
constexpr int64_t kPrefetchFar = 32 << 10;  // several rows of x: into L2, this far ahead ..
constexpr int64_t kPrefetchNear = 1024;     // .. and into L1, this far

// The decode (gemv) and the small-batch decode (gemv_rows) share one loop, so that row i of a batch is the
// GEMV's result for that row bit for bit (the same products added in the same order): the server's batched
// greedy requests must get exactly the tokens they get alone.
//
// Each (code row, row of x) pair has two fp32 accumulators: every block (64 columns) adds its even-column
// products to a0 and its odd-column products to a1, and the result is hsum(a0 + a1) plus the columns past the
// last full block. The loop runs two code rows at a time, so each load of x feeds two vdpbf16ps and the GEMV
// still has four independent chains; 4 rows of x in one pass (16 accumulators, 4 decoded vectors, the 4 table
// vectors and the decode's temporaries) fit the 32 zmm registers, and each 64 codes are decoded once for 4
// rows. A lone last code row runs the same loop with one code row (its two chains are slower, but it is one
// row of a thread's share). More rows of x take more passes over a tile of code rows (in L2 by then;
// gemv_rows_bf16).
//
// History, measured on the Zen 5 VM with a stand-alone driver (two threads, codes streamed from DRAM, GB/s of
// codes, each figure beside its baseline in the same run): the loop before this one ran one code row with four
// accumulators per row of x, so every 64 codes took two loads of x per row of x. 4 rows of x over 9216 x 3072
// codes ran 38-40 GB/s against 42-69 now, and over 3072 x 8192 codes (4 rows of x are 64 KB, more than L1) 20-21
// against 37-38; the GEMV the same within the noise (~50-80, as the host's bandwidth moved). The order of the
// vdpbf16ps matters to GCC: both even products of a row of x and then both odd ones (below); alternating
// even and odd per code row made it load x again for the second code row and cost the 4-row loop a third of
// its speed. Not kept: column segments that keep the rows of x in L1 where they are larger, each code row's
// accumulators carried from segment to segment in memory, as the QINS-4 loop does: on Zen 5 they ran no faster
// than the whole rows (4 rows of 8192 columns from L2: 20.4 against 19.1 GB/s of codes, with the loop before),
// and cutting 3072 columns into two segments made 4 rows 25 % slower, for reasons not found.
constexpr int kRowsPass = 4;                 // rows of x per pass over a code row, at most
constexpr int64_t kPassXBytes = 64 << 10;    // .. and at most this much of x (bf16) in a pass (the down
                                             // projection's 4 rows of 8192 columns: one pass ran 37-38 GB/s
                                             // of codes, two passes of 32 KB 30-31)
constexpr int64_t kPassTileBytes = 192 << 10;  // codes per tile when the rows of x take several passes (at
                                               // least 16 code rows; 3072 columns: 64 rows, which ran 8 rows
                                               // of x 2-10 % faster than 16 in the whole model)

// Block j (64 columns) of NR code rows (c, c + in, ..) against NB rows of x (`in` apart): accumulators
// a[k][b][0] (even columns) and a[k][b][1] (odd columns). Two code rows share each load of x.
template <int NR, int NB>
QINS_BF16 inline __attribute__((always_inline)) void block_bf16(const uint8_t* c, const PlanesBf16& p,
                                                                const uint16_t* x, int64_t in, int64_t j,
                                                                __m512 (&a)[NR][NB][2]) {
  const int64_t o = j * 64;
  // The NR code rows are contiguous: prefetch them as one stream, NR lines per block.
  const char* lp = reinterpret_cast<const char*>(c + NR * o);
  if (NB == 1) {
    for (int k = 0; k < NR; ++k) _mm_prefetch(lp + 64 * k + kPrefetchBytes, _MM_HINT_T0);
  } else {
    for (int k = 0; k < NR; ++k) {
      _mm_prefetch(lp + 64 * k + kPrefetchFar, _MM_HINT_T1);
      _mm_prefetch(reinterpret_cast<const char*>(c + k * in + o + kPrefetchNear), _MM_HINT_T0);
    }
  }
  __m512i e[NR], od[NR];
  for (int k = 0; k < NR; ++k) decode64(_mm512_loadu_si512(reinterpret_cast<const void*>(c + k * in + o)), p, &e[k], &od[k]);
#pragma GCC unroll 4
  for (int b = 0; b < NB; ++b) {
    const uint16_t* xb = x + b * in + o;
    const __m512i xe = _mm512_loadu_si512(reinterpret_cast<const void*>(xb));
    const __m512i xo = _mm512_loadu_si512(reinterpret_cast<const void*>(xb + 32));
    for (int k = 0; k < NR; ++k) a[k][b][0] = dot2(a[k][b][0], e[k], xe);
    for (int k = 0; k < NR; ++k) a[k][b][1] = dot2(a[k][b][1], od[k], xo);
  }
}

// Code rows [r, r + NR) against NB rows of x: y[b * ldy + k] for b < NB, k < NR.
template <int NR, int NB>
QINS_BF16 inline void code_rows_bf16(const uint8_t* codes, int64_t in, int64_t r, const float* scales,
                                     const LutTables& t, const PlanesBf16& p, const uint16_t* x, float* y,
                                     int64_t ldy) {
  const int64_t in64 = in & ~int64_t{63};
  const uint8_t* c = codes + r * in;
  __m512 a[NR][NB][2];
  for (auto& rows : a)
    for (auto& row : rows)
      for (auto& v : row) v = _mm512_setzero_ps();
  for (int64_t j = 0, n = in64 / 64; j < n; ++j) block_bf16<NR, NB>(c, p, x, in, j, a);
  for (int k = 0; k < NR; ++k) {
    const uint8_t* ck = c + k * in;
    for (int b = 0; b < NB; ++b) {
      float s = hsum512(_mm512_add_ps(a[k][b][0], a[k][b][1]));
      const uint16_t* xb = x + b * in;
      for (int64_t i = in64; i < in; ++i) s += tail_value(ck[i], t) * from_bf16(xb[i]);
      y[b * ldy + k] = s * scales[r + k];
    }
  }
}

// Code rows [r0, r1) against rows [0, NB) of x, two code rows at a time.
template <int NB>
QINS_BF16 void rows_pass_bf16(const uint8_t* codes, int64_t in, int64_t r0, int64_t r1, const float* scales,
                              const LutTables& t, const PlanesBf16& p, const uint16_t* x, float* y, int64_t ldy) {
  int64_t r = r0;
  for (; r + 2 <= r1; r += 2) code_rows_bf16<2, NB>(codes, in, r, scales, t, p, x, y + (r - r0), ldy);
  if (r < r1) code_rows_bf16<1, NB>(codes, in, r, scales, t, p, x, y + (r - r0), ldy);
}

// Dispatch on the rows of x in a pass (1..kRowsPass).
#define QINS_BF16_PASS(nb, CALL) \
  do {                           \
    switch (nb) {                \
      case 4: { constexpr int NB = 4; CALL; } break; \
      case 3: { constexpr int NB = 3; CALL; } break; \
      case 2: { constexpr int NB = 2; CALL; } break; \
      default: { constexpr int NB = 1; CALL; } break; \
    }                            \
  } while (0)

QINS_BF16 void gemv_rows_bf16(const uint8_t* codes, int64_t in, int64_t r0, int64_t r1, const float* scales,
                              const LutTables& t, const void* xpv, int64_t m, float* y, int64_t ldy) {
  if (m <= 0) return;
  const uint16_t* xp = static_cast<const uint16_t*>(xpv);
  const PlanesBf16 p = load_planes(t);
  // Rows of x per pass: as many as fit kPassXBytes, at most kRowsPass (4 for every Phi-3.5 shape).
  int64_t pass = kRowsPass;
  while (pass > 1 && pass * in * int64_t{2} > kPassXBytes) --pass;
  if (m <= pass) {
    QINS_BF16_PASS(m, (rows_pass_bf16<NB>(codes, in, r0, r1, scales, t, p, xp, y, ldy)));
    return;
  }
  // More rows of x: a tile of code rows at a time (kPassTileBytes of codes), one pass over it per `pass` rows of x. The tile's codes
  // come from memory in the first pass and from L2 in the others, and each pass's rows of x are read from L2
  // once per tile rather than once per code row (a pass per code row cycled 8 rows of 3072 columns, 48 KB,
  // through the 48 KB L1 for every code row: the tiles made 8 rows 1.2-1.35x faster, bench_qins_linear).
  const int64_t tile = std::max<int64_t>(16, kPassTileBytes / std::max<int64_t>(in, 1));
  for (int64_t r = r0; r < r1; r += tile) {
    const int64_t re = std::min(r1, r + tile);
    for (int64_t b0 = 0; b0 < m; b0 += pass)
      QINS_BF16_PASS(std::min<int64_t>(pass, m - b0),
                     (rows_pass_bf16<NB>(codes, in, r, re, scales, t, p, xp + b0 * in,
                                         y + b0 * ldy + (r - r0), ldy)));
  }
}

// The GEMV: the batched loop's one-row case.
QINS_BF16 void gemv_bf16(const uint8_t* codes, int64_t in, int64_t r0, int64_t r1, const float* scales,
                         const LutTables& t, const void* xpv, float* y) {
  gemv_rows_bf16(codes, in, r0, r1, scales, t, xpv, 1, y, 0);
}

// ---- GEMM (prefill) ----
//
// Columns are padded to kp = round_up(in, 64) (zeros in x and w); full 64-column blocks are in
// Split64 order, the partial last block in natural order. A "pair" is two adjacent positions.
// x is packed in chunks of up to 64 rows (tokens): chunk c (width wc = 64, the last one
// round_up(rows left, 16)) holds [kp / 2 pairs][wc tokens][2] bf16 at offset c * 64 * kp.
constexpr int64_t kChunk = 64;
constexpr int64_t kTileRows = 48;    // rows of expanded weights per tile (multiple of every NR)
constexpr int64_t kTileCols = 2048;  // columns per tile: 48 x 2048 bf16 = 192 KB, in L2

int64_t padded_cols(int64_t in) { return (in + 63) & ~int64_t{63}; }
int64_t chunk_width(int64_t m, int64_t c) { return std::min(kChunk, ((m - c * kChunk) + 15) & ~int64_t{15}); }

int64_t gemm_x_size_bf16(int64_t m, int64_t in) {
  const int64_t chunks = (m + kChunk - 1) / kChunk;
  return chunks == 0 ? 0 : ((chunks - 1) * kChunk + chunk_width(m, chunks - 1)) * padded_cols(in);
}

QINS_BF16 void pack_gemm_x_bf16(const float* x, int64_t m, int64_t in, uint16_t* xpk) {
  const int64_t kp = padded_cols(in), pairs = kp / 2;
  std::vector<uint16_t> row(static_cast<size_t>(kp));
  for (int64_t c = 0; c * kChunk < m; ++c) {
    const int64_t wc = chunk_width(m, c);
    uint32_t* dst = reinterpret_cast<uint32_t*>(xpk + c * kChunk * kp);  // [pairs][wc] pairs of bf16
    for (int64_t j = 0; j < wc; ++j) {
      const int64_t i = c * kChunk + j;
      std::fill(row.begin(), row.end(), uint16_t{0});
      if (i < m) pack_x_bf16(x + i * in, in, row.data());
      const uint32_t* src = reinterpret_cast<const uint32_t*>(row.data());
      for (int64_t q = 0; q < pairs; ++q) dst[q * wc + j] = src[q];
    }
  }
}

// A tile of W: rows [row, row + rows), columns [col, col + cols) (rows == 0: no tile).
struct TileRef {
  int64_t row = 0, col = 0, rows = 0, cols = 0;
};

// Expand rows [r, r + nr) (nr <= kTileRows; rows past nr are zero) and columns [k0, k0 + kc) of
// the padded column range into w (row stride kc), bf16, no scale. Meanwhile prefetch the next
// tile's codes into L2: its rows are `in` bytes apart, which the hardware prefetchers do not
// follow (measured: a 16384 x 3072 GEMM from DRAM ran at 65 % of the same GEMM from L3).
QINS_BF16 void expand_tile(const uint8_t* codes, int64_t in, int64_t r, int64_t nr, int64_t k0, int64_t kc,
                           const LutTables& t, const PlanesBf16& p, uint16_t* w, const TileRef& next) {
  const int64_t in64 = in & ~int64_t{63};
  for (int64_t i = 0; i < kTileRows; ++i) {
    if (i < next.rows)
      for (int64_t k = 0; k < next.cols; k += 64)
        _mm_prefetch(reinterpret_cast<const char*>(codes + (next.row + i) * in + next.col + k), _MM_HINT_T1);
    uint16_t* o = w + i * kc;
    if (i >= nr) {
      std::memset(o, 0, sizeof(uint16_t) * static_cast<size_t>(kc));
      continue;
    }
    const uint8_t* c = codes + (r + i) * in;
    for (int64_t k = k0; k < k0 + kc; k += 64) {
      uint16_t* ok = o + (k - k0);
      if (k < in64) {
        __m512i e, od;
        decode64(_mm512_loadu_si512(reinterpret_cast<const void*>(c + k)), p, &e, &od);
        _mm512_storeu_si512(reinterpret_cast<void*>(ok), e);
        _mm512_storeu_si512(reinterpret_cast<void*>(ok + 32), od);
      } else {  // the partial last block, natural order, zero padded
        for (int64_t j = 0; j < 64; ++j) {
          const uint8_t cj = k + j < in ? c[k + j] : 0;
          const uint16_t m = t.lut_bf16[cj & 0x7f];
          ok[j] = (cj & 0x80) ? static_cast<uint16_t>(m | 0x8000) : m;
        }
      }
    }
  }
}

// acc[r][j] (+)= sum over `pairs` column pairs of w[r] . x[j] for NR rows of w (stride ldw bf16)
// and MV * 16 tokens of x (stride wc tokens per pair).
template <int NR, int MV>
QINS_BF16 void micro(const uint16_t* w, int64_t ldw, const uint16_t* x, int64_t wc, int64_t pairs, float* acc,
                     int64_t ldacc, bool first) {
  __m512 c[NR][MV];
#pragma GCC unroll 16
  for (int r = 0; r < NR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < MV; ++v)
      c[r][v] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(acc + r * ldacc + v * 16);
  for (int64_t q = 0; q < pairs; ++q) {
    __m512i xv[MV];
#pragma GCC unroll 4
    for (int v = 0; v < MV; ++v) xv[v] = _mm512_loadu_si512(reinterpret_cast<const void*>(x + (q * wc + v * 16) * 2));
#pragma GCC unroll 16
    for (int r = 0; r < NR; ++r) {
      int32_t pair;
      std::memcpy(&pair, w + r * ldw + 2 * q, sizeof(pair));
      const __m512i wb = _mm512_set1_epi32(pair);
#pragma GCC unroll 4
      for (int v = 0; v < MV; ++v) c[r][v] = dot2(c[r][v], wb, xv[v]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int v = 0; v < MV; ++v) _mm512_storeu_ps(acc + r * ldacc + v * 16, c[r][v]);
}

// Rows of the register tile per token-vector count: 12 x 1, 8 x 2, 6 x 3, 6 x 4 vectors
// (12-24 accumulators: enough independent chains for vdpbf16ps' latency, room for x).
template <int MV>
QINS_BF16 void micro_rows(const uint16_t* w, int64_t ldw, const uint16_t* x, int64_t wc, int64_t pairs,
                          float* acc, int64_t ldacc, bool first) {
  constexpr int NR = MV == 1 ? 12 : MV == 2 ? 8 : 6;
  static_assert(kTileRows % NR == 0, "tile rows must be a multiple of the register tile");
  for (int64_t r = 0; r < kTileRows; r += NR)
    micro<NR, MV>(w + r * ldw, ldw, x, wc, pairs, acc + r * ldacc, ldacc, first);
}

// The tile walk of both GEMMs: tiles of kTileRows rows x kTileCols columns of W, each filled in
// bf16 by fill(rb, nr, k0, kc, w, next) (next: the tile after it, for prefetching), multiplied
// against every chunk of x, then row i of the results times scales[rb + i] (1 where scales is null).
template <class Fill>
QINS_BF16 void gemm_tiles(int64_t in, int64_t r0, int64_t r1, const float* scales, const uint16_t* xpk, int64_t m,
                          float* y, int64_t ldy, const Fill& fill) {
  const int64_t kp = padded_cols(in);
  const int64_t mp = gemm_x_size_bf16(m, in) / kp;  // tokens incl. padding
  // Per-thread scratch, reused across calls: one weight tile and the tile's fp32 results.
  thread_local std::vector<uint16_t> wt;
  thread_local std::vector<float> acc;
  wt.resize(static_cast<size_t>(kTileRows * std::min(kTileCols, kp)));
  acc.resize(static_cast<size_t>(kTileRows * mp));
  for (int64_t rb = r0; rb < r1; rb += kTileRows) {
    const int64_t nr = std::min(kTileRows, r1 - rb);
    for (int64_t k0 = 0; k0 < kp; k0 += kTileCols) {
      const int64_t kc = std::min(kTileCols, kp - k0);
      // The tile after this one: next columns of these rows, else the next rows from column 0.
      TileRef next;
      const int64_t nk0 = k0 + kTileCols < kp ? k0 + kTileCols : 0, nrb = nk0 ? rb : rb + kTileRows;
      if (nrb < r1) {
        next.row = nrb;
        next.col = nk0;
        next.rows = std::min(kTileRows, r1 - nrb);
        next.cols = std::max<int64_t>(0, std::min(kTileCols, in - nk0));
      }
      fill(rb, nr, k0, kc, wt.data(), next);
      for (int64_t c = 0; c * kChunk < m; ++c) {
        const int64_t wc = chunk_width(m, c);
        const uint16_t* xc = xpk + c * kChunk * kp + k0 * wc;  // pair k0 / 2 of chunk c
        float* ac = acc.data() + c * kChunk;
        const bool first = k0 == 0;
        switch (wc / 16) {
          case 1: micro_rows<1>(wt.data(), kc, xc, wc, kc / 2, ac, mp, first); break;
          case 2: micro_rows<2>(wt.data(), kc, xc, wc, kc / 2, ac, mp, first); break;
          case 3: micro_rows<3>(wt.data(), kc, xc, wc, kc / 2, ac, mp, first); break;
          default: micro_rows<4>(wt.data(), kc, xc, wc, kc / 2, ac, mp, first); break;
        }
      }
    }
    // Token by token: each token's nr results go out as one contiguous run (reading acc, in L1,
    // mp floats apart). Row by row, every store went to another token's row of y (ldy floats
    // apart, a page or more): on a Zen 5 those stores took as long as the tile's expansion and
    // products together (64 tokens, 3072 x 3072 codes in L3).
    for (int64_t j = 0; j < m; ++j) {
      float* yj = y + j * ldy + rb;
      const float* a = acc.data() + j;
      if (scales) {
        const float* s = scales + rb;
        for (int64_t i = 0; i < nr; ++i) yj[i] = a[i * mp] * s[i];
      } else {
        for (int64_t i = 0; i < nr; ++i) yj[i] = a[i * mp];
      }
    }
  }
}

QINS_BF16 void gemm_bf16(const uint8_t* codes, int64_t in, int64_t r0, int64_t r1, const float* scales,
                         const LutTables& t, const uint16_t* xpk, int64_t m, float* y, int64_t ldy) {
  const PlanesBf16 p = load_planes(t);
  gemm_tiles(in, r0, r1, scales, xpk, m, y, ldy,
             [&](int64_t rb, int64_t nr, int64_t k0, int64_t kc, uint16_t* w, const TileRef& next) {
               expand_tile(codes, in, rb, nr, k0, kc, t, p, w, next);
             });
}

// The GEMM on weights another code expands (RowSource): each tile row is expanded to fp32 in
// natural order, then rounded to bf16 in Split64 order as x is (pack_x_bf16), so both meet in the
// same order, the partial last 64-column block included; or, where the source has row_bf16, it
// writes the tile row in that form itself. The next tile's rows are prefetched
// through the source as expand_tile prefetches codes.
QINS_BF16 void gemm_rows_f32_bf16(const RowSource& src, int64_t in, int64_t r0, int64_t r1, const uint16_t* xpk,
                                  int64_t m, float* y, int64_t ldy) {
  thread_local std::vector<float> row;
  row.resize(static_cast<size_t>(kTileCols));
  float* rp = row.data();
  gemm_tiles(in, r0, r1, nullptr, xpk, m, y, ldy,
             [&](int64_t rb, int64_t nr, int64_t k0, int64_t kc, uint16_t* w, const TileRef& next) {
               const int64_t n = std::max<int64_t>(0, std::min(kc, in - k0));  // real columns of the tile
               for (int64_t i = 0; i < kTileRows; ++i) {
                 if (i < next.rows && next.cols > 0 && src.prefetch)
                   src.prefetch(src.ctx, next.row + i, next.col, next.cols);
                 uint16_t* o = w + i * kc;
                 if (i >= nr || n == 0) {
                   std::memset(o, 0, sizeof(uint16_t) * static_cast<size_t>(kc));
                   continue;
                 }
                 if (src.row_bf16) {
                   src.row_bf16(src.ctx, rb + i, k0, n, o);
                 } else {
                   src.row(src.ctx, rb + i, k0, n, rp);
                   pack_x_bf16(rp, n, o);
                 }
                 std::memset(o + n, 0, sizeof(uint16_t) * static_cast<size_t>(kc - n));
               }
             });
}

}  // namespace

const Kernel* avx512bf16_kernel() {
  static const Kernel k = [] {
    Kernel kk{"avx512bf16", Order::Split64, gemv_bf16, gemv_rows_bf16, nullptr};
    kk.pack_x = pack_x_bf16;
    kk.gemm_x_size = gemm_x_size_bf16;
    kk.pack_gemm_x = pack_gemm_x_bf16;
    kk.gemm = gemm_bf16;
    kk.gemm_rows_f32 = gemm_rows_f32_bf16;
    return kk;
  }();
  // Asked once (QINS-4's prefill asks on every call; CPUID is a VM exit on a virtual machine).
  static const bool ok = [] {
    __builtin_cpu_init();
    // AVX512_BF16 is CPUID leaf 7, sub-leaf 1, EAX bit 5 (asked directly: not every compiler's
    // __builtin_cpu_supports knows it); the avx512f check also covers the OS saving zmm state.
    unsigned a = 0, b = 0, c = 0, d = 0;
    const bool bf16 = __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5));
    return bf16 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vbmi") &&
           __builtin_cpu_supports("avx512vbmi2");
  }();
  return ok ? &k : nullptr;
}

}  // namespace qins::core::kernels

#else  // not x86

namespace qins::core::kernels {
const Kernel* avx512bf16_kernel() { return nullptr; }
}  // namespace qins::core::kernels

#endif
