// Bit streams, Huffman construction, and every codec's round trip and rejection of bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <queue>

#include "qins/compression/bitstream.h"
#include "qins/compression/codec.h"
#include "qins/compression/container.h"
#include "qins/compression/errors.h"
#include "qins/compression/huffman.h"
#include "qins/compression/sparse.h"
#include "test_util.h"

using namespace qins::comp;
using namespace qins::comp::test;

namespace {

// Unlimited-length Huffman cost (sum of freq * length) via the classic merge: the sum of all
// merged weights.
uint64_t unlimited_huffman_cost(const huf::Histogram& h) {
  std::priority_queue<uint64_t, std::vector<uint64_t>, std::greater<uint64_t>> q;
  for (uint64_t f : h)
    if (f) q.push(f);
  if (q.size() < 2) return q.empty() ? 0 : q.top();
  uint64_t cost = 0;
  while (q.size() > 1) {
    const uint64_t a = q.top();
    q.pop();
    const uint64_t b = q.top();
    q.pop();
    cost += a + b;
    q.push(a + b);
  }
  return cost;
}

uint64_t cost(const huf::Histogram& h, const huf::CodeLengths& l) {
  uint64_t c = 0;
  for (unsigned s = 0; s < 256; ++s) c += h[s] * l[s];
  return c;
}

std::vector<uint8_t> round_trip(Codec c, const std::vector<uint8_t>& in) {
  std::vector<uint8_t> enc;
  encode_with(c, in.data(), in.size(), enc);
  std::vector<uint8_t> out(in.size() + 1, 0xAB);  // one guard byte past the end
  decode_chunk(c, enc.data(), enc.size(), out.data(), in.size());
  EXPECT_EQ(out.back(), 0xAB) << "decoder wrote past dst_size";
  out.pop_back();
  return out;
}

}  // namespace

TEST(BitStream, WriterLsbFirstMatchesManualBits) {
  std::vector<uint8_t> buf(64, 0);
  BitWriter w(buf.data());
  std::mt19937 rng(1);
  std::vector<std::pair<uint32_t, unsigned>> vals;
  for (int i = 0; i < 40; ++i) {
    const unsigned n = 1 + rng() % 12;
    const uint32_t v = rng() & ((1u << n) - 1);
    vals.push_back({v, n});
    w.put(v, n);
    w.flush();
  }
  const std::size_t bytes = w.finish();
  std::size_t bit = 0;
  for (auto [v, n] : vals)
    for (unsigned i = 0; i < n; ++i, ++bit)
      ASSERT_EQ((buf[bit / 8] >> (bit % 8)) & 1u, (v >> i) & 1u) << "bit " << bit;
  EXPECT_EQ(bytes, (bit + 7) / 8);
}

TEST(HuffmanLengths, FibonacciFrequenciesAreLimitedAndComplete) {
  // Fibonacci weights force a maximally deep unlimited tree (depth n-1).
  huf::Histogram h{};
  uint64_t a = 1, b = 1;
  for (unsigned s = 0; s < 40; ++s) {
    h[s * 3] = a;
    const uint64_t c = a + b;
    a = b, b = c;
  }
  const auto l = huf::build_code_lengths(h);
  for (unsigned s = 0; s < 256; ++s) {
    EXPECT_LE(l[s], huf::kMaxCodeLength);
    EXPECT_EQ(l[s] > 0, h[s] > 0) << s;
  }
  EXPECT_EQ(huf::kraft_sum(l), 1u << huf::kMaxCodeLength);
  // All 256 symbols with Fibonacci-like weights (capped growth) still fit.
  huf::Histogram h2{};
  a = 1, b = 2;
  for (unsigned s = 0; s < 256; ++s) {
    h2[s] = a;
    if (s < 60) {
      const uint64_t c = a + b;
      a = b, b = c;
    }
  }
  const auto l2 = huf::build_code_lengths(h2);
  EXPECT_EQ(huf::kraft_sum(l2), 1u << huf::kMaxCodeLength);
  for (uint8_t x : l2) EXPECT_TRUE(x >= 1 && x <= huf::kMaxCodeLength);
}

TEST(HuffmanLengths, OptimalWhenTheLimitDoesNotBind) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    huf::Histogram h{};
    const unsigned used = 2 + rng() % 200;
    for (unsigned i = 0; i < used; ++i) h[rng() % 256] += 500 + rng() % 500;
    const auto l = huf::build_code_lengths(h);
    EXPECT_EQ(huf::kraft_sum(l), 1u << huf::kMaxCodeLength);
    // Weights within a factor 4 of each other over <= 256 symbols give depths <= 10 in any
    // Huffman tree, so the 12-bit limit does not bind and the cost must be the optimum.
    EXPECT_EQ(cost(h, l), unlimited_huffman_cost(h)) << "trial " << trial;
  }
}

TEST(HuffmanLengths, LimitedCodeIsNoWorseThanAnyOtherLimitedCode) {
  // Package-merge is optimal under the limit: compare against a smaller limit's result and the
  // unlimited bound on a distribution that needs limiting.
  huf::Histogram h{};
  for (unsigned s = 0; s < 256; ++s) h[s] = uint64_t(1) << (s % 30);
  const auto l12 = huf::build_code_lengths(h, 12);
  const auto l9 = huf::build_code_lengths(h, 9);
  EXPECT_LE(cost(h, l12), cost(h, l9));
  EXPECT_GE(cost(h, l12), unlimited_huffman_cost(h));
  EXPECT_EQ(huf::kraft_sum(l9, 9), 1u << 9);
}

TEST(HuffmanLengths, SingleAndNoSymbol) {
  huf::Histogram h{};
  EXPECT_EQ(huf::kraft_sum(huf::build_code_lengths(h)), 0u);
  h[255] = 10;
  const auto l = huf::build_code_lengths(h);
  EXPECT_EQ(l[255], 1);
  EXPECT_EQ(l[254], 1);  // phantom neighbour
  EXPECT_EQ(huf::kraft_sum(l), 1u << huf::kMaxCodeLength);
}

TEST(HuffmanTable, SerializationRoundTrips) {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 20; ++trial) {
    huf::Histogram h{};
    for (int i = 0; i < 1 + trial * 10; ++i) h[rng() % 256] += 1 + rng() % 50;
    const auto l = huf::build_code_lengths(h);
    std::vector<uint8_t> buf(200);
    const std::size_t n = huf::write_table(l, buf.data());
    EXPECT_EQ(n, huf::table_size(l));
    huf::CodeLengths back;
    EXPECT_EQ(huf::read_table(buf.data(), n, back), n);
    EXPECT_EQ(back, l);
  }
}

TEST(HuffmanTable, RejectsBadTables) {
  huf::CodeLengths back;
  // Oversubscribed: three 1-bit codes.
  const uint8_t over[] = {2, 0x11, 0x01};
  EXPECT_THROW(
      {
        try {
          huf::read_table(over, sizeof over, back);
        } catch (const CodecError& e) {
          EXPECT_NE(std::string(e.what()).find("not a complete prefix code"), std::string::npos);
          throw;
        }
      },
      CodecError);
  const uint8_t too_long[] = {1, 0x1D};  // length 13
  EXPECT_THROW(huf::read_table(too_long, sizeof too_long, back), CodecError);
  const uint8_t truncated[] = {255, 0x11};
  EXPECT_THROW(huf::read_table(truncated, sizeof truncated, back), CodecError);
  const uint8_t single[] = {0, 0x01};  // one symbol only: incomplete
  EXPECT_THROW(huf::read_table(single, sizeof single, back), CodecError);
  EXPECT_THROW(huf::read_table(nullptr, 0, back), CodecError);
}

class CodecRoundTrip : public ::testing::TestWithParam<Codec> {};

TEST_P(CodecRoundTrip, BitExactOverAllInputKinds) {
  const Codec c = GetParam();
  std::vector<std::vector<uint8_t>> inputs = {
      {},
      {0x42},
      {0x00},
      {1, 2},
      {7, 7, 7},
      {1, 2, 3, 4, 5},
      std::vector<uint8_t>(4096, 0x00),
      std::vector<uint8_t>(1000, 0x81),
      random_bytes(65536 + 3, 11),
      qins_like_codes(100000 + 1, 12),
      qins_like_codes(17, 13),
      sparse_codes(50001, 14, 0.9),
      sparse_codes(777, 15, 0.5),
  };
  // Every length around the 4-stream split and the 4-symbol fast-loop boundaries.
  for (std::size_t n = 0; n < 80; ++n) inputs.push_back(qins_like_codes(n, uint32_t(100 + n)));
  for (const auto& in : inputs) EXPECT_EQ(round_trip(c, in), in) << "size " << in.size();
}

TEST_P(CodecRoundTrip, MutatedPayloadsAreRejectedOrDecodeSafely) {
  // Random corruption must give CodecError or some output, never UB (run under ASan by the fuzz
  // build). Truncations (every 7th trial) must always be rejected: each codec knows its length.
  const Codec c = GetParam();
  const auto in = sparse_codes(5000, 21, 0.6);
  std::vector<uint8_t> enc;
  encode_with(c, in.data(), in.size(), enc);
  std::mt19937 rng(5);
  std::vector<uint8_t> out(in.size());
  int rejected = 0;
  for (int trial = 0; trial < 300; ++trial) {
    auto bad = enc;
    const int flips = 1 + trial % 4;
    for (int f = 0; f < flips && !bad.empty(); ++f) bad[rng() % bad.size()] ^= uint8_t(1u << (rng() % 8));
    const bool truncated = trial % 7 == 0 && !bad.empty();
    if (truncated) bad.resize(rng() % bad.size());
    try {
      decode_chunk(c, bad.data(), bad.size(), out.data(), out.size());
      EXPECT_FALSE(truncated) << "a truncated " << codec_name(c) << " payload decoded (trial " << trial << ")";
    } catch (const CodecError&) {
      ++rejected;
    }
  }
  EXPECT_GE(rejected, 300 / 7) << codec_name(c);
}

INSTANTIATE_TEST_SUITE_P(AllCodecs, CodecRoundTrip,
                         ::testing::Values(Codec::raw, Codec::huffman, Codec::sparse_huffman,
                                           Codec::zstd),
                         [](const auto& info) {
                           std::string n = codec_name(info.param);
                           std::replace(n.begin(), n.end(), '+', '_');
                           return n;
                         });

TEST(Huffman, SizeWithinOnePointFivePercentOfEntropyOnOneMiB) {
  for (double spread : {4.0, 12.0, 30.0}) {
    const auto in = qins_like_codes(std::size_t(1) << 20, 31, spread);
    const double h = entropy_bits_per_byte(in.data(), in.size());
    std::vector<uint8_t> enc;
    huf::huffman_encode(in.data(), in.size(), enc);
    const double bound = h * double(in.size()) / 8.0;
    EXPECT_LE(double(enc.size()), bound * 1.015)
        << "spread " << spread << " entropy " << h << " bits/byte, " << enc.size() << " vs "
        << bound;
    EXPECT_GE(double(enc.size()), bound);  // sanity: cannot beat the order-0 bound
  }
}

TEST(Huffman, StreamsNotEndingExactlyAreRejected) {
  const auto in = qins_like_codes(1000, 41);
  std::vector<uint8_t> enc;
  huf::huffman_encode(in.data(), in.size(), enc);
  std::vector<uint8_t> out(in.size());
  // An extra byte in stream 3 (the last) is unused data.
  auto longer = enc;
  longer.push_back(0);
  EXPECT_THROW(huf::huffman_decode(longer.data(), longer.size(), out.data(), out.size()), CodecError);
  // One byte short: overrun.
  auto shorter = enc;
  shorter.pop_back();
  EXPECT_THROW(huf::huffman_decode(shorter.data(), shorter.size(), out.data(), out.size()), CodecError);
  // Declared output larger than the streams hold.
  std::vector<uint8_t> big(in.size() + 100);
  EXPECT_THROW(huf::huffman_decode(enc.data(), enc.size(), big.data(), big.size()), CodecError);
  // Stream size field out of range.
  auto badsize = enc;
  const std::size_t tsize = 1 + (badsize[0] + 2) / 2;
  store_le32(badsize.data() + tsize, 0xFFFFFFF0u);
  try {
    huf::huffman_decode(badsize.data(), badsize.size(), out.data(), out.size());
    FAIL() << "no throw";
  } catch (const CodecError& e) {
    EXPECT_NE(std::string(e.what()).find("out of range"), std::string::npos) << e.what();
  }
}

// huffman_decode2 (two chunks in one interleaved loop) must give exactly what two
// huffman_decode calls give: every size pairing around the stream split and fast-loop bounds,
// unequal sizes (one chunk leaves the shared loop first), and different code tables.
TEST(Huffman, PairedDecodeMatchesSingleDecodes) {
  std::vector<std::vector<uint8_t>> inputs;
  for (std::size_t n : {0, 1, 3, 4, 5, 16, 17, 63, 64, 65, 100, 257, 1000, 4099, 65536, 100003})
    inputs.push_back(qins_like_codes(n, uint32_t(7 + n)));
  inputs.push_back(qins_like_codes(70001, 9, 3.0));    // short codes
  inputs.push_back(random_bytes(50000, 10));          // ~8-bit codes
  inputs.push_back(sparse_codes(30000, 11, 0.97));    // one very short code
  std::vector<std::vector<uint8_t>> enc(inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i)
    huf::huffman_encode(inputs[i].data(), inputs[i].size(), enc[i]);
  for (std::size_t a = 0; a < inputs.size(); ++a) {
    for (std::size_t b = 0; b < inputs.size(); ++b) {
      std::vector<uint8_t> oa(inputs[a].size() + 1, 0xEE), ob(inputs[b].size() + 1, 0xEE);
      huf::huffman_decode2(enc[a].data(), enc[a].size(), oa.data(), inputs[a].size(),
                           enc[b].data(), enc[b].size(), ob.data(), inputs[b].size());
      EXPECT_TRUE(std::equal(inputs[a].begin(), inputs[a].end(), oa.begin())) << a << "," << b;
      EXPECT_TRUE(std::equal(inputs[b].begin(), inputs[b].end(), ob.begin())) << a << "," << b;
      EXPECT_EQ(oa.back(), 0xEE);  // nothing written past the chunk
      EXPECT_EQ(ob.back(), 0xEE);
    }
  }
}

TEST(Huffman, PairedDecodeOfDamagedPayloadsAgreesWithSingleDecodes) {
  // With one side corrupted: the pair throws iff a single decode of either side throws, and
  // when it does not throw both outputs equal the single decodes' outputs (never a crash).
  const auto good = qins_like_codes(20000, 61);
  std::vector<uint8_t> genc;
  huf::huffman_encode(good.data(), good.size(), genc);
  std::mt19937 rng(62);
  std::vector<uint8_t> o1(good.size()), o2(good.size()), p1(good.size()), p2(good.size());
  int threw = 0;
  for (int trial = 0; trial < 400; ++trial) {
    auto bad = genc;
    const int flips = 1 + trial % 3;
    for (int f = 0; f < flips; ++f) bad[rng() % bad.size()] ^= uint8_t(1u << (rng() % 8));
    if (trial % 9 == 0) bad.resize(rng() % bad.size());
    const bool bad_first = trial % 2 == 0;
    const auto& e1 = bad_first ? bad : genc;
    const auto& e2 = bad_first ? genc : bad;
    bool single_threw = false;
    try {
      huf::huffman_decode(e1.data(), e1.size(), o1.data(), o1.size());
      huf::huffman_decode(e2.data(), e2.size(), o2.data(), o2.size());
    } catch (const CodecError&) {
      single_threw = true;
    }
    bool pair_threw = false;
    try {
      huf::huffman_decode2(e1.data(), e1.size(), p1.data(), p1.size(), e2.data(), e2.size(),
                           p2.data(), p2.size());
    } catch (const CodecError&) {
      pair_threw = true;
    }
    ASSERT_EQ(single_threw, pair_threw) << "trial " << trial;
    threw += pair_threw;
    if (!pair_threw) {
      EXPECT_EQ(o1, p1) << "trial " << trial;
      EXPECT_EQ(o2, p2) << "trial " << trial;
    }
  }
  EXPECT_GT(threw, 100);  // the sweep does exercise the error paths
}

TEST(Sparse, BeatsPlainHuffmanOnMostlyZeroCodes) {
  const auto in = sparse_codes(1 << 20, 51, 0.95);
  std::vector<uint8_t> a, b;
  huf::huffman_encode(in.data(), in.size(), a);
  sparse::sparse_encode(in.data(), in.size(), b);
  EXPECT_LT(b.size(), a.size());
}

TEST(Sparse, RejectsInconsistentRuns) {
  const std::vector<uint8_t> in = {0, 0, 5, 6, 0, 7};
  std::vector<uint8_t> enc;
  sparse::sparse_encode(in.data(), in.size(), enc);
  std::vector<uint8_t> out(in.size() + 1);
  EXPECT_THROW(sparse::sparse_decode(enc.data(), enc.size(), out.data(), out.size()), CodecError);
  auto bad = enc;
  store_le32(bad.data(), 100);  // more non-zero bytes than the chunk
  out.resize(in.size());
  EXPECT_THROW(sparse::sparse_decode(bad.data(), bad.size(), out.data(), out.size()), CodecError);
}

TEST(EncodeBest, PicksTheSmallestCodec) {
  const std::vector<std::vector<uint8_t>> inputs = {random_bytes(10000, 61), qins_like_codes(10000, 62),
                                                    sparse_codes(10000, 63, 0.97),
                                                    std::vector<uint8_t>(10000, 3), {}};
  for (const auto& in : inputs) {
    const EncodedChunk best = encode_best(in.data(), in.size());
    for (Codec c : {Codec::raw, Codec::huffman, Codec::sparse_huffman, Codec::zstd}) {
      std::vector<uint8_t> enc;
      encode_with(c, in.data(), in.size(), enc);
      EXPECT_LE(best.data.size(), enc.size()) << codec_name(c);
    }
    std::vector<uint8_t> out(in.size());
    decode_chunk(best.codec, best.data.data(), best.data.size(), out.data(), out.size());
    EXPECT_EQ(out, in);
  }
  // Incompressible data stays raw; constant data does not.
  const auto r = random_bytes(10000, 64);
  EXPECT_EQ(encode_best(r.data(), r.size()).codec, Codec::raw);
  EXPECT_NE(encode_best(inputs[3].data(), inputs[3].size()).codec, Codec::raw);
}

TEST(Entropy, KnownValues) {
  EXPECT_EQ(entropy_bits_per_byte(nullptr, 0), 0.0);
  const std::vector<uint8_t> one(100, 9);
  EXPECT_EQ(entropy_bits_per_byte(one.data(), one.size()), 0.0);
  std::vector<uint8_t> all(256 * 4);
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = uint8_t(i);
  EXPECT_DOUBLE_EQ(entropy_bits_per_byte(all.data(), all.size()), 8.0);
  const std::vector<uint8_t> half = {0, 1, 0, 1};
  EXPECT_DOUBLE_EQ(entropy_bits_per_byte(half.data(), half.size()), 1.0);
}
