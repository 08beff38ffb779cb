// Scalar reference kernels (the slow twin every SIMD path is tested against) and shared helpers.
#include <cstring>

#include "qins_kernels.h"

namespace qins::core::kernels {

uint16_t to_bf16(float f) {
  uint32_t u = 0;
  std::memcpy(&u, &f, sizeof(u));
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float from_bf16(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f = 0.f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

void build_signed_lut(const float* lut, float* out) {
  for (int j = 0; j < 128; ++j) {
    uint32_t bits = 0;
    std::memcpy(&bits, &lut[j], sizeof(bits));
    bits |= 0x80000000u;
    out[j] = lut[j];
    std::memcpy(&out[128 + j], &bits, sizeof(bits));
  }
}

void build_tables(const float* lut, LutTables* t) {
  build_signed_lut(lut, t->signed_lut);
  for (int j = 0; j < 128; ++j) {
    t->lut[j] = lut[j];
    uint32_t bits = 0;
    std::memcpy(&bits, &lut[j], sizeof(bits));
    for (int k = 0; k < 4; ++k) t->planes[k][j] = static_cast<uint8_t>(bits >> (8 * k));
    const uint16_t b = to_bf16(lut[j]);
    t->lut_bf16[j] = b;
    t->bf16_planes[0][j] = static_cast<uint8_t>(b & 0xff);
    t->bf16_planes[1][j] = static_cast<uint8_t>(b >> 8);
  }
}

void to_kernel_order(Order order, const float* x, int64_t n, float* xp) {
  if (order == Order::Natural) {
    std::memcpy(xp, x, sizeof(float) * static_cast<size_t>(n));
    return;
  }
  int64_t i = 0;
  if (order == Order::Split64) {
    for (; i + 64 <= n; i += 64)
      for (int p = 0; p < 32; ++p) xp[i + p] = x[i + 2 * p], xp[i + 32 + p] = x[i + 2 * p + 1];
    for (; i < n; ++i) xp[i] = x[i];
    return;
  }
  for (; i + 64 <= n; i += 64) {
    for (int f = 0; f < 4; ++f)
      for (int lane = 0; lane < 4; ++lane)
        for (int t = 0; t < 4; ++t) xp[i + f * 16 + lane * 4 + t] = x[i + lane * 16 + f * 4 + t];
  }
  for (; i < n; ++i) xp[i] = x[i];
}

namespace {

inline float code_value(uint8_t c, const float* lut) {
  const float m = lut[c & 0x7f];
  return (c & 0x80) ? -m : m;
}

void gemv_scalar(const uint8_t* codes, int64_t in, int64_t r0, int64_t r1, const float* scales,
                 const LutTables& t, const void* xpv, float* y) {
  const float* xp = static_cast<const float*>(xpv);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * in;
    float acc = 0.f;
    for (int64_t i = 0; i < in; ++i) acc += code_value(c[i], t.lut) * xp[i];
    y[r - r0] = acc * scales[r];
  }
}

// Row by row as gemv_scalar, each code's value computed once for up to 8 rows of x.
void gemv_rows_scalar(const uint8_t* codes, int64_t in, int64_t r0, int64_t r1, const float* scales,
                      const LutTables& t, const void* xpv, int64_t m, float* y, int64_t ldy) {
  const float* xp = static_cast<const float*>(xpv);
  constexpr int64_t kRows = 8;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * in;
    for (int64_t b0 = 0; b0 < m; b0 += kRows) {
      const int64_t nb = m - b0 < kRows ? m - b0 : kRows;
      float acc[kRows] = {};
      for (int64_t i = 0; i < in; ++i) {
        const float v = code_value(c[i], t.lut);
        for (int64_t b = 0; b < nb; ++b) acc[b] += v * xp[(b0 + b) * in + i];
      }
      for (int64_t b = 0; b < nb; ++b) y[(b0 + b) * ldy + (r - r0)] = acc[b] * scales[r];
    }
  }
}

void expand_scalar(const uint8_t* codes, int64_t in, int64_t r0, int64_t r1, const float* scales,
                   const LutTables& t, float* out) {
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * in;
    float* o = out + (r - r0) * in;
    const float s = scales[r];
    for (int64_t i = 0; i < in; ++i) o[i] = code_value(c[i], t.lut) * s;
  }
}

}  // namespace

const Kernel& scalar_kernel() {
  static const Kernel k{"scalar", Order::Natural, gemv_scalar, gemv_rows_scalar, expand_scalar};
  return k;
}

}  // namespace qins::core::kernels
