// The AVX-512 attention loops (attention.h), compiled per function for AVX-512F so the rest of
// the build keeps the baseline ISA; attention.cpp calls them only where the CPU has it.
#include "attention_avx512.h"

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <type_traits>

#if QINS_ATTENTION_AVX512
#include <immintrin.h>

namespace qins::core::attention_detail {

namespace {

// AVX-512 versions for head sizes of 16 * NV (Phi-3.5: 96 = 6 x 16): q, or the NV output
// accumulators, stay in registers for the whole row range, K/V rows are widened from bf16 with one
// zero-extend and one shift per 16 values, and the scores of 4 rows are reduced together (one
// transpose-and-add instead of 4 horizontal sums). The compiler's version of the portable loops (attention.cpp) ran
// at about half the memory bandwidth (perf, Phi-3.5-mini at 1k context); these follow it.
#define QINS_AVX512F __attribute__((target("avx512f")))
// GCC 12's AVX-512 headers start many intrinsics from a self-initialised "undefined" vector and
// then warn about it once inlined here (a known false positive); nothing below reads one.
#if !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

QINS_AVX512F inline __m512 load16(const uint16_t* p) {
  const __m512i w = _mm512_cvtepu16_epi32( _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
QINS_AVX512F inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }

// The sums of a0..a3's 16 lanes, as 4 floats [sum a0, sum a1, sum a2, sum a3].
QINS_AVX512F inline __m128 sum4(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
  const __m512 r01 = _mm512_add_ps(_mm512_unpacklo_ps(a0, a1), _mm512_unpackhi_ps(a0, a1));  // a0 a1 a0 a1 per 128 bits
  const __m512 r23 = _mm512_add_ps(_mm512_unpacklo_ps(a2, a3), _mm512_unpackhi_ps(a2, a3));
  const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(r01, r23, 0x44), _mm512_shuffle_ps(r01, r23, 0xEE));  // a0 a1 a2 a3
  const __m512 h = _mm512_add_ps(r, _mm512_shuffle_f32x4(r, r, 0x4E));  // 128-bit lanes 0+2, 1+3
  return _mm512_castps512_ps128(_mm512_add_ps(h, _mm512_shuffle_f32x4(h, h, 0xB1)));
}

// Rows of K/V requested this far ahead of use (6 KB at head size 96): in an isolated harness 16
// rows ahead gave +10 % over the hardware prefetchers alone (which restart at every head's rows),
// 32 rows another +3 %. Past the last row the requests touch the next head's rows or unused
// cache positions; a prefetch never faults, even past the end.
constexpr int64_t kAheadRows = 32;

// Requests [p + ahead, p + ahead + bytes), computed as an integer address (never dereferenced).
inline void prefetch_rows(const void* p, size_t ahead, size_t bytes) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p) + ahead;
  for (size_t o = 0; o < bytes; o += 64) _mm_prefetch(reinterpret_cast<const char*>(a + o), _MM_HINT_T0);
}

template <int NV, typename KT>
QINS_AVX512F void dot_rows_avx512(const float* q, const KT* k, int64_t n, float scale, float* scores) {
  constexpr int64_t hd = 16 * NV;
  __m512 qv[NV];
  for (int v = 0; v < NV; ++v) qv[v] = _mm512_loadu_ps(q + 16 * v);
  const __m128 sc = _mm_set1_ps(scale);
  int64_t s = 0;
  for (; s + 4 <= n; s += 4) {
    const KT* r = k + s * hd;
    prefetch_rows(r, kAheadRows * hd * sizeof(KT), 4 * hd * sizeof(KT));
    __m512 a0 = _mm512_mul_ps(qv[0], load16(r)), a1 = _mm512_mul_ps(qv[0], load16(r + hd));
    __m512 a2 = _mm512_mul_ps(qv[0], load16(r + 2 * hd)), a3 = _mm512_mul_ps(qv[0], load16(r + 3 * hd));
    for (int v = 1; v < NV; ++v) {
      a0 = _mm512_fmadd_ps(qv[v], load16(r + 16 * v), a0);
      a1 = _mm512_fmadd_ps(qv[v], load16(r + hd + 16 * v), a1);
      a2 = _mm512_fmadd_ps(qv[v], load16(r + 2 * hd + 16 * v), a2);
      a3 = _mm512_fmadd_ps(qv[v], load16(r + 3 * hd + 16 * v), a3);
    }
    _mm_storeu_ps(scores + s, _mm_mul_ps(sum4(a0, a1, a2, a3), sc));
  }
  for (; s < n; ++s) {
    const KT* r = k + s * hd;
    __m512 a = _mm512_mul_ps(qv[0], load16(r));
    for (int v = 1; v < NV; ++v) a = _mm512_fmadd_ps(qv[v], load16(r + 16 * v), a);
    const __m512 z = _mm512_setzero_ps();
    scores[s] = _mm_cvtss_f32(sum4(a, z, z, z)) * scale;
  }
}

template <int NV, typename KT>
QINS_AVX512F void weighted_rows_avx512(const float* p, const KT* v, int64_t n, float* out) {
  constexpr int64_t hd = 16 * NV;
  __m512 acc[NV];
  for (int j = 0; j < NV; ++j) acc[j] = _mm512_setzero_ps();
  for (int64_t s = 0; s < n; ++s) {
    const __m512 w = _mm512_set1_ps(p[s]);
    const KT* r = v + s * hd;
    prefetch_rows(r, kAheadRows * hd * sizeof(KT), hd * sizeof(KT));
    for (int j = 0; j < NV; ++j) acc[j] = _mm512_fmadd_ps(w, load16(r + 16 * j), acc[j]);
  }
  for (int j = 0; j < NV; ++j) _mm512_storeu_ps(out + 16 * j, acc[j]);
}

// exp(x) for x <= 0 (softmax arguments): 2^k * e^r with k = round(x / ln 2) and r = x - k ln 2
// (ln 2 in two parts, so r is exact to a few ulp), |r| <= ln 2 / 2; e^r by its Taylor series to
// r^7 (truncation below 6e-9 relative, under float's half ulp). vscalefps applies 2^k.
QINS_AVX512F inline __m512 exp_nonpositive(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));  // below, exp is 0 in float anyway
  const __m512 k =
      _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT);
  __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 y = _mm512_set1_ps(1.0f / 5040);
  for (const float c : {1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f})
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(c));
  return _mm512_scalef_ps(y, k);
}

// The softmax above, 16 scores at a time (the scalar one was ~16 % of the attention time at 1k
// context: 1024 exp per head with the memory idle meanwhile).
QINS_AVX512F void softmax_in_place_avx512(float* p, int64_t n) {
  const int64_t n16 = n & ~int64_t{15};
  const auto tail = static_cast<__mmask16>((1u << (n - n16)) - 1);
  __m512 m = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t s = 0; s < n16; s += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(p + s));
  m = _mm512_mask_max_ps(m, tail, m, _mm512_maskz_loadu_ps(tail, p + n16));
  // The largest lane, in every lane: swap 256-bit halves, 128-bit quarters, pairs, neighbours.
  m = _mm512_max_ps(m, _mm512_shuffle_f32x4(m, m, 0x4E));
  m = _mm512_max_ps(m, _mm512_shuffle_f32x4(m, m, 0xB1));
  m = _mm512_max_ps(m, _mm512_permute_ps(m, 0x4E));
  const __m512 mx = _mm512_max_ps(m, _mm512_permute_ps(m, 0xB1));
  __m512 sum = _mm512_setzero_ps();
  for (int64_t s = 0; s < n16; s += 16) {
    const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_loadu_ps(p + s), mx));
    _mm512_storeu_ps(p + s, e);
    sum = _mm512_add_ps(sum, e);
  }
  if (tail) {
    const __m512 e = _mm512_maskz_mov_ps(tail, exp_nonpositive(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, p + n16), mx)));
    _mm512_mask_storeu_ps(p + n16, tail, e);
    sum = _mm512_add_ps(sum, e);
  }
  const __m512 z = _mm512_setzero_ps();
  const __m512 inv = _mm512_set1_ps(1.0f / _mm_cvtss_f32(sum4(sum, z, z, z)));
  for (int64_t s = 0; s < n16; s += 16) _mm512_storeu_ps(p + s, _mm512_mul_ps(_mm512_loadu_ps(p + s), inv));
  if (tail) _mm512_mask_storeu_ps(p + n16, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, p + n16), inv));
}

}  // namespace

template <typename KT>
bool attend_rows_avx512(const float* q, const KT* k, const KT* v, int64_t n, int64_t hd, float scale, float* scores,
                        float* out) {
  auto run = [&](auto nv) {
    constexpr int NV = decltype(nv)::value;
    dot_rows_avx512<NV>(q, k, n, scale, scores);
    softmax_in_place_avx512(scores, n);
    weighted_rows_avx512<NV>(scores, v, n, out);
  };
  if (hd == 64) run(std::integral_constant<int, 4>{});
  else if (hd == 96) run(std::integral_constant<int, 6>{});
  else if (hd == 128) run(std::integral_constant<int, 8>{});
  else return false;
  return true;
}

template bool attend_rows_avx512(const float*, const float*, const float*, int64_t, int64_t, float, float*, float*);
template bool attend_rows_avx512(const float*, const uint16_t*, const uint16_t*, int64_t, int64_t, float, float*,
                                 float*);

#if !defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace qins::core::attention_detail

#endif  // QINS_ATTENTION_AVX512
