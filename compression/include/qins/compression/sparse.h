// Sparsity coding: the zero code (byte 0x00, QINS "exactly zero") as a run-length stream beside
// a Huffman stream of the non-zero bytes. Lossless; pruning small codes to zero happens in the
// converter, before this. Pays off when zeros are frequent: plain Huffman spends >= 1 bit on
// every byte, runs of zeros here cost a few bits per run.
//
// Payload (little-endian), for n = raw size > 0:
//   u32 nonzero_count
//   u32 runs_raw_size        bytes of the LEB128 run stream once decoded (<= 2n + 2)
//   u32 runs_stored_size
//   u8  runs_kind            0 = raw, 1 = Huffman (huffman.h payload)
//   runs block               runs_stored_size bytes
//   u8  values_kind          0 = raw, 1 = Huffman
//   values block             the rest: nonzero_count bytes once decoded
// The run stream alternates zero-run and non-zero-run lengths, starting with a zero run (which
// may be 0), each an unsigned LEB128 varint of at most 5 bytes; the runs sum to exactly n.
// For n = 0 the payload is empty.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace qins::comp::sparse {

void sparse_encode(const uint8_t* src, std::size_t n, std::vector<uint8_t>& out);
// Throws CodecError on malformed input.
void sparse_decode(const uint8_t* src, std::size_t src_size, uint8_t* dst, std::size_t dst_size);

}  // namespace qins::comp::sparse
