// libFuzzer target for the chunk codecs.
// Input: byte 0 selects the codec (mod 4), bytes 1..3 the declared decoded size (< 1 MiB),
// the rest is the payload. Each decoder must throw CodecError or produce exactly that many
// bytes. The same payload bytes are then encoded with every codec and must round-trip bit-exact,
// and code lengths built from them (as a histogram) must form a complete, <= 12-bit code.
// The paired Huffman decoder (huf::huffman_decode2) gets the payload and its first half as two
// chunks and must agree with two single decodes: it throws iff one of them throws, else it
// writes the same bytes (the two share their table bytes, so this also drives the pair's
// one-set-of-tables path). The payload's two halves encoded with one shared code (as the writer
// does for the chunks of a section) must round-trip through the paired decoder.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "qins/compression/codec.h"
#include "qins/compression/errors.h"
#include "qins/compression/huffman.h"

using namespace qins::comp;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  const Codec c = Codec(data[0] % kNumCodecs);
  const std::size_t declared =
      (std::size_t(data[1]) | std::size_t(data[2]) << 8 | std::size_t(data[3]) << 16) & 0xFFFFF;
  const uint8_t* payload = data + 4;
  const std::size_t n = size - 4;

  std::vector<uint8_t> out(declared);
  try {
    decode_chunk(c, payload, n, out.data(), out.size());
  } catch (const CodecError&) {
  }

  {
    const std::size_t n2 = n / 2, declared2 = declared / 2;
    std::vector<uint8_t> s1(declared), s2(declared2), p1(declared), p2(declared2);
    bool single_threw = false, pair_threw = false;
    try {
      huf::huffman_decode(payload, n, s1.data(), s1.size());
      huf::huffman_decode(payload, n2, s2.data(), s2.size());
    } catch (const CodecError&) {
      single_threw = true;
    }
    try {
      huf::huffman_decode2(payload, n, p1.data(), p1.size(), payload, n2, p2.data(), p2.size());
    } catch (const CodecError&) {
      pair_threw = true;
    }
    if (single_threw != pair_threw) std::abort();
    if (!pair_threw && (s1 != p1 || s2 != p2)) std::abort();
  }

  for (Codec e : {Codec::raw, Codec::huffman, Codec::sparse_huffman, Codec::zstd}) {
    std::vector<uint8_t> enc;
    encode_with(e, payload, n, enc, 1);
    std::vector<uint8_t> back(n);
    decode_chunk(e, enc.data(), enc.size(), back.data(), back.size());
    if (n && std::memcmp(back.data(), payload, n) != 0) std::abort();
  }

  if (n >= 2) {
    const std::size_t n2 = n / 2;
    huf::Histogram hs = huf::histogram(payload, n2);
    huf::merge_histogram(hs, huf::histogram(payload + n2, n - n2));
    const huf::CodeLengths code = huf::build_code_lengths(hs);
    std::vector<uint8_t> e1, e2, o1(n2), o2(n - n2);
    huf::huffman_encode_with(code, payload, n2, e1);
    huf::huffman_encode_with(code, payload + n2, n - n2, e2);
    huf::huffman_decode2(e1.data(), e1.size(), o1.data(), o1.size(), e2.data(), e2.size(),
                         o2.data(), o2.size());
    if (std::memcmp(o1.data(), payload, n2) != 0 || std::memcmp(o2.data(), payload + n2, n - n2) != 0)
      std::abort();
  }

  huf::Histogram h{};
  for (std::size_t i = 0; i + 1 < n && i < 512; i += 2) h[payload[i]] += uint64_t(payload[i + 1]) << (i % 40);
  const auto l = huf::build_code_lengths(h);
  unsigned used = 0;
  for (unsigned s = 0; s < huf::kNumSymbols; ++s) {
    if (l[s] > huf::kMaxCodeLength) std::abort();
    if (h[s] && !l[s]) std::abort();
    used += l[s] > 0;
  }
  if (used && huf::kraft_sum(l) != (1u << huf::kMaxCodeLength)) std::abort();
  return 0;
}
