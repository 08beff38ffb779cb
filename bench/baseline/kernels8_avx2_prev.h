// The previous AVX2 QINS 8-bit GEMV kernels (bench/baseline/kernels8_avx2_prev.cpp): codes decoded
// with 8 telescoped vpshufb lookups per byte plane. Same signatures as Kernel::gemv and
// Kernel::gemv_rows (core/src/qins_kernels.h), Block64 order. x86-64 only; the caller checks that
// the CPU has AVX2 and FMA.
#pragma once

#include <cstdint>

#include "qins_kernels.h"

namespace qins::bench::kernels8_prev {

void gemv_avx2_prev(const uint8_t* codes, int64_t in, int64_t r0, int64_t r1, const float* scales,
                    const qins::core::kernels::LutTables& t, const void* xp, float* y);
void gemv_rows_avx2_prev(const uint8_t* codes, int64_t in, int64_t r0, int64_t r1, const float* scales,
                         const qins::core::kernels::LutTables& t, const void* xp, int64_t m, float* y, int64_t ldy);

}  // namespace qins::bench::kernels8_prev
