// QINS-8 grouped: the scalar twin every SIMD path is tested against, and the shared helpers.
#include <cstddef>
#include <vector>

#include "qins4_kernels.h"
#include "qins8g_kernels.h"

namespace qins::core::kernels8g {

void row_scales(const Scales& s, int64_t r, int64_t n_groups, float* out) {
  if (s.sub) {
    const uint8_t* p = s.sub + r * n_groups;
    for (int64_t g = 0; g < n_groups; ++g) out[g] = s.st[p[g]];
  } else {
    const uint16_t* p = s.half + r * n_groups;
    for (int64_t g = 0; g < n_groups; ++g) out[g] = kernels4::half_to_float(p[g]);
  }
}

void to_block32(const float* x, int64_t n, float* xp) {
  for (int64_t b = 0; b + 32 <= n; b += 32)
    for (int q = 0; q < 4; ++q)
      for (int t = 0; t < 4; ++t) {
        xp[b + 8 * q + t] = x[b + 4 * q + t];
        xp[b + 8 * q + 4 + t] = x[b + 16 + 4 * q + t];
      }
}

namespace {

void gemv_scalar(const uint8_t* codes, int64_t in_pad, int group, int64_t r0, int64_t r1, const Scales& s,
                 const float* lut, const float* x, float* y) {
  const int64_t n_groups = in_pad / group;
  std::vector<float> sc(static_cast<size_t>(n_groups));
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * in_pad;
    row_scales(s, r, n_groups, sc.data());
    float acc = 0.f;
    for (int64_t g = 0; g < n_groups; ++g) {
      float part = 0.f;
      for (int64_t i = g * group; i < (g + 1) * group; ++i) {
        const float m = lut[c[i] & 0x7f];
        part += ((c[i] & 0x80) ? -m : m) * x[i];
      }
      acc += sc[static_cast<size_t>(g)] * part;
    }
    y[r - r0] = acc;
  }
}

}  // namespace

const Kernel8g& scalar_kernel8g() {
  static const Kernel8g k{"scalar", false, gemv_scalar};
  return k;
}

}  // namespace qins::core::kernels8g
