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
  alignas(64) float signed_lut[256];   // value of each whole code byte: lut[c & 0x7f] with bit 7 as the float's sign
  alignas(64) uint8_t bf16_planes[2][128];  // low / high byte of bf16(lut[j]) (bf16 kernels)
  uint16_t lut_bf16[128];                   // bf16(lut[j]), round to nearest even
};
void build_tables(const float* lut, LutTables* t);
// out[c] for every code byte c: lut[c & 0x7f] with bit 7 ORed into the float's sign bit (so 0x80 is
// -0.0f), what the byte-shuffle decoders produce; out has 256 entries.
void build_signed_lut(const float* lut, float* out);

// Element order a kernel uses inside a row. Block64: within each full 64-column block, kernel
// position p = f*16 + lane*4 + t holds natural column lane*16 + f*4 + t (the order AVX-512 byte
// unpacks produce); columns past the last full block stay in natural order.
// Split64 (bf16 kernels): within each full 64-column block, positions 0..31 hold the even columns
// 0, 2, .., 62 and positions 32..63 the odd ones (what a word-wise split of 64 code bytes gives).
enum class Order { Natural, Block64, Split64 };

// Reorder one row (length n) from natural order into `order` (out-of-place, fp32 kernels).
void to_kernel_order(Order order, const float* x, int64_t n, float* xp);

// fp32 -> bf16, round to nearest even (NaN stays NaN).
uint16_t to_bf16(float f);
float from_bf16(uint16_t b);

// Rows of a weight matrix that another code expands (QINS-4's prefill through the bf16 GEMM):
// row(ctx, r, k0, n, out) writes columns [k0, k0 + n) of row r as fp32 in natural order (k0 a
// multiple of 64); prefetch(ctx, r, k0, n), if set, asks for the codes of those columns ahead.
// row_bf16, if set, writes the same columns already rounded to bf16 in the layout pack_x gives
// (what pack_x makes of row's output, bit for bit); the GEMM then uses it instead of row.
struct RowSource {
  void (*row)(const void* ctx, int64_t r, int64_t k0, int64_t n, float* out) = nullptr;
  void (*row_bf16)(const void* ctx, int64_t r, int64_t k0, int64_t n, uint16_t* out) = nullptr;
  void (*prefetch)(const void* ctx, int64_t r, int64_t k0, int64_t n) = nullptr;
  const void* ctx = nullptr;
};

struct Kernel {
  const char* name;
  Order order;
  // y[r - r0] = scale[r] * sum_i value(codes[r, i]) * xp[i] for r in [r0, r1); xp in kernel order,
  // fp32 (float*) or, for bf16 kernels, bf16 (uint16_t*, see pack_x).
  void (*gemv)(const uint8_t* codes, int64_t in, int64_t r0, int64_t r1, const float* scales,
               const LutTables& t, const void* xp, float* y);
  // The small-batch decode path: m rows of x (kernel order, `in` elements apart, fp32 or bf16 as
  // gemv reads them): y[i * ldy + (r - r0)] for i < m is what gemv gives row i, bit for bit (the
  // same products added in the same order), while each code is decoded once for all m rows.
  void (*gemv_rows)(const uint8_t* codes, int64_t in, int64_t r0, int64_t r1, const float* scales,
                    const LutTables& t, const void* xp, int64_t m, float* y, int64_t ldy);
  // out[(r - r0) * in + p] = scale[r] * value(codes[r, natural(p)]) for r in [r0, r1), kernel order.
  // Used by the tile-expand + BLAS prefill; null for kernels with their own gemm.
  void (*expand)(const uint8_t* codes, int64_t in, int64_t r0, int64_t r1, const float* scales,
                 const LutTables& t, float* out);

  // bf16 kernels only (null otherwise): products of bf16(lut[j]) and bf16(x), fp32 accumulation.
  // pack_x: one row x[0, in) fp32 -> bf16 in kernel order (what gemv reads).
  void (*pack_x)(const float* x, int64_t in, uint16_t* xp) = nullptr;
  // gemm_x_size / pack_gemm_x: the m rows of x [m, in] in the layout gemm reads.
  int64_t (*gemm_x_size)(int64_t m, int64_t in) = nullptr;
  void (*pack_gemm_x)(const float* x, int64_t m, int64_t in, uint16_t* xpk) = nullptr;
  // y[i * ldy + r] = scale[r] * sum_k value(codes[r, k]) * x[i, k] for i < m, r in [r0, r1).
  void (*gemm)(const uint8_t* codes, int64_t in, int64_t r0, int64_t r1, const float* scales,
               const LutTables& t, const uint16_t* xpk, int64_t m, float* y, int64_t ldy) = nullptr;
  // The same GEMM on rows from `src`, rounded to bf16 as gemm rounds the table (x packed by
  // pack_gemm_x): y[i * ldy + r] = sum_k bf16(W[r, k]) * bf16(x[i, k]), fp32 sums, r in [r0, r1).
  void (*gemm_rows_f32)(const RowSource& src, int64_t in, int64_t r0, int64_t r1, const uint16_t* xpk, int64_t m,
                        float* y, int64_t ldy) = nullptr;
};

const Kernel& scalar_kernel();
// Null where the compiler or CPU lacks the instructions.
const Kernel* avx2_kernel();
const Kernel* avx512_kernel();
const Kernel* avx512bf16_kernel();
const Kernel* neon_kernel();

}  // namespace qins::core::kernels
