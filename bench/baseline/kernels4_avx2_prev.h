// The previous AVX2 and AVX-512 QINS-4 GEMV kernels (bench/baseline/kernels4_avx2_prev.cpp,
// kernels4_avx512_prev.cpp), same signatures as Kernel4::gemv / Kernel4::gemv16
// (core/src/qins4_kernels.h). x86-64 only; the caller checks that the CPU has AVX2 and FMA (and
// AVX-512 F/BW/VL for the _avx512 ones).
#pragma once

#include <cstdint>

namespace qins::bench::kernels4_prev {

void gemv_avx2_prev(const uint8_t* codes, int64_t n_blocks, int group_blocks, int64_t r0, int64_t r1,
                    const uint16_t* scales, const int8_t* lut, const int8_t* xq, const float* dx, float* y);
void gemv16_avx2_prev(const uint8_t* codes, int64_t n_blocks, int64_t r0, int64_t r1, const uint8_t* sub,
                      const float* st, const int8_t* lut, const int8_t* xq, const float* dx, float* y);

void gemv_avx512_prev(const uint8_t* codes, int64_t n_blocks, int group_blocks, int64_t r0, int64_t r1,
                      const uint16_t* scales, const int8_t* lut, const int8_t* xq, const float* dx, float* y);
void gemv16_avx512_prev(const uint8_t* codes, int64_t n_blocks, int64_t r0, int64_t r1, const uint8_t* sub,
                        const float* st, const int8_t* lut, const int8_t* xq, const float* dx, float* y);

}  // namespace qins::bench::kernels4_prev
