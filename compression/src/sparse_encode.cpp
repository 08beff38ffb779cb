// Sparsity encoder: split zero runs from non-zero bytes, entropy-code both.
#include "qins/compression/bitstream.h"
#include "qins/compression/huffman.h"
#include "qins/compression/sparse.h"

namespace qins::comp::sparse {
namespace {

void put_varint(std::vector<uint8_t>& v, uint64_t x) {
  while (x >= 0x80) {
    v.push_back(uint8_t(x | 0x80));
    x >>= 7;
  }
  v.push_back(uint8_t(x));
}

void put_u32(std::vector<uint8_t>& v, uint32_t x) {
  uint8_t b[4];
  store_le32(b, x);
  v.insert(v.end(), b, b + 4);
}

// Appends kind byte + block (Huffman when smaller than raw); returns the block size.
std::size_t put_block(std::vector<uint8_t>& out, const std::vector<uint8_t>& raw,
                      std::size_t kind_pos) {
  std::vector<uint8_t> huf;
  if (!raw.empty()) huf::huffman_encode(raw.data(), raw.size(), huf);
  const bool use_huf = !raw.empty() && huf.size() < raw.size();
  out.insert(out.begin() + std::ptrdiff_t(kind_pos), uint8_t(use_huf ? 1 : 0));
  const auto& blk = use_huf ? huf : raw;
  out.insert(out.end(), blk.begin(), blk.end());
  return blk.size();
}

}  // namespace

void sparse_encode(const uint8_t* src, std::size_t n, std::vector<uint8_t>& out) {
  if (n == 0) return;
  std::vector<uint8_t> runs, values;
  values.reserve(n);
  std::size_t i = 0;
  while (i < n) {
    std::size_t z = i;
    while (z < n && src[z] == 0) ++z;
    put_varint(runs, z - i);
    i = z;
    if (i == n) break;
    std::size_t e = i;
    while (e < n && src[e] != 0) ++e;
    put_varint(runs, e - i);
    values.insert(values.end(), src + i, src + e);
    i = e;
  }
  put_u32(out, uint32_t(values.size()));
  put_u32(out, uint32_t(runs.size()));
  const std::size_t stored_pos = out.size();
  put_u32(out, 0);
  const std::size_t runs_size = put_block(out, runs, out.size());
  store_le32(out.data() + stored_pos, uint32_t(runs_size));
  put_block(out, values, out.size());
}

}  // namespace qins::comp::sparse
