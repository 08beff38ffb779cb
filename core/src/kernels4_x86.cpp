// QINS-4 x86 kernels: AVX2 and AVX-512BW, per-function target attributes (the library builds
// without -march=native; dispatch checks the CPU at run time).
//
// Where the time goes (batch-1 GEMV): per block of 32 weights, one 16-byte load of codes, a nibble
// split, one vpshufb that looks the 32 nibbles up in the 16-entry int8 table (the table sits in a
// register), and an integer dot product with the int8 activations: vpmaddubsw needs an unsigned
// operand, so it takes |w| and x with w's sign (vpsignb), then vpmaddwd sums pairs into int32
// (|w|, |x| <= 127: a pair of products is at most 32258, no int16 saturation). One int32 -> fp32
// conversion and one FMA by (group scale * block scale of x) per block.
//
// The AVX2 GEMVs take two blocks (32 code bytes) per step: the nibble split of one 32-byte load
// gives [lo(b), lo(b+1)] and [hi(b), hi(b+1)] (columns 0-15 and 16-31 of each block), so the
// activations are read in that order from a permuted copy of xq made once per call (it is shared
// by every row of the call; pair_x_into below). That saves the 128-bit lane insert of every block
// and half the mask/shift work; the integer partial sums of each 16-column half are the same ones
// the one-block-per-step loop made (bench_qins4's kernel rows measure the gain against that loop,
// kept as bench/baseline/kernels4_avx2_prev.cpp).
//
// The small-batch paths (gemv_rows_avx2, gemv16_rows_avx2: a batched decode step's rows) run the
// same per-row templates (row_g, row16) over up to 4 (group 16: 3) rows of x per code row, the
// lookups shared; the GEMVs are their one-row case, so each row's result is the GEMV's bit for bit.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "qins4_kernels.h"
#include "thread_scratch.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include "kernels4_avx2.h"

#define QINS4_AVX2 __attribute__((target("avx2,fma,f16c")))
#define QINS4_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

namespace qins::core::kernels4 {

namespace {

// Groups of 32 (one scale per block) and 64 (one per two blocks), the only two the format has
// besides 16 (Quantized4Tensor::validate), to a path's instantiations for them; any other group
// size to the scalar twin (row by row of x for the batched form). Called once per call of a
// kernel: plain function pointers.
using GemvG = void (*)(const uint8_t*, int64_t, int64_t, int64_t, const uint16_t*, const int8_t*, const int8_t*,
                       const float*, float*);
using RowsG = void (*)(const uint8_t*, int64_t, int64_t, int64_t, const uint16_t*, const int8_t*, const int8_t*,
                       const float*, int64_t, float*, int64_t);
void gemv_by_group(GemvG g32, GemvG g64, const uint8_t* codes, int64_t n_blocks, int group_blocks, int64_t r0,
                   int64_t r1, const uint16_t* scales, const int8_t* lut, const int8_t* xq, const float* dx, float* y) {
  if (group_blocks == 1) g32(codes, n_blocks, r0, r1, scales, lut, xq, dx, y);
  else if (group_blocks == 2) g64(codes, n_blocks, r0, r1, scales, lut, xq, dx, y);
  else scalar_kernel4().gemv(codes, n_blocks, group_blocks, r0, r1, scales, lut, xq, dx, y);
}
void rows_by_group(RowsG g32, RowsG g64, const uint8_t* codes, int64_t n_blocks, int group_blocks, int64_t r0,
                   int64_t r1, const uint16_t* scales, const int8_t* lut, const int8_t* xq, const float* dx,
                   int64_t n_x, float* y, int64_t y_stride) {
  if (group_blocks == 1) {
    g32(codes, n_blocks, r0, r1, scales, lut, xq, dx, n_x, y, y_stride);
  } else if (group_blocks == 2) {
    g64(codes, n_blocks, r0, r1, scales, lut, xq, dx, n_x, y, y_stride);
  } else {
    for (int64_t j = 0; j < n_x; ++j)
      scalar_kernel4().gemv(codes, n_blocks, group_blocks, r0, r1, scales, lut, xq + j * n_blocks * 32,
                            dx + j * n_blocks, y + j * y_stride);
  }
}

using qins::core::thread_scratch;

// The per-call inputs of the two-block loops (the paired copy of one row of x): per pair of blocks
// (b, b + 1) of xq, its 64 bytes as [x(b)[0:16], x(b+1)[0:16], x(b)[16:32], x(b+1)[16:32]] (the
// order of the nibble split of the pair's 32 code bytes), and [dx[b] x4, dx[b+1] x4].
// n_pairs = n_blocks / 2; an odd last block stays in xq / dx (natural order).
QINS4_AVX2 void pair_x_into(const int8_t* xq, const float* dx, int64_t n_pairs, int8_t* xo, float* dout) {
  for (int64_t p = 0; p < n_pairs; ++p) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + p * 64));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + p * 64 + 32));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(xo + p * 64), _mm256_permute2x128_si256(a, b, 0x20));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(xo + p * 64 + 32), _mm256_permute2x128_si256(a, b, 0x31));
    _mm256_storeu_ps(dout + p * 8, _mm256_set_m128(_mm_set1_ps(dx[2 * p + 1]), _mm_set1_ps(dx[2 * p])));
  }
}

// One x row of a call as the row loops read it: its paired copy (xp, dp), its natural-order
// int8 values and scales (the odd last block), and where its outputs go (y[r - r0]).
struct XRow {
  const int8_t* xp;
  const float* dp;
  const int8_t* xq;
  const float* dx;
  float* y;
};

// The paired copies of n_x rows of x (row j at xq + j * n_blocks * 32, dx + j * n_blocks) in the
// calling thread's scratch (each call of the parallel row loop makes its own: 2 KiB of xq per 2048
// columns and row of x, next to 32x as many code bytes per code row); xr[j] gets row j's pointers,
// its outputs at y + j * y_stride. Returns the n_x rows' XRow (scratch too).
QINS4_AVX2 XRow* pair_rows(const int8_t* xq, const float* dx, int64_t n_blocks, int64_t n_x, float* y,
                           int64_t y_stride) {
  const int64_t n_pairs = n_blocks / 2;
  const size_t nx = static_cast<size_t>(n_pairs * 64), nd = static_cast<size_t>(n_pairs * 8);
  int8_t* xbuf = thread_scratch<int8_t, 0>(nx * static_cast<size_t>(n_x));
  float* dbuf = thread_scratch<float, 0>(nd * static_cast<size_t>(n_x));
  XRow* xr = thread_scratch<XRow, 0>(static_cast<size_t>(n_x));
  for (int64_t j = 0; j < n_x; ++j) {
    const int8_t* xj = xq + j * n_blocks * 32;
    const float* dj = dx + j * n_blocks;
    int8_t* xo = xbuf + static_cast<size_t>(j) * nx;
    float* dout = dbuf + static_cast<size_t>(j) * nd;
    pair_x_into(xj, dj, n_pairs, xo, dout);
    xr[j] = XRow{xo, dout, xj, dj, y + j * y_stride};
  }
  return xr;
}

// One pair of blocks (32 code bytes) looked up: the int8 weights of the low halves (lanes 0-15:
// block b columns 0-15, 16-31: block b + 1 columns 0-15) and of the high halves, with their
// magnitudes (vpmaddubsw's unsigned operand). Shared by every x row of a batched call.
struct PairW {
  __m256i wl, wh, al, ah;
};
QINS4_AVX2 inline PairW decode_pair(const uint8_t* c, __m256i tbl) {
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c));
  PairW w;
  w.wl = _mm256_shuffle_epi8(tbl, _mm256_and_si256(v, m4));
  w.wh = _mm256_shuffle_epi8(tbl, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
  w.al = _mm256_sign_epi8(w.wl, w.wl);
  w.ah = _mm256_sign_epi8(w.wh, w.wh);
  return w;
}
// The 8 int32 partial sums of one half (weights w, magnitudes a) against 32 bytes of paired x:
// each lane the same 4-column sum dot32 makes.
QINS4_AVX2 inline __m256i dot_half(__m256i w, __m256i a, const int8_t* xp) {
  const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xp));
  return _mm256_madd_epi16(_mm256_maddubs_epi16(a, _mm256_sign_epi8(x, w)), _mm256_set1_epi16(1));
}

// [a x4, b x4] from two floats in memory: two broadcast loads and a blend (no lane shuffle).
QINS4_AVX2 inline __m256 halves(const float* a, const float* b) {
  return _mm256_blend_ps(_mm256_broadcast_ss(a), _mm256_broadcast_ss(b), 0xF0);
}

// The fp16 group scales of blocks b..b+3 as floats, each over the 4 lanes of its block in the
// pair layout: lo = [g(b) x4, g(b+1) x4], hi = [g(b+2) x4, g(b+3) x4]. One load and one vcvtph2ps
// for the four (GB = group_blocks: 1 for group 32, 2 for group 64; b is even, b + 3 < n_blocks).
template <int GB>
QINS4_AVX2 inline void group_scales4(const uint16_t* s, int64_t b, __m256& lo, __m256& hi) {
  __m128i h;
  if constexpr (GB == 1) {
    h = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(s + b));
  } else {
    int32_t two = 0;
    std::memcpy(&two, s + b / 2, sizeof(two));
    h = _mm_cvtsi32_si128(two);
  }
  const __m256 g = _mm256_castps128_ps256(_mm_cvtph_ps(h));
  const int l1 = GB == 1 ? 1 : 0, h0 = GB == 1 ? 2 : 1, h1 = GB == 1 ? 3 : 1;
  lo = _mm256_permutevar8x32_ps(g, _mm256_setr_epi32(0, 0, 0, 0, l1, l1, l1, l1));
  hi = _mm256_permutevar8x32_ps(g, _mm256_setr_epi32(h0, h0, h0, h0, h1, h1, h1, h1));
}

// One code row against J rows of x (groups of 32 or 64): each x row's outputs are computed by
// the same operations in the same order whatever J is, so a batched call gives every row
// exactly what the one-row GEMV (J = 1) gives it; the lookups are made once for the J rows.
template <int GB, int J>
QINS4_AVX2 inline void row_g(const uint8_t* c, const uint16_t* s, int64_t n_blocks, __m256i tbl, const XRow* xr,
                             int64_t out) {
  const int64_t n_pairs = n_blocks / 2;
  // Both halves of a block share its group scale: their integer sums add exactly first.
  __m256 a0[J], a1[J];
  // The x rows' pointers in locals, advanced per two pairs (kept in registers, not reloaded from xr).
  const int8_t* xp[J];
  const float* dp[J];
  for (int j = 0; j < J; ++j) {
    a0[j] = a1[j] = _mm256_setzero_ps();
    xp[j] = xr[j].xp;
    dp[j] = xr[j].dp;
  }
  int64_t p = 0;
  for (; p + 2 <= n_pairs; p += 2) {
    __m256 g0, g1;
    group_scales4<GB>(s, 2 * p, g0, g1);
    const PairW w0 = decode_pair(c + p * 32, tbl);
    for (int j = 0; j < J; ++j) {
      const __m256i l0 = dot_half(w0.wl, w0.al, xp[j]), h0 = dot_half(w0.wh, w0.ah, xp[j] + 32);
      a0[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(l0, h0)), _mm256_mul_ps(g0, _mm256_loadu_ps(dp[j])),
                              a0[j]);
    }
    const PairW w1 = decode_pair(c + p * 32 + 32, tbl);
    for (int j = 0; j < J; ++j) {
      const __m256i l1 = dot_half(w1.wl, w1.al, xp[j] + 64), h1 = dot_half(w1.wh, w1.ah, xp[j] + 96);
      a1[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(l1, h1)),
                              _mm256_mul_ps(g1, _mm256_loadu_ps(dp[j] + 8)), a1[j]);
      xp[j] += 128;
      dp[j] += 16;
    }
  }
  if (p < n_pairs) {  // one pair left (then b + 1 < n_blocks, and its scales are whole groups)
    const PairW w = decode_pair(c + p * 32, tbl);
    const int64_t b = 2 * p;
    const float g0 = _cvtsh_ss(s[b / GB]), g1 = _cvtsh_ss(s[(b + 1) / GB]);
    for (int j = 0; j < J; ++j) {  // xp[j], dp[j] stand at pair p
      const __m256i l0 = dot_half(w.wl, w.al, xp[j]), h0 = dot_half(w.wh, w.ah, xp[j] + 32);
      const __m256 s0 = _mm256_mul_ps(_mm256_set_m128(_mm_set1_ps(g1), _mm_set1_ps(g0)), _mm256_loadu_ps(dp[j]));
      a0[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(l0, h0)), s0, a0[j]);
    }
  }
  if (2 * n_pairs < n_blocks) {  // odd block count: the last block alone, natural order
    const int64_t b = 2 * n_pairs;
    const __m256i wb = lookup32(c + b * 16, tbl);
    for (int j = 0; j < J; ++j) {
      const __m256i p0 = dot32(wb, xr[j].xq + b * 32);
      a1[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(_cvtsh_ss(s[b / GB]) * xr[j].dx[b]), a1[j]);
    }
  }
  for (int j = 0; j < J; ++j) xr[j].y[out] = hsum256(_mm256_add_ps(a0[j], a1[j]));
}

// Code rows [r0, r1) against n_x rows of x, up to 4 at a time per code row (the row's codes come
// from L1 for the next 4). bench_qins4's small-batch rows: 4 rows cost ~2.6 one-row GEMVs here.
template <int GB>
QINS4_AVX2 void rows_avx2_g(const uint8_t* codes, int64_t n_blocks, int64_t r0, int64_t r1, const uint16_t* scales,
                            const int8_t* lut, const int8_t* xq, const float* dx, int64_t n_x, float* y,
                            int64_t y_stride) {
  const __m256i tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lut)));
  const int64_t n_groups = n_blocks / GB;
  const XRow* xr = pair_rows(xq, dx, n_blocks, n_x, y, y_stride);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * n_blocks * 16;
    const uint16_t* s = scales + r * n_groups;
    for (int64_t j = 0; j < n_x; j += 4) {
      switch (std::min<int64_t>(4, n_x - j)) {
        case 4: row_g<GB, 4>(c, s, n_blocks, tbl, xr + j, r - r0); break;
        case 3: row_g<GB, 3>(c, s, n_blocks, tbl, xr + j, r - r0); break;
        case 2: row_g<GB, 2>(c, s, n_blocks, tbl, xr + j, r - r0); break;
        default: row_g<GB, 1>(c, s, n_blocks, tbl, xr + j, r - r0); break;
      }
    }
  }
}

void gemv_rows_avx2(const uint8_t* codes, int64_t n_blocks, int group_blocks, int64_t r0, int64_t r1,
                    const uint16_t* scales, const int8_t* lut, const int8_t* xq, const float* dx, int64_t n_x, float* y,
                    int64_t y_stride) {
  rows_by_group(rows_avx2_g<1>, rows_avx2_g<2>, codes, n_blocks, group_blocks, r0, r1, scales, lut, xq, dx, n_x, y,
                y_stride);
}

// The GEMV: one x row (its own loop over the code rows, so that the compiler keeps that row's
// pointers in registers; the arithmetic is row_g<GB, 1>, the same as for each row of a batch).
template <int GB>
QINS4_AVX2 void gemv_avx2_g(const uint8_t* codes, int64_t n_blocks, int64_t r0, int64_t r1, const uint16_t* scales,
                            const int8_t* lut, const int8_t* xq, const float* dx, float* y) {
  const __m256i tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lut)));
  const int64_t n_groups = n_blocks / GB;
  const XRow* xr = pair_rows(xq, dx, n_blocks, 1, y, 0);
  for (int64_t r = r0; r < r1; ++r) row_g<GB, 1>(codes + r * n_blocks * 16, scales + r * n_groups, n_blocks, tbl, xr, r - r0);
}

void gemv_avx2(const uint8_t* codes, int64_t n_blocks, int group_blocks, int64_t r0, int64_t r1,
               const uint16_t* scales, const int8_t* lut, const int8_t* xq, const float* dx, float* y) {
  gemv_by_group(gemv_avx2_g<1>, gemv_avx2_g<2>, codes, n_blocks, group_blocks, r0, r1, scales, lut, xq, dx, y);
}

// One block's 32 int8 weights (natural order) times their scales into ob[0..31]: columns 0-15 by
// d_lo, 16-31 by d_hi (equal for groups of 32 and 64).
QINS4_AVX2 inline void store_block(__m256i w, __m256 d_lo, __m256 d_hi, float* ob) {
  const __m128i w0 = _mm256_castsi256_si128(w), w1 = _mm256_extracti128_si256(w, 1);
  _mm256_storeu_ps(ob, _mm256_mul_ps(d_lo, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(w0))));
  _mm256_storeu_ps(ob + 8, _mm256_mul_ps(d_lo, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(w0, 8)))));
  _mm256_storeu_ps(ob + 16, _mm256_mul_ps(d_hi, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(w1))));
  _mm256_storeu_ps(ob + 24, _mm256_mul_ps(d_hi, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(w1, 8)))));
}

QINS4_AVX2 void expand_avx2(const uint8_t* codes, int64_t n_blocks, int group_blocks, int64_t r0, int64_t r1,
                            const uint16_t* scales, const int8_t* lut, float* out) {
  const __m256i tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lut)));
  const int64_t n_groups = n_blocks / group_blocks;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * n_blocks * 16;
    float* o = out + (r - r0) * n_blocks * 32;
    for (int64_t b = 0; b < n_blocks; ++b) {
      const __m256 d = _mm256_set1_ps(_cvtsh_ss(scales[r * n_groups + b / group_blocks]));
      store_block(lookup32(c + b * 16, tbl), d, d, o + b * 32);
    }
  }
}

// Group 16: the 8 int32 partial sums of dot32 are columns 0-15 (lanes 0-3) and 16-31 (lanes 4-7),
// so one FMA by [st[sub_lo] dx x4, st[sub_hi] dx x4] weighs both halves of a block.
QINS4_AVX2 inline __m256 scale16(const uint8_t* s, const float* st, float dx) {
  return _mm256_set_m128(_mm_set1_ps(st[s[1]] * dx), _mm_set1_ps(st[s[0]] * dx));
}

// Group 16, one code row against J rows of x (as row_g: the same operations per x row whatever J is).
template <int J>
QINS4_AVX2 inline void row16(const uint8_t* c, const uint8_t* s, int64_t n_blocks, const float* st, __m256i tbl,
                             const XRow* xr, int64_t out) {
  const int64_t n_pairs = n_blocks / 2;
  // a0: the low halves (lanes 0-3 even blocks, 4-7 odd blocks), a1: the high halves. Per lane
  // the same FMA sequence as two accumulators over even / odd blocks of [low, high] halves.
  __m256 a0[J], a1[J];
  // The x rows' pointers in locals, advanced per pair (kept in registers, not reloaded from xr).
  const int8_t* xp[J];
  const float* dp[J];
  for (int j = 0; j < J; ++j) {
    a0[j] = a1[j] = _mm256_setzero_ps();
    xp[j] = xr[j].xp;
    dp[j] = xr[j].dp;
  }
  for (int64_t p = 0; p < n_pairs; ++p) {
    const PairW w = decode_pair(c + p * 32, tbl);
    const uint8_t* sp = s + 4 * p;  // sub-scales: b low, b high, b+1 low, b+1 high
    const __m256 gl = halves(st + sp[0], st + sp[2]), gh = halves(st + sp[1], st + sp[3]);
    for (int j = 0; j < J; ++j) {
      const __m256i lo = dot_half(w.wl, w.al, xp[j]), hi = dot_half(w.wh, w.ah, xp[j] + 32);
      const __m256 d = _mm256_loadu_ps(dp[j]);
      a0[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lo), _mm256_mul_ps(gl, d), a0[j]);
      a1[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(hi), _mm256_mul_ps(gh, d), a1[j]);
      xp[j] += 64;
      dp[j] += 8;
    }
  }
  for (int j = 0; j < J; ++j) {
    // Regroup by block parity: [even low, even high] and [odd low, odd high].
    __m256 ev = _mm256_permute2f128_ps(a0[j], a1[j], 0x20);
    const __m256 od = _mm256_permute2f128_ps(a0[j], a1[j], 0x31);
    if (2 * n_pairs < n_blocks) {  // odd block count: the last block alone, natural order
      const int64_t b = 2 * n_pairs;
      ev = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot32(lookup32(c + b * 16, tbl), xr[j].xq + b * 32)),
                           scale16(s + 2 * b, st, xr[j].dx[b]), ev);
    }
    xr[j].y[out] = hsum256(_mm256_add_ps(ev, od));
  }
}

// Up to 3 rows of x per pass: with 4, the 8 accumulators, the pair's 4 weight vectors, its 2
// scale vectors and the constants overflow the 16 ymm registers (bench_qins4's small-batch rows,
// 8 rows: 1.39-1.41x the GEMV per row with passes of 3 against 1.29-1.30x with passes of 4).
QINS4_AVX2 void gemv16_rows_avx2(const uint8_t* codes, int64_t n_blocks, int64_t r0, int64_t r1, const uint8_t* sub,
                                 const float* st, const int8_t* lut, const int8_t* xq, const float* dx, int64_t n_x,
                                 float* y, int64_t y_stride) {
  const __m256i tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lut)));
  const XRow* xr = pair_rows(xq, dx, n_blocks, n_x, y, y_stride);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * n_blocks * 16;
    const uint8_t* s = sub + r * n_blocks * 2;
    for (int64_t j = 0; j < n_x; j += 3) {
      switch (std::min<int64_t>(3, n_x - j)) {
        case 3: row16<3>(c, s, n_blocks, st, tbl, xr + j, r - r0); break;
        case 2: row16<2>(c, s, n_blocks, st, tbl, xr + j, r - r0); break;
        default: row16<1>(c, s, n_blocks, st, tbl, xr + j, r - r0); break;
      }
    }
  }
}

// The group-16 GEMV: one x row, its own loop (as gemv_avx2_g), the arithmetic of row16<1>.
QINS4_AVX2 void gemv16_avx2(const uint8_t* codes, int64_t n_blocks, int64_t r0, int64_t r1, const uint8_t* sub,
                            const float* st, const int8_t* lut, const int8_t* xq, const float* dx, float* y) {
  const __m256i tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lut)));
  const XRow* xr = pair_rows(xq, dx, n_blocks, 1, y, 0);
  for (int64_t r = r0; r < r1; ++r)
    row16<1>(codes + r * n_blocks * 16, sub + r * n_blocks * 2, n_blocks, st, tbl, xr, r - r0);
}

QINS4_AVX2 void expand16_avx2(const uint8_t* codes, int64_t n_blocks, int64_t r0, int64_t r1, const uint8_t* sub,
                              const float* st, const int8_t* lut, float* out) {
  const __m256i tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lut)));
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * n_blocks * 16;
    const uint8_t* s = sub + r * n_blocks * 2;
    float* o = out + (r - r0) * n_blocks * 32;
    for (int64_t b = 0; b < n_blocks; ++b) {
      const __m256 d0 = _mm256_set1_ps(st[s[2 * b]]);
      const __m256 d1 = _mm256_set1_ps(st[s[2 * b + 1]]);
      store_block(lookup32(c + b * 16, tbl), d0, d1, o + b * 32);
    }
  }
}

// AVX-512 with VNNI (Ice Lake / Cascade Lake and later, Zen 4 and later; a CPU with AVX-512BW but no
// VNNI, Skylake-X, takes the AVX2 path): two blocks (64 weights, 32 code bytes) per step. The
// 32 code bytes are loaded into both halves of a zmm, one lane shuffle makes them [b0, b0, b1, b1],
// one masked shift brings the high nibbles down in lanes 1 and 3, and after the mask one vpshufb
// gives the weights in natural order [lo(b0), hi(b0), lo(b1), hi(b1)] (4 vector operations; the
// nibble split in ymm and two inserts took 6).
//
// The integer dot product is one vpdpbusd per row of x: its unsigned operand is x + 128 (made once
// per call), its signed one the looked-up weights w, and its accumulator starts at -128 * (the sum
// of each lane's 4 weights), one more vpdpbusd per step shared by every row of x. Each lane's sum
// is then exactly sum(w * x) over its 4 columns, the same integers the maddubs / madd pair of the
// AVX2 path makes (no saturation anywhere: |products| <= 255 * 128 in int32), in one instruction
// instead of sign, maddubs and madd per row of x.
//
// The small-batch paths (gemv_rows_avx512, gemv16_rows_avx512) run the per-row templates below
// (row512_g, row512_16) over up to 8 rows of x per code row (32 zmm registers hold their
// accumulators); the GEMVs are their one-row case, so every row's result is the GEMV's bit for bit.
// int32 -> fp32, and the sum of 16 lanes (as halves, then hsum256): the masked forms with an
// all-ones mask, since GCC 12's unmasked ones warn about an undefined source.
QINS4_AVX512 inline __m512 cvt512(__m512i v) { return _mm512_maskz_cvtepi32_ps(0xFFFF, v); }
QINS4_AVX512 inline float sum512(__m512 v) {
  const __m512d d = _mm512_castps_pd(v);
  const __m256 lo = _mm256_castpd_ps(_mm512_mask_extractf64x4_pd(_mm256_setzero_pd(), 0xF, d, 0));
  const __m256 hi = _mm256_castpd_ps(_mm512_mask_extractf64x4_pd(_mm256_setzero_pd(), 0xF, d, 1));
  return hsum256(_mm256_add_ps(lo, hi));
}

QINS4_AVX512 inline __m512i lookup64(const uint8_t* c, __m512i tbl) {
  // The 32 bytes in both halves, then lanes [c0-15, c0-15, c16-31, c16-31]; the high nibbles shifted
  // down in lanes 1 and 3 (16-bit words 8-15, 24-31). (Masked forms with all-ones masks: GCC 12's
  // unmasked ones warn about an undefined source.)
  const __m512i b = _mm512_maskz_broadcast_i64x4(0xFF, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c)));
  const __m512i v = _mm512_maskz_shuffle_i64x2(0xFF, b, b, _MM_SHUFFLE(1, 1, 0, 0));
  const __m512i h = _mm512_mask_srli_epi16(v, 0xFF00FF00, v, 4);
  return _mm512_shuffle_epi8(tbl, _mm512_and_si512(h, _mm512_set1_epi8(0x0f)));
}

// vpdpbusd's starting value for a step: -128 times the sum of each lane's 4 weights.
QINS4_AVX512 inline __m512i minus128_sums(__m512i w) {
  return _mm512_sub_epi32(_mm512_setzero_si512(),
                          _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(static_cast<char>(0x80)), w));
}
QINS4_AVX512 inline __m256i minus128_sums(__m256i w) {
  return _mm256_sub_epi32(_mm256_setzero_si256(),
                          _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(static_cast<char>(0x80)), w));
}

// One x row of a call as the AVX-512 loops read it: xq + 128 as unsigned bytes (natural order), a
// copy of dx with 4 more floats (so that 4 can be loaded from any block), and where its outputs go.
struct XRow512 {
  const uint8_t* xu;
  const float* dx;
  float* y;
};

// The n_x rows of x in that form, in the calling thread's scratch (as pair_rows); returns their
// XRow512. Only blocks from_block on are copied (the group-16 loop reads the others elsewhere).
QINS4_AVX512 XRow512* rows512(const int8_t* xq, const float* dx, int64_t n_blocks, int64_t n_x, float* y,
                              int64_t y_stride, int64_t from_block = 0) {
  const size_t nx = static_cast<size_t>(n_blocks * 32), nd = static_cast<size_t>(n_blocks + 4);
  uint8_t* xbuf = thread_scratch<uint8_t, 0>(nx * static_cast<size_t>(n_x));
  float* dbuf = thread_scratch<float, 0>(nd * static_cast<size_t>(n_x));
  XRow512* xr = thread_scratch<XRow512, 0>(static_cast<size_t>(n_x));
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  for (int64_t j = 0; j < n_x; ++j) {
    const int8_t* xj = xq + j * n_blocks * 32;
    const float* dj = dx + j * n_blocks;
    uint8_t* xo = xbuf + static_cast<size_t>(j) * nx;
    float* dout = dbuf + static_cast<size_t>(j) * nd;
    for (int64_t b = from_block; b < n_blocks; ++b)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(xo + b * 32),
                          _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xj + b * 32)), flip));
    std::copy(dj, dj + n_blocks, dout);
    std::fill(dout + n_blocks, dout + n_blocks + 4, 0.f);
    xr[j] = XRow512{xo, dout, y + j * y_stride};
  }
  return xr;
}

// The fp16 group scales of blocks b..b+3 as floats over their lanes of two steps:
// g0 = [g(b) x8, g(b+1) x8], g1 = [g(b+2) x8, g(b+3) x8] (GB = group_blocks, 1 or 2).
template <int GB>
QINS4_AVX512 inline void group_scales512(const uint16_t* s, int64_t b, __m512& g0, __m512& g1) {
  __m128i h;
  if constexpr (GB == 1) {
    h = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(s + b));
  } else {
    int32_t two = 0;
    std::memcpy(&two, s + b / 2, sizeof(two));
    h = _mm_cvtsi32_si128(two);
  }
  const __m512 g = _mm512_maskz_broadcast_f32x4(0xFFFF, _mm_cvtph_ps(h));
  const int l1 = GB == 1 ? 1 : 0, h0 = GB == 1 ? 2 : 1, h1 = GB == 1 ? 3 : 1;
  g0 = _mm512_maskz_permutexvar_ps(0xFFFF, _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, l1, l1, l1, l1, l1, l1, l1, l1), g);
  g1 = _mm512_maskz_permutexvar_ps(0xFFFF, _mm512_setr_epi32(h0, h0, h0, h0, h0, h0, h0, h0, h1, h1, h1, h1, h1, h1, h1, h1), g);
}

// The per-row templates are split in two so that a batched call can go over the columns a chunk at a
// time: range512_* runs the steps of blocks [b0, b1) of one code row against J rows of x, from and
// back into the accumulators acc (in memory between chunks, in registers during one), and
// finish512_* adds the last blocks (those a whole step does not cover) and writes the J outputs. The
// GEMV is the one-row case over the whole row in one range, so a row of x gets the same FMAs into
// the same accumulators in the same order whichever way it is called: bit for bit the GEMV's.
// Each step prefetches the same columns of the next code row (`pf` bytes on: the row length), which
// is the row the GEMV and the batched loop read next at this offset.

// Groups of 32 or 64, steps of 4 blocks; acc[2j], acc[2j + 1]: x row j's two accumulators.
template <int GB, int J>
QINS4_AVX512 inline void range512_g(const uint8_t* c, const uint16_t* s, int64_t b0, int64_t b1, __m512i tbl,
                                    const XRow512* xr, float* acc, int64_t pf) {
  const __m512i i01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  const __m512i i23 = _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  __m512 a0[J], a1[J];
  const uint8_t* xu[J];
  const float* dq[J];
  for (int j = 0; j < J; ++j) {
    a0[j] = _mm512_loadu_ps(acc + 32 * j);
    a1[j] = _mm512_loadu_ps(acc + 32 * j + 16);
    xu[j] = xr[j].xu + b0 * 32;
    dq[j] = xr[j].dx + b0;
  }
  for (int64_t b = b0; b < b1; b += 4) {
    _mm_prefetch(reinterpret_cast<const char*>(c + b * 16 + pf), _MM_HINT_T0);
    __m512 g0, g1;
    group_scales512<GB>(s, b, g0, g1);
    const __m512i w0 = lookup64(c + b * 16, tbl), w1 = lookup64(c + b * 16 + 32, tbl);
    const __m512i n0 = minus128_sums(w0), n1 = minus128_sums(w1);
    for (int j = 0; j < J; ++j) {
      // dx of blocks b..b+3 over their lanes: [dx[b] x8, dx[b+1] x8], [dx[b+2] x8, dx[b+3] x8].
      const __m512 d4 = _mm512_maskz_broadcast_f32x4(0xFFFF, _mm_loadu_ps(dq[j]));
      const __m512i p0 = _mm512_dpbusd_epi32(n0, _mm512_loadu_si512(reinterpret_cast<const void*>(xu[j])), w0);
      a0[j] = _mm512_fmadd_ps(cvt512(p0), _mm512_mul_ps(g0, _mm512_maskz_permutexvar_ps(0xFFFF, i01, d4)), a0[j]);
      const __m512i p1 = _mm512_dpbusd_epi32(n1, _mm512_loadu_si512(reinterpret_cast<const void*>(xu[j] + 64)), w1);
      a1[j] = _mm512_fmadd_ps(cvt512(p1), _mm512_mul_ps(g1, _mm512_maskz_permutexvar_ps(0xFFFF, i23, d4)), a1[j]);
      xu[j] += 128;
      dq[j] += 4;
    }
  }
  for (int j = 0; j < J; ++j) {
    _mm512_storeu_ps(acc + 32 * j, a0[j]);
    _mm512_storeu_ps(acc + 32 * j + 16, a1[j]);
  }
}

// From block b = n_blocks & ~3 on: a pair of blocks left, then an odd block; then the outputs.
template <int GB, int J>
QINS4_AVX512 inline void finish512_g(const uint8_t* c, const uint16_t* s, int64_t n_blocks, __m512i tbl,
                                     __m256i tbl256, const XRow512* xr, const float* acc, int64_t out) {
  __m512 a0[J];
  for (int j = 0; j < J; ++j) a0[j] = _mm512_loadu_ps(acc + 32 * j);
  int64_t b = n_blocks & ~int64_t{3};
  if (b + 2 <= n_blocks) {  // one pair left (its scales are whole groups: b is a multiple of 4)
    const __m512 g = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(_cvtsh_ss(s[b / GB])),
                                          _mm512_set1_ps(_cvtsh_ss(s[(b + 1) / GB])));
    const __m512i w = lookup64(c + b * 16, tbl);
    const __m512i n = minus128_sums(w);
    for (int j = 0; j < J; ++j) {
      const __m512i p = _mm512_dpbusd_epi32(n, _mm512_loadu_si512(reinterpret_cast<const void*>(xr[j].xu + b * 32)), w);
      const __m512 d = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(xr[j].dx[b]), _mm512_set1_ps(xr[j].dx[b + 1]));
      a0[j] = _mm512_fmadd_ps(cvt512(p), _mm512_mul_ps(g, d), a0[j]);
    }
    b += 2;
  }
  if (b == n_blocks) {  // no odd block: the accumulators alone (+ 0 as the sum of an empty tail)
    for (int j = 0; j < J; ++j)
      xr[j].y[out] = sum512(_mm512_add_ps(a0[j], _mm512_loadu_ps(acc + 32 * j + 16))) + 0.f;
    return;
  }
  // Odd block count: the last block alone, 256 bits.
  const __m256i w = lookup32(c + b * 16, tbl256);
  const __m256i n = minus128_sums(w);
  const float g = _cvtsh_ss(s[b / GB]);
  for (int j = 0; j < J; ++j) {
    const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xr[j].xu + b * 32));
    const __m256 t =
        _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_dpbusd_epi32(n, u, w)), _mm256_set1_ps(g * xr[j].dx[b]));
    xr[j].y[out] = sum512(_mm512_add_ps(a0[j], _mm512_loadu_ps(acc + 32 * j + 16))) + hsum256(t);
  }
}

// Group 16, steps of 2 blocks: per step the four 16-column groups' scales (block b low, high, block
// b+1 low, high), each over its 4 lanes, times [dx[b] x8, dx[b+1] x8]; acc[j]: x row j's accumulator.
template <int J>
QINS4_AVX512 inline void range512_16(const uint8_t* c, const uint8_t* s, int64_t b0, int64_t b1, const float* st,
                                     __m512i tbl, const XRow512* xr, float* acc, int64_t pf) {
  const __m512i i01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  __m512 a[J];
  const uint8_t* xu[J];
  const float* dq[J];
  for (int j = 0; j < J; ++j) {
    a[j] = _mm512_loadu_ps(acc + 16 * j);
    xu[j] = xr[j].xu + b0 * 32;
    dq[j] = xr[j].dx + b0;
  }
  for (int64_t b = b0; b < b1; b += 2) {
    _mm_prefetch(reinterpret_cast<const char*>(c + b * 16 + pf), _MM_HINT_T0);
    const uint8_t* sp = s + 2 * b;
    // Four broadcast loads blended (blends run on more ports than the shuffles of a gather-by-insert).
    __m512 g = _mm512_set1_ps(st[sp[0]]);
    g = _mm512_mask_blend_ps(0x00F0, g, _mm512_set1_ps(st[sp[1]]));
    g = _mm512_mask_blend_ps(0x0F00, g, _mm512_set1_ps(st[sp[2]]));
    g = _mm512_mask_blend_ps(0xF000, g, _mm512_set1_ps(st[sp[3]]));
    const __m512i w = lookup64(c + b * 16, tbl);
    const __m512i n = minus128_sums(w);
    for (int j = 0; j < J; ++j) {
      // [dx[b] x8, dx[b+1] x8] (the copy's padding makes the 4-float load safe at the last pair).
      const __m512 d = _mm512_maskz_permutexvar_ps(0xFFFF, i01, _mm512_maskz_broadcast_f32x4(0xFFFF, _mm_loadu_ps(dq[j])));
      const __m512i p = _mm512_dpbusd_epi32(n, _mm512_loadu_si512(reinterpret_cast<const void*>(xu[j])), w);
      a[j] = _mm512_fmadd_ps(cvt512(p), _mm512_mul_ps(g, d), a[j]);
      xu[j] += 64;
      dq[j] += 2;
    }
  }
  for (int j = 0; j < J; ++j) _mm512_storeu_ps(acc + 16 * j, a[j]);
}

// From block b = n_blocks & ~1 on: the odd last block, then the outputs.
template <int J>
QINS4_AVX512 inline void finish512_16(const uint8_t* c, const uint8_t* s, int64_t n_blocks, const float* st,
                                      __m256i tbl256, const XRow512* xr, const float* acc, int64_t out) {
  const int64_t b = n_blocks & ~int64_t{1};
  if (b == n_blocks) {  // no odd block: the accumulators alone (+ 0 as the sum of an empty tail)
    for (int j = 0; j < J; ++j) xr[j].y[out] = sum512(_mm512_loadu_ps(acc + 16 * j)) + 0.f;
    return;
  }
  // The odd last block alone, 256 bits.
  const __m256i w = lookup32(c + b * 16, tbl256);
  const __m256i n = minus128_sums(w);
  for (int j = 0; j < J; ++j) {
    const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xr[j].xu + b * 32));
    const __m256 t =
        _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_dpbusd_epi32(n, u, w)), scale16(s + 2 * b, st, xr[j].dx[b]));
    xr[j].y[out] = sum512(_mm512_loadu_ps(acc + 16 * j)) + hsum256(t);
  }
}

// 64 bytes of a scratch buffer as integers / floats.
QINS4_AVX512 inline __m512i ld512i(const uint8_t* p) { return _mm512_loadu_si512(reinterpret_cast<const void*>(p)); }
QINS4_AVX512 inline __m512 ld512f(const uint8_t* p) { return _mm512_loadu_ps(reinterpret_cast<const float*>(p)); }

// ---- Group 16 by super-blocks of 256 columns (8 blocks, 16 groups, 128 code bytes) ----
//
// The step above pays, per 64 weights and row of x, a conversion, a (scale x dx) product and an FMA,
// because each vpdpbusd lane holds 4 products of one group and a group's 4 lanes sit in one
// instruction: nothing is left to add in integers. Here a super-block's weights are gathered so that
// each lane of a vector holds one group: its two 64-byte halves X, Y (blocks 0-3, 4-7) give four
// vectors W_v, v = 0..3, whose lane i holds code bytes 4v .. 4v + 3 of block i % 8 (one two-source
// permute of dwords), nibble-split so that lanes 0-7 are the low nibbles (groups 0, 2, .., 14) and
// lanes 8-15 the high ones (groups 1, 3, .., 15) (a masked shift of the upper half, a mask, the
// lookup): 4 operations per vector, made once per code row for every row of x. Then 4 chained
// vpdpbusd leave the 16 group sums of the super-block in one vector with nothing to add across lanes:
// per row of x and 256 weights, 4 vpdpbusd (two chains of 2, joined by one add), one conversion, one
// product and one FMA (the step above: 4 x 7 vector operations; the layout before this one, which
// paired the groups' lanes with two unpacks and summed them with two vshufps and an add, 11). The
// codes stay in the file's order; the activations are permuted to match once per call
// (rows512_units below). Measured on a Zen 5 (bench_qins4 --kernels-only 1, "super-block rows",
// against the pairwise-add layout, alternated): one thread, 4 rows of x 18.0-18.1 -> 18.9-19.2 GB/s
// of codes, 8 rows 10.6-10.7 -> 11.3-11.7, one row the same (35.1-36.6 -> 36.4-36.5); one chain of 4
// vpdpbusd instead of two ran 4 rows faster still (19.8-19.9) but the GEMV 3 % slower.
//
// The weights are looked up as unsigned bytes w + 128 (the table XOR 0x80; entries lie in
// [-127, 127]) against the signed x, so sum((w + 128) x) - 128 sum(x) = sum(w x) exactly: the
// -128 sum(x) of each group comes with the row of x (corr), made once per call, not per code row.
// The 16 sub-scales of a super-block come from the log table st[k] = st[240 + k % 16] * 2^(k / 16 - 15)
// (two vpermps and a product, st[0] = 0 by mask) instead of 16 scalar loads; the call checks that
// identity on its table first (group-16 tables are validated on load as sub_scale_table's, and with
// glibc's exp2f the identity held exactly for 200,000 random tops) and otherwise runs the two-block
// steps throughout.

// The rows of x of a call in the super-block form: per super-block, per row of x, 384 bytes: its 256
// int8 values as the 4 vectors W_0..W_3 are read against (permute_sb16_x), the 16 dx of its lanes'
// groups (float) and the 16 corrections -128 * sum(x) of its lanes' groups (int32), in the lane
// order above (sb_group). Super-block-major, so that one pointer and constant offsets reach every row of a pass.
constexpr int64_t kSbBytes = 384;

// The batched loop reads each code row's super-blocks against every row of x, so the rows of x
// should stay in L1 from one code row to the next: where their super-block buffer is larger than
// kSbXBytes (4 rows of x over 8192 columns are 48 KB, Zen 5's whole L1d), a thread takes its code
// rows kSbTileRows at a time and runs each tile over column segments whose x fits that budget,
// the accumulators carried from segment to segment (the same additions in the same order: bit for
// bit the GEMV's). `bench_qins4 --kernels-only 1` measures it against one segment per row
// ("column segments" table; docs/qins.md). 24 KB: of 12, 16, 24, 32 and 40 KB the best on a Zen 5
// over the Phi-3 shapes at 2-8 rows of x; half of a 48 KB L1d, and room beside a 32 KB one.
constexpr int64_t kSbXBytes = 24576;
std::atomic<int64_t> g_sb_x_bytes{kSbXBytes};
constexpr int64_t kSbTileRows = 16;

// How many code rows ahead a super-block step prefetches (the same columns): measured on a Zen 5
// with one thread, codes streamed from DRAM (the GEMV 24 -> 31 GB/s from 1 to 4 rows ahead; 8 the
// same as 4; the batched loops unchanged).
constexpr int64_t kSbPrefetchRows = 4;

// Group 16: the group (0-15) of lane i of a super-block's sums: the low nibbles of block i (group 2i)
// for i < 8, the high nibbles of block i - 8 (group 2i - 15) for the rest.
constexpr int sb_group(int i) { return i < 8 ? 2 * i : 2 * (i - 8) + 1; }

// One super-block's 256 values of x as the 4 vectors the group-16 weights meet (sb16_weights): vector v,
// lane i (4 bytes): values 4v .. 4v + 3 of group sb_group(i).
inline void permute_sb16_x(const int8_t* x, uint8_t* o) {
  for (int v = 0; v < 4; ++v)
    for (int i = 0; i < 16; ++i) std::memcpy(o + 64 * v + 4 * i, x + 16 * sb_group(i) + 4 * v, 4);
}

// Groups of 32 and 64 (below): one super-block's 256 values of x as the 4 vectors sb_weights' weights
// meet: vector v (A_lo, B_lo, A_hi, B_hi), 128-bit lane k: the 8-byte pieces 4k + v and 16 + 4k + v of x.
inline void permute_sb_x(const int8_t* x, uint8_t* o) {
  for (int v = 0; v < 4; ++v)
    for (int k = 0; k < 4; ++k) {
      std::memcpy(o + 64 * v + 16 * k, x + 8 * (4 * k + v), 8);
      std::memcpy(o + 64 * v + 16 * k + 8, x + 8 * (16 + 4 * k + v), 8);
    }
}

// The log table's two factors (see above), or false where st is not such a table.
struct SubTable512 {
  __m512 frac, pow2;
};
QINS4_AVX512 inline bool sub_table512(const float* st, SubTable512& t) {
  t.frac = _mm512_loadu_ps(st + 240);
  float p2[16];
  for (int h = 0; h < 16; ++h) p2[h] = std::ldexp(1.f, h - 15);
  t.pow2 = _mm512_loadu_ps(p2);
  for (int h = 0; h < 16; ++h) {
    const __m512 want = _mm512_mul_ps(t.frac, _mm512_set1_ps(p2[h]));
    const __mmask16 lanes = h == 0 ? 0xFFFE : 0xFFFF;  // st[0] is 0 (masked in the lookup)
    if (_mm512_mask_cmp_ps_mask(lanes, want, _mm512_loadu_ps(st + 16 * h), _CMP_NEQ_UQ)) return false;
  }
  return st[0] == 0.f;
}

// A super-block's 16 sub-scales (indices s[0..15], natural group order) in the lane order above.
QINS4_AVX512 inline __m512 sb_scales(const uint8_t* s, const SubTable512& t) {
  const __m128i order = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);  // sb_group
  const __m128i sub = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s)), order);
  const __m512i idx = _mm512_maskz_cvtepu8_epi32(0xFFFF, sub);
  const __m512 f = _mm512_maskz_permutexvar_ps(0xFFFF, idx, t.frac);
  const __m512 p = _mm512_maskz_permutexvar_ps(0xFFFF, _mm512_maskz_srli_epi32(0xFFFF, idx, 4), t.pow2);
  return _mm512_maskz_mul_ps(_mm512_test_epi32_mask(idx, idx), f, p);
}

// Groups of 32 and 64 (below): one super-block's 128 code bytes (cs) as the 4 weight vectors [A_lo,
// B_lo, A_hi, B_hi], w + 128 each, after prefetching the same bytes pf on. X, Y (blocks 0-3, 4-7) become
// A = unpacklo_epi64(X, Y) and B = unpackhi_epi64(X, Y), whose 128-bit lane k holds bytes 0-7 (A) or
// 8-15 (B) of blocks k and k + 4; their nibble split gives vectors in which the same lanes always hold
// the same block.
QINS4_AVX512 inline void sb_weights(const uint8_t* cs, int64_t pf, __m512i tblu, __m512i w[4]) {
  const __m512i m = _mm512_set1_epi8(0x0f);
  _mm_prefetch(reinterpret_cast<const char*>(cs + pf), _MM_HINT_T0);
  _mm_prefetch(reinterpret_cast<const char*>(cs + pf + 64), _MM_HINT_T0);
  const __m512i X = _mm512_loadu_si512(reinterpret_cast<const void*>(cs));
  const __m512i Y = _mm512_loadu_si512(reinterpret_cast<const void*>(cs + 64));
  const __m512i A = _mm512_maskz_unpacklo_epi64(0xFF, X, Y), B = _mm512_maskz_unpackhi_epi64(0xFF, X, Y);
  w[0] = _mm512_shuffle_epi8(tblu, _mm512_and_si512(A, m));
  w[1] = _mm512_shuffle_epi8(tblu, _mm512_and_si512(B, m));
  w[2] = _mm512_shuffle_epi8(tblu, _mm512_and_si512(_mm512_srli_epi16(A, 4), m));
  w[3] = _mm512_shuffle_epi8(tblu, _mm512_and_si512(_mm512_srli_epi16(B, 4), m));
}

// Group 16: one super-block's 128 code bytes (cs) as the 4 weight vectors W_v, w + 128 each (see the
// section's head): lane i holds weights 4v .. 4v + 3 of group sb_group(i). One two-source permute of the
// two 64-byte halves gathers dword v of the 8 blocks into both halves of a vector, a masked shift moves
// the upper half's high nibbles down, and the mask and the lookup follow. After prefetching the same
// bytes pf on.
struct Sb16Idx {
  __m512i v[4];
};
QINS4_AVX512 inline Sb16Idx sb16_idx() {
  Sb16Idx t;
  for (int v = 0; v < 4; ++v)
    t.v[v] = _mm512_setr_epi32(v, 4 + v, 8 + v, 12 + v, 16 + v, 20 + v, 24 + v, 28 + v, v, 4 + v, 8 + v, 12 + v,
                               16 + v, 20 + v, 24 + v, 28 + v);
  return t;
}
QINS4_AVX512 inline void sb16_weights(const uint8_t* cs, int64_t pf, __m512i tblu, const Sb16Idx& idx, __m512i w[4]) {
  const __m512i m = _mm512_set1_epi8(0x0f);
  _mm_prefetch(reinterpret_cast<const char*>(cs + pf), _MM_HINT_T0);
  _mm_prefetch(reinterpret_cast<const char*>(cs + pf + 64), _MM_HINT_T0);
  const __m512i X = _mm512_loadu_si512(reinterpret_cast<const void*>(cs));
  const __m512i Y = _mm512_loadu_si512(reinterpret_cast<const void*>(cs + 64));
#pragma GCC unroll 4
  for (int v = 0; v < 4; ++v) {
    const __m512i q = _mm512_permutex2var_epi32(X, idx.v[v], Y);
    const __m512i n = _mm512_mask_srli_epi16(q, static_cast<__mmask32>(0xFFFF0000u), q, 4);
    w[v] = _mm512_shuffle_epi8(tblu, _mm512_and_si512(n, m));
  }
}

// Groups of 32 and 64: the pairwise add of two accumulators' adjacent lanes, [e0 + e1, e2 + e3,
// o0 + o1, o2 + o3] per 128-bit lane, plus the row of x's corrections; then into acc by (scale x dx).
QINS4_AVX512 inline __m512 sb_accumulate(__m512i e, __m512i o, const uint8_t* corr, __m512 g, const uint8_t* dxe,
                                         __m512 acc) {
  const __m512 ef = _mm512_castsi512_ps(e), of = _mm512_castsi512_ps(o);
  __m512i sum = _mm512_add_epi32(_mm512_castps_si512(_mm512_shuffle_ps(ef, of, 0x88)),
                                 _mm512_castps_si512(_mm512_shuffle_ps(ef, of, 0xDD)));
  sum = _mm512_add_epi32(sum, ld512i(corr));
  return _mm512_fmadd_ps(cvt512(sum), _mm512_mul_ps(g, ld512f(dxe)), acc);
}

// Super-blocks [sb0, sb1) of one code row against J rows of x (acc[j]: x row j's 16 accumulators,
// the same ones range512_16 / finish512_16 continue).
// xb: the pass's first row of x in super-block sb0 of the rows512_units<256> buffer, sb_stride: the bytes
// from one super-block's rows to the next (n_x * kSbBytes).
template <int J>
QINS4_AVX512 inline void range512_sb(const uint8_t* c, const uint8_t* s, int64_t sb0, int64_t sb1,
                                     const SubTable512& st, __m512i tblu, const uint8_t* xb, int64_t sb_stride,
                                     float* acc, int64_t pf) {
  __m512 a[J];
#pragma GCC unroll 8
  for (int j = 0; j < J; ++j) a[j] = _mm512_loadu_ps(acc + 16 * j);
  const Sb16Idx idx = sb16_idx();
  for (int64_t sb = sb0; sb < sb1; ++sb, xb += sb_stride) {
    __m512i w[4];
    sb16_weights(c + sb * 128, pf, tblu, idx, w);
    const __m512 g = sb_scales(s + sb * 16, st);
#pragma GCC unroll 8
    for (int j = 0; j < J; ++j) {
      const uint8_t* xs = xb + j * kSbBytes;
      // Two chains of 2 (one from the corrections -128 sum(x)) and an add: exact integers, so the group
      // sums are the same whatever the order.
      __m512i e0 = _mm512_dpbusd_epi32(ld512i(xs + 320), w[0], ld512i(xs));
      __m512i e1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[2], ld512i(xs + 128));
      e0 = _mm512_dpbusd_epi32(e0, w[1], ld512i(xs + 64));
      e1 = _mm512_dpbusd_epi32(e1, w[3], ld512i(xs + 192));
      const __m512i e = _mm512_add_epi32(e0, e1);
      a[j] = _mm512_fmadd_ps(cvt512(e), _mm512_mul_ps(g, ld512f(xs + 256)), a[j]);
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < J; ++j) _mm512_storeu_ps(acc + 16 * j, a[j]);
}

// ---- Groups of 32 and 64 by double super-blocks of 512 columns (16 blocks, 256 code bytes) ----
//
// The unpack of sb_weights (group 16 gathers its lanes differently, above). A block is one group (or
// half of one) here, so the four weight vectors of a super-block chain into one vpdpbusd accumulator
// whose lanes 4k, 4k + 1 hold block k and 4k + 2, 4k + 3 block k + 4; the pairwise add of two super-blocks' accumulators gives the 16
// block sums in one vector, in the lane order {k, k + 4, 8 + k, 12 + k} of 128-bit lane k. Per row
// of x and 512 weights: 8 vpdpbusd, 3 for the add, one add of the correction, one conversion, one
// product and one FMA (the 4-block steps: 4 x 8). Weights as w + 128 against signed x, as above.

// Per double super-block and row of x: its 512 values of x (two super-blocks as permute_sb_x makes
// them), the 16 dx of its lanes' blocks and the 16 corrections -128 * sum(x) over its lanes' blocks.
constexpr int64_t kSb2Bytes = 640;

// The block (0-15) of lane i of a double super-block's sums: k + 4 (i % 4) for k = i / 4.
constexpr int sb2_block(int i) { return i / 4 + 4 * (i % 4); }

// The rows of x of a call in the form a batched loop reads (Cols = 256: super-blocks, kSbBytes per
// row; 512: double super-blocks, kSb2Bytes): per unit of Cols columns and row of x (row j at
// xq + j * n_blocks * 32, dx + j * n_blocks), its values as permute_sb_x makes them, then the 16 dx
// and the 16 corrections -128 * sum(x) of its lanes' pieces of Cols / 16 columns, in the lane order
// (sb_group, sb2_block). n_units units, unit-major, in the calling thread's scratch; rebuilt only
// for new inputs (built_from).
template <int Cols>
QINS4_AVX512 const uint8_t* rows512_units(const int8_t* xq, const float* dx, int64_t n_blocks, int64_t n_units,
                                          int64_t n_x) {
  constexpr int64_t unit_bytes = Cols == 256 ? kSbBytes : kSb2Bytes;
  constexpr int kTag = Cols == 256 ? 2 : 3, kPiece = Cols / 16;
  uint8_t* buf = thread_scratch<uint8_t, kTag>(static_cast<size_t>(n_units * n_x * unit_bytes));
  if (built_from<kTag>(xq, static_cast<size_t>(n_x * n_blocks * 32), dx,
                       sizeof(float) * static_cast<size_t>(n_x * n_blocks), n_blocks, n_units, n_x))
    return buf;
  for (int64_t u = 0; u < n_units; ++u)
    for (int64_t j = 0; j < n_x; ++j) {
      const int8_t* x = xq + j * n_blocks * 32 + u * Cols;
      const float* d = dx + j * n_blocks + u * (Cols / 32);
      uint8_t* o = buf + (u * n_x + j) * unit_bytes;
      if (Cols == 256)
        permute_sb16_x(x, o);
      else
        for (int h = 0; h < Cols / 256; ++h) permute_sb_x(x + 256 * h, o + 256 * h);
      float dxe[16];
      int32_t corr[16];
      for (int i = 0; i < 16; ++i) {
        const int piece = Cols == 256 ? sb_group(i) : sb2_block(i);
        int32_t sum = 0;
        for (int c = 0; c < kPiece; ++c) sum += x[kPiece * piece + c];
        corr[i] = -128 * sum;
        dxe[i] = d[kPiece * piece / 32];
      }
      std::memcpy(o + Cols, dxe, sizeof(dxe));
      std::memcpy(o + Cols + 64, corr, sizeof(corr));
    }
  return buf;
}

// The fp16 scales of double super-block d (blocks 16d..16d + 15) as floats in the lane order above.
template <int GB>
QINS4_AVX512 inline __m512 sb2_scales(const uint16_t* s, int64_t d) {
  const __m512i order = _mm512_setr_epi32(
      sb2_block(0) / GB, sb2_block(1) / GB, sb2_block(2) / GB, sb2_block(3) / GB, sb2_block(4) / GB,
      sb2_block(5) / GB, sb2_block(6) / GB, sb2_block(7) / GB, sb2_block(8) / GB, sb2_block(9) / GB,
      sb2_block(10) / GB, sb2_block(11) / GB, sb2_block(12) / GB, sb2_block(13) / GB, sb2_block(14) / GB,
      sb2_block(15) / GB);
  // (Masked forms with all-ones masks: GCC 12's unmasked ones warn about an undefined source.)
  const __m256i h = GB == 1 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + d * 16))
                            : _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + d * 8)));
  return _mm512_maskz_permutexvar_ps(0xFFFF, order, _mm512_maskz_cvtph_ps(0xFFFF, h));
}

// Double super-blocks [d0, d1) of one code row against J rows of x (acc + 32 j: x row j's two
// accumulators, the first of which this adds to; range512_g / finish512_g continue both).
template <int GB, int J>
QINS4_AVX512 inline void range512_sb2(const uint8_t* c, const uint16_t* s, int64_t d0, int64_t d1, __m512i tblu,
                                      const uint8_t* xb, int64_t d_stride, float* acc, int64_t pf) {
  __m512 a[J];
#pragma GCC unroll 8
  for (int j = 0; j < J; ++j) a[j] = _mm512_loadu_ps(acc + 32 * j);
  for (int64_t d = d0; d < d1; ++d, xb += d_stride) {
    __m512i w[2][4];
    sb_weights(c + d * 256, pf, tblu, w[0]);
    sb_weights(c + d * 256 + 128, pf, tblu, w[1]);
    const __m512 g = sb2_scales<GB>(s, d);
#pragma GCC unroll 8
    for (int j = 0; j < J; ++j) {
      const uint8_t* xs = xb + j * kSb2Bytes;
      __m512i e[2];
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        const uint8_t* xh = xs + h * 256;
        __m512i t = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[h][0], ld512i(xh));
        t = _mm512_dpbusd_epi32(t, w[h][1], ld512i(xh + 64));
        t = _mm512_dpbusd_epi32(t, w[h][2], ld512i(xh + 128));
        e[h] = _mm512_dpbusd_epi32(t, w[h][3], ld512i(xh + 192));
      }
      a[j] = sb_accumulate(e[0], e[1], xs + 576, g, xs + 512, a[j]);
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < J; ++j) _mm512_storeu_ps(acc + 32 * j, a[j]);
}

// The 16-entry table in each 128-bit lane (vpshufb looks up within lanes), and in 256 bits.
QINS4_AVX512 inline __m512i table512(const int8_t* lut) {
  return _mm512_maskz_broadcast_i32x4(0xFFFF, _mm_loadu_si128(reinterpret_cast<const __m128i*>(lut)));
}
QINS4_AVX512 inline __m256i table256(const int8_t* lut) {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lut)));
}

// Rows of x per pass over a code row: their accumulators (16 zmm for groups of 32/64, 8 for group
// 16) stay in registers next to a step's weights, sums and scales. The code rows go in order, one
// after the other (the order the prefetchers follow; a column-chunked order over 8 code rows, which
// kept the chunk's x in L1, measured slower from DRAM); per row of x the loop reads 64 bytes of
// x + 128 and 16 of dx per 64 columns, so 8 rows of x at 3072 columns (27 KiB) stay in L1.
constexpr int64_t kRows512 = 8;

// J rows of x at a time (kRows512, then the remainder): `call` with J a constant, the pass's first
// row of x at j. (A macro, not a generic lambda: clang gives a lambda no target attribute.)
#define QINS4_IN_PASSES(n_x, call)                                            \
  for (int64_t j = 0; j < (n_x); j += kRows512) {                             \
    switch (std::min(kRows512, (n_x)-j)) {                                    \
      case 8: { constexpr int J = 8; call; } break;                           \
      case 7: { constexpr int J = 7; call; } break;                           \
      case 6: { constexpr int J = 6; call; } break;                           \
      case 5: { constexpr int J = 5; call; } break;                           \
      case 4: { constexpr int J = 4; call; } break;                           \
      case 3: { constexpr int J = 3; call; } break;                           \
      case 2: { constexpr int J = 2; call; } break;                           \
      default: { constexpr int J = 1; call; } break;                          \
    }                                                                         \
  }

// The batched loops' walk over code rows [r0, r1) (see kSbXBytes): where the rows of x of all
// n_units column units (super-blocks) fit the budget, row by row over all of them (in tiles of
// kSbTileRows rows where `tiles` is set, so that finish_tile can sum the tile's outputs together);
// else tiles of kSbTileRows code rows over column segments of even sizes, each code row's
// accumulators (acc_floats of them) carried from segment to segment. L: segment(r, u0, u1, acc)
// runs units [u0, u1) of code row r into acc (a tile's rows acc_floats apart), finish_tile(t0, t1,
// acc) the rest of rows [t0, t1) and their outputs.
template <class L>
QINS4_AVX512 inline void walk_rows(const L& l, int64_t r0, int64_t r1, int64_t n_units, int64_t unit_stride,
                                   int64_t acc_floats, bool tiles) {
  const int64_t budget = g_sb_x_bytes.load(std::memory_order_relaxed);
  const int64_t n_seg = std::max<int64_t>(1, (n_units * unit_stride + budget - 1) / budget);
  const int64_t seg = (n_units + n_seg - 1) / n_seg;
  const int64_t tile = seg >= n_units && !tiles ? 1 : kSbTileRows;
  float* acc = thread_scratch<float, 1>(static_cast<size_t>(tile * acc_floats));  // per (code row, x row)
  for (int64_t t0 = r0; t0 < r1; t0 += tile) {
    const int64_t t1 = std::min(r1, t0 + tile);
    std::fill(acc, acc + (t1 - t0) * acc_floats, 0.f);
    for (int64_t u0 = 0; u0 < n_units; u0 += seg)
      for (int64_t r = t0; r < t1; ++r) l.segment(r, u0, std::min(n_units, u0 + seg), acc + (r - t0) * acc_floats);
    l.finish_tile(t0, t1, acc);
  }
}

// y[i] = sum512(v_i) + 0.f for the n <= 16 vectors v_i = acc + i * stride: the same additions in the
// same order as sum512 (lanes i and i + 8, then i and i + 4 of those, then i and i + 2, then the
// last two), done for 16 vectors at once by shuffling them together level by level: 15 adds and
// 30 shuffles for 16 sums, against ~8 operations for each sum alone.
QINS4_AVX512 inline void sum512_rows(const float* acc, int64_t stride, int64_t n, float* y) {
  if (n == 1) {  // a batch's one-row tile: the 16-vector shuffles below would cost ~45 operations for it
    y[0] = sum512(_mm512_loadu_ps(acc)) + 0.f;
    return;
  }
  __m512 v[16];
  for (int i = 0; i < 16; ++i) v[i] = i < n ? _mm512_loadu_ps(acc + i * stride) : _mm512_setzero_ps();
  __m512 t[8];  // t[k]: lanes 0-7 row 2k's v[i] + v[i + 8], lanes 8-15 row 2k + 1's
  for (int k = 0; k < 8; ++k)
    t[k] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  __m512 u[4];  // u[m]: 128-bit lane g, row 4m + g's t[i] + t[i + 4]
  for (int m = 0; m < 4; ++m)
    u[m] = _mm512_add_ps(_mm512_shuffle_f32x4(t[2 * m], t[2 * m + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(t[2 * m], t[2 * m + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  __m512 w[2];  // w[h]: lane g, [row 8h + g's u[0] + u[2], u[1] + u[3], the same of row 8h + 4 + g]
  for (int h = 0; h < 2; ++h)
    w[h] = _mm512_add_ps(_mm512_shuffle_ps(u[2 * h], u[2 * h + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(u[2 * h], u[2 * h + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  // Lane g, element e: row g + 4e's w[0] + w[1]; then + 0 (as sum512(..) + 0.f) and natural order.
  __m512 sums = _mm512_add_ps(_mm512_shuffle_ps(w[0], w[1], _MM_SHUFFLE(2, 0, 2, 0)),
                              _mm512_shuffle_ps(w[0], w[1], _MM_SHUFFLE(3, 1, 3, 1)));
  sums = _mm512_add_ps(sums, _mm512_setzero_ps());
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  _mm512_mask_storeu_ps(y, static_cast<__mmask16>((1u << n) - 1), _mm512_permutexvar_ps(order, sums));
}

// Code rows [r0, r1) against n_x rows of x (groups of 32 or 64).
template <int GB>
QINS4_AVX512 void rows_avx512_g(const uint8_t* codes, int64_t n_blocks, int64_t r0, int64_t r1, const uint16_t* scales,
                                const int8_t* lut, const int8_t* xq, const float* dx, int64_t n_x, float* y,
                                int64_t y_stride) {
  const __m512i tbl = table512(lut);
  const __m512i tblu = _mm512_xor_si512(tbl, _mm512_set1_epi8(static_cast<char>(0x80)));
  const __m256i tbl256 = table256(lut);
  const int64_t n_groups = n_blocks / GB, row_bytes = n_blocks * 16, n4 = n_blocks & ~int64_t{3};
  const int64_t n_d = n_blocks / 16;
  const XRow512* xr = rows512(xq, dx, n_blocks, n_x, y, y_stride, n_d * 16);
  const uint8_t* xs = rows512_units<512>(xq, dx, n_blocks, n_d, n_x);
  const int64_t pf = kSbPrefetchRows * row_bytes, d_stride = n_x * kSb2Bytes;
  struct Loop {
    const uint8_t* codes;
    const uint16_t* scales;
    const uint8_t* xs;
    const XRow512* xr;
    __m512i tbl, tblu;
    __m256i tbl256;
    int64_t n_blocks, n_groups, row_bytes, n_d, n4, n_x, d_stride, pf, r0;
    QINS4_AVX512 void segment(int64_t r, int64_t d0, int64_t d1, float* ar) const {
      const uint8_t* c = codes + r * row_bytes;
      const uint16_t* s = scales + r * n_groups;
      const uint8_t* xb = xs + d0 * d_stride;
      QINS4_IN_PASSES(n_x, (range512_sb2<GB, J>(c, s, d0, d1, tblu, xb + j * kSb2Bytes, d_stride, ar + j * 32, pf)));
    }
    QINS4_AVX512 void finish(int64_t r, float* ar) const {
      const uint8_t* c = codes + r * row_bytes;
      const uint16_t* s = scales + r * n_groups;
      if (n_d * 16 < n4)  // blocks past the last double super-block, four at a time
        QINS4_IN_PASSES(n_x, (range512_g<GB, J>(c, s, n_d * 16, n4, tbl, xr + j, ar + j * 32, row_bytes)));
      QINS4_IN_PASSES(n_x, (finish512_g<GB, J>(c, s, n_blocks, tbl, tbl256, xr + j, ar + j * 32, r - r0)));
    }
    QINS4_AVX512 void finish_tile(int64_t t0, int64_t t1, float* acc) const {
      for (int64_t r = t0; r < t1; ++r) finish(r, acc + (r - t0) * n_x * 32);
    }
  };
  const Loop l{codes, scales, xs, xr, tbl, tblu, tbl256, n_blocks, n_groups, row_bytes, n_d, n4, n_x, d_stride, pf, r0};
  walk_rows(l, r0, r1, n_d, d_stride, n_x * 32, false);
}

void gemv_rows_avx512(const uint8_t* codes, int64_t n_blocks, int group_blocks, int64_t r0, int64_t r1,
                      const uint16_t* scales, const int8_t* lut, const int8_t* xq, const float* dx, int64_t n_x,
                      float* y, int64_t y_stride) {
  rows_by_group(rows_avx512_g<1>, rows_avx512_g<2>, codes, n_blocks, group_blocks, r0, r1, scales, lut, xq, dx, n_x,
                y, y_stride);
}

// The GEMV: the batched loop's one-row case.
template <int GB>
QINS4_AVX512 void gemv_avx512_g(const uint8_t* codes, int64_t n_blocks, int64_t r0, int64_t r1, const uint16_t* scales,
                                const int8_t* lut, const int8_t* xq, const float* dx, float* y) {
  rows_avx512_g<GB>(codes, n_blocks, r0, r1, scales, lut, xq, dx, 1, y, 0);
}

void gemv_avx512(const uint8_t* codes, int64_t n_blocks, int group_blocks, int64_t r0, int64_t r1,
                 const uint16_t* scales, const int8_t* lut, const int8_t* xq, const float* dx, float* y) {
  gemv_by_group(gemv_avx512_g<1>, gemv_avx512_g<2>, codes, n_blocks, group_blocks, r0, r1, scales, lut, xq, dx, y);
}

QINS4_AVX512 void gemv16_rows_avx512(const uint8_t* codes, int64_t n_blocks, int64_t r0, int64_t r1,
                                     const uint8_t* sub, const float* st, const int8_t* lut, const int8_t* xq,
                                     const float* dx, int64_t n_x, float* y, int64_t y_stride) {
  const __m512i tbl = table512(lut);
  const __m512i tblu = _mm512_xor_si512(tbl, _mm512_set1_epi8(static_cast<char>(0x80)));
  const __m256i tbl256 = table256(lut);
  SubTable512 stv;
  const int64_t row_bytes = n_blocks * 16, n2 = n_blocks & ~int64_t{1};
  const int64_t n_sb = sub_table512(st, stv) ? n_blocks / 8 : 0;
  const XRow512* xr = rows512(xq, dx, n_blocks, n_x, y, y_stride, n_sb * 8);
  const uint8_t* xs = rows512_units<256>(xq, dx, n_blocks, n_sb, n_x);
  const int64_t pf = kSbPrefetchRows * row_bytes, sb_stride = n_x * kSbBytes;
  struct Loop {
    const uint8_t* codes;
    const uint8_t* sub;
    const float* st;
    const uint8_t* xs;
    const XRow512* xr;
    SubTable512 stv;
    __m512i tbl, tblu;
    __m256i tbl256;
    int64_t n_blocks, row_bytes, n_sb, n2, n_x, sb_stride, pf, r0;
    QINS4_AVX512 void segment(int64_t r, int64_t sb0, int64_t sb1, float* ar) const {
      const uint8_t* c = codes + r * row_bytes;
      const uint8_t* s = sub + r * n_blocks * 2;
      const uint8_t* xb = xs + sb0 * sb_stride;
      QINS4_IN_PASSES(n_x, range512_sb<J>(c, s, sb0, sb1, stv, tblu, xb + j * kSbBytes, sb_stride, ar + j * 16, pf));
    }
    QINS4_AVX512 void finish(int64_t r, float* ar) const {
      const uint8_t* c = codes + r * row_bytes;
      const uint8_t* s = sub + r * n_blocks * 2;
      if (n_sb * 8 < n2)  // blocks past the last super-block, two at a time
        QINS4_IN_PASSES(n_x, range512_16<J>(c, s, n_sb * 8, n2, st, tbl, xr + j, ar + j * 16, row_bytes));
      QINS4_IN_PASSES(n_x, finish512_16<J>(c, s, n_blocks, st, tbl256, xr + j, ar + j * 16, r - r0));
    }
    QINS4_AVX512 void finish_tile(int64_t t0, int64_t t1, float* acc) const {
      if (n_sb * 8 == n_blocks) {  // nothing past the super-blocks: the outputs are the lane sums
        for (int64_t j = 0; j < n_x; ++j) sum512_rows(acc + j * 16, n_x * 16, t1 - t0, xr[j].y + (t0 - r0));
        return;
      }
      for (int64_t r = t0; r < t1; ++r) finish(r, acc + (r - t0) * n_x * 16);
    }
  };
  const Loop l{codes, sub, st, xs, xr, stv, tbl, tblu, tbl256, n_blocks, row_bytes, n_sb, n2, n_x, sb_stride, pf, r0};
  // The GEMV sums its outputs 16 rows at a time (sum512_rows, the same sums bit for bit): one thread,
  // codes in L2, 10-15 % more GB/s on Zen 5 (bench_qins4 --kernels-only 1). Batches whose rows of x
  // fit one segment keep one code row at a time: in tiles, the whole model's 4-stream step measured
  // 4-6 % slower, for reasons not found (the batched kernel alone was not slower). sum512_rows takes
  // their one-row tiles by sum512: its 16-vector shuffles for one output made 2-4 rows of x cost
  // 1.5-1.8x as much from L2 (2026-12-08).
  walk_rows(l, r0, r1, n_sb, sb_stride, n_x * 16, n_x == 1);
}

// The group-16 GEMV: the batched loop's one-row case.
QINS4_AVX512 void gemv16_avx512(const uint8_t* codes, int64_t n_blocks, int64_t r0, int64_t r1, const uint8_t* sub,
                                const float* st, const int8_t* lut, const int8_t* xq, const float* dx, float* y) {
  gemv16_rows_avx512(codes, n_blocks, r0, r1, sub, st, lut, xq, dx, 1, y, 0);
}

}  // namespace

namespace {

// quantize_x_scalar's blocks of 32 full columns, 8 floats per vector: the same maximum (NaN
// skipped: max(a, m) keeps m where a is NaN, and m starts at 0), the same product, the same
// rounding (to nearest even) and clamp.
QINS4_AVX2 void quantize_full_blocks_avx2(const float* x, int64_t n_full, int8_t* xq, float* dx) {
  const __m256 sign = _mm256_set1_ps(-0.f), lo = _mm256_set1_ps(-127.f), hi = _mm256_set1_ps(127.f);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t b = 0; b < n_full; ++b) {
    const float* xb = x + b * 32;
    __m256 v[4];
    __m256 m = _mm256_setzero_ps();
    for (int k = 0; k < 4; ++k) {
      v[k] = _mm256_loadu_ps(xb + 8 * k);
      m = _mm256_max_ps(_mm256_andnot_ps(sign, v[k]), m);
    }
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    const float amax = _mm_cvtss_f32(h);
    dx[b] = amax / 127.f;
    const __m256 id = _mm256_set1_ps(amax > 0.f ? 127.f / amax : 0.f);
    __m256i q[4];
    for (int k = 0; k < 4; ++k) {
      const __m256 r = _mm256_round_ps(_mm256_mul_ps(v[k], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      q[k] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi));
    }
    // packs interleave the 128-bit lanes: dwords come out as 4-column pieces 0, 2, 4, 6, 1, 3, 5, 7.
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(xq + b * 32), _mm256_permutevar8x32_epi32(p, order));
  }
}

}  // namespace

void set_sb_x_bytes(int64_t bytes) { g_sb_x_bytes.store(bytes > 0 ? bytes : kSbXBytes, std::memory_order_relaxed); }

bool quantize_x_avx2(const float* x, int64_t in, int64_t n_blocks, int8_t* xq, float* dx) {
  static const bool ok = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  if (!ok) return false;
  const int64_t n_full = std::min(n_blocks, in / 32);
  quantize_full_blocks_avx2(x, n_full, xq, dx);
  if (n_full < n_blocks) quantize_x_scalar(x + n_full * 32, in - n_full * 32, n_blocks - n_full, xq + n_full * 32, dx + n_full);
  return true;
}

const Kernel4* avx2_kernel4() {
  static const Kernel4 k{"avx2",        gemv_avx2,      expand_avx2,     gemv16_avx2,
                         expand16_avx2, gemv_rows_avx2, gemv16_rows_avx2};
  __builtin_cpu_init();
  // F16C is not asked for: every AVX2 CPU has it (Intel since Ivy Bridge, AMD since Piledriver), and
  // clang 14's __builtin_cpu_supports does not know the name.
  const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok ? &k : nullptr;
}

const Kernel4* avx512_kernel4() {
  // The prefill expand is AVX2's (it is bound by the stores of the fp32 tile, not the lookups).
  static const Kernel4 k{"avx512",      gemv_avx512,      expand_avx2,       gemv16_avx512,
                         expand16_avx2, gemv_rows_avx512, gemv16_rows_avx512};
  __builtin_cpu_init();
  const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
                  __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok ? &k : nullptr;
}

}  // namespace qins::core::kernels4

#else  // not x86

namespace qins::core::kernels4 {
const Kernel4* avx2_kernel4() { return nullptr; }
const Kernel4* avx512_kernel4() { return nullptr; }
bool quantize_x_avx2(const float*, int64_t, int64_t, int8_t*, float*) { return false; }
void set_sb_x_bytes(int64_t) {}
}  // namespace qins::core::kernels4

#endif
