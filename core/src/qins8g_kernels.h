// Internal QINS-8 grouped kernel interface: plain C++ (no torch). See qins/core/qins8g.h for the
// code: per row, in_pad code bytes in natural order (sign bit + 7-bit index into the fp32 table
// lut[128]), one scale per group of `group` (32 or 64) columns.
#pragma once

#include <cstdint>

namespace qins::core::kernels8g {

// A tensor's group scales: log-scale codes `sub` into the 256-entry table `st`, or fp16 `half`
// (exactly one of the two is set). Row r's scales start at r * n_groups.
struct Scales {
  const uint8_t* sub = nullptr;
  const float* st = nullptr;
  const uint16_t* half = nullptr;
};

// The n_groups scales of row r as fp32.
void row_scales(const Scales& s, int64_t r, int64_t n_groups, float* out);

// Block32 order: inside every 32-column block, position 8 q + t holds column 4 q + t and position
// 8 q + 4 + t column 16 + 4 q + t (q < 4, t < 4): what the AVX2 byte-plane unpacks of 32 codes
// produce. xp[0, n) from x[0, n); n a multiple of 32.
void to_block32(const float* x, int64_t n, float* xp);

struct Kernel8g {
  const char* name;
  bool block32;  // x in Block32 order (else natural)
  // y[r - r0] = sum_g scale(r, g) * sum_{i in group g} value(codes[r, i]) * x[i] for r in [r0, r1),
  // value(c) = (c & 0x80 ? -1 : 1) * lut[c & 0x7f]; x has in_pad entries (zero past in).
  void (*gemv)(const uint8_t* codes, int64_t in_pad, int group, int64_t r0, int64_t r1, const Scales& s,
               const float* lut, const float* xp, float* y);
};

const Kernel8g& scalar_kernel8g();
// Null where the build or the CPU lacks the instructions.
const Kernel8g* avx2_kernel8g();
const Kernel8g* neon_kernel8g();

}  // namespace qins::core::kernels8g
