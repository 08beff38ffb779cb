// Codec dispatch, zstd glue and the writer's per-chunk choice.
#include "qins/compression/codec.h"

#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>

#include "qins/compression/errors.h"
#include "qins/compression/huffman.h"
#include "qins/compression/sparse.h"

namespace qins::comp {
namespace {

struct DCtxDeleter {
  void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
};

struct CCtxDeleter {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};

// One compression context per thread, reused across chunks (creating one costs more than
// compressing a small chunk).
ZSTD_CCtx* thread_cctx() {
  thread_local std::unique_ptr<ZSTD_CCtx, CCtxDeleter> ctx;
  if (!ctx) {
    ctx.reset(ZSTD_createCCtx());
    if (!ctx) throw std::bad_alloc();
  }
  return ctx.get();
}

ZSTD_DCtx* thread_dctx() {
  thread_local std::unique_ptr<ZSTD_DCtx, DCtxDeleter> ctx;
  if (!ctx) {
    ctx.reset(ZSTD_createDCtx());
    if (!ctx) throw std::bad_alloc();
    // Hostile frames cannot ask for a window over 128 MiB (chunks are far smaller).
    ZSTD_DCtx_setParameter(ctx.get(), ZSTD_d_windowLogMax, 27);
  }
  return ctx.get();
}

void zstd_encode(const uint8_t* src, std::size_t n, std::vector<uint8_t>& out, int level) {
  if (n == 0) return;
  const std::size_t base = out.size();
  out.resize(base + ZSTD_compressBound(n));
  const std::size_t r =
      ZSTD_compressCCtx(thread_cctx(), out.data() + base, out.size() - base, src, n, level);
  if (ZSTD_isError(r)) throw std::runtime_error(std::string("zstd: ") + ZSTD_getErrorName(r));
  out.resize(base + r);
}

void zstd_decode(const uint8_t* src, std::size_t src_size, uint8_t* dst, std::size_t dst_size) {
  if (dst_size == 0) {
    if (src_size != 0) throw CodecError("zstd payload is not empty for an empty chunk");
    return;
  }
  ZSTD_DCtx* ctx = thread_dctx();
  ZSTD_DCtx_reset(ctx, ZSTD_reset_session_only);
  const std::size_t r = ZSTD_decompressDCtx(ctx, dst, dst_size, src, src_size);
  if (ZSTD_isError(r)) throw CodecError(std::string("zstd: ") + ZSTD_getErrorName(r));
  if (r != dst_size)
    throw CodecError("zstd: decoded " + std::to_string(r) + " bytes, expected " +
                     std::to_string(dst_size));
}

EncodedChunk encode_raw(const uint8_t* src, std::size_t n) {
  EncodedChunk raw;
  raw.codec = Codec::raw;
  raw.data.assign(src, src + n);
  return raw;
}

}  // namespace

const char* codec_name(Codec c) {
  switch (c) {
    case Codec::raw: return "raw";
    case Codec::huffman: return "huffman";
    case Codec::sparse_huffman: return "sparse+huffman";
    case Codec::zstd: return "zstd";
  }
  return "unknown";
}

bool codec_valid(uint8_t id) { return id < kNumCodecs; }

void encode_with(Codec c, const uint8_t* src, std::size_t n, std::vector<uint8_t>& out,
                 int zstd_level) {
  switch (c) {
    case Codec::raw: out.insert(out.end(), src, src + n); return;
    case Codec::huffman: huf::huffman_encode(src, n, out); return;
    case Codec::sparse_huffman: sparse::sparse_encode(src, n, out); return;
    case Codec::zstd: zstd_encode(src, n, out, zstd_level); return;
  }
  throw std::invalid_argument("encode_with: unknown codec");
}

namespace {

// shared: the Huffman code to use (nullptr: src's own); hist: src's histogram.
EncodedChunk choose(const uint8_t* src, std::size_t n, const CodecOptions& opt,
                    const huf::CodeLengths* shared, const huf::Histogram& h) {
  EncodedChunk best;
  best.codec = Codec::raw;
  if (n == 0) return best;
  // A payload must be at most n - n * min_saving_percent / 100 bytes to be kept.
  const std::size_t pct = std::min<std::size_t>(opt.min_saving_percent, 100);
  const std::size_t limit = n - (n / 100) * pct - (n % 100) * pct / 100;
  if (limit == 0) return encode_raw(src, n);
  std::size_t best_size = std::min(n, limit + 1);  // and always smaller than raw
  auto keep = [&](Codec c, std::vector<uint8_t>& tmp) {
    if (tmp.size() < best_size) {
      best_size = tmp.size();
      best.codec = c;
      best.data = std::move(tmp);
    }
  };
  auto consider = [&](Codec c) {
    std::vector<uint8_t> tmp;
    tmp.reserve(n / 2);
    encode_with(c, src, n, tmp, opt.zstd_level);
    keep(c, tmp);
  };
  if (opt.allow_huffman) {
    // Skip the encode when the size bound already says it cannot beat raw.
    // The shared code unless it costs more than 1 % of the raw size against the chunk's own
    // (a section whose chunks differ, e.g. noise beside skewed codes, keeps per-chunk codes
    // where they pay; on one tensor's codes the loss is ~0.1 %, docs/file-format.md).
    huf::CodeLengths lengths = huf::build_code_lengths(h);
    if (shared && huf::encoded_size(h, *shared) <= huf::encoded_size(h, lengths) + n / 100)
      lengths = *shared;
    if (huf::encoded_size(h, lengths) < best_size) {
      std::vector<uint8_t> tmp;
      tmp.reserve(n / 2);
      huf::huffman_encode_with(lengths, src, n, tmp);
      keep(Codec::huffman, tmp);
    }
  }
  if (opt.allow_sparse && h[0] * 8 >= n) consider(Codec::sparse_huffman);
  if (opt.allow_zstd) consider(Codec::zstd);
  if (best.codec == Codec::raw) return encode_raw(src, n);
  return best;
}

}  // namespace

EncodedChunk encode_best(const uint8_t* src, std::size_t n, const CodecOptions& opt) {
  if (n == 0) return EncodedChunk{};
  return choose(src, n, opt, nullptr, huf::histogram(src, n));
}

EncodedChunk encode_best(const uint8_t* src, std::size_t n, const CodecOptions& opt,
                         const huf::CodeLengths& huffman_code, const huf::Histogram& hist) {
  return choose(src, n, opt, &huffman_code, hist);
}

void decode_chunk(Codec c, const uint8_t* src, std::size_t src_size, uint8_t* dst,
                  std::size_t dst_size) {
  switch (c) {
    case Codec::raw:
      if (src_size != dst_size)
        throw CodecError("raw chunk stores " + std::to_string(src_size) + " bytes for a " +
                         std::to_string(dst_size) + "-byte chunk");
      if (dst_size) std::memcpy(dst, src, dst_size);
      return;
    case Codec::huffman: huf::huffman_decode(src, src_size, dst, dst_size); return;
    case Codec::sparse_huffman: sparse::sparse_decode(src, src_size, dst, dst_size); return;
    case Codec::zstd: zstd_decode(src, src_size, dst, dst_size); return;
  }
  throw CodecError("unknown codec id " + std::to_string(unsigned(c)));
}

}  // namespace qins::comp
