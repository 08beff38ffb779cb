// Scalar reference kernels (the slow twin every SIMD path is tested against) and shared helpers.
#include <cstring>

#include "qins_kernels.h"

namespace qins::core::kernels {

void build_tables(const float* lut, LutTables* t) {
  for (int j = 0; j < 128; ++j) {
    t->lut[j] = lut[j];
    uint32_t bits = 0;
    std::memcpy(&bits, &lut[j], sizeof(bits));
    for (int k = 0; k < 4; ++k) t->planes[k][j] = static_cast<uint8_t>(bits >> (8 * k));
  }
}

void to_kernel_order(Order order, const float* x, int64_t n, float* xp) {
  if (order == Order::Natural) {
    std::memcpy(xp, x, sizeof(float) * static_cast<size_t>(n));
    return;
  }
  int64_t i = 0;
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
                 const LutTables& t, const float* xp, float* y) {
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * in;
    float acc = 0.f;
    for (int64_t i = 0; i < in; ++i) acc += code_value(c[i], t.lut) * xp[i];
    y[r - r0] = acc * scales[r];
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
  static const Kernel k{"scalar", Order::Natural, gemv_scalar, expand_scalar};
  return k;
}

}  // namespace qins::core::kernels
