// The AVX2 QINS 8-bit kernels against the previous ones (bench/baseline/kernels8_avx2_prev.cpp),
// one thread, in the same interleaved rounds (the machine is shared and noisy: read the ratios).
//
// gemv: batch 1 (decoding); rows M: the small-batch path with M rows of x (the server's batched
// decode), each code decoded once for all M rows. Phi-3.5-mini shapes, codes L2-resident (the
// first 192 KiB of rows, over and over) and streamed (copies of the matrix past 64 MiB, more than
// the L3 holds). GB/s of code bytes per pass (M rows count the codes once); "same outputs"
// compares every output of the two kernels bit for bit.
//
//   ./build/bench/bench_kernels8_avx2 [--rounds 9]
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "qins/core/qins.h"
#include "qins_kernels.h"  // core/src: the kernel table
#include "side_by_side.h"
#if defined(__x86_64__) || defined(__i386__)
#include "baseline/kernels8_avx2_prev.h"
#endif

namespace qc = qins::core;
namespace qk = qins::core::kernels;

namespace {

#if defined(__x86_64__) || defined(__i386__)
void run(int rounds) {
  namespace prev = qins::bench::kernels8_prev;
  const qk::Kernel* avx2 = qk::avx2_kernel();
  if (avx2 == nullptr) {
    std::printf("no AVX2 + FMA on this CPU: nothing to compare\n");
    return;
  }
  qk::LutTables t;
  const torch::Tensor lut = qc::make_lut(qc::Codebook::Projective, 300.0);
  qk::build_tables(lut.data_ptr<float>(), &t);
  struct Shape {
    int64_t out, in;
  };
  const Shape shapes[] = {{3072, 3072}, {8192, 3072}, {3072, 8192}};
  std::printf("one thread, AVX2, previous (bench/baseline) vs current, %d interleaved rounds (medians), "
              "GB/s of code bytes\n\n",
              rounds);
  std::printf("| shape (out x in) | rows of x | codes | previous GB/s | current GB/s | current / previous | same outputs |\n"
              "|---|---:|---|---:|---:|---:|---|\n");
  torch::manual_seed(3);
  for (const Shape& sh : shapes) {
    const int64_t mat = sh.out * sh.in;
    const int64_t copies = (int64_t{64} << 20) / mat + 1;
    torch::Tensor codes = qc::empty_large({copies * sh.out, sh.in}, torch::kUInt8);  // [copies*out, in] uint8
    codes.copy_(torch::randint(0, 256, {copies * sh.out, sh.in}, torch::kUInt8));
    qc::promote_to_huge_pages(codes);
    const torch::Tensor scales = torch::rand({copies * sh.out}) * 0.02 + 0.01;  // [copies*out] fp32
    const torch::Tensor x = torch::randn({8, sh.in});                           // [8, in] fp32, kernel order
    std::vector<float> y0(static_cast<size_t>(8 * sh.out)), y1(y0.size());
    const uint8_t* cp = codes.data_ptr<uint8_t>();
    const float* sp = scales.data_ptr<float>();
    const float* xp = x.data_ptr<float>();
    for (int64_t m : {int64_t{0}, int64_t{1}, int64_t{2}, int64_t{4}, int64_t{8}}) {  // 0: gemv
      auto call = [&](bool cur, int64_t c, int64_t rows, float* y) {
        const uint8_t* cc = cp + c * mat;
        const float* ss = sp + c * sh.out;
        if (m == 0) {
          if (cur) avx2->gemv(cc, sh.in, 0, rows, ss, t, xp, y);
          else prev::gemv_avx2_prev(cc, sh.in, 0, rows, ss, t, xp, y);
        } else {
          if (cur) avx2->gemv_rows(cc, sh.in, 0, rows, ss, t, xp, m, y, sh.out);
          else prev::gemv_rows_avx2_prev(cc, sh.in, 0, rows, ss, t, xp, m, y, sh.out);
        }
      };
      call(false, 0, sh.out, y0.data());
      call(true, 0, sh.out, y1.data());
      const size_t n = static_cast<size_t>(std::max<int64_t>(1, m) * sh.out);
      const bool same = std::memcmp(y0.data(), y1.data(), n * sizeof(float)) == 0;
      const int64_t l2_rows = std::min<int64_t>(sh.out, (int64_t{192} << 10) / sh.in);
      const int l2_reps = static_cast<int>(std::max<int64_t>(1, mat / (l2_rows * sh.in)));
      for (bool streamed : {false, true}) {
        const double bytes = streamed ? static_cast<double>(copies * mat)
                                      : static_cast<double>(l2_reps) * static_cast<double>(l2_rows * sh.in);
        const auto [mp, mc] = qins::bench::previous_vs_current(rounds, bytes, [&](bool cur) {
          if (streamed) {
            for (int64_t c = 0; c < copies; ++c) call(cur, c, sh.out, y0.data());
          } else {
            for (int i = 0; i < l2_reps; ++i) call(cur, 0, l2_rows, y0.data());
          }
        });
        std::printf("| %lld x %lld | %s | %s | %.2f | %.2f | %.2fx | %s |\n", static_cast<long long>(sh.out),
                    static_cast<long long>(sh.in), m == 0 ? "1 (gemv)" : std::to_string(m).c_str(),
                    streamed ? "streamed (> 64 MiB)" : "L2-resident (192 KiB)", mp, mc, mc / mp,
                    same ? "bit-identical" : "DIFFERENT");
        std::fflush(stdout);
      }
    }
  }
}
#endif

}  // namespace

int main(int argc, char** argv) {
  int rounds = 9;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--rounds" && i + 1 < argc) rounds = std::max(1, std::atoi(argv[++i]));
    else {
      std::fprintf(stderr, "usage: bench_kernels8_avx2 [--rounds N]\n");
      return 2;
    }
  }
#if defined(__x86_64__) || defined(__i386__)
  run(rounds);
#else
  std::printf("x86 only\n");
#endif
  return 0;
}
