// QINS-4 NEON kernel (Apple silicon / aarch64): per block of 32 weights, one 16-byte load, a
// nibble split, two TBL lookups in the 16-entry int8 table, and an int8 dot product with the
// int8 activations (SDOT where the build targets it, else widening multiply-accumulates).
#include "qins4_kernels.h"

#if defined(__ARM_NEON) && defined(__aarch64__)
#include <arm_neon.h>

#include <vector>

namespace qins::core::kernels4 {

namespace {

// The small-batch paths (a batched decode step's rows: gemv_rows_neon, gemv16_rows_neon) run the
// same per-row templates (row_g, row16) over up to 4 rows of x per code row, each block looked up
// once for them; the GEMVs are the one-row case, so every row is the GEMV's bit for bit.

// One block's 16 code bytes -> its 32 int8 weights: w[0] the low nibbles (columns 0-15), w[1] the
// high nibbles (16-31).
inline void lookup32(const uint8_t* c, int8x16_t tbl, int8x16_t w[2]) {
  const uint8x16_t v = vld1q_u8(c);
  w[0] = vqtbl1q_s8(tbl, vandq_u8(v, vdupq_n_u8(0x0f)));
  w[1] = vqtbl1q_s8(tbl, vshrq_n_u8(v, 4));
}

// The block's exact integer dot product (weights w from lookup32) as 4 int32 partial sums.
inline int32x4_t dot32(const int8x16_t w[2], const int8_t* xq) {
  const int8x16_t w0 = w[0], w1 = w[1];
  const int8x16_t x0 = vld1q_s8(xq), x1 = vld1q_s8(xq + 16);
#if defined(__ARM_FEATURE_DOTPROD)
  return vdotq_s32(vdotq_s32(vdupq_n_s32(0), w0, x0), w1, x1);
#else
  // Two products per int16 lane: at most 2 * 127 * 127 = 32258, no overflow.
  int16x8_t p0 = vmull_s8(vget_low_s8(w0), vget_low_s8(x0));
  p0 = vmlal_high_s8(p0, w0, x0);
  int16x8_t p1 = vmull_s8(vget_low_s8(w1), vget_low_s8(x1));
  p1 = vmlal_high_s8(p1, w1, x1);
  return vpadalq_s16(vpaddlq_s16(p0), p1);
#endif
}

// Group 16: the two halves of a block (low nibbles = columns 0-15, high = 16-31) as separate sums.
inline void dot16x2(const int8x16_t w[2], const int8_t* xq, int32x4_t* lo, int32x4_t* hi) {
  const int8x16_t w0 = w[0], w1 = w[1];
  const int8x16_t x0 = vld1q_s8(xq), x1 = vld1q_s8(xq + 16);
#if defined(__ARM_FEATURE_DOTPROD)
  *lo = vdotq_s32(vdupq_n_s32(0), w0, x0);
  *hi = vdotq_s32(vdupq_n_s32(0), w1, x1);
#else
  *lo = vpaddlq_s16(vmlal_high_s8(vmull_s8(vget_low_s8(w0), vget_low_s8(x0)), w0, x0));
  *hi = vpaddlq_s16(vmlal_high_s8(vmull_s8(vget_low_s8(w1), vget_low_s8(x1)), w1, x1));
#endif
}

// J rows of x against one code row: xq[j], dx[j] row j's int8 values and scales, y[j][out] its output.
struct XRows {
  int64_t n;  // rows in this pass, 1-4
  const int8_t* xq[4];
  const float* dx[4];
  float* y[4];
};

// Group 16, one code row against J rows of x (per row the same operations in the same order
// whatever J is).
template <int J>
inline void row16(const uint8_t* c, const uint8_t* s, int64_t n_blocks, const float* st, int8x16_t tbl,
                  const XRows& x, int64_t out) {
  float32x4_t a0[J], a1[J];
  for (int j = 0; j < J; ++j) a0[j] = a1[j] = vdupq_n_f32(0.f);
  for (int64_t b = 0; b < n_blocks; ++b) {
    int8x16_t w[2];
    lookup32(c + b * 16, tbl, w);
    const float sl = st[s[2 * b]], sh = st[s[2 * b + 1]];
    for (int j = 0; j < J; ++j) {
      int32x4_t lo, hi;
      dot16x2(w, x.xq[j] + b * 32, &lo, &hi);
      a0[j] = vfmaq_n_f32(a0[j], vcvtq_f32_s32(lo), sl * x.dx[j][b]);
      a1[j] = vfmaq_n_f32(a1[j], vcvtq_f32_s32(hi), sh * x.dx[j][b]);
    }
  }
  for (int j = 0; j < J; ++j) x.y[j][out] = vaddvq_f32(vaddq_f32(a0[j], a1[j]));
}

// Groups of 32 / 64, one code row against J rows of x: blocks in pairs (even into a0, odd into
// a1), an odd last block into a0.
template <int J>
inline void row_g(const uint8_t* c, const uint16_t* s, int64_t n_blocks, int group_blocks, int8x16_t tbl,
                  const XRows& x, int64_t out) {
  float32x4_t a0[J], a1[J];
  for (int j = 0; j < J; ++j) a0[j] = a1[j] = vdupq_n_f32(0.f);
  int64_t b = 0;
  for (; b + 2 <= n_blocks; b += 2) {
    int8x16_t w0[2], w1[2];
    lookup32(c + b * 16, tbl, w0);
    lookup32(c + b * 16 + 16, tbl, w1);
    const float g0 = half_to_float(s[b / group_blocks]), g1 = half_to_float(s[(b + 1) / group_blocks]);
    for (int j = 0; j < J; ++j) {
      const int32x4_t p0 = dot32(w0, x.xq[j] + b * 32);
      const int32x4_t p1 = dot32(w1, x.xq[j] + b * 32 + 32);
      a0[j] = vfmaq_n_f32(a0[j], vcvtq_f32_s32(p0), g0 * x.dx[j][b]);
      a1[j] = vfmaq_n_f32(a1[j], vcvtq_f32_s32(p1), g1 * x.dx[j][b + 1]);
    }
  }
  if (b < n_blocks) {
    int8x16_t w0[2];
    lookup32(c + b * 16, tbl, w0);
    const float g0 = half_to_float(s[b / group_blocks]);
    for (int j = 0; j < J; ++j) {
      const int32x4_t p0 = dot32(w0, x.xq[j] + b * 32);
      a0[j] = vfmaq_n_f32(a0[j], vcvtq_f32_s32(p0), g0 * x.dx[j][b]);
    }
  }
  for (int j = 0; j < J; ++j) x.y[j][out] = vaddvq_f32(vaddq_f32(a0[j], a1[j]));
}

// Rows j0 .. j0 + n - 1 of x (n <= 4) as row16 / row_g take them.
XRows x_rows(const int8_t* xq, const float* dx, int64_t n_blocks, int64_t j0, int64_t n, float* y, int64_t y_stride) {
  XRows x{};
  x.n = n;
  for (int64_t j = 0; j < n; ++j) {
    x.xq[j] = xq + (j0 + j) * n_blocks * 32;
    x.dx[j] = dx + (j0 + j) * n_blocks;
    x.y[j] = y + (j0 + j) * y_stride;
  }
  return x;
}

// All n_x rows of x in passes of up to 4 (the calling thread's scratch, reused).
const std::vector<XRows>& x_passes(const int8_t* xq, const float* dx, int64_t n_blocks, int64_t n_x, float* y,
                                   int64_t y_stride) {
  thread_local std::vector<XRows> passes;
  passes.clear();
  for (int64_t j0 = 0; j0 < n_x; j0 += 4) passes.push_back(x_rows(xq, dx, n_blocks, j0, n_x - j0 < 4 ? n_x - j0 : 4, y, y_stride));
  return passes;
}

void gemv16_rows_neon(const uint8_t* codes, int64_t n_blocks, int64_t r0, int64_t r1, const uint8_t* sub,
                      const float* st, const int8_t* lut, const int8_t* xq, const float* dx, int64_t n_x, float* y,
                      int64_t y_stride) {
  const int8x16_t tbl = vld1q_s8(lut);
  const std::vector<XRows>& passes = x_passes(xq, dx, n_blocks, n_x, y, y_stride);
  for (int64_t r = r0; r < r1; ++r) {  // each code row once from memory, then from L1 for the next 4 rows of x
    const uint8_t* c = codes + r * n_blocks * 16;
    const uint8_t* s = sub + r * n_blocks * 2;
    for (const XRows& x : passes) {
      switch (x.n) {
        case 4: row16<4>(c, s, n_blocks, st, tbl, x, r - r0); break;
        case 3: row16<3>(c, s, n_blocks, st, tbl, x, r - r0); break;
        case 2: row16<2>(c, s, n_blocks, st, tbl, x, r - r0); break;
        default: row16<1>(c, s, n_blocks, st, tbl, x, r - r0); break;
      }
    }
  }
}

void gemv16_neon(const uint8_t* codes, int64_t n_blocks, int64_t r0, int64_t r1, const uint8_t* sub, const float* st,
                 const int8_t* lut, const int8_t* xq, const float* dx, float* y) {
  const int8x16_t tbl = vld1q_s8(lut);
  const XRows x = x_rows(xq, dx, n_blocks, 0, 1, y, 0);
  for (int64_t r = r0; r < r1; ++r)
    row16<1>(codes + r * n_blocks * 16, sub + r * n_blocks * 2, n_blocks, st, tbl, x, r - r0);
}

// 16 int8 weights times their scale d into ob[0..15] (fp32), for the expand paths.
inline void store16(int8x16_t w, float d, float* ob) {
  const int16x8_t lo = vmovl_s8(vget_low_s8(w)), hi = vmovl_high_s8(w);
  vst1q_f32(ob, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))), d));
  vst1q_f32(ob + 4, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(lo)), d));
  vst1q_f32(ob + 8, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))), d));
  vst1q_f32(ob + 12, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(hi)), d));
}

void expand16_neon(const uint8_t* codes, int64_t n_blocks, int64_t r0, int64_t r1, const uint8_t* sub,
                   const float* st, const int8_t* lut, float* out) {
  const int8x16_t tbl = vld1q_s8(lut);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * n_blocks * 16;
    float* o = out + (r - r0) * n_blocks * 32;
    for (int64_t b = 0; b < n_blocks; ++b) {
      int8x16_t w[2];
      lookup32(c + b * 16, tbl, w);
      for (int h = 0; h < 2; ++h) {
        const float d = st[sub[r * n_blocks * 2 + 2 * b + h]];
        store16(w[h], d, o + b * 32 + h * 16);
      }
    }
  }
}

void gemv_rows_neon(const uint8_t* codes, int64_t n_blocks, int group_blocks, int64_t r0, int64_t r1,
                    const uint16_t* scales, const int8_t* lut, const int8_t* xq, const float* dx, int64_t n_x, float* y,
                    int64_t y_stride) {
  const int8x16_t tbl = vld1q_s8(lut);
  const int64_t n_groups = n_blocks / group_blocks;
  const std::vector<XRows>& passes = x_passes(xq, dx, n_blocks, n_x, y, y_stride);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * n_blocks * 16;
    const uint16_t* s = scales + r * n_groups;
    for (const XRows& x : passes) {
      switch (x.n) {
        case 4: row_g<4>(c, s, n_blocks, group_blocks, tbl, x, r - r0); break;
        case 3: row_g<3>(c, s, n_blocks, group_blocks, tbl, x, r - r0); break;
        case 2: row_g<2>(c, s, n_blocks, group_blocks, tbl, x, r - r0); break;
        default: row_g<1>(c, s, n_blocks, group_blocks, tbl, x, r - r0); break;
      }
    }
  }
}

void gemv_neon(const uint8_t* codes, int64_t n_blocks, int group_blocks, int64_t r0, int64_t r1,
               const uint16_t* scales, const int8_t* lut, const int8_t* xq, const float* dx, float* y) {
  const int8x16_t tbl = vld1q_s8(lut);
  const int64_t n_groups = n_blocks / group_blocks;
  const XRows x = x_rows(xq, dx, n_blocks, 0, 1, y, 0);
  for (int64_t r = r0; r < r1; ++r)
    row_g<1>(codes + r * n_blocks * 16, scales + r * n_groups, n_blocks, group_blocks, tbl, x, r - r0);
}

void expand_neon(const uint8_t* codes, int64_t n_blocks, int group_blocks, int64_t r0, int64_t r1,
                 const uint16_t* scales, const int8_t* lut, float* out) {
  const int8x16_t tbl = vld1q_s8(lut);
  const int64_t n_groups = n_blocks / group_blocks;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * n_blocks * 16;
    float* o = out + (r - r0) * n_blocks * 32;
    for (int64_t b = 0; b < n_blocks; ++b) {
      const float d = half_to_float(scales[r * n_groups + b / group_blocks]);
      int8x16_t w[2];
      lookup32(c + b * 16, tbl, w);
      for (int h = 0; h < 2; ++h) {
        store16(w[h], d, o + b * 32 + h * 16);
      }
    }
  }
}

}  // namespace

const Kernel4* neon_kernel4() {
  static const Kernel4 k{"neon",        gemv_neon,      expand_neon,     gemv16_neon,
                         expand16_neon, gemv_rows_neon, gemv16_rows_neon};
  return &k;
}

}  // namespace qins::core::kernels4

#else

namespace qins::core::kernels4 {
const Kernel4* neon_kernel4() { return nullptr; }
}  // namespace qins::core::kernels4

#endif
