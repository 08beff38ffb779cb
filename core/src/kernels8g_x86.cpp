// QINS-8 grouped, AVX2: the 128-entry fp32 table looked up without a gather, by byte planes. Each
// of the 4 byte planes of the table is split into eight 16-byte sub-tables T_0..T_7 and stored
// telescoped (U_0 = T_0, U_s = T_s ^ T_{s-1}); vpshufb of U_s with the index bytes j - 16 s (which
// go negative, giving 0, once s > j >> 4) XORed over s leaves T_{j>>4}[j & 15], the exact byte. The
// code's sign bit is ORed into the top byte and the planes are interleaved with in-lane unpacks:
// 32 codes become 4 vectors of 8 floats in Block32 order (x is put in that order once per call).
// Per group: two accumulators of lut * x, then one FMA with the broadcast group scale into the
// row's accumulator. Compiled with per-function target attributes; dispatch checks the CPU.
#include <cstddef>
#include <vector>

#include "qins8g_kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#include <cstring>

namespace qins::core::kernels8g {

namespace {

// F16C for the fp16 scales: every AVX2 CPU has it (Intel since Ivy Bridge, AMD since Piledriver).
#define QINS8G_AVX2 __attribute__((target("avx2,fma,f16c")))

struct Planes {
  alignas(32) uint8_t u[8][4][32];  // telescoped sub-table s of byte plane k, in both 128-bit lanes
};

void build_planes(const float* lut, Planes* p) {
  uint8_t plane[4][128];
  for (int j = 0; j < 128; ++j) {
    uint32_t bits = 0;
    std::memcpy(&bits, &lut[j], sizeof bits);
    for (int k = 0; k < 4; ++k) plane[k][j] = static_cast<uint8_t>(bits >> (8 * k));
  }
  for (int s = 0; s < 8; ++s)
    for (int k = 0; k < 4; ++k)
      for (int j = 0; j < 16; ++j) {
        const uint8_t cur = plane[k][16 * s + j], prev = s ? plane[k][16 * (s - 1) + j] : uint8_t{0};
        p->u[s][k][j] = p->u[s][k][j + 16] = static_cast<uint8_t>(cur ^ prev);
      }
}

// 32 code bytes -> f[q] = signed table values of columns 4q..4q+3 (low lane) and 16+4q..16+4q+3.
QINS8G_AVX2 inline void decode32(const uint8_t* c, const Planes& p, __m256 f[4]) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c));
  const __m256i s16 = _mm256_set1_epi8(16);
  __m256i idx = _mm256_and_si256(v, _mm256_set1_epi8(0x7f));
  __m256i b[4];
  for (int k = 0; k < 4; ++k)
    b[k] = _mm256_shuffle_epi8(_mm256_load_si256(reinterpret_cast<const __m256i*>(p.u[0][k])), idx);
  for (int s = 1; s < 8; ++s) {
    idx = _mm256_sub_epi8(idx, s16);
    for (int k = 0; k < 4; ++k)
      b[k] = _mm256_xor_si256(b[k], _mm256_shuffle_epi8(_mm256_load_si256(reinterpret_cast<const __m256i*>(p.u[s][k])), idx));
  }
  b[3] = _mm256_or_si256(b[3], _mm256_and_si256(v, _mm256_set1_epi8(static_cast<char>(0x80))));
  const __m256i l01 = _mm256_unpacklo_epi8(b[0], b[1]), h01 = _mm256_unpackhi_epi8(b[0], b[1]);
  const __m256i l23 = _mm256_unpacklo_epi8(b[2], b[3]), h23 = _mm256_unpackhi_epi8(b[2], b[3]);
  f[0] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(l01, l23));
  f[1] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(l01, l23));
  f[2] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(h01, h23));
  f[3] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(h01, h23));
}

QINS8G_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

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
  Planes p;
  build_planes(lut, &p);
  const int64_t n_groups = in_pad / group;
  std::vector<float> sc(static_cast<size_t>(n_groups));
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* c = codes + r * in_pad;
    row_scales_avx2(s, r, n_groups, sc.data());
    __m256 acc = _mm256_setzero_ps();
    for (int64_t g = 0; g < n_groups; ++g) {
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
      for (int64_t i = g * group; i < (g + 1) * group; i += 32) {
        __m256 f[4];
        decode32(c + i, p, f);
        a0 = _mm256_fmadd_ps(f[0], _mm256_loadu_ps(xp + i), a0);
        a1 = _mm256_fmadd_ps(f[1], _mm256_loadu_ps(xp + i + 8), a1);
        a0 = _mm256_fmadd_ps(f[2], _mm256_loadu_ps(xp + i + 16), a0);
        a1 = _mm256_fmadd_ps(f[3], _mm256_loadu_ps(xp + i + 24), a1);
      }
      acc = _mm256_fmadd_ps(_mm256_add_ps(a0, a1), _mm256_set1_ps(sc[static_cast<size_t>(g)]), acc);
    }
    y[r - r0] = hsum(acc);
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
