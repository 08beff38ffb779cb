// NEON kernel (Apple silicon / aarch64): 16 codes at a time, each byte of the fp32 table entry
// looked up with TBL over the 128-byte plane (two 64-byte halves), then zipped back into floats.
// Zips are full-width on NEON, so the floats come out in natural order.
#include "qins_kernels.h"

#if defined(__ARM_NEON) && defined(__aarch64__)
#include <arm_neon.h>

namespace qins::core::kernels {

namespace {

struct PlanesNeon {
  uint8x16x4_t lo[4], hi[4];
};

inline void load_planes(const LutTables& t, PlanesNeon* p) {
  for (int k = 0; k < 4; ++k) {
    p->lo[k] = vld1q_u8_x4(t.planes[k]);
    p->hi[k] = vld1q_u8_x4(t.planes[k] + 64);
  }
}

// 16 code bytes -> 16 signed magnitudes in natural order.
inline void decode16(const uint8_t* c, const PlanesNeon& p, float32x4_t f[4]) {
  const uint8x16_t v = vld1q_u8(c);
  const uint8x16_t idx = vandq_u8(v, vdupq_n_u8(0x7f));
  const uint8x16_t idx_hi = vsubq_u8(idx, vdupq_n_u8(64));  // < 64 wraps to >= 192: TBX keeps lo
  uint8x16_t b[4];
  for (int k = 0; k < 4; ++k) b[k] = vqtbx4q_u8(vqtbl4q_u8(p.lo[k], idx), p.hi[k], idx_hi);
  b[3] = vorrq_u8(b[3], vandq_u8(v, vdupq_n_u8(0x80)));
  const uint16x8_t l01 = vreinterpretq_u16_u8(vzip1q_u8(b[0], b[1]));
  const uint16x8_t h01 = vreinterpretq_u16_u8(vzip2q_u8(b[0], b[1]));
  const uint16x8_t l23 = vreinterpretq_u16_u8(vzip1q_u8(b[2], b[3]));
  const uint16x8_t h23 = vreinterpretq_u16_u8(vzip2q_u8(b[2], b[3]));
  f[0] = vreinterpretq_f32_u16(vzip1q_u16(l01, l23));
  f[1] = vreinterpretq_f32_u16(vzip2q_u16(l01, l23));
  f[2] = vreinterpretq_f32_u16(vzip1q_u16(h01, h23));
  f[3] = vreinterpretq_f32_u16(vzip2q_u16(h01, h23));
}

inline float code_value(uint8_t c, const float* lut) {
  const float m = lut[c & 0x7f];
  return (c & 0x80) ? -m : m;
}

void gemv_neon(const uint8_t* codes, int64_t in, int64_t r0, int64_t r1, const float* scales,
               const LutTables& t, const void* xpv, float* y) {
  const float* xp = static_cast<const float*>(xpv);
  PlanesNeon p;
  load_planes(t, &p);
  const int64_t in16 = in & ~int64_t{15};
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * in;
    float32x4_t a0 = vdupq_n_f32(0.f), a1 = vdupq_n_f32(0.f);
    for (int64_t i = 0; i < in16; i += 16) {
      float32x4_t f[4];
      decode16(c + i, p, f);
      a0 = vfmaq_f32(a0, f[0], vld1q_f32(xp + i));
      a1 = vfmaq_f32(a1, f[1], vld1q_f32(xp + i + 4));
      a0 = vfmaq_f32(a0, f[2], vld1q_f32(xp + i + 8));
      a1 = vfmaq_f32(a1, f[3], vld1q_f32(xp + i + 12));
    }
    float s = vaddvq_f32(vaddq_f32(a0, a1));
    for (int64_t i = in16; i < in; ++i) s += code_value(c[i], t.lut) * xp[i];
    y[r - r0] = s * scales[r];
  }
}

// The small-batch decode path (gemv_rows): each code row decoded kRowsChunk columns at a time
// into an fp32 buffer, every row of x adding the same products in the same order as gemv_neon
// (row i of the result is gemv's, bit for bit), rows of x four at a time.
constexpr int64_t kRowsChunk = 256;
constexpr int64_t kRowsMax = 16;

template <int NB>
inline void fma_rows_neon(const float* dec, const float* x, int64_t in, int64_t n, float32x4_t* a0, float32x4_t* a1) {
  float32x4_t s0[NB], s1[NB];
  for (int b = 0; b < NB; ++b) s0[b] = a0[b], s1[b] = a1[b];
  for (int64_t i = 0; i < n; i += 16) {
    const float32x4_t d0 = vld1q_f32(dec + i), d1 = vld1q_f32(dec + i + 4);
    const float32x4_t d2 = vld1q_f32(dec + i + 8), d3 = vld1q_f32(dec + i + 12);
    for (int b = 0; b < NB; ++b) {
      const float* xb = x + b * in + i;
      s0[b] = vfmaq_f32(s0[b], d0, vld1q_f32(xb));
      s1[b] = vfmaq_f32(s1[b], d1, vld1q_f32(xb + 4));
      s0[b] = vfmaq_f32(s0[b], d2, vld1q_f32(xb + 8));
      s1[b] = vfmaq_f32(s1[b], d3, vld1q_f32(xb + 12));
    }
  }
  for (int b = 0; b < NB; ++b) a0[b] = s0[b], a1[b] = s1[b];
}

void gemv_rows_neon(const uint8_t* codes, int64_t in, int64_t r0, int64_t r1, const float* scales,
                    const LutTables& t, const void* xpv, int64_t m, float* y, int64_t ldy) {
  const float* xp = static_cast<const float*>(xpv);
  PlanesNeon p;
  load_planes(t, &p);
  const int64_t in16 = in & ~int64_t{15};
  alignas(16) float dec[kRowsChunk];
  float32x4_t a0[kRowsMax], a1[kRowsMax];
  for (int64_t m0 = 0; m0 < m; m0 += kRowsMax) {
    const int64_t mb = m - m0 < kRowsMax ? m - m0 : kRowsMax;
    const float* xm = xp + m0 * in;
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* c = codes + r * in;
      for (int64_t b = 0; b < mb; ++b) a0[b] = a1[b] = vdupq_n_f32(0.f);
      for (int64_t k0 = 0; k0 < in16; k0 += kRowsChunk) {
        const int64_t n = in16 - k0 < kRowsChunk ? in16 - k0 : kRowsChunk;
        for (int64_t i = 0; i < n; i += 16) {
          float32x4_t f[4];
          decode16(c + k0 + i, p, f);
          for (int q = 0; q < 4; ++q) vst1q_f32(dec + i + 4 * q, f[q]);
        }
        int64_t b = 0;
        for (; b + 4 <= mb; b += 4) fma_rows_neon<4>(dec, xm + b * in + k0, in, n, a0 + b, a1 + b);
        if (mb - b == 3) fma_rows_neon<3>(dec, xm + b * in + k0, in, n, a0 + b, a1 + b);
        if (mb - b == 2) fma_rows_neon<2>(dec, xm + b * in + k0, in, n, a0 + b, a1 + b);
        if (mb - b == 1) fma_rows_neon<1>(dec, xm + b * in + k0, in, n, a0 + b, a1 + b);
      }
      for (int64_t b = 0; b < mb; ++b) {
        float s = vaddvq_f32(vaddq_f32(a0[b], a1[b]));
        for (int64_t i = in16; i < in; ++i) s += code_value(c[i], t.lut) * xm[b * in + i];
        y[(m0 + b) * ldy + (r - r0)] = s * scales[r];
      }
    }
  }
}

void expand_neon(const uint8_t* codes, int64_t in, int64_t r0, int64_t r1, const float* scales,
                 const LutTables& t, float* out) {
  PlanesNeon p;
  load_planes(t, &p);
  const int64_t in16 = in & ~int64_t{15};
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * in;
    float* o = out + (r - r0) * in;
    const float s = scales[r];
    for (int64_t i = 0; i < in16; i += 16) {
      float32x4_t f[4];
      decode16(c + i, p, f);
      for (int q = 0; q < 4; ++q) vst1q_f32(o + i + 4 * q, vmulq_n_f32(f[q], s));
    }
    for (int64_t i = in16; i < in; ++i) o[i] = code_value(c[i], t.lut) * s;
  }
}

}  // namespace

const Kernel* neon_kernel() {
  static const Kernel k{"neon", Order::Natural, gemv_neon, gemv_rows_neon, expand_neon};
  return &k;
}

}  // namespace qins::core::kernels

#else

namespace qins::core::kernels {
const Kernel* neon_kernel() { return nullptr; }
}  // namespace qins::core::kernels

#endif
