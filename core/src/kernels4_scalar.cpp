// QINS-4 scalar reference kernels (the slow twin every SIMD path is tested against) and the
// helpers every path shares: fp16 conversion and the int8 rounding of activations.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "qins4_kernels.h"

namespace qins::core::kernels4 {

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t bits = 0;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);  // inf / NaN
  } else if (exp != 0) {
    bits = sign | ((exp + 112u) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    int e = -1;
    do {
      ++e;
      man <<= 1;
    } while ((man & 0x400u) == 0);
    bits = sign | (static_cast<uint32_t>(112 - e) << 23) | ((man & 0x3ffu) << 13);
  }
  float f = 0.f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

uint16_t float_to_half(float f) {
  uint32_t u = 0;
  std::memcpy(&u, &f, sizeof(u));
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds past 65504: inf
  if (a < 0x38800000u) {  // below the smallest normal half (2^-14): subnormal or zero
    // value / 2^-24 rounded to nearest even, as an integer mantissa.
    float v = 0.f;
    std::memcpy(&v, &a, sizeof(v));
    const float m = std::nearbyint(v * 16777216.f);  // 2^24
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(m));
  }
  // Normal: drop 13 mantissa bits with round to nearest even (a carry into the exponent is right).
  const uint32_t r = a + 0xfffu + ((a >> 13) & 1u);
  return static_cast<uint16_t>(sign | static_cast<uint16_t>((r - 0x38000000u) >> 13));
}

namespace {

// std::nearbyint in the default rounding mode (to nearest, ties to even), inlined: adding and
// taking away 1.5 * 2^23 leaves the integer nearest v wherever |v| < 2^22 (here |v| <= 127 and a
// rounding error; NaN stays NaN). The libm call was most of quantize_x's time, and quantize_x runs
// on one thread before every QINS-4 projection.
inline float round_to_even(float v) {
  constexpr float kMagic = 12582912.f;
  return (v + kMagic) - kMagic;
}

}  // namespace

void quantize_x_scalar(const float* x, int64_t in, int64_t n_blocks, int8_t* xq, float* dx) {
  for (int64_t b = 0; b < n_blocks; ++b) {
    const int64_t i0 = b * 32, i1 = std::min(in, i0 + 32);
    float amax = 0.f;
    for (int64_t i = i0; i < i1; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float d = amax / 127.f;
    const float id = amax > 0.f ? 127.f / amax : 0.f;
    dx[b] = d;
    if (i1 == i0 + 32) {
      for (int64_t i = i0; i < i1; ++i) xq[i] = static_cast<int8_t>(std::clamp(round_to_even(x[i] * id), -127.f, 127.f));
      continue;
    }
    for (int64_t i = i0; i < i0 + 32; ++i) {
      const float v = i < i1 ? round_to_even(x[i] * id) : 0.f;
      xq[i] = static_cast<int8_t>(std::clamp(v, -127.f, 127.f));
    }
  }
}

void quantize_x(const float* x, int64_t in, int64_t n_blocks, int8_t* xq, float* dx) {
  if (!quantize_x_avx2(x, in, n_blocks, xq, dx)) quantize_x_scalar(x, in, n_blocks, xq, dx);
}

namespace {

void gemv_scalar(const uint8_t* codes, int64_t n_blocks, int group_blocks, int64_t r0, int64_t r1,
                 const uint16_t* scales, const int8_t* lut, const int8_t* xq, const float* dx, float* y) {
  const int64_t n_groups = n_blocks / group_blocks;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * n_blocks * 16;
    const uint16_t* s = scales + r * n_groups;
    float acc = 0.f;
    for (int64_t b = 0; b < n_blocks; ++b) {
      int32_t isum = 0;
      for (int i = 0; i < 16; ++i) {
        const uint8_t byte = c[b * 16 + i];
        isum += lut[byte & 0x0f] * xq[b * 32 + i] + lut[byte >> 4] * xq[b * 32 + 16 + i];
      }
      acc += half_to_float(s[b / group_blocks]) * dx[b] * static_cast<float>(isum);
    }
    y[r - r0] = acc;
  }
}

void expand_scalar(const uint8_t* codes, int64_t n_blocks, int group_blocks, int64_t r0, int64_t r1,
                   const uint16_t* scales, const int8_t* lut, float* out) {
  const int64_t n_groups = n_blocks / group_blocks;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * n_blocks * 16;
    float* o = out + (r - r0) * n_blocks * 32;
    for (int64_t b = 0; b < n_blocks; ++b) {
      const float d = half_to_float(scales[r * n_groups + b / group_blocks]);
      for (int i = 0; i < 16; ++i) {
        const uint8_t byte = c[b * 16 + i];
        o[b * 32 + i] = d * static_cast<float>(lut[byte & 0x0f]);
        o[b * 32 + 16 + i] = d * static_cast<float>(lut[byte >> 4]);
      }
    }
  }
}

void gemv16_scalar(const uint8_t* codes, int64_t n_blocks, int64_t r0, int64_t r1, const uint8_t* sub,
                   const float* st, const int8_t* lut, const int8_t* xq, const float* dx, float* y) {
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * n_blocks * 16;
    const uint8_t* s = sub + r * n_blocks * 2;
    float acc = 0.f;
    for (int64_t b = 0; b < n_blocks; ++b) {
      int32_t lo = 0, hi = 0;
      for (int i = 0; i < 16; ++i) {
        const uint8_t byte = c[b * 16 + i];
        lo += lut[byte & 0x0f] * xq[b * 32 + i];
        hi += lut[byte >> 4] * xq[b * 32 + 16 + i];
      }
      acc += dx[b] * (st[s[2 * b]] * static_cast<float>(lo) + st[s[2 * b + 1]] * static_cast<float>(hi));
    }
    y[r - r0] = acc;
  }
}

void expand16_scalar(const uint8_t* codes, int64_t n_blocks, int64_t r0, int64_t r1, const uint8_t* sub,
                     const float* st, const int8_t* lut, float* out) {
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * n_blocks * 16;
    float* o = out + (r - r0) * n_blocks * 32;
    for (int64_t b = 0; b < n_blocks; ++b) {
      const float d0 = st[sub[r * n_blocks * 2 + 2 * b]];
      const float d1 = st[sub[r * n_blocks * 2 + 2 * b + 1]];
      for (int i = 0; i < 16; ++i) {
        const uint8_t byte = c[b * 16 + i];
        o[b * 32 + i] = d0 * static_cast<float>(lut[byte & 0x0f]);
        o[b * 32 + 16 + i] = d1 * static_cast<float>(lut[byte >> 4]);
      }
    }
  }
}

}  // namespace

const Kernel4& scalar_kernel4() {
  static const Kernel4 k{"scalar", gemv_scalar, expand_scalar, gemv16_scalar, expand16_scalar, nullptr, nullptr};
  return k;
}

}  // namespace qins::core::kernels4
