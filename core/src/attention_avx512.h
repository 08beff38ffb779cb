// Internal: the AVX-512 attention loops (attention_avx512.cpp) behind core::attend_rows.
#pragma once

#include <cstdint>

#if defined(__x86_64__) && defined(__GNUC__)
#define QINS_ATTENTION_AVX512 1
#else
#define QINS_ATTENTION_AVX512 0
#endif

namespace qins::core::attention_detail {

#if QINS_ATTENTION_AVX512
// One head over n rows for hd 64, 96 or 128 (false, touching nothing, for another hd). The caller
// checks the CPU has AVX-512F. KT: float or uint16_t (bf16 bits).
template <typename KT>
bool attend_rows_avx512(const float* q, const KT* k, const KT* v, int64_t n, int64_t hd, float scale, float* scores,
                        float* out);
#endif

}  // namespace qins::core::attention_detail
