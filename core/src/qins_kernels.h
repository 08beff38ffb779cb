// Internal kernel interface: plain C++ (no torch) so the SIMD files compile fast.
// A kernel computes with one table (lut) per tensor and one scale per row; code byte:
// bit 7 = sign, bits 0..6 = magnitude index j.
#pragma once

#include <cstdint>

namespace qins::core::kernels {

// Per-tensor tables derived from lut[128] once per call (1.5 KB, stays in L1).
struct LutTables {
  alignas(64) float lut[128];        // magnitude per index j, lut[0] == 0
  alignas(64) uint8_t planes[4][128];  // byte k of lut[j] (little-endian), for byte-shuffle lookups
};
void build_tables(const float* lut, LutTables* t);

// Element order a kernel uses inside a row. Block64: within each full 64-column block, kernel
// position p = f*16 + lane*4 + t holds natural column lane*16 + f*4 + t (the order AVX-512 byte
// unpacks produce); columns past the last full block stay in natural order.
enum class Order { Natural, Block64 };

// Reorder one row (length n) from natural order into `order` (out-of-place).
void to_kernel_order(Order order, const float* x, int64_t n, float* xp);

struct Kernel {
  const char* name;
  Order order;
  // y[r - r0] = scale[r] * sum_i value(codes[r, i]) * xp[i] for r in [r0, r1); xp in kernel order.
  void (*gemv)(const uint8_t* codes, int64_t in, int64_t r0, int64_t r1, const float* scales,
               const LutTables& t, const float* xp, float* y);
  // out[(r - r0) * in + p] = scale[r] * value(codes[r, natural(p)]) for r in [r0, r1), kernel order.
  void (*expand)(const uint8_t* codes, int64_t in, int64_t r0, int64_t r1, const float* scales,
                 const LutTables& t, float* out);
};

const Kernel& scalar_kernel();
// Null where the compiler or CPU lacks the instructions.
const Kernel* avx2_kernel();
const Kernel* avx512_kernel();
const Kernel* neon_kernel();

}  // namespace qins::core::kernels
