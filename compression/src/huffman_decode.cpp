// Huffman decoder. Distrusts its input: the table must be a complete code, stream sizes must
// fit the payload, and each stream must end exactly at its last byte (only zero padding bits
// left). Where time goes: the unchecked multi-stream loops below, one lookup in a 4096-entry
// table (16 KiB, stays in L1) per one or two output bytes.
//
// Speed: each stream is one dependency chain (mask -> table load -> shift, ~6 cycles a
// lookup), so a core mostly waits on load latency; two levers shorten the wait per byte:
// - two symbols per lookup: an entry holds both symbols when the second code fits in the
//   12-bit peek after the first (on QINS-like codes of ~6.5 bits about half of the lookups), so
//   ~1.5 bytes come out per chain step; the pair is stored with one 2-byte store and the
//   stream's output pointer advances by 1 or 2;
// - huffman_decode2 decodes two chunks at once, 8 independent chains in one loop; the loader
//   decodes in pairs. Writers give the chunks of a section one code, so a pair usually has the
//   same code lengths: its tables are then built once and all 8 chains read the one 16 KiB pair
//   table (two chunks with two codes fill the 32 KiB L1D with their two pair tables).
// bench_huffman on the 2-core EPYC dev VM (docs/benchmarks.md): the two-symbol loops run
// 1.26-1.51x the bytes/s of the previous one-symbol loops in the same run
// (bench/baseline/huffman_decode_prev.cpp).

// GCC's SLP vectorizer packs the loops' four output pointers into vector registers (extra
// moves and spills on the critical path: 0.87 against 1.24 GB/s in bench_huffman); the loops
// are scalar by design.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-tree-slp-vectorize")
#endif
#include <algorithm>
#include <cstring>
#include <string>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(QINS_HUFFMAN_PORTABLE_ONLY)
#include <cpuid.h>
#endif

#include "qins/compression/bitstream.h"
#include "qins/compression/errors.h"
#include "qins/compression/huffman.h"

namespace qins::comp::huf {
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

// A code's lookup tables: entry = length | symbol << 8, replicated over the unused high bits
// (the exact tail loop), and the pair table of the fast loops. 24 KiB; two chunks with the same
// code lengths share one.
struct Tables {
  uint16_t table[1u << kTableBits];
  // The same 12-bit peek decoding up to two symbols: bits 0-5 the bits they take together,
  // 8-15 the first symbol, 16-23 the second (0 when only one fits), 24-31 how many (1 or 2).
  uint32_t pair[1u << kTableBits];
};

// One chunk being decoded: its tables, its 4 streams and their output ranges; `done` symbols of
// every stream are out.
struct ChunkState {
  const Tables* t = nullptr;
  StreamState st[kNumStreams];
  uint8_t* ob[kNumStreams];
  uint8_t* oe[kNumStreams];
  std::size_t done[kNumStreams] = {0, 0, 0, 0};  // symbols of stream k already out
};

void build_tables(const CodeLengths& lengths, Tables& t) {
  const auto codes = canonical_codes(lengths);
  for (unsigned s = 0; s < kNumSymbols; ++s) {
    const unsigned l = lengths[s];
    if (l == 0) continue;
    unsigned r = 0;
    for (unsigned i = 0; i < l; ++i) r |= ((codes[s] >> i) & 1u) << (l - 1 - i);
    const uint16_t e = uint16_t(l | s << 8);
    for (unsigned h = r; h < (1u << kTableBits); h += 1u << l) t.table[h] = e;
  }
  // Two symbols share an entry when the second code fits in the peek's remaining bits: the
  // bits above the first code, read as a shorter peek (zeros above), then decode it exactly.
  for (unsigned h = 0; h < (1u << kTableBits); ++h) {
    const unsigned e1 = t.table[h], l1 = e1 & 15u;
    const unsigned e2 = t.table[h >> l1], l2 = e2 & 15u;
    t.pair[h] = l1 + l2 <= kTableBits
                    ? (l1 + l2) | (e1 >> 8) << 8 | (e2 >> 8) << 16 | 2u << 24
                    : l1 | (e1 >> 8) << 8 | 1u << 24;
  }
}

// Parses and validates the table (read_table: a complete code) and the stream sizes
// (dst_size > 0); the caller builds c.t from `lengths`.
void prepare(const uint8_t* src, std::size_t src_size, uint8_t* dst, std::size_t dst_size,
             ChunkState& c, CodeLengths& lengths) {
  const std::size_t tsize = read_table(src, src_size, lengths);
  if (src_size - tsize < 4 * (kNumStreams - 1))
    throw CodecError("Huffman payload truncated: no room for the stream sizes");

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
    c.done[k] = 0;
  }
}

// Rounds of the unchecked loop the chunk can still take: each round makes 4 table lookups per
// stream and writes up to 8 symbols per stream. Lookup j of a stream writes its 2 bytes at
// output index <= 2j (each earlier lookup wrote <= 2), so r rounds touch indices < 8r only,
// never the next stream's range. A refill advances p by <= 7 bytes and reads 8, so a stream with
// b bytes left supports (b - 8) / 7 + 1 refills; one byte less is assumed, for a loop taking a
// partly consumed byte before its first refill.
std::size_t rounds_available(const ChunkState& c) {
  std::size_t rounds = std::size_t(-1);
  for (unsigned k = 0; k < kNumStreams; ++k) {
    const std::size_t out_left = std::size_t(c.oe[k] - c.ob[k]) - c.done[k];
    rounds = std::min(rounds, out_left / 8);
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

// The unchecked loops: `rounds` rounds, each refilling every stream (branch-free) and making 4
// table lookups in it (<= 48 bits, 4 to 8 symbols). Per stream only two registers: the bit buffer b and the byte
// pointer p. b holds the stream's bits from p on, shifted right by the bits already consumed,
// with a sentinel 1 just above the last loaded bit, so the consumed count is clz(b) and no
// separate counter needs updating per symbol. A refill advances p by whole consumed bytes and
// reloads 8 bytes: with <= 7 + 48 = 55 bits consumed per round the sentinel (bit 63 of the
// load, replacing a data bit the round can never reach) never drops out, and every table peek
// (at <= 43 consumed bits, 12 bits wide) stays below it. p advances <= 6 bytes a refill.
// Where time goes: ~8 instructions per lookup (mask, table load, shift, symbol extract, store,
// count extract, pointer add) plus ~8 per refill; the entry keeps the bit count in its low bits
// so the shift takes it directly (x86 masks shift counts to 6 bits, so `& 63` is free).
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

// Up to two symbols per lookup (ChunkState::pair): one 2-byte store of both, then the output
// pointer moves by how many were real; the chain per stream (mask -> table load -> shift)
// is as long as the one-symbol loop's but yields ~1.5 symbols on QINS-like codes of ~6.5 bits.
QINS_ALWAYS_INLINE void store_le16(uint8_t* p, unsigned v) {
  uint16_t w = uint16_t(v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  w = uint16_t(w >> 8 | w << 8);
#endif
  std::memcpy(p, &w, 2);
}
// The pair's 2 bytes by a rotate, not copy + shift: one instruction (rorx with BMI2).
QINS_ALWAYS_INLINE uint32_t rotr8(uint32_t e) { return e >> 8 | e << 24; }
#define QINS_DECODE2(T, b, o)                 \
  {                                           \
    const uint32_t e = T[b & kTableMask];     \
    b >>= e & 63u;                            \
    store_le16(o, rotr8(e));                  \
    o += e >> 24;                             \
  }
#define QINS_OUT(S, k, o) uint8_t* o = S.ob[k] + S.done[k];
#define QINS_DONE(S, k, o) S.done[k] = std::size_t(o - S.ob[k]);
QINS_ALWAYS_INLINE void rounds4_impl(ChunkState& A, std::size_t rounds) {
  const uint32_t* t = A.t->pair;
  QINS_OUT(A, 0, o0)
  QINS_OUT(A, 1, o1)
  QINS_OUT(A, 2, o2)
  QINS_OUT(A, 3, o3)
  QINS_ENTER(A, 0, b0, p0)
  QINS_ENTER(A, 1, b1, p1)
  QINS_ENTER(A, 2, b2, p2)
  QINS_ENTER(A, 3, b3, p3)
  for (std::size_t r = 0; r < rounds; ++r) {
    QINS_REFILL(b0, p0)
    QINS_REFILL(b1, p1)
    QINS_REFILL(b2, p2)
    QINS_REFILL(b3, p3)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 4  // else GCC keeps the j loop, its counter spilled to the stack
#endif
    for (unsigned j = 0; j < 4; ++j) {
      QINS_DECODE2(t, b0, o0)
      QINS_DECODE2(t, b1, o1)
      QINS_DECODE2(t, b2, o2)
      QINS_DECODE2(t, b3, o3)
    }
  }
  QINS_LEAVE(A, 0, b0, p0)
  QINS_LEAVE(A, 1, b1, p1)
  QINS_LEAVE(A, 2, b2, p2)
  QINS_LEAVE(A, 3, b3, p3)
  QINS_DONE(A, 0, o0)
  QINS_DONE(A, 1, o1)
  QINS_DONE(A, 2, o2)
  QINS_DONE(A, 3, o3)
}

// Two chunks, 8 chains: twice the independent work per iteration for the out-of-order core.
// Shared: both chunks have the same code (A.t == B.t), so one table pointer serves all 8 chains
// (one register fewer in the loop, and one table in L1 instead of two).
template <bool Shared>
QINS_ALWAYS_INLINE void rounds8_impl(ChunkState& A, ChunkState& B, std::size_t rounds) {
  const uint32_t* ta = A.t->pair;
  const uint32_t* tb = Shared ? ta : B.t->pair;
  QINS_OUT(A, 0, oa0)
  QINS_OUT(A, 1, oa1)
  QINS_OUT(A, 2, oa2)
  QINS_OUT(A, 3, oa3)
  QINS_OUT(B, 0, ob0)
  QINS_OUT(B, 1, ob1)
  QINS_OUT(B, 2, ob2)
  QINS_OUT(B, 3, ob3)
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
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 4  // else GCC keeps the j loop, its counter spilled to the stack
#endif
    for (unsigned j = 0; j < 4; ++j) {
      QINS_DECODE2(ta, a0, oa0)
      QINS_DECODE2(ta, a1, oa1)
      QINS_DECODE2(ta, a2, oa2)
      QINS_DECODE2(ta, a3, oa3)
      QINS_DECODE2(tb, b0, ob0)
      QINS_DECODE2(tb, b1, ob1)
      QINS_DECODE2(tb, b2, ob2)
      QINS_DECODE2(tb, b3, ob3)
    }
  }
  QINS_LEAVE(A, 0, a0, ap0)
  QINS_LEAVE(A, 1, a1, ap1)
  QINS_LEAVE(A, 2, a2, ap2)
  QINS_LEAVE(A, 3, a3, ap3)
  QINS_LEAVE(B, 0, b0, bp0)
  QINS_LEAVE(B, 1, b1, bp1)
  QINS_LEAVE(B, 2, b2, bp2)
  QINS_LEAVE(B, 3, b3, bp3)
  QINS_DONE(A, 0, oa0)
  QINS_DONE(A, 1, oa1)
  QINS_DONE(A, 2, oa2)
  QINS_DONE(A, 3, oa3)
  QINS_DONE(B, 0, ob0)
  QINS_DONE(B, 1, ob1)
  QINS_DONE(B, 2, ob2)
  QINS_DONE(B, 3, ob3)
}
#undef QINS_ENTER
#undef QINS_LEAVE
#undef QINS_REFILL
#undef QINS_DECODE
#undef QINS_DECODE2
#undef QINS_OUT
#undef QINS_DONE

void rounds4_generic(ChunkState& A, std::size_t rounds) { rounds4_impl(A, rounds); }
void rounds8_generic(ChunkState& A, ChunkState& B, std::size_t rounds) {
  rounds8_impl<false>(A, B, rounds);
}
void rounds8s_generic(ChunkState& A, ChunkState& B, std::size_t rounds) {
  rounds8_impl<true>(A, B, rounds);
}

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
  rounds8_impl<false>(A, B, rounds);
}
__attribute__((target("bmi2,lzcnt"))) void rounds8s_bmi2(ChunkState& A, ChunkState& B,
                                                         std::size_t rounds) {
  rounds8_impl<true>(A, B, rounds);
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
  if (A.t == B.t)
    have_bmi2_lzcnt() ? rounds8s_bmi2(A, B, rounds) : rounds8s_generic(A, B, rounds);
  else
    have_bmi2_lzcnt() ? rounds8_bmi2(A, B, rounds) : rounds8_generic(A, B, rounds);
}
#else
void rounds4(ChunkState& A, std::size_t rounds) { rounds4_generic(A, rounds); }
void rounds8(ChunkState& A, ChunkState& B, std::size_t rounds) {
  A.t == B.t ? rounds8s_generic(A, B, rounds) : rounds8_generic(A, B, rounds);
}
#endif

// Finishes one chunk: unchecked rounds while they are safe, then each stream's exact tail.
void finish(ChunkState& c) {
  for (std::size_t r; (r = rounds_available(c)) > 0;) rounds4(c, r);
  for (unsigned k = 0; k < kNumStreams; ++k)
    decode_tail(c.st[k], c.t->table, c.ob[k] + c.done[k], c.oe[k], k);
}

}  // namespace

void huffman_decode(const uint8_t* src, std::size_t src_size, uint8_t* dst, std::size_t dst_size) {
  if (dst_size == 0) {
    if (src_size != 0) throw CodecError("Huffman payload is not empty for an empty chunk");
    return;
  }
  ChunkState c;
  Tables t;
  CodeLengths lengths;
  prepare(src, src_size, dst, dst_size, c, lengths);
  build_tables(lengths, t);
  c.t = &t;
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
  CodeLengths la, lb;
  prepare(src0, src0_size, dst0, dst0_size, a, la);
  prepare(src1, src1_size, dst1, dst1_size, b, lb);
  // The same code (a writer's shared code per section): one set of tables for both chunks.
  Tables t[2];
  build_tables(la, t[0]);
  a.t = &t[0];
  if (lb == la) {
    b.t = &t[0];
  } else {
    build_tables(lb, t[1]);
    b.t = &t[1];
  }
  for (;;) {
    const std::size_t r = std::min(rounds_available(a), rounds_available(b));
    if (r == 0) break;
    rounds8(a, b, r);
  }
  finish(a);
  finish(b);
}

}  // namespace qins::comp::huf
