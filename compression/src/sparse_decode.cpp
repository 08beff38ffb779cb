// Sparsity decoder: non-zero bytes are decoded into the tail of dst, then expanded forward in
// place (the write position never passes the read position), so no full-size scratch buffer.
#include <cstring>
#include <string>

#include "qins/compression/bitstream.h"
#include "qins/compression/errors.h"
#include "qins/compression/huffman.h"
#include "qins/compression/sparse.h"

namespace qins::comp::sparse {
namespace {

void decode_block(uint8_t kind, const uint8_t* src, std::size_t size, uint8_t* dst,
                  std::size_t dst_size, const char* what) {
  if (kind == 0) {
    if (size != dst_size)
      throw CodecError(std::string("sparse ") + what + " block: raw size " + std::to_string(size) +
                       " does not match the declared " + std::to_string(dst_size));
    if (size) std::memcpy(dst, src, size);
  } else if (kind == 1) {
    huf::huffman_decode(src, size, dst, dst_size);
  } else {
    throw CodecError(std::string("sparse ") + what + " block: unknown kind " +
                     std::to_string(kind));
  }
}

}  // namespace

void sparse_decode(const uint8_t* src, std::size_t src_size, uint8_t* dst, std::size_t dst_size) {
  if (dst_size == 0) {
    if (src_size != 0) throw CodecError("sparse payload is not empty for an empty chunk");
    return;
  }
  if (src_size < 13) throw CodecError("sparse payload truncated (header)");
  const uint64_t nnz = load_le32(src);
  const uint64_t runs_raw = load_le32(src + 4);
  const uint64_t runs_stored = load_le32(src + 8);
  const uint8_t runs_kind = src[12];
  if (nnz > dst_size)
    throw CodecError("sparse payload: " + std::to_string(nnz) + " non-zero bytes exceed the " +
                     std::to_string(dst_size) + "-byte chunk");
  if (runs_raw > 2 * uint64_t(dst_size) + 2)
    throw CodecError("sparse payload: run stream size " + std::to_string(runs_raw) +
                     " is impossible for the chunk size");
  if (runs_stored > src_size - 13 || src_size - 13 - runs_stored < 1)
    throw CodecError("sparse payload: run block size " + std::to_string(runs_stored) +
                     " is out of range");
  const uint8_t* runs_src = src + 13;
  const uint8_t values_kind = runs_src[runs_stored];
  const uint8_t* values_src = runs_src + runs_stored + 1;
  const std::size_t values_stored = src_size - 13 - runs_stored - 1;

  uint8_t* values = dst + (dst_size - nnz);
  decode_block(values_kind, values_src, values_stored, values, nnz, "values");
  std::vector<uint8_t> runs(runs_raw);
  decode_block(runs_kind, runs_src, runs_stored, runs.data(), runs_raw, "runs");

  std::size_t pos = 0, r = 0;
  const uint8_t* rd = values;
  const uint8_t* vend = dst + dst_size;
  bool zero_run = true;
  while (r < runs.size()) {
    uint64_t v = 0;
    unsigned shift = 0;
    for (;;) {
      if (r >= runs.size()) throw CodecError("sparse payload: run stream ends inside a varint");
      if (shift > 28) throw CodecError("sparse payload: run length varint too long");
      const uint8_t b = runs[r++];
      v |= uint64_t(b & 0x7F) << shift;
      shift += 7;
      if (!(b & 0x80)) break;
    }
    if (v > dst_size - pos)
      throw CodecError("sparse payload: runs exceed the chunk size");
    if (zero_run) {
      std::memset(dst + pos, 0, v);
    } else {
      if (v > std::size_t(vend - rd))
        throw CodecError("sparse payload: runs use more non-zero bytes than stored");
      std::memmove(dst + pos, rd, v);
      rd += v;
    }
    pos += v;
    zero_run = !zero_run;
  }
  if (pos != dst_size || rd != vend)
    throw CodecError("sparse payload: runs cover " + std::to_string(pos) + " of " +
                     std::to_string(dst_size) + " bytes");
}

}  // namespace qins::comp::sparse
