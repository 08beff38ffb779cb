// The previous Huffman decoder (one symbol per table lookup), kept verbatim from commit 9d50644
// except for its namespace (qins::comp::huf_prev), as the side-by-side baseline of
// bench_huffman's *Prev benchmarks: the machine is shared and noisy, so the new decoder's
// speed-up is only meaningful as a ratio measured in the same run. Not linked into the library.
// Huffman decoder. Distrusts its input: the table must be a complete code, stream sizes must
// fit the payload, and each stream must end exactly at its last byte (only zero padding bits
// left). Where time goes: the unchecked multi-stream loop below, one table lookup per output
// byte; the lookup table (4096 x 16 bits = 8 KiB) stays in L1.
//
// Speed: each stream is one dependency chain (mask -> table load -> shift, ~6 cycles a
// symbol), so one chunk's 4 streams leave a core mostly waiting on load latency.
// huffman_decode2 decodes two chunks at once, 8 independent chains in one loop: ~1.45x the
// bytes/s of one chunk at a time on the 2-core EPYC dev VM (bench_huffman TwoChunks*; 12
// chains, 3 chunks, measured slower: too few registers). The loader decodes in pairs.
#include <algorithm>
#include <string>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(QINS_HUFFMAN_PORTABLE_ONLY)
#include <cpuid.h>
#endif

#include "qins/compression/bitstream.h"
#include "qins/compression/errors.h"
#include "qins/compression/huffman.h"

namespace qins::comp::huf_prev {
using namespace qins::comp::huf;
namespace {

constexpr unsigned kTableBits = kMaxCodeLength;
constexpr uint64_t kTableMask = (uint64_t(1) << kTableBits) - 1;

// Where a stream stands between loops: the next byte to read and how many of its low bits are
// already consumed (0..7).
struct StreamState {
  const uint8_t* p;
  const uint8_t* end;
  unsigned skip;
};

// One chunk being decoded: its table (entry = length | symbol << 8, replicated over the unused
// high bits), its 4 streams and their output ranges; `done` symbols of every stream are out.
struct ChunkState {
  uint16_t table[1u << kTableBits];
  StreamState st[kNumStreams];
  uint8_t* ob[kNumStreams];
  uint8_t* oe[kNumStreams];
  std::size_t done = 0;
};

// Parses and validates the table and the stream sizes (dst_size > 0).
void prepare(const uint8_t* src, std::size_t src_size, uint8_t* dst, std::size_t dst_size,
             ChunkState& c) {
  CodeLengths lengths;
  const std::size_t tsize = read_table(src, src_size, lengths);
  if (src_size - tsize < 4 * (kNumStreams - 1))
    throw CodecError("Huffman payload truncated: no room for the stream sizes");
  const auto codes = canonical_codes(lengths);
  for (unsigned s = 0; s < kNumSymbols; ++s) {
    const unsigned l = lengths[s];
    if (l == 0) continue;
    unsigned r = 0;
    for (unsigned i = 0; i < l; ++i) r |= ((codes[s] >> i) & 1u) << (l - 1 - i);
    const uint16_t e = uint16_t(l | s << 8);
    for (unsigned h = r; h < (1u << kTableBits); h += 1u << l) c.table[h] = e;
  }

  const uint8_t* sizes = src + tsize;
  const uint8_t* data = sizes + 4 * (kNumStreams - 1);
  const uint64_t avail = src_size - tsize - 4 * (kNumStreams - 1);
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
    c.st[k] = StreamState{data + used, data + used + sz, 0};
    used += sz;
  }
  const std::size_t q = (dst_size + kNumStreams - 1) / kNumStreams;
  for (unsigned k = 0; k < kNumStreams; ++k) {
    c.ob[k] = dst + std::min(dst_size, k * q);
    c.oe[k] = dst + std::min(dst_size, (k + 1) * q);
  }
  c.done = 0;
}

// Rounds of the unchecked loop the chunk can still take: each round writes 4 symbols per
// stream, and a refill advances p by <= 7 bytes and reads 8, so a stream with r bytes left
// supports (r - 8) / 7 + 1 refills; one byte less is assumed, for rounds4 taking a partly
// consumed byte before its first refill. When this is > 0 no stream's output range was clamped, so
// stream k writes at ob[0] + k * (ob[1] - ob[0]).
std::size_t rounds_available(const ChunkState& c) {
  std::size_t rounds = std::size_t(-1);
  for (unsigned k = 0; k < kNumStreams; ++k) {
    const std::size_t out_left = std::size_t(c.oe[k] - c.ob[k]) - c.done;
    rounds = std::min(rounds, out_left / 4);
    const std::size_t in_left = std::size_t(c.st[k].end - c.st[k].p);
    rounds = std::min(rounds, in_left < 9 ? 0 : (in_left - 9) / 7 + 1);
  }
  return rounds;
}

// Bit-exact slow path for the last symbols of a stream: refills byte by byte and checks that
// no symbol reads past the end and that only zero padding (< 8 bits) remains afterwards.
void decode_tail(const StreamState& s, const uint16_t* table, uint8_t* o, uint8_t* oend,
                 unsigned k) {
  const uint8_t* p = s.p;
  uint64_t buf = 0;
  unsigned cnt = 0;  // valid bits in buf
  if (s.skip) {  // a partly consumed byte: inside the stream, the fast loop only decodes loaded bits
    if (p >= s.end) throw CodecError("Huffman stream " + std::to_string(k) + " overruns its end");
    buf = uint64_t(*p++) >> s.skip;
    cnt = 8 - s.skip;
  }
  while (o < oend) {
    while (cnt <= 56 && p < s.end) {
      buf |= uint64_t(*p++) << cnt;
      cnt += 8;
    }
    const uint16_t e = table[buf & kTableMask];
    const unsigned n = e & 15u;
    if (n > cnt) throw CodecError("Huffman stream " + std::to_string(k) + " overruns its end");
    *o++ = uint8_t(e >> 8);
    buf >>= n;
    cnt -= n;
  }
  if (p != s.end || cnt >= 8)
    throw CodecError("Huffman stream " + std::to_string(k) + " has unused bytes after its symbols");
  if (buf != 0)
    throw CodecError("Huffman stream " + std::to_string(k) + " has non-zero padding bits");
}

#if defined(__GNUC__)
#define QINS_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define QINS_ALWAYS_INLINE inline
#endif

// The unchecked loops: `rounds` rounds, each refilling every stream (branch-free) and decoding
// 4 symbols from it (<= 48 bits). Per stream only two registers: the bit buffer b and the byte
// pointer p. b holds the stream's bits from p on, shifted right by the bits already consumed,
// with a sentinel 1 just above the last loaded bit, so the consumed count is clz(b) and no
// separate counter needs updating per symbol. A refill advances p by whole consumed bytes and
// reloads 8 bytes: with <= 7 + 48 = 55 bits consumed per round the sentinel (bit 63 of the
// load, replacing a data bit the round can never reach) never drops out, and every table peek
// (at <= 43 consumed bits, 12 bits wide) stays below it. p advances <= 6 bytes a refill.
// Where time goes: ~6 instructions per symbol (mask, table load, shift, symbol extract,
// store) plus ~8 per refill; the entry keeps the length in its low bits so the shift takes
// it directly (x86 masks shift counts to 6 bits, so `& 63` is free).
constexpr uint64_t kSentinel = uint64_t(1) << 63;

QINS_ALWAYS_INLINE unsigned clz64(uint64_t v) {  // v != 0
#if defined(__GNUC__)
  return unsigned(__builtin_clzll(v));
#else
  unsigned n = 0;
  while (!(v & kSentinel)) v <<= 1, ++n;
  return n;
#endif
}

// Entering, b holds only the sentinel, placed so that clz(b) = the bits of *p already consumed
// and the first refill loads from p; leaving, whole consumed bytes move into p.
#define QINS_ENTER(S, k, b, ptr)                   \
  const uint8_t* ptr = S.st[k].p;                  \
  uint64_t b = kSentinel >> S.st[k].skip;
#define QINS_LEAVE(S, k, b, ptr)                   \
  {                                                \
    const unsigned t_ = clz64(b);                  \
    S.st[k].p = ptr + (t_ >> 3);                   \
    S.st[k].skip = t_ & 7u;                        \
  }
#define QINS_REFILL(b, ptr)                        \
  {                                                \
    const unsigned t_ = clz64(b);                  \
    ptr += t_ >> 3;                                \
    b = (load_le64(ptr) | kSentinel) >> (t_ & 7u); \
  }
#define QINS_DECODE(T, b, out)                \
  {                                           \
    const unsigned e = T[b & kTableMask];     \
    out = uint8_t(e >> 8);                    \
    b >>= e & 63u;                            \
  }

// One chunk alone: 4 chains are latency-bound, and there a separate bit counter per stream
// (one more instruction per symbol, off the critical path) beats the sentinel's longer refill
// chain (clz -> add -> load). State: b holds c valid bits (plus peeked ones above them) and p
// is the next byte to append at bit c. Entering on a partly consumed byte takes its
// remaining bits first, so loads start at most one byte later than the sentinel loop's (the
// round bound in rounds_available allows for that byte).
#define QINS_ENTER4(S, k, b, c, ptr)                 \
  const uint8_t* ptr = S.st[k].p;                    \
  uint64_t b = 0;                                    \
  unsigned c = 0;                                    \
  if (S.st[k].skip) {                                \
    b = uint64_t(*ptr++) >> S.st[k].skip;            \
    c = 8 - S.st[k].skip;                            \
  }
#define QINS_LEAVE4(S, k, b, c, ptr)                 \
  S.st[k].p = ptr - ((c + 7) >> 3);                  \
  S.st[k].skip = (8 - (c & 7u)) & 7u;
#define QINS_REFILL4(b, c, ptr) \
  b |= load_le64(ptr) << c;     \
  ptr += (63 - c) >> 3;         \
  c |= 56;
#define QINS_DECODE4(T, b, c, out)            \
  {                                           \
    const unsigned e = T[b & kTableMask];     \
    out = uint8_t(e >> 8);                    \
    b >>= e & 63u;                            \
    c -= e & 63u;                             \
  }
QINS_ALWAYS_INLINE void rounds4_impl(ChunkState& A, std::size_t rounds) {
  const uint16_t* ta = A.table;
  const std::size_t sa = std::size_t(A.ob[1] - A.ob[0]);
  uint8_t* o = A.ob[0] + A.done;
  QINS_ENTER4(A, 0, b0, c0, p0)
  QINS_ENTER4(A, 1, b1, c1, p1)
  QINS_ENTER4(A, 2, b2, c2, p2)
  QINS_ENTER4(A, 3, b3, c3, p3)
  for (std::size_t r = 0; r < rounds; ++r) {
    QINS_REFILL4(b0, c0, p0)
    QINS_REFILL4(b1, c1, p1)
    QINS_REFILL4(b2, c2, p2)
    QINS_REFILL4(b3, c3, p3)
    for (unsigned j = 0; j < 4; ++j) {
      QINS_DECODE4(ta, b0, c0, o[j])
      QINS_DECODE4(ta, b1, c1, o[sa + j])
      QINS_DECODE4(ta, b2, c2, o[2 * sa + j])
      QINS_DECODE4(ta, b3, c3, o[3 * sa + j])
    }
    o += 4;
  }
  QINS_LEAVE4(A, 0, b0, c0, p0)
  QINS_LEAVE4(A, 1, b1, c1, p1)
  QINS_LEAVE4(A, 2, b2, c2, p2)
  QINS_LEAVE4(A, 3, b3, c3, p3)
  A.done += rounds * 4;
}
#undef QINS_ENTER4
#undef QINS_LEAVE4
#undef QINS_REFILL4
#undef QINS_DECODE4

// Two chunks, 8 chains: twice the independent work per iteration for the out-of-order core.
QINS_ALWAYS_INLINE void rounds8_impl(ChunkState& A, ChunkState& B, std::size_t rounds) {
  const uint16_t* ta = A.table;
  const uint16_t* tb = B.table;
  const std::size_t sa = std::size_t(A.ob[1] - A.ob[0]);
  const std::size_t sb = std::size_t(B.ob[1] - B.ob[0]);
  uint8_t* oa = A.ob[0] + A.done;
  uint8_t* ob_ = B.ob[0] + B.done;
  QINS_ENTER(A, 0, a0, ap0)
  QINS_ENTER(A, 1, a1, ap1)
  QINS_ENTER(A, 2, a2, ap2)
  QINS_ENTER(A, 3, a3, ap3)
  QINS_ENTER(B, 0, b0, bp0)
  QINS_ENTER(B, 1, b1, bp1)
  QINS_ENTER(B, 2, b2, bp2)
  QINS_ENTER(B, 3, b3, bp3)
  for (std::size_t r = 0; r < rounds; ++r) {
    QINS_REFILL(a0, ap0)
    QINS_REFILL(a1, ap1)
    QINS_REFILL(a2, ap2)
    QINS_REFILL(a3, ap3)
    QINS_REFILL(b0, bp0)
    QINS_REFILL(b1, bp1)
    QINS_REFILL(b2, bp2)
    QINS_REFILL(b3, bp3)
    for (unsigned j = 0; j < 4; ++j) {
      QINS_DECODE(ta, a0, oa[j])
      QINS_DECODE(ta, a1, oa[sa + j])
      QINS_DECODE(ta, a2, oa[2 * sa + j])
      QINS_DECODE(ta, a3, oa[3 * sa + j])
      QINS_DECODE(tb, b0, ob_[j])
      QINS_DECODE(tb, b1, ob_[sb + j])
      QINS_DECODE(tb, b2, ob_[2 * sb + j])
      QINS_DECODE(tb, b3, ob_[3 * sb + j])
    }
    oa += 4;
    ob_ += 4;
  }
  QINS_LEAVE(A, 0, a0, ap0)
  QINS_LEAVE(A, 1, a1, ap1)
  QINS_LEAVE(A, 2, a2, ap2)
  QINS_LEAVE(A, 3, a3, ap3)
  QINS_LEAVE(B, 0, b0, bp0)
  QINS_LEAVE(B, 1, b1, bp1)
  QINS_LEAVE(B, 2, b2, bp2)
  QINS_LEAVE(B, 3, b3, bp3)
  A.done += rounds * 4;
  B.done += rounds * 4;
}
#undef QINS_ENTER
#undef QINS_LEAVE
#undef QINS_REFILL
#undef QINS_DECODE

void rounds4_generic(ChunkState& A, std::size_t rounds) { rounds4_impl(A, rounds); }
void rounds8_generic(ChunkState& A, ChunkState& B, std::size_t rounds) { rounds8_impl(A, B, rounds); }

#if defined(__x86_64__) && defined(__GNUC__) && !defined(QINS_HUFFMAN_PORTABLE_ONLY)
// The same loops compiled for BMI2 + LZCNT (shrx takes any register as the count, lzcnt is one
// fast instruction where plain x86-64 needs bsr); picked at run time from CPUID, so the binary
// still runs on x86-64 CPUs without them. (-DQINS_HUFFMAN_PORTABLE_ONLY builds only the
// portable loops, to test them on a machine that has BMI2.)
__attribute__((target("bmi2,lzcnt"))) void rounds4_bmi2(ChunkState& A, std::size_t rounds) {
  rounds4_impl(A, rounds);
}
__attribute__((target("bmi2,lzcnt"))) void rounds8_bmi2(ChunkState& A, ChunkState& B,
                                                        std::size_t rounds) {
  rounds8_impl(A, B, rounds);
}
bool have_bmi2_lzcnt() {
  static const bool yes = [] {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & (1u << 8))) return false;  // BMI2
    if (!__get_cpuid(0x80000001u, &a, &b, &c, &d) || !(c & (1u << 5))) return false;  // LZCNT
    return true;
  }();
  return yes;
}
void rounds4(ChunkState& A, std::size_t rounds) {
  have_bmi2_lzcnt() ? rounds4_bmi2(A, rounds) : rounds4_generic(A, rounds);
}
void rounds8(ChunkState& A, ChunkState& B, std::size_t rounds) {
  have_bmi2_lzcnt() ? rounds8_bmi2(A, B, rounds) : rounds8_generic(A, B, rounds);
}
#else
void rounds4(ChunkState& A, std::size_t rounds) { rounds4_generic(A, rounds); }
void rounds8(ChunkState& A, ChunkState& B, std::size_t rounds) { rounds8_generic(A, B, rounds); }
#endif

// Finishes one chunk: unchecked rounds while they are safe, then each stream's exact tail.
void finish(ChunkState& c) {
  for (std::size_t r; (r = rounds_available(c)) > 0;) rounds4(c, r);
  for (unsigned k = 0; k < kNumStreams; ++k)
    decode_tail(c.st[k], c.table, c.ob[k] + c.done, c.oe[k], k);
}

}  // namespace

void huffman_decode(const uint8_t* src, std::size_t src_size, uint8_t* dst, std::size_t dst_size) {
  if (dst_size == 0) {
    if (src_size != 0) throw CodecError("Huffman payload is not empty for an empty chunk");
    return;
  }
  ChunkState c;
  prepare(src, src_size, dst, dst_size, c);
  finish(c);
}

void huffman_decode2(const uint8_t* src0, std::size_t src0_size, uint8_t* dst0,
                     std::size_t dst0_size, const uint8_t* src1, std::size_t src1_size,
                     uint8_t* dst1, std::size_t dst1_size) {
  if (dst0_size == 0 || dst1_size == 0) {
    huffman_decode(src0, src0_size, dst0, dst0_size);
    huffman_decode(src1, src1_size, dst1, dst1_size);
    return;
  }
  ChunkState a, b;
  prepare(src0, src0_size, dst0, dst0_size, a);
  prepare(src1, src1_size, dst1, dst1_size, b);
  for (;;) {
    const std::size_t r = std::min(rounds_available(a), rounds_available(b));
    if (r == 0) break;
    rounds8(a, b, r);
  }
  finish(a);
  finish(b);
}

}  // namespace qins::comp::huf_prev
