// Test data generators: QINS-like codes (sign bit + magnitude index from quantized Laplace
// samples), uniform random bytes, Fibonacci histograms.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace qins::comp::test {

// Byte = sign << 7 | magnitude index (0..127); index ~ |x| / scale with x Laplace(b):
// geometric-like, most mass near small indices, like QINS codes; 0x00 is the zero code.
inline std::vector<uint8_t> qins_like_codes(std::size_t n, uint32_t seed, double spread = 12.0) {
  std::mt19937_64 rng(seed);
  std::exponential_distribution<double> ex(1.0);
  std::vector<uint8_t> v(n);
  for (auto& b : v) {
    const double m = ex(rng) * spread;
    unsigned idx = unsigned(m);
    if (idx > 127) idx = 127;
    const unsigned sign = (rng() & 1) && idx != 0 ? 0x80u : 0u;  // never emit 0x80
    b = uint8_t(sign | idx);
  }
  return v;
}

inline std::vector<uint8_t> random_bytes(std::size_t n, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = uint8_t(rng());
  return v;
}

// Mostly zeros (fraction p_zero), other bytes QINS-like.
inline std::vector<uint8_t> sparse_codes(std::size_t n, uint32_t seed, double p_zero) {
  auto v = qins_like_codes(n, seed);
  std::mt19937_64 rng(seed + 1);
  std::uniform_real_distribution<double> u(0, 1);
  for (auto& b : v)
    if (u(rng) < p_zero) b = 0;
  return v;
}

}  // namespace qins::comp::test
