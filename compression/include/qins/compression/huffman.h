// Canonical Huffman coding of bytes with code lengths limited to 12 bits.
//
// Chunk payload (all integers little-endian), for n = raw size > 0:
//   table      1 byte  last = highest symbol with a non-zero length
//              ceil((last+1)/2) bytes of 4-bit lengths, symbol 2i in the low nibble of byte i
//   sizes      3 x u32 byte sizes of streams 0, 1, 2 (stream 3 takes the rest of the payload)
//   streams    4 bit streams (bitstream.h bit order), stream k holding symbols
//              [min(k*q, n), min((k+1)*q, n)) with q = ceil(n/4); each padded with zero bits to
//              a whole byte.
// For n = 0 the payload is empty. The table must describe a complete prefix code (Kraft sum
// exactly 1, at least 2 symbols); the encoder adds a phantom symbol when only one is used.
// Codes are canonical (shorter first, then by symbol value) and written bit-reversed, so the
// decoder peeks the low 12 bits of its buffer and looks up {symbol, length} in a 4096-entry table.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace qins::comp::huf {

constexpr unsigned kMaxCodeLength = 12;
constexpr unsigned kNumSymbols = 256;
constexpr unsigned kNumStreams = 4;

using Histogram = std::array<uint64_t, kNumSymbols>;
using CodeLengths = std::array<uint8_t, kNumSymbols>;

Histogram histogram(const uint8_t* src, std::size_t n);
// into[s] += h[s] for every symbol: the histogram of several buffers, for a code they share.
void merge_histogram(Histogram& into, const Histogram& h);

// Optimal code lengths under the limit max_len (package-merge). Symbols with zero frequency get
// length 0. With exactly one used symbol a phantom neighbour is added so the code is complete;
// with none, all lengths are 0. Requires max_len >= 8 (so 256 symbols always fit) and <= 12.
CodeLengths build_code_lengths(const Histogram& freq, unsigned max_len = kMaxCodeLength);

// Kraft sum scaled by 2^max_len: equals 2^max_len for a complete code.
uint64_t kraft_sum(const CodeLengths& lengths, unsigned max_len = kMaxCodeLength);

// Canonical codes, MSB-first (code of the shortest, lowest symbol is 0).
std::array<uint16_t, kNumSymbols> canonical_codes(const CodeLengths& lengths);

// Serialized table: write_table returns bytes written (table_size(lengths) of them).
std::size_t table_size(const CodeLengths& lengths);
std::size_t write_table(const CodeLengths& lengths, uint8_t* out);
// Parses and validates a table; returns bytes consumed. Throws CodecError("bad Huffman table: ...").
std::size_t read_table(const uint8_t* src, std::size_t src_size, CodeLengths& lengths);

// Upper bound (exact up to the <= 4 bytes of stream padding) of the payload huffman_encode
// produces for this histogram and these lengths; used to pick a codec without encoding.
std::size_t encoded_size(const Histogram& freq, const CodeLengths& lengths);

// Appends the payload for src[0..n) to out, with the code built from src's own histogram.
void huffman_encode(const uint8_t* src, std::size_t n, std::vector<uint8_t>& out);

// Appends the payload for src[0..n) to out with a given code (e.g. one code shared by the
// chunks of a section, built from their merged histogram; each payload still carries the
// table, so the bytes decode like any other payload). The lengths must form a complete code
// (what build_code_lengths returns for >= 1 used symbol) and give every byte of src a code;
// otherwise throws std::invalid_argument naming the problem.
void huffman_encode_with(const CodeLengths& lengths, const uint8_t* src, std::size_t n,
                         std::vector<uint8_t>& out);

// Decodes a payload into dst[0..dst_size) (dst_size = the raw size). Throws CodecError when the
// payload is malformed: bad table, stream sizes out of range, a stream that overruns or does not
// end exactly at its end.
void huffman_decode(const uint8_t* src, std::size_t src_size, uint8_t* dst, std::size_t dst_size);

// Decodes two payloads (two chunks) in one interleaved loop: the same output as two
// huffman_decode calls, about twice the independent work per loop iteration (see
// huffman_decode.cpp). When the two payloads carry the same code lengths (writers give the
// chunks of a section one shared code), the lookup tables are built once and both chunks' 8
// streams read the one table (half the L1 footprint). Throws CodecError like huffman_decode,
// without saying which chunk is bad: a caller that needs to name it decodes the two again one at
// a time.
void huffman_decode2(const uint8_t* src0, std::size_t src0_size, uint8_t* dst0,
                     std::size_t dst0_size, const uint8_t* src1, std::size_t src1_size,
                     uint8_t* dst1, std::size_t dst1_size);

}  // namespace qins::comp::huf
