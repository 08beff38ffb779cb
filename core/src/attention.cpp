// core::attend_rows: which loops run (attention.h), the portable fast loops and the reference.
// At 1k context the per-token K/V traffic is ~400 MB for Phi-3.5-mini (10 % of the weights):
// these loops read the cache as it is stored (bf16 or f32), never a widened copy.
#include "qins/core/attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <type_traits>

#include "attention_avx512.h"

namespace qins::core {

namespace {

inline float to_f32(float x) { return x; }
inline float to_f32(uint16_t b) {  // bf16 bits -> f32
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
#define QINS_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define QINS_MULTIVERSION
#endif

// scores[s] = scale * <q, K[s]> for s in [0, n); K rows hd apart. 16 partial sums so the
// compiler keeps full vectors busy.
template <typename KT>
QINS_MULTIVERSION void dot_rows(const float* q, const KT* k, int64_t n, int64_t hd, float scale, float* scores) {
  for (int64_t s = 0; s < n; ++s) {
    const KT* row = k + s * hd;
    float acc[16] = {};
    int64_t d = 0;
    for (; d + 16 <= hd; d += 16)
      for (int j = 0; j < 16; ++j) acc[j] += q[d + j] * to_f32(row[d + j]);
    float sum = 0.0f;
    for (int j = 0; j < 16; ++j) sum += acc[j];
    for (; d < hd; ++d) sum += q[d] * to_f32(row[d]);
    scores[s] = sum * scale;
  }
}

// out[d] = sum_s p[s] * V[s][d].
template <typename KT>
QINS_MULTIVERSION void weighted_rows(const float* p, const KT* v, int64_t n, int64_t hd, float* out) {
  for (int64_t d = 0; d < hd; ++d) out[d] = 0.0f;
  for (int64_t s = 0; s < n; ++s) {
    const KT* row = v + s * hd;
    const float w = p[s];
    for (int64_t d = 0; d < hd; ++d) out[d] += w * to_f32(row[d]);
  }
}

// p[s] = exp(p[s] - max) / sum, in place.
void softmax_in_place(float* p, int64_t n) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t s = 0; s < n; ++s) mx = std::max(mx, p[s]);
  float sum = 0.0f;
  for (int64_t s = 0; s < n; ++s) sum += (p[s] = std::exp(p[s] - mx));
  const float inv = 1.0f / sum;
  for (int64_t s = 0; s < n; ++s) p[s] *= inv;
}

bool cpu_has_avx512f() {
#if QINS_ATTENTION_AVX512
  static const bool ok = __builtin_cpu_supports("avx512f");
  return ok;
#else
  return false;
#endif
}

bool reference_by_name(const char* name) {
  const std::string s = name ? name : "";
  if (s.empty() || s == "auto" || s == "fast") return false;
  if (s == "reference") return true;
  throw std::invalid_argument("attention path '" + s + "': use fast, reference or auto");
}

std::atomic<bool>& reference_slot() {
  static std::atomic<bool> slot{reference_by_name(std::getenv("QINS_ATTENTION"))};
  return slot;
}

template <typename KT>
void attend_fast(const float* q, const KT* k, const KT* v, int64_t n, int64_t hd, float scale, float* scores,
                 float* out) {
#if QINS_ATTENTION_AVX512
  if (cpu_has_avx512f() && attention_detail::attend_rows_avx512(q, k, v, n, hd, scale, scores, out)) return;
#endif
  dot_rows(q, k, n, hd, scale, scores);
  softmax_in_place(scores, n);
  weighted_rows(scores, v, n, hd, out);
}

// The textbook loops: one running sum per dot product and per output element.
template <typename KT>
void attend_reference(const float* q, const KT* k, const KT* v, int64_t n, int64_t hd, float scale, float* scores,
                      float* out) {
  for (int64_t s = 0; s < n; ++s) {
    float dot = 0.0f;
    for (int64_t d = 0; d < hd; ++d) dot += q[d] * to_f32(k[s * hd + d]);
    scores[s] = dot * scale;
  }
  softmax_in_place(scores, n);
  for (int64_t d = 0; d < hd; ++d) {
    float acc = 0.0f;
    for (int64_t s = 0; s < n; ++s) acc += scores[s] * to_f32(v[s * hd + d]);
    out[d] = acc;
  }
}

}  // namespace

void attend_rows(const float* q, const float* k, const float* v, int64_t n, int64_t hd, float scale, float* scores,
                 float* out) {
  if (reference_slot().load(std::memory_order_relaxed)) attend_reference(q, k, v, n, hd, scale, scores, out);
  else attend_fast(q, k, v, n, hd, scale, scores, out);
}

void attend_rows(const float* q, const uint16_t* k, const uint16_t* v, int64_t n, int64_t hd, float scale,
                 float* scores, float* out) {
  if (reference_slot().load(std::memory_order_relaxed)) attend_reference(q, k, v, n, hd, scale, scores, out);
  else attend_fast(q, k, v, n, hd, scale, scores, out);
}

void attend_rows_reference(const float* q, const float* k, const float* v, int64_t n, int64_t hd, float scale,
                           float* scores, float* out) {
  attend_reference(q, k, v, n, hd, scale, scores, out);
}

void attend_rows_reference(const float* q, const uint16_t* k, const uint16_t* v, int64_t n, int64_t hd, float scale,
                           float* scores, float* out) {
  attend_reference(q, k, v, n, hd, scale, scores, out);
}

void set_attention_path(const std::string& name) { reference_slot().store(reference_by_name(name.c_str())); }

const char* attention_path() { return reference_slot().load() ? "reference" : "fast"; }

bool attention_has_avx512(int64_t hd) { return cpu_has_avx512f() && (hd == 64 || hd == 96 || hd == 128); }

}  // namespace qins::core
