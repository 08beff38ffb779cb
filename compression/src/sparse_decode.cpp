// Sparsity decoder: non-zero bytes and the run stream are decoded into per-thread scratch
// (chunk-sized), then expanded into dst run by run.
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

  // Per-thread scratch (reused across chunks) so short runs can be copied with fixed 16-byte
  // moves; each is <= the chunk size, never the whole model.
  thread_local std::vector<uint8_t> values_buf, runs;
  values_buf.resize(nnz + 16);
  runs.resize(runs_raw);
  decode_block(values_kind, values_src, values_stored, values_buf.data(), nnz, "values");
  decode_block(runs_kind, runs_src, runs_stored, runs.data(), runs_raw, "runs");

  // Where time goes: one varint + one short copy per run; runs are short when zeros are
  // frequent but scattered, so the common case avoids memset/memcpy calls.
  std::size_t pos = 0, r = 0;
  const uint8_t* rd = values_buf.data();
  const uint8_t* vend = rd + nnz;
  const uint8_t* rp = runs.data();
  const std::size_t rn = runs.size();
  static const uint8_t kZeros[16] = {};
  bool zero_run = true;
  while (r < rn) {
    uint64_t v = rp[r++];
    if (v & 0x80) {
      v &= 0x7F;
      unsigned shift = 7;
      for (;;) {
        if (r >= rn) throw CodecError("sparse payload: run stream ends inside a varint");
        if (shift > 28) throw CodecError("sparse payload: run length varint too long");
        const uint8_t b = rp[r++];
        v |= uint64_t(b & 0x7F) << shift;
        shift += 7;
        if (!(b & 0x80)) break;
      }
    }
    const std::size_t room = dst_size - pos;
    if (v > room) throw CodecError("sparse payload: runs exceed the chunk size");
    if (zero_run) {
      if (v <= 16 && room >= 16)
        std::memcpy(dst + pos, kZeros, 16);
      else
        std::memset(dst + pos, 0, v);
    } else {
      if (v > std::size_t(vend - rd))
        throw CodecError("sparse payload: runs use more non-zero bytes than stored");
      if (v <= 16 && room >= 16)
        std::memcpy(dst + pos, rd, 16);  // values_buf has 16 bytes of slack
      else
        std::memcpy(dst + pos, rd, v);
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
