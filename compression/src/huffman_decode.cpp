// Huffman decoder. Distrusts its input: the table must be a complete code, stream sizes must
// fit the payload, and each stream must end exactly at its last byte (only zero padding bits
// left). Where time goes: the 4-stream loop below, one table lookup per output byte; the
// lookup table (4096 x 16 bits = 8 KiB) stays in L1.
#include <algorithm>
#include <string>

#include "qins/compression/bitstream.h"
#include "qins/compression/errors.h"
#include "qins/compression/huffman.h"

namespace qins::comp::huf {
namespace {

constexpr unsigned kTableBits = kMaxCodeLength;
constexpr uint64_t kTableMask = (uint64_t(1) << kTableBits) - 1;

struct StreamState {
  const uint8_t* p;
  const uint8_t* end;
  uint64_t buf;
  unsigned cnt;  // valid bits in buf
};

// Bit-exact slow path for the last symbols of a stream: refills byte by byte and checks that
// no symbol reads past the end and that only zero padding (< 8 bits) remains afterwards.
void decode_tail(StreamState& s, const uint16_t* table, uint8_t* o, uint8_t* oend, unsigned k) {
  // Clear bits above cnt (the fast refill may have peeked ahead) so byte refills can OR in.
  s.buf &= s.cnt >= 64 ? ~uint64_t(0) : (uint64_t(1) << s.cnt) - 1;
  while (o < oend) {
    while (s.cnt <= 56 && s.p < s.end) {
      s.buf |= uint64_t(*s.p++) << s.cnt;
      s.cnt += 8;
    }
    const uint16_t e = table[s.buf & kTableMask];
    const unsigned n = e >> 8;
    if (n > s.cnt)
      throw CodecError("Huffman stream " + std::to_string(k) + " overruns its end");
    *o++ = uint8_t(e);
    s.buf >>= n;
    s.cnt -= n;
  }
  if (s.p != s.end || s.cnt >= 8)
    throw CodecError("Huffman stream " + std::to_string(k) + " has unused bytes after its symbols");
  if (s.buf != 0)
    throw CodecError("Huffman stream " + std::to_string(k) + " has non-zero padding bits");
}

}  // namespace

void huffman_decode(const uint8_t* src, std::size_t src_size, uint8_t* dst, std::size_t dst_size) {
  if (dst_size == 0) {
    if (src_size != 0) throw CodecError("Huffman payload is not empty for an empty chunk");
    return;
  }
  CodeLengths lengths;
  const std::size_t tsize = read_table(src, src_size, lengths);
  if (src_size - tsize < 4 * (kNumStreams - 1))
    throw CodecError("Huffman payload truncated: no room for the stream sizes");

  // Decode table: entry = symbol | length << 8, replicated over the unused high bits.
  uint16_t table[1u << kTableBits];
  {
    const auto codes = canonical_codes(lengths);
    for (unsigned s = 0; s < kNumSymbols; ++s) {
      const unsigned l = lengths[s];
      if (l == 0) continue;
      unsigned r = 0;
      for (unsigned i = 0; i < l; ++i) r |= ((codes[s] >> i) & 1u) << (l - 1 - i);
      const uint16_t e = uint16_t(s | l << 8);
      for (unsigned h = r; h < (1u << kTableBits); h += 1u << l) table[h] = e;
    }
  }

  const uint8_t* sizes = src + tsize;
  const uint8_t* data = sizes + 4 * (kNumStreams - 1);
  const uint64_t avail = src_size - tsize - 4 * (kNumStreams - 1);
  StreamState st[kNumStreams];
  uint64_t used = 0;
  for (unsigned k = 0; k < kNumStreams; ++k) {
    uint64_t sz;
    if (k + 1 < kNumStreams) {
      sz = load_le32(sizes + 4 * k);
      if (sz > avail - used)
        throw CodecError("Huffman stream " + std::to_string(k) + " size " + std::to_string(sz) +
                         " is out of range of the " + std::to_string(src_size) + "-byte payload");
    } else {
      sz = avail - used;
    }
    st[k] = StreamState{data + used, data + used + sz, 0, 0};
    used += sz;
  }

  const std::size_t q = (dst_size + kNumStreams - 1) / kNumStreams;
  uint8_t* ob[kNumStreams];
  uint8_t* oe[kNumStreams];
  for (unsigned k = 0; k < kNumStreams; ++k) {
    ob[k] = dst + std::min(dst_size, k * q);
    oe[k] = dst + std::min(dst_size, (k + 1) * q);
  }

  // Fast loop: each round refills all 4 streams (>= 56 bits, branch-free) and decodes 4
  // symbols from each (<= 48 bits). Rounds are counted up front so the body has no bounds
  // checks: a refill advances p by <= 7 bytes and reads 8, so a stream with r bytes left
  // supports (r - 8) / 7 + 1 rounds.
  uint64_t b0 = 0, b1 = 0, b2 = 0, b3 = 0;
  unsigned c0 = 0, c1 = 0, c2 = 0, c3 = 0;
  const uint8_t *p0 = st[0].p, *p1 = st[1].p, *p2 = st[2].p, *p3 = st[3].p;
  std::size_t i = 0;  // symbols decoded per stream so far (the same for all 4 here)
  for (;;) {
    std::size_t rounds = std::size_t(-1);
    const uint8_t* ps[4] = {p0, p1, p2, p3};
    for (unsigned k = 0; k < kNumStreams; ++k) {
      const std::size_t out_left = std::size_t(oe[k] - ob[k]) - i;
      rounds = std::min(rounds, out_left / 4);
      const std::size_t in_left = std::size_t(st[k].end - ps[k]);
      rounds = std::min(rounds, in_left < 8 ? 0 : (in_left - 8) / 7 + 1);
    }
    if (rounds == 0) break;
    uint8_t* o0 = ob[0] + i;
    uint8_t* o1 = ob[1] + i;
    uint8_t* o2 = ob[2] + i;
    uint8_t* o3 = ob[3] + i;
    i += rounds * 4;
#define QINS_REFILL(b, c, p)           \
  b |= load_le64(p) << c;              \
  p += (63 - c) >> 3;                  \
  c |= 56;
#define QINS_DECODE(b, c, o, j)                    \
  {                                                \
    const unsigned e = table[b & kTableMask];      \
    o[j] = uint8_t(e);                             \
    b >>= e >> 8;                                  \
    c -= e >> 8;                                   \
  }
    for (std::size_t r = 0; r < rounds; ++r) {
      QINS_REFILL(b0, c0, p0)
      QINS_REFILL(b1, c1, p1)
      QINS_REFILL(b2, c2, p2)
      QINS_REFILL(b3, c3, p3)
      for (unsigned j = 0; j < 4; ++j) {
        QINS_DECODE(b0, c0, o0, j)
        QINS_DECODE(b1, c1, o1, j)
        QINS_DECODE(b2, c2, o2, j)
        QINS_DECODE(b3, c3, o3, j)
      }
      o0 += 4;
      o1 += 4;
      o2 += 4;
      o3 += 4;
    }
#undef QINS_REFILL
#undef QINS_DECODE
  }
  st[0].p = p0, st[0].buf = b0, st[0].cnt = c0;
  st[1].p = p1, st[1].buf = b1, st[1].cnt = c1;
  st[2].p = p2, st[2].buf = b2, st[2].cnt = c2;
  st[3].p = p3, st[3].buf = b3, st[3].cnt = c3;
  for (unsigned k = 0; k < kNumStreams; ++k) {
    // The fast loop only ever loaded bytes inside the stream; the tail finishes it exactly.
    decode_tail(st[k], table, ob[k] + i, oe[k], k);
  }
}

}  // namespace qins::comp::huf
