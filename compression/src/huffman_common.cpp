// Huffman code construction shared by the encoder and decoder: length-limited code lengths
// (package-merge), canonical code assignment, and the serialized code-length table.
#include <algorithm>
#include <numeric>
#include <string>

#include "qins/compression/errors.h"
#include "qins/compression/huffman.h"

namespace qins::comp::huf {

Histogram histogram(const uint8_t* src, std::size_t n) {
  // Four sub-histograms break the store-to-load dependency on runs of equal bytes.
  std::array<std::array<uint32_t, kNumSymbols>, 4> h{};
  std::size_t i = 0;
  Histogram out{};
  while (i < n) {
    // Flush before a uint32 count could overflow.
    const std::size_t block_end = std::min(n, i + (std::size_t(1) << 30));
    for (; i + 4 <= block_end; i += 4) {
      ++h[0][src[i]];
      ++h[1][src[i + 1]];
      ++h[2][src[i + 2]];
      ++h[3][src[i + 3]];
    }
    for (; i < block_end; ++i) ++h[0][src[i]];
    for (unsigned s = 0; s < kNumSymbols; ++s) {
      out[s] += uint64_t(h[0][s]) + h[1][s] + h[2][s] + h[3][s];
      h[0][s] = h[1][s] = h[2][s] = h[3][s] = 0;
    }
  }
  return out;
}

void merge_histogram(Histogram& into, const Histogram& h) {
  for (unsigned s = 0; s < kNumSymbols; ++s) into[s] += h[s];
}

CodeLengths build_code_lengths(const Histogram& freq, unsigned max_len) {
  CodeLengths len{};
  std::vector<unsigned> syms;
  for (unsigned s = 0; s < kNumSymbols; ++s)
    if (freq[s] > 0) syms.push_back(s);
  if (syms.empty()) return len;
  if (syms.size() == 1) {
    // One symbol: a 1-bit code plus a phantom neighbour keeps the code complete.
    len[syms[0]] = 1;
    len[syms[0] ^ 1u] = 1;
    return len;
  }
  // Package-merge (Larmore & Hirschberg): items at each of max_len levels are the leaves plus
  // the pairwise packages of the level below; the 2n-2 cheapest items of the top level decide
  // the lengths. The chosen items of every level form a prefix of that level's sorted list, so
  // per level we only keep, for each position, whether the item is a leaf.
  std::stable_sort(syms.begin(), syms.end(),
                   [&](unsigned a, unsigned b) { return freq[a] < freq[b]; });
  const std::size_t n = syms.size();
  std::vector<uint64_t> leaf_w(n);
  for (std::size_t i = 0; i < n; ++i) leaf_w[i] = freq[syms[i]];

  std::vector<std::vector<uint8_t>> is_leaf(max_len);  // level 0 = deepest (length max_len)
  std::vector<uint64_t> prev = leaf_w;                   // weights of the level below
  is_leaf[0].assign(n, 1);
  for (unsigned level = 1; level < max_len; ++level) {
    std::vector<uint64_t> cur;
    cur.reserve(n + prev.size() / 2);
    std::vector<uint8_t>& flags = is_leaf[level];
    flags.reserve(n + prev.size() / 2);
    std::size_t li = 0, pi = 0;
    const std::size_t n_pkg = prev.size() / 2;
    while (li < n || pi < n_pkg) {
      const bool take_leaf =
          pi >= n_pkg || (li < n && leaf_w[li] <= prev[2 * pi] + prev[2 * pi + 1]);
      if (take_leaf) {
        cur.push_back(leaf_w[li++]);
        flags.push_back(1);
      } else {
        cur.push_back(prev[2 * pi] + prev[2 * pi + 1]);
        ++pi;
        flags.push_back(0);
      }
    }
    prev.swap(cur);
  }
  // Walk from the top level down: every chosen leaf adds one bit to its symbol's length.
  std::size_t take = 2 * n - 2;
  for (unsigned level = max_len; level-- > 0;) {
    std::size_t leaves = 0, packages = 0;
    for (std::size_t i = 0; i < take; ++i) (is_leaf[level][i] ? leaves : packages)++;
    for (std::size_t i = 0; i < leaves; ++i) ++len[syms[i]];
    take = 2 * packages;
  }
  return len;
}

uint64_t kraft_sum(const CodeLengths& lengths, unsigned max_len) {
  uint64_t sum = 0;
  for (uint8_t l : lengths)
    if (l > 0 && l <= max_len) sum += uint64_t(1) << (max_len - l);
  return sum;
}

std::array<uint16_t, kNumSymbols> canonical_codes(const CodeLengths& lengths) {
  std::array<unsigned, kMaxCodeLength + 2> count{};
  for (uint8_t l : lengths) ++count[l];
  count[0] = 0;
  std::array<unsigned, kMaxCodeLength + 2> next{};
  unsigned code = 0;
  for (unsigned l = 1; l <= kMaxCodeLength; ++l) {
    code = (code + count[l - 1]) << 1;
    next[l] = code;
  }
  std::array<uint16_t, kNumSymbols> codes{};
  for (unsigned s = 0; s < kNumSymbols; ++s)
    if (lengths[s] > 0) codes[s] = uint16_t(next[lengths[s]]++);
  return codes;
}

std::size_t table_size(const CodeLengths& lengths) {
  unsigned last = 0;
  for (unsigned s = 0; s < kNumSymbols; ++s)
    if (lengths[s] > 0) last = s;
  return 1 + (last + 2) / 2;
}

std::size_t write_table(const CodeLengths& lengths, uint8_t* out) {
  unsigned last = 0;
  for (unsigned s = 0; s < kNumSymbols; ++s)
    if (lengths[s] > 0) last = s;
  const std::size_t size = 1 + (last + 2) / 2;
  out[0] = uint8_t(last);
  for (std::size_t i = 1; i < size; ++i) {
    const unsigned s = unsigned(2 * (i - 1));
    const unsigned lo = lengths[s];
    const unsigned hi = s + 1 <= last ? lengths[s + 1] : 0;
    out[i] = uint8_t(lo | hi << 4);
  }
  return size;
}

std::size_t read_table(const uint8_t* src, std::size_t src_size, CodeLengths& lengths) {
  if (src_size < 1) throw CodecError("bad Huffman table: payload too short for the table");
  const unsigned last = src[0];
  const std::size_t size = 1 + (last + 2) / 2;
  if (src_size < size) throw CodecError("bad Huffman table: table truncated");
  lengths.fill(0);
  for (unsigned s = 0; s <= last; ++s) {
    const unsigned nib = (src[1 + s / 2] >> (4 * (s & 1))) & 15u;
    if (nib > kMaxCodeLength)
      throw CodecError("bad Huffman table: code length " + std::to_string(nib) + " for symbol " +
                       std::to_string(s) + " exceeds " + std::to_string(kMaxCodeLength));
    lengths[s] = uint8_t(nib);
  }
  if ((last & 1u) == 0 && (src[size - 1] >> 4) != 0)
    throw CodecError("bad Huffman table: non-zero padding nibble");
  unsigned used = 0;
  for (uint8_t l : lengths) used += l > 0;
  const uint64_t kraft = kraft_sum(lengths);
  if (used < 2 || kraft != (uint64_t(1) << kMaxCodeLength))
    throw CodecError("bad Huffman table: code lengths are not a complete prefix code (" +
                     std::to_string(used) + " symbols, Kraft sum " + std::to_string(kraft) +
                     "/" + std::to_string(1u << kMaxCodeLength) + ")");
  return size;
}

std::size_t encoded_size(const Histogram& freq, const CodeLengths& lengths) {
  // Streams split the data in 4 contiguous parts; each pads to a byte, so bound per stream.
  // The exact size needs the per-stream bit counts, which only the encoder sees; this is the
  // size without padding plus at most 4 padding bytes (an upper bound used for codec choice).
  uint64_t bits = 0;
  for (unsigned s = 0; s < kNumSymbols; ++s) bits += freq[s] * lengths[s];
  return table_size(lengths) + 4 * (kNumStreams - 1) + std::size_t((bits + 7) / 8) + kNumStreams;
}

}  // namespace qins::comp::huf
