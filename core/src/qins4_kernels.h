// Internal QINS-4 kernel interface: plain C++ (no torch). See qins/core/qins4.h for the layout:
// per row, n_blocks blocks of 32 columns, 16 code bytes each (byte b: column b low nibble,
// column b + 16 high nibble); one fp16 scale per group of `group_blocks` blocks.
#pragma once

#include <cstdint>

namespace qins::core::kernels4 {

// IEEE half -> float (exact) and float -> half (round to nearest even, overflow to inf).
float half_to_float(uint16_t h);
uint16_t float_to_half(float f);

// One activation row rounded to int8 per block of 32 columns: xq[i] = round(x[i] / dx[b]),
// dx[b] = max |x| over the block / 127 (0 for an all-zero block). Columns in [in, n_blocks * 32)
// are zero. xq: [n_blocks * 32], dx: [n_blocks].
// It runs on one thread before every projection of a decode step, so it has a vector form:
// quantize_x takes it where the CPU has it; quantize_x_scalar is its twin (the same bytes).
void quantize_x(const float* x, int64_t in, int64_t n_blocks, int8_t* xq, float* dx);
void quantize_x_scalar(const float* x, int64_t in, int64_t n_blocks, int8_t* xq, float* dx);
// The AVX2 form; false (nothing written) where the build or the CPU lacks AVX2.
bool quantize_x_avx2(const float* x, int64_t in, int64_t n_blocks, int8_t* xq, float* dx);
// The AVX-512 group-16 batched loop's L1 budget for rows of x (bytes; <= 0: the default, 24 KB):
// beyond it a thread runs tiles of code rows over column segments. For bench_qins4's comparison.
void set_sb_x_bytes(int64_t bytes);

struct Kernel4 {
  const char* name;
  // y[r - r0] = sum_b half(scales[r * n_groups + b / group_blocks]) * dx[b] * sum_{i<32} lut[k(r, b, i)] * xq[b * 32 + i]
  // for r in [r0, r1), n_groups = n_blocks / group_blocks. The integer sums are exact.
  void (*gemv)(const uint8_t* codes, int64_t n_blocks, int group_blocks, int64_t r0, int64_t r1,
               const uint16_t* scales, const int8_t* lut, const int8_t* xq, const float* dx, float* y);
  // out[(r - r0) * n_blocks * 32 + i] = half(scale of i's group) * lut[k(r, i)], natural order.
  void (*expand)(const uint8_t* codes, int64_t n_blocks, int group_blocks, int64_t r0, int64_t r1,
                 const uint16_t* scales, const int8_t* lut, float* out);
  // Group 16 (two groups per block: its low nibbles, columns 0-15, and its high nibbles, 16-31):
  // y[r - r0] = sum_b dx[b] * (st[sub[r, 2b]] * isum_lo(r, b) + st[sub[r, 2b + 1]] * isum_hi(r, b)),
  // sub: [out, 2 * n_blocks] uint8 codes into st, the tensor's 256-entry table of scales.
  void (*gemv16)(const uint8_t* codes, int64_t n_blocks, int64_t r0, int64_t r1, const uint8_t* sub,
                 const float* st, const int8_t* lut, const int8_t* xq, const float* dx, float* y);
  // out[(r - r0) * n_blocks * 32 + i] = st[sub[r, i / 16]] * lut[k(r, i)].
  void (*expand16)(const uint8_t* codes, int64_t n_blocks, int64_t r0, int64_t r1, const uint8_t* sub,
                   const float* st, const int8_t* lut, float* out);
  // The small-batch decode paths (one token of each of n_x sequences): gemv and gemv16 for n_x rows
  // of x at once, row j at xq + j * n_blocks * 32 and dx + j * n_blocks, its outputs at
  // y + j * y_stride (y[j * y_stride + r - r0]). Row j's outputs are bit for bit what gemv /
  // gemv16 give it alone; each code is looked up once for several rows. Null where a path has
  // none: the caller then runs gemv / gemv16 once per row (the same results, codes read n_x times).
  void (*gemv_rows)(const uint8_t* codes, int64_t n_blocks, int group_blocks, int64_t r0, int64_t r1,
                    const uint16_t* scales, const int8_t* lut, const int8_t* xq, const float* dx, int64_t n_x,
                    float* y, int64_t y_stride);
  void (*gemv16_rows)(const uint8_t* codes, int64_t n_blocks, int64_t r0, int64_t r1, const uint8_t* sub,
                      const float* st, const int8_t* lut, const int8_t* xq, const float* dx, int64_t n_x, float* y,
                      int64_t y_stride);
};

// The bf16 GEMM's tile rows straight from the codes (QINS-4's prefill through the 8-bit codes'
// bf16 GEMM): columns [0, n) of a row segment that starts at a 64-column boundary, c its first
// code byte and either sub (group 16: its first block's two sub-scale codes into st) or scales
// (groups of group_blocks blocks: its first block's fp16 scale; sub null). out: bf16 of expand's /
// expand16's value of each column, in Split64 order in full 64-column blocks and natural order in
// the partial last one: what the bf16 kernel's pack_x makes of their fp32 row, bit for bit.
using ExpandBf16 = void (*)(const uint8_t* c, const uint8_t* sub, const float* st, const uint16_t* scales,
                            int group_blocks, const int8_t* lut, int64_t n, uint16_t* out);
// Null where the build or the CPU lacks the bf16 GEMM (kernels::avx512bf16_kernel()).
ExpandBf16 expand_bf16_avx512();

const Kernel4& scalar_kernel4();
// Null where the build or the CPU lacks the instructions.
const Kernel4* avx2_kernel4();
const Kernel4* avx512_kernel4();
const Kernel4* neon_kernel4();

}  // namespace qins::core::kernels4
