// QINS linear kernels vs libtorch at the Phi-3.5-mini projection shapes.
//
// Batch 1 (decoding): fused QINS GEMV, fp32 torch::linear, bf16 torch::linear, dequantize-then-
// linear (naive) and a plain sum over as many bytes as the codes (the memory roofline), one shape
// after another so each ratio comes from the same run. bytes_per_second = weight bytes each
// variant streams per call (codes: 1 B/weight, fp32: 4, bf16: 2, naive: the codes it expands).
// Prefill: 64 rows, QINS (bf16 blocked GEMM, or tile-expand + BLAS GEMM on the exact paths) vs
// fp32 torch::linear. Where the default path is the bf16 one, the exact path runs beside it.
//
// gemv_l2_one_thread: the kernels alone, 576 KB of codes in L2, one thread (compute-bound);
// gemv_rows_l2_one_thread/M: the same with M rows of x (the batched decode path).
// rows/qins/<shape>/M: M rows of x through the layer's row path at each shape, codes from memory,
// both threads (the server's batched decode step), beside gemv/plain_sum of the same shape.
// rows_streamed/qins/<shape>/M: the same with the codes read from DRAM on every call (copies of the
// codes past the L3), beside rows_streamed/plain_sum of the same copies.
// peak/bf16_dot, peak/int8_dot (AVX512-BF16 CPUs): the dot-product instructions' own ceiling, and
// what it allows the batched decode with 4 and 8 rows of x.
//
//   ./build/bench/bench_qins_linear --benchmark_min_time=0.2
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "qins/core/projective_linear.h"
#include "qins/core/qins.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace qc = qins::core;

namespace {

struct Shape {
  int64_t out, in;
  const char* name;
};
const Shape kShapes[] = {{9216, 3072, "qkv_proj"},
                         {3072, 3072, "o_proj"},
                         {16384, 3072, "gate_up_proj"},
                         {3072, 8192, "down_proj"},
                         {32064, 3072, "lm_head"}};

// Only one shape's tensors live at a time (lm_head in fp32 alone is 394 MB; the machine is shared).
struct Weights {
  int64_t out = 0, in = 0;
  std::unique_ptr<qc::ProjectiveLinear> layer;
  torch::Tensor w32;   // [out, in] fp32
  torch::Tensor w16;   // [out, in] bf16
};
Weights& weights_for(const Shape& s, bool need_float) {
  static Weights w;
  if (w.out != s.out || w.in != s.in) {
    w = Weights{};
    torch::manual_seed(1);
    qc::QuantizedTensor q;
    q.codebook = qc::Codebook::Projective;
    q.pole = 300.0;
    // Every weight buffer on huge pages, as the engine puts them after loading (qc::empty_large +
    // qc::promote_to_huge_pages).
    q.codes = qc::empty_large({s.out, s.in}, torch::kUInt8);  // [out, in] uint8
    q.codes.copy_(torch::randint(0, 256, {s.out, s.in}, torch::kUInt8));
    qc::promote_to_huge_pages(q.codes);
    q.scales = torch::rand({s.out}) * 0.02 + 0.01;                     // [out] fp32
    q.lut = qc::make_lut(q.codebook, q.pole);
    w.layer = std::make_unique<qc::ProjectiveLinear>(q);
    w.out = s.out;
    w.in = s.in;
  }
  if (need_float && !w.w32.defined()) {
    w.w32 = qc::empty_large({s.out, s.in}, torch::kFloat32);
    w.w32.copy_((*w.layer)->dequantize());
    w.w16 = qc::empty_large({s.out, s.in}, torch::kBFloat16);
    w.w16.copy_(w.w32);
    qc::promote_to_huge_pages(w.w32);
    qc::promote_to_huge_pages(w.w16);
  }
  return w;
}

// isa: a kernel path ("avx512bf16", "avx512", ..) or "auto"; restored to auto afterwards.
void bm_qins(benchmark::State& st, Shape s, std::string isa) {
  Weights& w = weights_for(s, false);
  qc::set_kernel_isa(isa);
  const torch::Tensor x = torch::randn({1, s.in});
  for (auto _ : st) benchmark::DoNotOptimize((*w.layer)->forward(x));
  st.SetBytesProcessed(st.iterations() * s.out * s.in);
  st.SetLabel(qc::kernel_isa());
  qc::set_kernel_isa("auto");
}

// The kernel's own speed, with the memory out of the way: 192 rows x 3072 (576 KB of codes,
// resident in L2) on one thread. Decoding from DRAM runs at the memory's speed only while this
// is well above the memory's share per core.
void bm_qins_l2(benchmark::State& st, std::string isa) {
  qc::QuantizedTensor q;
  q.codebook = qc::Codebook::Projective;
  q.pole = 300.0;
  torch::manual_seed(2);
  q.codes = torch::randint(0, 256, {192, 3072}, torch::kUInt8);  // [192, 3072] uint8
  q.scales = torch::rand({192}) * 0.02 + 0.01;                    // [192] fp32
  q.lut = qc::make_lut(q.codebook, q.pole);
  qc::set_kernel_isa(isa);
  const int saved = at::get_num_threads();
  at::set_num_threads(1);
  const torch::Tensor x = torch::randn({3072});  // [in] fp32
  std::vector<float> y(192);
  for (auto _ : st) {
    qc::qins_matmul(q, x.data_ptr<float>(), 1, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  st.SetBytesProcessed(st.iterations() * 192 * 3072);
  st.SetLabel(qc::kernel_isa());
  at::set_num_threads(saved);
  qc::set_kernel_isa("auto");
}

// The small-batch decode path alone: m rows of x against the same 576 KB of codes in L2, one
// thread (qins_matmul_rows). bytes_per_second counts the codes once per call, so m rows at the
// speed of one row would show m times the per-row rate in items_per_second (rows x codes).
void bm_qins_rows_l2(benchmark::State& st, std::string isa) {
  const int64_t m = st.range(0);
  qc::QuantizedTensor q;
  q.codebook = qc::Codebook::Projective;
  q.pole = 300.0;
  torch::manual_seed(2);
  q.codes = torch::randint(0, 256, {192, 3072}, torch::kUInt8);  // [192, 3072] uint8
  q.scales = torch::rand({192}) * 0.02 + 0.01;                    // [192] fp32
  q.lut = qc::make_lut(q.codebook, q.pole);
  qc::set_kernel_isa(isa);
  const int saved = at::get_num_threads();
  at::set_num_threads(1);
  const torch::Tensor x = torch::randn({m, 3072});  // [m, in] fp32
  std::vector<float> y(static_cast<size_t>(m * 192));
  for (auto _ : st) {
    qc::qins_matmul_rows(q, x.data_ptr<float>(), m, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  st.SetBytesProcessed(st.iterations() * 192 * 3072);
  st.SetItemsProcessed(st.iterations() * m * 192 * 3072);
  st.SetLabel(qc::kernel_isa());
  at::set_num_threads(saved);
  qc::set_kernel_isa("auto");
}

// The batched decode at a Phi-3.5-mini shape: m rows of x through the layer's row path
// (ProjectiveLinear::forward_rows, both threads), the codes from memory as in the model. Read
// beside gemv/plain_sum of the same shape: bytes_per_second counts the codes once per call (m rows
// that cost no more than one would read at the plain sum's rate), items_per_second rows x codes.
void bm_qins_rows(benchmark::State& st, Shape s) {
  const int64_t m = st.range(0);
  Weights& w = weights_for(s, false);
  const torch::Tensor x = torch::randn({m, s.in});  // [m, in] fp32
  std::vector<float> y(static_cast<size_t>(m * s.out));
  for (auto _ : st) {
    (*w.layer)->forward_rows(x.data_ptr<float>(), m, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  st.SetBytesProcessed(st.iterations() * s.out * s.in);
  st.SetItemsProcessed(st.iterations() * m * s.out * s.in);
  st.SetLabel(qc::kernel_isa());
}

void bm_fp32(benchmark::State& st, Shape s) {
  Weights& w = weights_for(s, true);
  const torch::Tensor x = torch::randn({1, s.in});
  for (auto _ : st) benchmark::DoNotOptimize(torch::linear(x, w.w32));
  st.SetBytesProcessed(st.iterations() * s.out * s.in * 4);
}

void bm_bf16(benchmark::State& st, Shape s) {
  Weights& w = weights_for(s, true);
  const torch::Tensor x = torch::randn({1, s.in}).to(torch::kBFloat16);
  for (auto _ : st) benchmark::DoNotOptimize(torch::linear(x, w.w16));
  st.SetBytesProcessed(st.iterations() * s.out * s.in * 2);
}

void bm_naive(benchmark::State& st, Shape s) {
  Weights& w = weights_for(s, false);
  const torch::Tensor x = torch::randn({1, s.in});
  for (auto _ : st) benchmark::DoNotOptimize((*w.layer)->forward_reference(x));
  st.SetBytesProcessed(st.iterations() * s.out * s.in);
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) uint64_t sum_bytes(const uint8_t* p, int64_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  int64_t i = 0;
  for (; i + 128 <= n; i += 128) {
    a0 = _mm256_add_epi64(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes),
                     _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
  uint64_t s = lanes[0] + lanes[1] + lanes[2] + lanes[3];
  for (; i < n; ++i) s += p[i];
  return s;
}
#else
uint64_t sum_bytes(const uint8_t* p, int64_t n) {
  uint64_t s = 0;
  for (int64_t i = 0; i < n; ++i) s += p[i];
  return s;
}
#endif

// peak/bf16_dot, peak/int8_dot: the most vdpbf16ps (vpdpbusd) zmm operations both threads retire per
// ns (G_ops), 24 independent accumulator chains each. The 8-bit batched decode needs 2 vdpbf16ps per 64
// codes and row of x (32 bf16 products each), so the dot products alone would let M rows of x read
// 64 B x G_ops / (2 M) of codes per ns: bound_M4_GB, bound_M8_GB (GB/s), to set beside
// rows_streamed/qins/.../4 and /8. gemv_rows_l2_one_thread's items_per_second (products per second,
// one thread) compares with 32 x G_ops / threads.
#if defined(__x86_64__)
// 24 accumulators in zmm0-zmm23, each updated once per round from zmm30 and zmm31: written in asm, because with
// an array of __m512 and a compiler barrier per update GCC kept the accumulators in memory and the loop measured
// the stores (half the real rate).
#define QINS_PEAK_R24(OP) \
  OP(0) OP(1) OP(2) OP(3) OP(4) OP(5) OP(6) OP(7) OP(8) OP(9) OP(10) OP(11) OP(12) OP(13) OP(14) OP(15) OP(16) \
  OP(17) OP(18) OP(19) OP(20) OP(21) OP(22) OP(23)
#define QINS_PEAK_CLOBBERS                                                                                        \
  "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",     \
      "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm30", \
      "xmm31"
#define QINS_PEAK_ZERO(i) "vpxord %%zmm" #i ", %%zmm" #i ", %%zmm" #i "\n\t"
#define QINS_PEAK_BF16(i) "vdpbf16ps %%zmm30, %%zmm31, %%zmm" #i "\n\t"
#define QINS_PEAK_INT8(i) "vpdpbusd %%zmm30, %%zmm31, %%zmm" #i "\n\t"
__attribute__((target("avx512f,avx512bw,avx512bf16"))) void bf16_dot_chains(int64_t n) {
  asm volatile(QINS_PEAK_R24(QINS_PEAK_ZERO) QINS_PEAK_ZERO(30) QINS_PEAK_ZERO(31)::: QINS_PEAK_CLOBBERS);
  for (int64_t i = 0; i < n; ++i) asm volatile(QINS_PEAK_R24(QINS_PEAK_BF16)::: QINS_PEAK_CLOBBERS);
}
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void int8_dot_chains(int64_t n) {
  asm volatile(QINS_PEAK_R24(QINS_PEAK_ZERO) QINS_PEAK_ZERO(30) QINS_PEAK_ZERO(31)::: QINS_PEAK_CLOBBERS);
  for (int64_t i = 0; i < n; ++i) asm volatile(QINS_PEAK_R24(QINS_PEAK_INT8)::: QINS_PEAK_CLOBBERS);
}

// Both threads run `n` rounds of 24 operations each; st's time is the slower thread's.
void bm_peak_dot(benchmark::State& st, bool bf16) {
  constexpr int64_t kRounds = 1 << 20;
  const int threads = at::get_num_threads();
  for (auto _ : st)
    at::parallel_for(0, threads, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) bf16 ? bf16_dot_chains(kRounds) : int8_dot_chains(kRounds);
    });
  const double ops = 24.0 * kRounds * threads * static_cast<double>(st.iterations());
  st.counters["G_ops"] = benchmark::Counter(ops * 1e-9, benchmark::Counter::kIsRate);
  st.counters["threads"] = threads;
  if (bf16) {  // 64 codes per 2 M operations
    st.counters["bound_M4_GB"] = benchmark::Counter(ops * 64.0 / 8.0 * 1e-9, benchmark::Counter::kIsRate);
    st.counters["bound_M8_GB"] = benchmark::Counter(ops * 64.0 / 16.0 * 1e-9, benchmark::Counter::kIsRate);
  }
}
#endif

// The roofline: read rows x in code bytes once, split over the same threads as the GEMV.
uint64_t plain_sum(const uint8_t* p, int64_t rows, int64_t in) {
  std::vector<uint64_t> part(static_cast<size_t>(at::get_num_threads()) + 1, 0);
  at::parallel_for(0, rows, 64, [&](int64_t b, int64_t e) {
    part[static_cast<size_t>(at::get_thread_num())] += sum_bytes(p + b * in, (e - b) * in);
  });
  uint64_t total = 0;
  for (uint64_t v : part) total += v;
  return total;
}

void bm_plain_sum(benchmark::State& st, Shape s) {
  Weights& w = weights_for(s, false);
  const uint8_t* p = (*w.layer)->quantized().codes.data_ptr<uint8_t>();
  for (auto _ : st) benchmark::DoNotOptimize(plain_sum(p, s.out, s.in));
  st.SetBytesProcessed(st.iterations() * s.out * s.in);
}

// Copies of a shape's codes, together more than the L3 holds (>= 160 MB), so that every call of the
// streamed benchmarks below reads its codes from DRAM, as a decode step does (the layer of `weights_for`
// alone, 9-98 MB, partly stays in a 32 MB L3 from call to call). One shape's copies live at a time.
struct Streamed {
  int64_t out = 0, in = 0;
  std::vector<qc::QuantizedTensor> copies;
};
Streamed& streamed_for(const Shape& s) {
  static Streamed c;
  if (c.out != s.out || c.in != s.in) {
    c = Streamed{};
    const qc::QuantizedTensor& q0 = (*weights_for(s, false).layer)->quantized();
    const int64_t n = std::max<int64_t>(2, ((int64_t{160} << 20) + s.out * s.in - 1) / (s.out * s.in));
    for (int64_t i = 0; i < n; ++i) {
      qc::QuantizedTensor q = q0;
      q.codes = qc::empty_large({s.out, s.in}, torch::kUInt8);  // [out, in] uint8
      q.codes.copy_(q0.codes);
      qc::promote_to_huge_pages(q.codes);
      c.copies.push_back(std::move(q));
    }
    c.out = s.out;
    c.in = s.in;
  }
  return c;
}

// rows_streamed/qins/<shape>/M: M rows of x through qins_matmul_rows (the batched decode step's call), both
// threads, each call on the next copy of the codes; M = 1 is the GEMV (qins_matmul_rows calls it). Beside
// rows_streamed/plain_sum of the same copies. bytes_per_second counts the codes once per call.
void bm_qins_rows_streamed(benchmark::State& st, Shape s) {
  const int64_t m = st.range(0);
  Streamed& c = streamed_for(s);
  const torch::Tensor x = torch::randn({m, s.in});  // [m, in] fp32
  std::vector<float> y(static_cast<size_t>(m * s.out));
  size_t i = 0;
  for (auto _ : st) {
    qc::qins_matmul_rows(c.copies[i++ % c.copies.size()], x.data_ptr<float>(), m, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  st.SetBytesProcessed(st.iterations() * s.out * s.in);
  st.SetItemsProcessed(st.iterations() * m * s.out * s.in);
  st.SetLabel(qc::kernel_isa());
}

void bm_plain_sum_streamed(benchmark::State& st, Shape s) {
  Streamed& c = streamed_for(s);
  size_t i = 0;
  for (auto _ : st)
    benchmark::DoNotOptimize(plain_sum(c.copies[i++ % c.copies.size()].codes.data_ptr<uint8_t>(), s.out, s.in));
  st.SetBytesProcessed(st.iterations() * s.out * s.in);
}

void bm_prefill_qins(benchmark::State& st, Shape s, std::string isa) {
  Weights& w = weights_for(s, false);
  qc::set_kernel_isa(isa);
  const torch::Tensor x = torch::randn({64, s.in});
  for (auto _ : st) benchmark::DoNotOptimize((*w.layer)->forward(x));
  st.SetBytesProcessed(st.iterations() * s.out * s.in);
  st.SetLabel(qc::kernel_isa());
  qc::set_kernel_isa("auto");
  st.counters["GFLOPS"] = benchmark::Counter(2.0 * 64 * s.out * s.in * 1e-9 * static_cast<double>(st.iterations()),
                                             benchmark::Counter::kIsRate);
}

void bm_prefill_fp32(benchmark::State& st, Shape s) {
  Weights& w = weights_for(s, true);
  const torch::Tensor x = torch::randn({64, s.in});
  for (auto _ : st) benchmark::DoNotOptimize(torch::linear(x, w.w32));
  st.SetBytesProcessed(st.iterations() * s.out * s.in * 4);
  st.counters["GFLOPS"] = benchmark::Counter(2.0 * 64 * s.out * s.in * 1e-9 * static_cast<double>(st.iterations()),
                                             benchmark::Counter::kIsRate);
}

}  // namespace

int main(int argc, char** argv) {
  at::set_num_threads(2);
  // The exact fp32 path next to the default one, where the default is a different (bf16) path.
  const auto isas = qc::available_kernel_isas();
  const bool exact_too = qc::kernel_uses_bf16() && isas.size() >= 2;
  const std::string exact = exact_too ? isas[isas.size() - 2] : "";
#if defined(__x86_64__)
  if (std::string(qc::kernel_isa()) == "avx512bf16") {  // a CPU with AVX512-BF16 has VNNI too
    benchmark::RegisterBenchmark("peak/bf16_dot", bm_peak_dot, true)->UseRealTime();
    benchmark::RegisterBenchmark("peak/int8_dot", bm_peak_dot, false)->UseRealTime();
  }
#endif
  benchmark::RegisterBenchmark("gemv_l2_one_thread/qins", bm_qins_l2, "auto")->UseRealTime();
  if (exact_too) benchmark::RegisterBenchmark(("gemv_l2_one_thread/qins_" + exact).c_str(), bm_qins_l2, exact)->UseRealTime();
  benchmark::RegisterBenchmark("gemv_rows_l2_one_thread/qins", bm_qins_rows_l2, "auto")
      ->Arg(1)->Arg(2)->Arg(4)->Arg(8)->UseRealTime();
  for (const Shape& s : kShapes) {
    const std::string tag = std::string(s.name) + "/" + std::to_string(s.out) + "x" + std::to_string(s.in);
    benchmark::RegisterBenchmark(("gemv/qins/" + tag).c_str(), bm_qins, s, "auto")->UseRealTime();
    if (exact_too)
      benchmark::RegisterBenchmark(("gemv/qins_" + exact + "/" + tag).c_str(), bm_qins, s, exact)->UseRealTime();
    benchmark::RegisterBenchmark(("gemv/plain_sum/" + tag).c_str(), bm_plain_sum, s)->UseRealTime();
    benchmark::RegisterBenchmark(("rows/qins/" + tag).c_str(), bm_qins_rows, s)
        ->Arg(1)->Arg(2)->Arg(3)->Arg(4)->Arg(8)->UseRealTime();
    benchmark::RegisterBenchmark(("rows_streamed/plain_sum/" + tag).c_str(), bm_plain_sum_streamed, s)->UseRealTime();
    benchmark::RegisterBenchmark(("rows_streamed/qins/" + tag).c_str(), bm_qins_rows_streamed, s)
        ->Arg(1)->Arg(2)->Arg(3)->Arg(4)->Arg(8)->UseRealTime();
    benchmark::RegisterBenchmark(("gemv/fp32_linear/" + tag).c_str(), bm_fp32, s)->UseRealTime();
    benchmark::RegisterBenchmark(("gemv/bf16_linear/" + tag).c_str(), bm_bf16, s)->UseRealTime();
    benchmark::RegisterBenchmark(("gemv/naive_dequant_linear/" + tag).c_str(), bm_naive, s)->UseRealTime();
    benchmark::RegisterBenchmark(("prefill64/qins/" + tag).c_str(), bm_prefill_qins, s, "auto")->UseRealTime();
    if (exact_too)
      benchmark::RegisterBenchmark(("prefill64/qins_" + exact + "/" + tag).c_str(), bm_prefill_qins, s, exact)
          ->UseRealTime();
    benchmark::RegisterBenchmark(("prefill64/fp32_linear/" + tag).c_str(), bm_prefill_fp32, s)->UseRealTime();
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
