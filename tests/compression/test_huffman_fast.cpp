// The fast Huffman decoder (two symbols per table lookup where both codes fit in the 12-bit
// peek, 2-byte stores, per-stream output pointers) against a plain bit-by-bit canonical decoder
// written here from the format description in huffman.h: random and adversarial code lengths
// (all codes at the 12-bit maximum, 1-bit codes where every lookup yields two symbols, 6+6
// exactly filling the peek), every size around the fast loop's bounds, single and paired decode
// (two codes, or one code shared by both chunks as ContainerWriter writes them), and truncated or
// extended payloads rejected with a CodecError.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>
#include <string>

#include "qins/compression/bitstream.h"
#include "qins/compression/errors.h"
#include "qins/compression/huffman.h"

using namespace qins::comp;

namespace {

// Bit-by-bit reference: reads each stream's bits LSB-first, grows the code MSB-first and matches
// it against the canonical (length, code) pairs. Returns false where the payload is malformed.
bool reference_decode(const std::vector<uint8_t>& enc, std::size_t n, std::vector<uint8_t>& out) {
  out.assign(n, 0);
  if (n == 0) return enc.empty();
  huf::CodeLengths len;
  std::size_t tsize;
  try {
    tsize = huf::read_table(enc.data(), enc.size(), len);
  } catch (const CodecError&) {
    return false;
  }
  const auto codes = huf::canonical_codes(len);
  std::vector<int> sym_of((huf::kMaxCodeLength + 1) << huf::kMaxCodeLength, -1);  // [len][code]
  for (unsigned c = 0; c < huf::kNumSymbols; ++c)
    if (len[c]) sym_of[std::size_t(len[c]) << huf::kMaxCodeLength | codes[c]] = int(c);
  if (enc.size() < tsize + 4 * (huf::kNumStreams - 1)) return false;
  const uint8_t* data = enc.data() + tsize + 4 * (huf::kNumStreams - 1);
  const std::size_t avail = enc.size() - tsize - 4 * (huf::kNumStreams - 1);
  std::size_t used = 0;
  const std::size_t q = (n + huf::kNumStreams - 1) / huf::kNumStreams;
  for (unsigned k = 0; k < huf::kNumStreams; ++k) {
    std::size_t sz = avail - used;
    if (k + 1 < huf::kNumStreams) {
      sz = load_le32(enc.data() + tsize + 4 * k);
      if (sz > avail - used) return false;
    }
    const uint8_t* s = data + used;
    used += sz;
    std::size_t bit = 0;
    for (std::size_t i = std::min(n, k * q); i < std::min(n, (k + 1) * q); ++i) {
      unsigned code = 0, l = 0;
      int sym = -1;
      while (sym < 0) {
        if (bit >= 8 * sz || l >= huf::kMaxCodeLength) return false;
        code = code << 1 | ((s[bit / 8] >> (bit % 8)) & 1u);
        ++bit;
        ++l;
        sym = sym_of[std::size_t(l) << huf::kMaxCodeLength | code];
      }
      out[i] = uint8_t(sym);
    }
    if ((bit + 7) / 8 != sz) return false;                // unused bytes
    for (; bit < 8 * sz; ++bit)                            // padding must be zero
      if ((s[bit / 8] >> (bit % 8)) & 1u) return false;
  }
  return true;
}

// Bytes drawn from a given symbol distribution (weights), so the encoder builds the lengths the
// weights call for.
std::vector<uint8_t> draw(std::size_t n, const std::vector<double>& w, uint32_t seed) {
  std::mt19937 rng(seed);
  std::discrete_distribution<int> d(w.begin(), w.end());
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = uint8_t(d(rng));
  return v;
}

struct Case {
  std::string name;
  std::vector<double> weights;
};

std::vector<Case> cases() {
  std::vector<Case> cs;
  cs.push_back({"two symbols, 1-bit codes (every lookup decodes two)", {1, 1}});
  cs.push_back({"16 equal, 4-bit codes", std::vector<double>(16, 1.0)});
  cs.push_back({"64 equal, 6-bit codes (pairs exactly fill the peek)", std::vector<double>(64, 1.0)});
  cs.push_back({"256 equal, 8-bit codes (never a pair)", std::vector<double>(256, 1.0)});
  {
    // Geometric weights: lengths 1, 2, 3, ... capped at 12, many codes at the maximum length.
    std::vector<double> w(256);
    for (unsigned s = 0; s < 256; ++s) w[s] = std::pow(0.5, std::min(s, 40u)) + 1e-12;
    cs.push_back({"geometric, codes up to the 12-bit maximum", w});
  }
  {
    // One dominant symbol plus 255 rare ones: a 1-bit code beside 12-bit codes.
    std::vector<double> w(256, 1.0);
    w[7] = 5000.0;
    cs.push_back({"1-bit code beside 12-bit codes", w});
  }
  std::mt19937 rng(1234);
  for (int r = 0; r < 12; ++r) {
    // Random distributions: random support, random skew.
    std::vector<double> w(256, 0.0);
    const unsigned used = 2 + rng() % 255;
    const double skew = std::uniform_real_distribution<double>(0.0, 8.0)(rng);
    for (unsigned i = 0; i < used; ++i)
      w[rng() % 256] = std::exp(-skew * std::uniform_real_distribution<double>(0.0, 1.0)(rng));
    cs.push_back({"random #" + std::to_string(r), w});
  }
  return cs;
}

TEST(HuffmanFast, MatchesReferenceOnRandomAndAdversarialCodes) {
  const auto cs = cases();
  for (std::size_t ci = 0; ci < cs.size(); ++ci) {
    const auto big = draw(300000, cs[ci].weights, uint32_t(ci + 1));
    std::vector<std::size_t> sizes;
    for (std::size_t n = 1; n <= 160; ++n) sizes.push_back(n);
    for (std::size_t n : {255, 256, 257, 1023, 4096, 4099, 65537, 300000}) sizes.push_back(n);
    for (std::size_t n : sizes) {
      const std::vector<uint8_t> in(big.begin(), big.begin() + std::ptrdiff_t(n));
      std::vector<uint8_t> enc;
      huf::huffman_encode(in.data(), in.size(), enc);
      std::vector<uint8_t> ref;
      ASSERT_TRUE(reference_decode(enc, n, ref)) << cs[ci].name << " n=" << n;
      ASSERT_EQ(ref, in) << cs[ci].name << " n=" << n;  // the reference itself is right
      std::vector<uint8_t> out(n + 2, 0xEE);
      huf::huffman_decode(enc.data(), enc.size(), out.data(), n);
      ASSERT_TRUE(std::equal(in.begin(), in.end(), out.begin())) << cs[ci].name << " n=" << n;
      ASSERT_EQ(out[n], 0xEE) << cs[ci].name << " n=" << n << ": wrote past the chunk";
    }
  }
}

TEST(HuffmanFast, PairedDecodeMatchesReferenceAcrossCodeShapes) {
  const auto cs = cases();
  std::vector<std::vector<uint8_t>> in, enc;
  for (std::size_t ci = 0; ci < cs.size(); ++ci) {
    in.push_back(draw(5000 + 977 * ci, cs[ci].weights, uint32_t(100 + ci)));
    enc.emplace_back();
    huf::huffman_encode(in.back().data(), in.back().size(), enc.back());
  }
  for (std::size_t a = 0; a < in.size(); ++a) {
    for (std::size_t b = 0; b < in.size(); ++b) {
      std::vector<uint8_t> oa(in[a].size() + 1, 0xEE), ob(in[b].size() + 1, 0xEE);
      huf::huffman_decode2(enc[a].data(), enc[a].size(), oa.data(), in[a].size(), enc[b].data(),
                           enc[b].size(), ob.data(), in[b].size());
      ASSERT_TRUE(std::equal(in[a].begin(), in[a].end(), oa.begin())) << cs[a].name << " / " << cs[b].name;
      ASSERT_TRUE(std::equal(in[b].begin(), in[b].end(), ob.begin())) << cs[a].name << " / " << cs[b].name;
      ASSERT_EQ(oa.back(), 0xEE);
      ASSERT_EQ(ob.back(), 0xEE);
    }
  }
}

TEST(HuffmanFast, TruncatedOrDamagedPayloadsAreCleanErrorsLikeTheReference) {
  // For every code shape: cutting the payload short or appending a byte is a CodecError naming a
  // stream; random bit flips either throw or decode exactly what the reference decodes.
  const auto cs = cases();
  std::mt19937 rng(77);
  for (std::size_t ci = 0; ci < cs.size(); ++ci) {
    const auto in = draw(20000, cs[ci].weights, uint32_t(200 + ci));
    std::vector<uint8_t> enc;
    huf::huffman_encode(in.data(), in.size(), enc);
    std::vector<uint8_t> out(in.size());
    for (std::size_t cut : {std::size_t(1), std::size_t(2), std::size_t(9), enc.size() / 2}) {
      const std::vector<uint8_t> shorter(enc.begin(), enc.end() - std::ptrdiff_t(cut));
      try {
        huf::huffman_decode(shorter.data(), shorter.size(), out.data(), out.size());
        ADD_FAILURE() << cs[ci].name << ": payload cut by " << cut << " bytes decoded";
      } catch (const CodecError& e) {
        EXPECT_NE(std::string(e.what()).find("Huffman"), std::string::npos) << e.what();
      }
    }
    auto longer = enc;
    longer.push_back(0);
    EXPECT_THROW(huf::huffman_decode(longer.data(), longer.size(), out.data(), out.size()), CodecError)
        << cs[ci].name;
    for (int t = 0; t < 20; ++t) {
      auto bad = enc;
      bad[rng() % bad.size()] ^= uint8_t(1u << (rng() % 8));
      std::vector<uint8_t> ref;
      const bool ref_ok = reference_decode(bad, in.size(), ref);
      bool ok = true;
      try {
        huf::huffman_decode(bad.data(), bad.size(), out.data(), out.size());
      } catch (const CodecError&) {
        ok = false;
      }
      ASSERT_EQ(ok, ref_ok) << cs[ci].name << " trial " << t;
      if (ok) {
        ASSERT_EQ(out, ref) << cs[ci].name << " trial " << t;
      }
    }
  }
}

// One code for two chunks (huffman_encode_with on their merged histogram): same table bytes,
// and huffman_decode2 (one set of tables for both) decodes exactly what the reference does.
// x and y encoded with one code built from both (what the writer does for a tensor's chunks).
huf::CodeLengths encode_with_one_code(const std::vector<uint8_t>& x, const std::vector<uint8_t>& y,
                                      std::vector<uint8_t>& ex, std::vector<uint8_t>& ey) {
  huf::Histogram h = huf::histogram(x.data(), x.size());
  huf::merge_histogram(h, huf::histogram(y.data(), y.size()));
  const huf::CodeLengths code = huf::build_code_lengths(h);
  huf::huffman_encode_with(code, x.data(), x.size(), ex);
  huf::huffman_encode_with(code, y.data(), y.size(), ey);
  return code;
}

TEST(HuffmanFast, SharedCodePairDecodesLikeTheReference) {
  const auto cs = cases();
  for (std::size_t ci = 0; ci < cs.size(); ++ci) {
    // Two chunks drawn from the same distribution (like two chunks of one tensor) and one from
    // the next case's (a code that fits the first chunks less well), sizes around the loop bounds.
    const std::size_t cj = (ci + 1) % cs.size();
    for (std::size_t n0 : {std::size_t(1), std::size_t(37), std::size_t(4099), std::size_t(70001)}) {
      const std::size_t n1 = n0 * 3 + 5;
      const auto x = draw(n0, cs[ci].weights, uint32_t(300 + ci));
      const auto y = ci % 2 ? draw(n1, cs[cj].weights, uint32_t(400 + ci))
                            : draw(n1, cs[ci].weights, uint32_t(400 + ci));
      std::vector<uint8_t> ex, ey;
      const huf::CodeLengths code = encode_with_one_code(x, y, ex, ey);
      const std::size_t ts = huf::table_size(code);
      ASSERT_TRUE(std::equal(ex.begin(), ex.begin() + std::ptrdiff_t(ts), ey.begin()))
          << cs[ci].name << ": the two payloads carry the same table bytes";
      std::vector<uint8_t> rx, ry;
      ASSERT_TRUE(reference_decode(ex, n0, rx)) << cs[ci].name;
      ASSERT_TRUE(reference_decode(ey, n1, ry)) << cs[ci].name;
      ASSERT_EQ(rx, x) << cs[ci].name;
      ASSERT_EQ(ry, y) << cs[ci].name;
      std::vector<uint8_t> ox(n0 + 2, 0xEE), oy(n1 + 2, 0xEE);
      huf::huffman_decode2(ex.data(), ex.size(), ox.data(), n0, ey.data(), ey.size(), oy.data(), n1);
      ASSERT_TRUE(std::equal(x.begin(), x.end(), ox.begin())) << cs[ci].name << " n0=" << n0;
      ASSERT_TRUE(std::equal(y.begin(), y.end(), oy.begin())) << cs[ci].name << " n0=" << n0;
      ASSERT_EQ(ox[n0], 0xEE) << cs[ci].name << ": wrote past the first chunk";
      ASSERT_EQ(oy[n1], 0xEE) << cs[ci].name << ": wrote past the second chunk";
      // The other order too (the first chunk's tables serve both).
      std::fill(ox.begin(), ox.end(), 0xEE);
      std::fill(oy.begin(), oy.end(), 0xEE);
      huf::huffman_decode2(ey.data(), ey.size(), oy.data(), n1, ex.data(), ex.size(), ox.data(), n0);
      ASSERT_TRUE(std::equal(x.begin(), x.end(), ox.begin())) << cs[ci].name << " n0=" << n0;
      ASSERT_TRUE(std::equal(y.begin(), y.end(), oy.begin())) << cs[ci].name << " n0=" << n0;
      ASSERT_EQ(ox[n0], 0xEE);
      ASSERT_EQ(oy[n1], 0xEE);
    }
  }
}

// A pair written with one shared code, then damaged: one payload cut short, its table changed
// into another valid code (the pair now has two codes) or made invalid, or random bit flips. The
// paired decode either throws a CodecError or gives, for each chunk, what the reference decodes
// (never a read past either buffer: the sanitizer builds check that).
TEST(HuffmanFast, DamagedSharedCodePairIsACleanErrorOrDecodesLikeTheReference) {
  const auto cs = cases();
  std::mt19937 rng(99);
  for (std::size_t ci = 0; ci < cs.size(); ++ci) {
    const auto x = draw(30000, cs[ci].weights, uint32_t(500 + ci));
    const auto y = draw(27001, cs[ci].weights, uint32_t(600 + ci));
    std::vector<uint8_t> ex, ey;
    const huf::CodeLengths code = encode_with_one_code(x, y, ex, ey);
    auto check = [&](const std::vector<uint8_t>& a, const std::vector<uint8_t>& b, const std::string& what) {
      std::vector<uint8_t> ra, rb;
      const bool ref_ok = reference_decode(a, x.size(), ra) && reference_decode(b, y.size(), rb);
      std::vector<uint8_t> oa(x.size()), ob(y.size());
      bool ok = true;
      try {
        huf::huffman_decode2(a.data(), a.size(), oa.data(), oa.size(), b.data(), b.size(), ob.data(), ob.size());
      } catch (const CodecError& e) {
        ok = false;
        EXPECT_NE(std::string(e.what()).find("Huffman"), std::string::npos) << e.what();
      }
      ASSERT_EQ(ok, ref_ok) << cs[ci].name << ": " << what;
      if (ok) {
        ASSERT_EQ(oa, ra) << cs[ci].name << ": " << what;
        ASSERT_EQ(ob, rb) << cs[ci].name << ": " << what;
      }
    };
    for (std::size_t cut : {std::size_t(1), std::size_t(8), ey.size() / 2}) {
      const std::vector<uint8_t> shorter(ey.begin(), ey.end() - std::ptrdiff_t(cut));
      EXPECT_THROW(huf::huffman_decode2(ex.data(), ex.size(), std::vector<uint8_t>(x.size()).data(),
                                        x.size(), shorter.data(), shorter.size(),
                                        std::vector<uint8_t>(y.size()).data(), y.size()),
                   CodecError)
          << cs[ci].name << ": second payload cut by " << cut;
      check(ex, shorter, "second payload cut by " + std::to_string(cut));
    }
    {
      // Swap the lengths of two symbols with different lengths: still a complete code, but not
      // the other chunk's, so the pair decodes with two codes (the reference says what comes out).
      huf::CodeLengths other = code;
      unsigned s0 = 256, s1 = 256;
      for (unsigned s = 0; s < 256 && s1 == 256; ++s) {
        if (!other[s]) continue;
        if (s0 == 256) s0 = s;
        else if (other[s] != other[s0]) s1 = s;
      }
      if (s1 != 256) {
        std::swap(other[s0], other[s1]);
        auto bad = ey;
        ASSERT_EQ(huf::table_size(other), huf::table_size(code));
        huf::write_table(other, bad.data());
        check(ex, bad, "second table changed into another valid code");
        check(bad, ey, "first table changed into another valid code");
      }
    }
    {
      auto bad = ex;
      bad[1] = uint8_t(bad[1] ^ 0x0F);  // a first length changed: no longer a complete code
      check(bad, ey, "first table made incomplete");
    }
    for (int t = 0; t < 30; ++t) {
      auto bx = ex, by = ey;
      auto& v = t % 2 ? by : bx;
      // Half the flips land in the table and stream sizes, half anywhere.
      const std::size_t head = huf::table_size(code) + 12;
      v[t % 4 < 2 ? rng() % std::min(head, v.size()) : rng() % v.size()] ^= uint8_t(1u << (rng() % 8));
      check(bx, by, "bit flip trial " + std::to_string(t));
    }
  }
}

TEST(HuffmanFast, EncodeWithRejectsAnIncompleteCodeOrAByteWithoutACode) {
  const std::vector<uint8_t> in = {1, 2, 3, 2, 1};
  std::vector<uint8_t> out;
  huf::Histogram h{};
  h[1] = h[2] = 1;
  const huf::CodeLengths only12 = huf::build_code_lengths(h);  // no code for 3
  try {
    huf::huffman_encode_with(only12, in.data(), in.size(), out);
    ADD_FAILURE() << "encoded a byte that has no code";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("byte 3 at offset 2 has no code"), std::string::npos) << e.what();
  }
  huf::CodeLengths incomplete{};
  incomplete[1] = incomplete[2] = incomplete[3] = 2;  // Kraft sum 3/4
  EXPECT_THROW(huf::huffman_encode_with(incomplete, in.data(), in.size(), out), std::invalid_argument);
  huf::CodeLengths too_long{};
  too_long[0] = 13;
  EXPECT_THROW(huf::huffman_encode_with(too_long, in.data(), in.size(), out), std::invalid_argument);
  // With a complete code that covers the bytes, the payload equals huffman_encode's when the
  // code is the data's own.
  std::vector<uint8_t> a, b;
  huf::huffman_encode(in.data(), in.size(), a);
  huf::huffman_encode_with(huf::build_code_lengths(huf::histogram(in.data(), in.size())), in.data(),
                           in.size(), b);
  EXPECT_EQ(a, b);
}

}  // namespace
