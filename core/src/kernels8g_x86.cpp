// QINS-8 grouped, AVX2: each code's exact fp32 value is loaded from the 256-entry signed table
// (lookup8_avx2 in simd_x86.h, as the row-scale AVX2 kernel does): 32 codes become 4 vectors of 8
// floats in Block32 order (x is put in that order once per call).
// Per group: two accumulators of lut * x, then one FMA with the broadcast group scale into the
// row's accumulator. Compiled with per-function target attributes; dispatch checks the CPU.
#include <cstddef>
#include <vector>

#include "qins8g_kernels.h"
#include "qins_kernels.h"
#include "simd_x86.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include <cstring>

namespace qins::core::kernels8g {

namespace {

// F16C for the fp16 scales: every AVX2 CPU has it (Intel since Ivy Bridge, AMD since Piledriver).
#define QINS8G_AVX2 __attribute__((target("avx2,fma,f16c")))

// The row's scales as fp32: log codes through the table, fp16 by vcvtph2ps 8 at a time (the
// function-call conversion of row_scales() measured ~15 % of the decode time at group 32).
QINS8G_AVX2 inline void row_scales_avx2(const Scales& s, int64_t r, int64_t n_groups, float* out) {
  if (!s.half) {
    row_scales(s, r, n_groups, out);
    return;
  }
  const uint16_t* h = s.half + r * n_groups;
  int64_t g = 0;
  for (; g + 8 <= n_groups; g += 8)
    _mm256_storeu_ps(out + g, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + g))));
  for (; g < n_groups; ++g) out[g] = _cvtsh_ss(h[g]);
}

QINS8G_AVX2 void gemv_avx2(const uint8_t* codes, int64_t in_pad, int group, int64_t r0, int64_t r1, const Scales& s,
                           const float* lut, const float* xp, float* y) {
  alignas(64) float sl[256];
  kernels::build_signed_lut(lut, sl);
  const int64_t n_groups = in_pad / group;
  std::vector<float> sc(static_cast<size_t>(n_groups));
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * in_pad;
    row_scales_avx2(s, r, n_groups, sc.data());
    __m256 acc = _mm256_setzero_ps();
    for (int64_t g = 0; g < n_groups; ++g) {
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
      for (int64_t i = g * group; i < (g + 1) * group; i += 32) {
        a0 = _mm256_fmadd_ps(kernels::lookup8_avx2(c + i, sl), _mm256_loadu_ps(xp + i), a0);
        a1 = _mm256_fmadd_ps(kernels::lookup8_avx2(c + i + 4, sl), _mm256_loadu_ps(xp + i + 8), a1);
        a0 = _mm256_fmadd_ps(kernels::lookup8_avx2(c + i + 8, sl), _mm256_loadu_ps(xp + i + 16), a0);
        a1 = _mm256_fmadd_ps(kernels::lookup8_avx2(c + i + 12, sl), _mm256_loadu_ps(xp + i + 24), a1);
      }
      acc = _mm256_fmadd_ps(_mm256_add_ps(a0, a1), _mm256_set1_ps(sc[static_cast<size_t>(g)]), acc);
    }
    y[r - r0] = kernels::hsum256(acc);
  }
}

}  // namespace

const Kernel8g* avx2_kernel8g() {
  static const Kernel8g k{"avx2", true, gemv_avx2};
  __builtin_cpu_init();
  const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok ? &k : nullptr;
}

}  // namespace qins::core::kernels8g

#else  // not x86

namespace qins::core::kernels8g {
const Kernel8g* avx2_kernel8g() { return nullptr; }
}  // namespace qins::core::kernels8g

#endif
