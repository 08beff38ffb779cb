// Huffman encoder: histogram -> limited lengths -> canonical codes -> 4 interleavable streams.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "qins/compression/bitstream.h"
#include "qins/compression/huffman.h"

namespace qins::comp::huf {
namespace {

unsigned reverse_bits(unsigned v, unsigned n) {
  unsigned r = 0;
  for (unsigned i = 0; i < n; ++i) r |= ((v >> i) & 1u) << (n - 1 - i);
  return r;
}

// Encodes src[0..n) into out (which has room for n*12/8 + 8 bytes); returns bytes written.
std::size_t encode_stream(const uint8_t* src, std::size_t n, const uint32_t* enc, uint8_t* out) {
  BitWriter w(out);
  std::size_t i = 0;
  // 4 codes (<= 48 bits) per flush keep the 64-bit accumulator from overflowing.
  for (; i + 4 <= n; i += 4) {
    for (unsigned k = 0; k < 4; ++k) {
      const uint32_t e = enc[src[i + k]];
      w.put(e & 0xFFFFu, e >> 16);
    }
    w.flush();
  }
  for (; i < n; ++i) {
    const uint32_t e = enc[src[i]];
    w.put(e & 0xFFFFu, e >> 16);
    w.flush();
  }
  return w.finish();
}

}  // namespace

void huffman_encode(const uint8_t* src, std::size_t n, std::vector<uint8_t>& out) {
  if (n == 0) return;
  huffman_encode_with(build_code_lengths(histogram(src, n)), src, n, out);
}

void huffman_encode_with(const CodeLengths& lengths, const uint8_t* src, std::size_t n,
                         std::vector<uint8_t>& out) {
  if (n == 0) return;
  unsigned used = 0;
  for (uint8_t l : lengths) {
    if (l > kMaxCodeLength)
      throw std::invalid_argument("huffman_encode_with: code length " + std::to_string(l) +
                                  " exceeds " + std::to_string(kMaxCodeLength));
    used += l > 0;
  }
  if (used < 2 || kraft_sum(lengths) != (uint64_t(1) << kMaxCodeLength))
    throw std::invalid_argument("huffman_encode_with: the code lengths are not a complete prefix code");
  // Every byte of src needs a code (a zero length would write nothing and lose the symbol).
  uint8_t missing = 0;
  for (std::size_t i = 0; i < n; ++i) missing |= uint8_t(lengths[src[i]] == 0);
  if (missing) {
    for (std::size_t i = 0; i < n; ++i)
      if (lengths[src[i]] == 0)
        throw std::invalid_argument("huffman_encode_with: byte " + std::to_string(src[i]) +
                                    " at offset " + std::to_string(i) + " has no code");
  }
  const auto codes = canonical_codes(lengths);
  // enc[s] = bit-reversed code | length << 16 (LSB-first streams, see bitstream.h).
  uint32_t enc[kNumSymbols];
  for (unsigned s = 0; s < kNumSymbols; ++s)
    enc[s] = lengths[s] ? reverse_bits(codes[s], lengths[s]) | uint32_t(lengths[s]) << 16 : 0;

  const std::size_t base = out.size();
  const std::size_t tsize = table_size(lengths);
  const std::size_t q = (n + kNumStreams - 1) / kNumStreams;
  // Worst case 12 bits per symbol, + 8 bytes of BitWriter slack per stream.
  out.resize(base + tsize + 4 * (kNumStreams - 1) + (q * kMaxCodeLength + 7) / 8 * kNumStreams +
             8 * kNumStreams + 8);
  uint8_t* p = out.data() + base;
  write_table(lengths, p);
  uint8_t* sizes = p + tsize;
  uint8_t* o = sizes + 4 * (kNumStreams - 1);
  for (unsigned k = 0; k < kNumStreams; ++k) {
    const std::size_t b = std::min(n, k * q), e = std::min(n, (k + 1) * q);
    const std::size_t bytes = encode_stream(src + b, e - b, enc, o);
    if (k + 1 < kNumStreams) store_le32(sizes + 4 * k, uint32_t(bytes));
    o += bytes;
  }
  out.resize(std::size_t(o - out.data()));
}

}  // namespace qins::comp::huf
