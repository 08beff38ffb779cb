// Order-0 entropy of a byte buffer (the bound `qins inspect` compares Huffman sizes against).
#include <cmath>

#include "qins/compression/container.h"
#include "qins/compression/huffman.h"

namespace qins::comp {

double entropy_bits_per_byte(const void* data, std::size_t size) {
  if (size == 0) return 0.0;
  const auto h = huf::histogram(static_cast<const uint8_t*>(data), size);
  double bits = 0;
  for (uint64_t f : h)
    if (f) bits -= double(f) * std::log2(double(f) / double(size));
  return bits / double(size);
}

}  // namespace qins::comp
