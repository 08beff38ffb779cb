// Decode throughput of the .qins chunk codecs on realistic QINS-like codes, next to a plain
// memcpy of the same size in the same run (the machine is shared: compare ratios).
//
// The *Prev benchmarks run the previous decoder (bench/baseline/huffman_decode_prev.cpp) on the
// same input, next to the current one: report their ratio.
//
// Codes: sign bit | magnitude index, index = min(127, floor(|x| / step)) for x drawn from a
// Laplace or Gaussian distribution (a simple inverse-CDF / Box-Muller over a xorshift PRNG), so
// the byte distribution is geometric-like with ~6-7 bits of entropy, like QINS codes of real
// weights. Reported: bytes/s of decoded output, plus the compressed size vs the order-0 entropy.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "qins/compression/codec.h"
#include "qins/compression/container.h"
#include "qins/compression/huffman.h"

// The previous decoder (bench/baseline/huffman_decode_prev.cpp), the *Prev baseline.
namespace qins::comp::huf_prev {
void huffman_decode(const uint8_t* src, std::size_t src_size, uint8_t* dst, std::size_t dst_size);
void huffman_decode2(const uint8_t* src0, std::size_t src0_size, uint8_t* dst0,
                     std::size_t dst0_size, const uint8_t* src1, std::size_t src1_size,
                     uint8_t* dst1, std::size_t dst1_size);
}  // namespace qins::comp::huf_prev

namespace {

using qins::comp::Codec;

uint64_t xorshift(uint64_t& s) {
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return s;
}

// kind 0: Laplace, 1: Gaussian; zero_frac: extra exact zeros (pruned codes) for sparse tests.
std::vector<uint8_t> qins_codes(std::size_t n, int kind, double zero_frac = 0.0,
                                uint64_t seed = 0x9E3779B97F4A7C15ull) {
  std::vector<uint8_t> v(n);
  uint64_t s = seed;
  const double step = kind == 0 ? 0.06 : 0.045;  // quantization step vs unit scale
  for (auto& b : v) {
    const double u1 = (double(xorshift(s) >> 11) + 0.5) / 9007199254740992.0;
    const double u2 = (double(xorshift(s) >> 11) + 0.5) / 9007199254740992.0;
    double x;
    if (kind == 0) {
      x = -std::log(u1) * (u2 < 0.5 ? -1.0 : 1.0);  // Laplace(0, 1)
    } else {
      x = std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);  // N(0, 1)
    }
    unsigned idx = unsigned(std::min(127.0, std::fabs(x) / step));
    if (double(xorshift(s) >> 11) / 9007199254740992.0 < zero_frac) idx = 0;
    b = uint8_t(idx == 0 ? 0 : ((x < 0 ? 0x80u : 0u) | idx));
  }
  return v;
}

// Bytes per second in both units: Google Benchmark's bytes_per_second is binary (its "G/s" is
// 2^30 bytes/s); SI_bytes_per_s is the same rate in 10^9 bytes/s ("GB/s" in the docs' goals).
void set_bytes(benchmark::State& st, int64_t bytes_per_iteration) {
  st.SetBytesProcessed(int64_t(st.iterations()) * bytes_per_iteration);
  st.counters["SI_bytes_per_s"] = benchmark::Counter(double(st.iterations()) * double(bytes_per_iteration),
                                                     benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}

void report(benchmark::State& st, const std::vector<uint8_t>& raw, std::size_t stored) {
  set_bytes(st, int64_t(raw.size()));
  st.counters["entropy_bits"] = qins::comp::entropy_bits_per_byte(raw.data(), raw.size());
  st.counters["stored_bits"] = 8.0 * double(stored) / double(raw.size());
}

void BM_Memcpy(benchmark::State& st) {
  const auto raw = qins_codes(std::size_t(st.range(0)), 0);
  std::vector<uint8_t> out(raw.size());
  for (auto _ : st) {
    std::memcpy(out.data(), raw.data(), raw.size());
    benchmark::ClobberMemory();
  }
  set_bytes(st, int64_t(raw.size()));
}

void decode_bench(benchmark::State& st, Codec c, int kind, double zero_frac) {
  const auto raw = qins_codes(std::size_t(st.range(0)), kind, zero_frac);
  std::vector<uint8_t> enc;
  qins::comp::encode_with(c, raw.data(), raw.size(), enc, 3);
  std::vector<uint8_t> out(raw.size());
  for (auto _ : st) {
    qins::comp::decode_chunk(c, enc.data(), enc.size(), out.data(), out.size());
    benchmark::ClobberMemory();
  }
  if (out != raw) st.SkipWithError("round trip mismatch");
  report(st, raw, enc.size());
}

void BM_HuffmanDecodeLaplace(benchmark::State& st) { decode_bench(st, Codec::huffman, 0, 0.0); }

// One chunk through the current decoder or the previous one (baseline), same codes.
void one_chunk_bench(benchmark::State& st, int kind, bool prev) {
  const auto raw = qins_codes(std::size_t(st.range(0)), kind);
  std::vector<uint8_t> enc;
  qins::comp::huf::huffman_encode(raw.data(), raw.size(), enc);
  std::vector<uint8_t> out(raw.size());
  for (auto _ : st) {
    if (prev)
      qins::comp::huf_prev::huffman_decode(enc.data(), enc.size(), out.data(), out.size());
    else
      qins::comp::huf::huffman_decode(enc.data(), enc.size(), out.data(), out.size());
    benchmark::ClobberMemory();
  }
  if (out != raw) st.SkipWithError("round trip mismatch");
  report(st, raw, enc.size());
}
void BM_HuffmanOneChunkLaplace(benchmark::State& st) { one_chunk_bench(st, 0, false); }
void BM_HuffmanOneChunkLaplacePrev(benchmark::State& st) { one_chunk_bench(st, 0, true); }
void BM_HuffmanOneChunkGaussian(benchmark::State& st) { one_chunk_bench(st, 1, false); }
void BM_HuffmanOneChunkGaussianPrev(benchmark::State& st) { one_chunk_bench(st, 1, true); }
void BM_HuffmanDecodeGaussian(benchmark::State& st) { decode_bench(st, Codec::huffman, 1, 0.0); }
void BM_SparseHuffmanDecode50pctZeros(benchmark::State& st) {
  decode_bench(st, Codec::sparse_huffman, 0, 0.5);
}
void BM_HuffmanDecode50pctZeros(benchmark::State& st) { decode_bench(st, Codec::huffman, 0, 0.5); }
void BM_SparseHuffmanDecode90pctZeros(benchmark::State& st) {
  decode_bench(st, Codec::sparse_huffman, 0, 0.9);
}
void BM_HuffmanDecode90pctZeros(benchmark::State& st) { decode_bench(st, Codec::huffman, 0, 0.9); }
void BM_ZstdDecodeLaplace(benchmark::State& st) { decode_bench(st, Codec::zstd, 0, 0.0); }

// Two chunks (Laplace and Gaussian codes) decoded one after the other vs interleaved through
// huffman_decode2 (what the loader does with pairs of chunks); bytes/s counts both outputs.
void two_chunk_bench(benchmark::State& st, bool paired, bool prev = false) {
  const auto a = qins_codes(std::size_t(st.range(0)), 0);
  const auto b = qins_codes(std::size_t(st.range(0)), 1);
  std::vector<uint8_t> ea, eb;
  qins::comp::encode_with(Codec::huffman, a.data(), a.size(), ea);
  qins::comp::encode_with(Codec::huffman, b.data(), b.size(), eb);
  std::vector<uint8_t> oa(a.size()), ob(b.size());
  for (auto _ : st) {
    if (paired && prev) {
      qins::comp::huf_prev::huffman_decode2(ea.data(), ea.size(), oa.data(), oa.size(), eb.data(),
                                            eb.size(), ob.data(), ob.size());
    } else if (paired) {
      qins::comp::huf::huffman_decode2(ea.data(), ea.size(), oa.data(), oa.size(), eb.data(),
                                       eb.size(), ob.data(), ob.size());
    } else {
      qins::comp::huf::huffman_decode(ea.data(), ea.size(), oa.data(), oa.size());
      qins::comp::huf::huffman_decode(eb.data(), eb.size(), ob.data(), ob.size());
    }
    benchmark::ClobberMemory();
  }
  if (oa != a || ob != b) st.SkipWithError("round trip mismatch");
  set_bytes(st, int64_t(a.size() + b.size()));
}
void BM_HuffmanDecodeTwoChunksOneByOne(benchmark::State& st) { two_chunk_bench(st, false); }

// Two chunks of one tensor (Laplace codes, two draws) through huffman_decode2, each with its
// own code (two sets of tables, as writers before the shared code made them) or both with one
// code built from their merged histogram (what ContainerWriter now writes for the chunks of a
// section: one set of tables). Same data in both. stored_bits: both payloads' bits per byte, so
// the size the shared code costs shows next to its speed.
void two_chunk_code_bench(benchmark::State& st, bool shared) {
  const auto a = qins_codes(std::size_t(st.range(0)), 0);
  const auto b = qins_codes(std::size_t(st.range(0)), 0, 0.0, 0x243F6A8885A308D3ull);
  std::vector<uint8_t> ea, eb;
  if (shared) {
    namespace huf = qins::comp::huf;
    huf::Histogram h = huf::histogram(a.data(), a.size());
    huf::merge_histogram(h, huf::histogram(b.data(), b.size()));
    const huf::CodeLengths code = huf::build_code_lengths(h);
    huf::huffman_encode_with(code, a.data(), a.size(), ea);
    huf::huffman_encode_with(code, b.data(), b.size(), eb);
  } else {
    qins::comp::huf::huffman_encode(a.data(), a.size(), ea);
    qins::comp::huf::huffman_encode(b.data(), b.size(), eb);
  }
  std::vector<uint8_t> oa(a.size()), ob(b.size());
  for (auto _ : st) {
    qins::comp::huf::huffman_decode2(ea.data(), ea.size(), oa.data(), oa.size(), eb.data(),
                                     eb.size(), ob.data(), ob.size());
    benchmark::ClobberMemory();
  }
  if (oa != a || ob != b) st.SkipWithError("round trip mismatch");
  set_bytes(st, int64_t(a.size() + b.size()));
  st.counters["stored_bits"] = 8.0 * double(ea.size() + eb.size()) / double(a.size() + b.size());
}
void BM_HuffmanDecodeTwoChunksPairedSeparateCodes(benchmark::State& st) {
  two_chunk_code_bench(st, false);
}
void BM_HuffmanDecodeTwoChunksPairedSharedCode(benchmark::State& st) {
  two_chunk_code_bench(st, true);
}
void BM_HuffmanDecodeTwoChunksPaired(benchmark::State& st) { two_chunk_bench(st, true); }
void BM_HuffmanDecodeTwoChunksPairedPrev(benchmark::State& st) { two_chunk_bench(st, true, true); }

void BM_HuffmanEncodeLaplace(benchmark::State& st) {
  const auto raw = qins_codes(std::size_t(st.range(0)), 0);
  std::vector<uint8_t> enc;
  for (auto _ : st) {
    enc.clear();
    qins::comp::encode_with(Codec::huffman, raw.data(), raw.size(), enc);
    benchmark::DoNotOptimize(enc.data());
  }
  report(st, raw, enc.size());
}

}  // namespace

#define QINS_SIZES Arg(1 << 20)->Arg(4 << 20)
BENCHMARK(BM_Memcpy)->QINS_SIZES;
BENCHMARK(BM_HuffmanDecodeLaplace)->QINS_SIZES;
BENCHMARK(BM_HuffmanDecodeGaussian)->QINS_SIZES;
BENCHMARK(BM_SparseHuffmanDecode50pctZeros)->QINS_SIZES;
BENCHMARK(BM_HuffmanDecode50pctZeros)->QINS_SIZES;
BENCHMARK(BM_SparseHuffmanDecode90pctZeros)->QINS_SIZES;
BENCHMARK(BM_HuffmanDecode90pctZeros)->QINS_SIZES;
BENCHMARK(BM_ZstdDecodeLaplace)->QINS_SIZES;
BENCHMARK(BM_HuffmanDecodeTwoChunksOneByOne)->QINS_SIZES;
BENCHMARK(BM_HuffmanDecodeTwoChunksPaired)->QINS_SIZES;
// Current vs previous decoder, alternating so both see the same load: compare each pair's ratio.
BENCHMARK(BM_HuffmanOneChunkLaplacePrev)->Arg(1 << 20);
BENCHMARK(BM_HuffmanOneChunkLaplace)->Arg(1 << 20);
BENCHMARK(BM_HuffmanOneChunkGaussianPrev)->Arg(1 << 20);
BENCHMARK(BM_HuffmanOneChunkGaussian)->Arg(1 << 20);
BENCHMARK(BM_HuffmanDecodeTwoChunksPairedPrev)->Arg(1 << 20);
BENCHMARK(BM_HuffmanDecodeTwoChunksPaired)->Arg(1 << 20);
// Separate codes vs one shared code, same data, alternating: compare the pair's ratio.
BENCHMARK(BM_HuffmanDecodeTwoChunksPairedSeparateCodes)->Arg(1 << 20);
BENCHMARK(BM_HuffmanDecodeTwoChunksPairedSharedCode)->Arg(1 << 20);
BENCHMARK(BM_HuffmanEncodeLaplace)->Arg(1 << 20);
BENCHMARK_MAIN();
