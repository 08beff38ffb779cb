// One query head attending over cached K/V rows (the decode step's attention; PHI3.md §3):
// scores = scale * K q, softmax, out = V^T p. The fast twin (AVX-512 for head sizes 64/96/128
// where the CPU has it, else portable loops the compiler vectorises) and the plain reference,
// compared by tests/core/test_attention.cpp.
#pragma once

#include <cstdint>
#include <string>

namespace qins::core {

// q [hd] f32; k, v [n, hd] rows hd apart, f32 or bf16 bits (uint16_t); scores [n] f32 scratch
// (left holding the probabilities); out [hd] f32. n >= 1. No allocation.
void attend_rows(const float* q, const float* k, const float* v, int64_t n, int64_t hd, float scale, float* scores,
                 float* out);
void attend_rows(const float* q, const uint16_t* k, const uint16_t* v, int64_t n, int64_t hd, float scale,
                 float* scores, float* out);

// The same in plain loops: one fp32 sum per dot product, the textbook softmax.
void attend_rows_reference(const float* q, const float* k, const float* v, int64_t n, int64_t hd, float scale,
                           float* scores, float* out);
void attend_rows_reference(const float* q, const uint16_t* k, const uint16_t* v, int64_t n, int64_t hd, float scale,
                           float* scores, float* out);

// Which one attend_rows runs: "fast" (the default, also "auto" or "") or "reference". Throws
// std::invalid_argument for another name. The environment variable QINS_ATTENTION=<name> sets
// the initial choice. Not meant to be changed while attention runs.
void set_attention_path(const std::string& name);
const char* attention_path();  // "fast" or "reference"
// Whether the AVX-512 loops serve head size hd on this CPU and build (else the portable ones).
bool attention_has_avx512(int64_t hd);

}  // namespace qins::core
