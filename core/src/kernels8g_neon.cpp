// QINS-8 grouped, NEON (aarch64): each byte plane of the 128-entry fp32 table is 8 registers; a
// tbl over its low 64 bytes and a tbx over its high 64 (index - 64: out of range, so unchanged,
// for the low half) give the plane's byte for 16 codes. The code's sign bit is ORed into the top
// byte and two rounds of zips interleave the planes into 4 float vectors in natural order.
// Per group: two accumulators of lut * x, then one FMA with the group scale into the row's sum.
#include <cstddef>
#include <vector>

#include "qins8g_kernels.h"

#if defined(__aarch64__)
#include <arm_neon.h>

#include <cstring>

namespace qins::core::kernels8g {

namespace {

struct PlanesNeon {
  uint8x16x4_t lo[4], hi[4];  // byte plane k of lut[0..63] and lut[64..127]
};

void load_planes(const float* lut, PlanesNeon* p) {
  alignas(16) uint8_t plane[4][128];
  for (int j = 0; j < 128; ++j) {
    uint32_t bits = 0;
    std::memcpy(&bits, &lut[j], sizeof bits);
    for (int k = 0; k < 4; ++k) plane[k][j] = static_cast<uint8_t>(bits >> (8 * k));
  }
  for (int k = 0; k < 4; ++k) {
    p->lo[k] = vld1q_u8_x4(plane[k]);
    p->hi[k] = vld1q_u8_x4(plane[k] + 64);
  }
}

// 16 code bytes -> f[0..3]: the signed table values of columns 0..15, natural order.
inline void decode16(const uint8_t* c, const PlanesNeon& p, float32x4_t f[4]) {
  const uint8x16_t v = vld1q_u8(c);
  const uint8x16_t idx = vandq_u8(v, vdupq_n_u8(0x7f));
  const uint8x16_t idx_hi = vsubq_u8(idx, vdupq_n_u8(64));
  uint8x16_t b[4];
  for (int k = 0; k < 4; ++k) b[k] = vqtbx4q_u8(vqtbl4q_u8(p.lo[k], idx), p.hi[k], idx_hi);
  b[3] = vorrq_u8(b[3], vandq_u8(v, vdupq_n_u8(0x80)));
  const uint16x8_t l01 = vreinterpretq_u16_u8(vzip1q_u8(b[0], b[1])), h01 = vreinterpretq_u16_u8(vzip2q_u8(b[0], b[1]));
  const uint16x8_t l23 = vreinterpretq_u16_u8(vzip1q_u8(b[2], b[3])), h23 = vreinterpretq_u16_u8(vzip2q_u8(b[2], b[3]));
  f[0] = vreinterpretq_f32_u16(vzip1q_u16(l01, l23));
  f[1] = vreinterpretq_f32_u16(vzip2q_u16(l01, l23));
  f[2] = vreinterpretq_f32_u16(vzip1q_u16(h01, h23));
  f[3] = vreinterpretq_f32_u16(vzip2q_u16(h01, h23));
}

void gemv_neon(const uint8_t* codes, int64_t in_pad, int group, int64_t r0, int64_t r1, const Scales& s,
               const float* lut, const float* x, float* y) {
  PlanesNeon p;
  load_planes(lut, &p);
  const int64_t n_groups = in_pad / group;
  std::vector<float> sc(static_cast<size_t>(n_groups));
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * in_pad;
    row_scales(s, r, n_groups, sc.data());
    float32x4_t acc = vdupq_n_f32(0.f);
    for (int64_t g = 0; g < n_groups; ++g) {
      float32x4_t a0 = vdupq_n_f32(0.f), a1 = vdupq_n_f32(0.f);
      for (int64_t i = g * group; i < (g + 1) * group; i += 16) {
        float32x4_t f[4];
        decode16(c + i, p, f);
        a0 = vfmaq_f32(a0, f[0], vld1q_f32(x + i));
        a1 = vfmaq_f32(a1, f[1], vld1q_f32(x + i + 4));
        a0 = vfmaq_f32(a0, f[2], vld1q_f32(x + i + 8));
        a1 = vfmaq_f32(a1, f[3], vld1q_f32(x + i + 12));
      }
      acc = vfmaq_n_f32(acc, vaddq_f32(a0, a1), sc[static_cast<size_t>(g)]);
    }
    y[r - r0] = vaddvq_f32(acc);
  }
}

}  // namespace

const Kernel8g* neon_kernel8g() {
  static const Kernel8g k{"neon", false, gemv_neon};
  return &k;
}

}  // namespace qins::core::kernels8g

#else

namespace qins::core::kernels8g {
const Kernel8g* neon_kernel8g() { return nullptr; }
}  // namespace qins::core::kernels8g

#endif
