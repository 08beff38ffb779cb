// Bit streams shared by the Huffman encoder and decoder.
//
// Bit order: LSB-first. The first bit of a stream is bit 0 of byte 0; a value of n bits written
// with put(v, n) occupies the next n bit positions, its bit 0 first. Streams are little-endian
// byte sequences, so a 64-bit little-endian load at byte p yields the bits 8p..8p+63 in order.
// Huffman codes are therefore stored bit-reversed (see huffman.h) so the decoder can peek the
// low 12 bits of its bit buffer and look the symbol up directly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace qins::comp {

inline uint64_t load_le64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

inline void store_le64(uint8_t* p, uint64_t v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  std::memcpy(p, &v, 8);
}

inline uint32_t load_le32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

inline void store_le32(uint8_t* p, uint32_t v) {
  p[0] = uint8_t(v);
  p[1] = uint8_t(v >> 8);
  p[2] = uint8_t(v >> 16);
  p[3] = uint8_t(v >> 24);
}

// Writes bits LSB-first into a caller-sized buffer. The buffer must have 8 bytes of slack past
// the last byte the stream can occupy: flush() stores a whole 64-bit word each time.
class BitWriter {
 public:
  explicit BitWriter(uint8_t* out) : begin_(out), out_(out) {}

  // Appends the low n bits of v (n <= 56 between flushes; callers flush every <= 48 bits).
  void put(uint64_t v, unsigned n) {
    acc_ |= v << count_;
    count_ += n;
  }
  // Moves whole bytes of the accumulator to memory; afterwards count_ <= 7.
  void flush() {
    store_le64(out_, acc_);
    out_ += count_ >> 3;
    acc_ >>= count_ & ~7u;
    count_ &= 7u;
  }
  // Flushes and pads the last partial byte with zero bits; returns the stream size in bytes.
  std::size_t finish() {
    flush();
    if (count_ > 0) {
      *out_++ = uint8_t(acc_);
      acc_ = 0;
      count_ = 0;
    }
    return std::size_t(out_ - begin_);
  }

 private:
  uint8_t* begin_;
  uint8_t* out_;
  uint64_t acc_ = 0;
  unsigned count_ = 0;
};

}  // namespace qins::comp
