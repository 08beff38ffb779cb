// QINS-4 NEON kernel (Apple silicon / aarch64): per block of 32 weights, one 16-byte load, a
// nibble split, two TBL lookups in the 16-entry int8 table, and an int8 dot product with the
// int8 activations (SDOT where the build targets it, else widening multiply-accumulates).
#include "qins4_kernels.h"

#if defined(__ARM_NEON) && defined(__aarch64__)
#include <arm_neon.h>

namespace qins::core::kernels4 {

namespace {

// One block's 16 code bytes -> its 32 int8 weights: w[0] the low nibbles (columns 0-15), w[1] the
// high nibbles (16-31).
inline void lookup32(const uint8_t* c, int8x16_t tbl, int8x16_t w[2]) {
  const uint8x16_t v = vld1q_u8(c);
  w[0] = vqtbl1q_s8(tbl, vandq_u8(v, vdupq_n_u8(0x0f)));
  w[1] = vqtbl1q_s8(tbl, vshrq_n_u8(v, 4));
}

// The block's exact integer dot product as 4 int32 partial sums.
inline int32x4_t dot32(const uint8_t* c, int8x16_t tbl, const int8_t* xq) {
  int8x16_t w[2];
  lookup32(c, tbl, w);
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
inline void dot16x2(const uint8_t* c, int8x16_t tbl, const int8_t* xq, int32x4_t* lo, int32x4_t* hi) {
  int8x16_t w[2];
  lookup32(c, tbl, w);
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

void gemv16_neon(const uint8_t* codes, int64_t n_blocks, int64_t r0, int64_t r1, const uint8_t* sub, const float* st,
                 const int8_t* lut, const int8_t* xq, const float* dx, float* y) {
  const int8x16_t tbl = vld1q_s8(lut);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * n_blocks * 16;
    const uint8_t* s = sub + r * n_blocks * 2;
    float32x4_t a0 = vdupq_n_f32(0.f), a1 = vdupq_n_f32(0.f);
    for (int64_t b = 0; b < n_blocks; ++b) {
      int32x4_t lo, hi;
      dot16x2(c + b * 16, tbl, xq + b * 32, &lo, &hi);
      a0 = vfmaq_n_f32(a0, vcvtq_f32_s32(lo), st[s[2 * b]] * dx[b]);
      a1 = vfmaq_n_f32(a1, vcvtq_f32_s32(hi), st[s[2 * b + 1]] * dx[b]);
    }
    y[r - r0] = vaddvq_f32(vaddq_f32(a0, a1));
  }
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

void gemv_neon(const uint8_t* codes, int64_t n_blocks, int group_blocks, int64_t r0, int64_t r1,
               const uint16_t* scales, const int8_t* lut, const int8_t* xq, const float* dx, float* y) {
  const int8x16_t tbl = vld1q_s8(lut);
  const int64_t n_groups = n_blocks / group_blocks;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * n_blocks * 16;
    const uint16_t* s = scales + r * n_groups;
    float32x4_t a0 = vdupq_n_f32(0.f), a1 = vdupq_n_f32(0.f);
    int64_t b = 0;
    for (; b + 2 <= n_blocks; b += 2) {
      const int32x4_t p0 = dot32(c + b * 16, tbl, xq + b * 32);
      const int32x4_t p1 = dot32(c + b * 16 + 16, tbl, xq + b * 32 + 32);
      a0 = vfmaq_n_f32(a0, vcvtq_f32_s32(p0), half_to_float(s[b / group_blocks]) * dx[b]);
      a1 = vfmaq_n_f32(a1, vcvtq_f32_s32(p1), half_to_float(s[(b + 1) / group_blocks]) * dx[b + 1]);
    }
    if (b < n_blocks) {
      const int32x4_t p0 = dot32(c + b * 16, tbl, xq + b * 32);
      a0 = vfmaq_n_f32(a0, vcvtq_f32_s32(p0), half_to_float(s[b / group_blocks]) * dx[b]);
    }
    y[r - r0] = vaddvq_f32(vaddq_f32(a0, a1));
  }
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
  static const Kernel4 k{"neon", gemv_neon, expand_neon, gemv16_neon, expand16_neon, nullptr, nullptr};
  return &k;
}

}  // namespace qins::core::kernels4

#else

namespace qins::core::kernels4 {
const Kernel4* neon_kernel4() { return nullptr; }
}  // namespace qins::core::kernels4

#endif
