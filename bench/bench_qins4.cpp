// QINS-4 vs QINS 8-bit on the Phi-3.5-mini projection shapes, in one run, in interleaved rounds
// (the machine is shared and noisy: read the ratios).
//
// Decode: one token's projections (qkv 9216x3072, o 3072x3072, gate_up 16384x3072, down
// 3072x8192) over `--layers` distinct copies (far more bytes than the caches hold), batch 1, each
// format's default kernel path; next to it a plain read of the QINS-4 bytes (the bandwidth
// roofline for its bytes per token). Projected tokens/s: 32 layers + an 8-bit lm_head (the
// mixed-precision policy keeps lm_head at 8 bits in both files), from the per-layer medians.
// Prefill: `--prefill-rows` rows through one layer, every format. QINS-4 at group 32 (fp16 scales)
// and group 16 (8-bit log-scale codes), same bits per weight.
//
// Kernel rows (x86 only): one thread, each x86 path's GEMV (AVX2; AVX-512 where the CPU has it)
// against its previous one (bench/baseline/kernels4_avx2_prev.cpp, kernels4_avx512_prev.cpp) in
// the same interleaved rounds, group 16 and group 32,
// on Phi-3 shapes, with the codes L2-resident (the first 192 KiB of rows, over and over) and
// streamed (copies of the matrix past 64 MiB, more than the L3 holds), GB/s of code bytes.
//
// Small-batch rows (x86 only, after the kernel rows): one thread, each x86 path's batched-decode
// kernel (gemv_rows / gemv16_rows: each code looked up once for up to 4 rows of x on AVX2, 8 on
// AVX-512) against the
// same rows through the GEMV one at a time (what a batched decode step cost before it), for 2, 4
// and 8 rows of x, on the codes streamed; outputs checked bit for bit against the per-row GEMV.
//
// Super-block rows (AVX-512 VNNI only): group 16's super-block loop against the two-block steps it
// replaced (the same kernel's fallback, forced by a sub-scale table its check rejects), 1-8 rows of
// x, qkv-shaped codes streamed, one thread and every ATen thread.
//
//   ./build/bench/bench_qins4 [--layers 8] [--rounds 7] [--prefill-rows 64] [--kernel-rounds 15]
//   ./build/bench/bench_qins4 --kernels-only 1    (the kernel rows alone)
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "qins/core/projective_linear.h"
#include "qins/core/qins.h"
#include "qins/core/qins4.h"
#include "qins4_kernels.h"  // core/src: the kernel table, for the one-thread kernel rows
#if defined(__x86_64__) || defined(__i386__)
#include "baseline/kernels4_avx2_prev.h"
#endif

#include "side_by_side.h"

namespace qc = qins::core;

namespace {

using qins::bench::Clock;
using qins::bench::median;
using qins::bench::since;

struct Shape {
  int64_t out, in;
};
const Shape kLayer[] = {{9216, 3072}, {3072, 3072}, {16384, 3072}, {3072, 8192}};

// Random codes of one shape repeated past min_bytes (streamed from DRAM once past the L3), on huge
// pages as a loaded model's are, with random group-16 sub-scale codes (128-255).
struct StreamedCodes {
  int64_t nb = 0, row_bytes = 0, mat_bytes = 0, copies = 0, all_rows = 0;
  torch::Tensor codes, sub;  // [all_rows, in / 2] uint8, [all_rows, 2 * nb] uint8
};
StreamedCodes streamed_codes(const Shape& sh, int64_t min_bytes) {
  StreamedCodes c;
  c.nb = sh.in / 32;
  c.row_bytes = c.nb * 16;
  c.mat_bytes = sh.out * c.row_bytes;
  c.copies = min_bytes / c.mat_bytes + 1;
  c.all_rows = c.copies * sh.out;
  c.codes = qc::empty_large({c.all_rows, c.row_bytes}, torch::kUInt8);
  c.codes.copy_(torch::randint(0, 256, {c.all_rows, c.row_bytes}, torch::kUInt8));
  qc::promote_to_huge_pages(c.codes);
  c.sub = torch::randint(128, 256, {c.all_rows, 2 * c.nb}, torch::kUInt8);
  return c;
}
const Shape kLmHead{32064, 3072};

qc::QuantizedTensor random_q8(const Shape& s) {
  qc::QuantizedTensor q;
  q.codebook = qc::Codebook::Projective;
  q.pole = 300.0;
  q.codes = qc::empty_large({s.out, s.in}, torch::kUInt8);  // [out, in] uint8
  q.codes.copy_(torch::randint(0, 256, {s.out, s.in}, torch::kUInt8));
  qc::promote_to_huge_pages(q.codes);
  q.scales = torch::rand({s.out}) * 0.02 + 0.01;  // [out] fp32
  q.lut = qc::make_lut(q.codebook, q.pole);
  return q;
}

qc::Quantized4Tensor random_q4(const Shape& s, const torch::Tensor& lut) {
  qc::Quantized4Tensor q;
  q.in_features = s.in;
  q.group = 32;
  q.codes = qc::empty_large({s.out, s.in / 2}, torch::kUInt8);  // [out, in/2] uint8
  q.codes.copy_(torch::randint(0, 256, {s.out, s.in / 2}, torch::kUInt8));
  qc::promote_to_huge_pages(q.codes);
  q.scales = (torch::rand({s.out, s.in / 32}) * 1e-4 + 1e-4).to(torch::kHalf);  // [out, in/32] fp16
  q.lut = lut;
  q.validate("bench");
  return q;
}

// Group 16: 8-bit log-scale codes into the tensor's table (the upper half of the range, as trained
// weights use it).
qc::Quantized4Tensor random_q4_g16(const Shape& s, const torch::Tensor& lut) {
  qc::Quantized4Tensor q;
  q.in_features = s.in;
  q.group = 16;
  q.codes = qc::empty_large({s.out, s.in / 2}, torch::kUInt8);  // [out, in/2] uint8
  q.codes.copy_(torch::randint(0, 256, {s.out, s.in / 2}, torch::kUInt8));
  qc::promote_to_huge_pages(q.codes);
  q.scales = torch::randint(128, 256, {s.out, s.in / 16}, torch::kUInt8);  // [out, in/16] uint8
  q.sub_table = qc::sub_scale_table(2e-4f);
  q.lut = lut;
  q.validate("bench");
  return q;
}

uint64_t sum_plain(const uint64_t* p, int64_t n) {  // integer adds: the compiler vectorises them
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) s0 += p[i], s1 += p[i + 1], s2 += p[i + 2], s3 += p[i + 3];
  for (; i < n; ++i) s0 += p[i];
  return s0 + s1 + s2 + s3;
}

#if defined(__x86_64__) || defined(__i386__)
// The x86 paths with a previous GEMV kept as a baseline: name, the current kernel table, the previous GEMVs.
struct PrevPath {
  const char* name;
  const qc::kernels4::Kernel4* k;
  decltype(&qins::bench::kernels4_prev::gemv_avx2_prev) gemv_prev;
  decltype(&qins::bench::kernels4_prev::gemv16_avx2_prev) gemv16_prev;
};
std::vector<PrevPath> prev_paths() {
  namespace k4 = qc::kernels4;
  namespace prev = qins::bench::kernels4_prev;
  std::vector<PrevPath> v;
  if (const k4::Kernel4* k = k4::avx2_kernel4()) v.push_back({"AVX2", k, prev::gemv_avx2_prev, prev::gemv16_avx2_prev});
  if (const k4::Kernel4* k = k4::avx512_kernel4())
    v.push_back({"AVX-512", k, prev::gemv_avx512_prev, prev::gemv16_avx512_prev});
  return v;
}

// The kernel rows on one path: its current gemv16 / gemv against its previous one, one thread.
void bench_kernels_on(const PrevPath& path, int rounds, const torch::Tensor& lut) {
  const Shape shapes[] = {{3072, 3072}, {8192, 3072}, {3072, 8192}};
  const int8_t* lp = lut.data_ptr<int8_t>();
  const torch::Tensor st = qc::sub_scale_table(2e-4f);
  std::printf("\nkernel rows: one thread, %s, previous (bench/baseline) vs current, %d interleaved rounds (medians), "
              "GB/s of code bytes\n",
              path.name, rounds);
  std::printf("| group | shape (out x in) | codes | previous GB/s | current GB/s | current / previous | same outputs |\n"
              "|---|---|---|---:|---:|---:|---|\n");
  for (int group : {16, 32}) {
    for (const Shape& sh : shapes) {
      const int64_t nb = sh.in / 32, row_bytes = nb * 16;
      const int64_t mat_bytes = sh.out * row_bytes;
      const int64_t copies = (int64_t{64} << 20) / mat_bytes + 1;
      const int64_t all_rows = copies * sh.out;
      torch::Tensor codes = qc::empty_large({all_rows, row_bytes}, torch::kUInt8);  // [copies*out, in/2] uint8
      codes.copy_(torch::randint(0, 256, {all_rows, row_bytes}, torch::kUInt8));
      qc::promote_to_huge_pages(codes);
      // group 16: 2 sub-scale codes per block (upper half of the table); group 32: 1 fp16 scale per block
      torch::Tensor sub = torch::randint(128, 256, {all_rows, 2 * nb}, torch::kUInt8);
      torch::Tensor hs = (torch::rand({all_rows, nb}) * 1e-4 + 1e-4).to(torch::kHalf);
      std::vector<int8_t> xq(static_cast<size_t>(sh.in));
      std::vector<float> dx(static_cast<size_t>(nb));
      const torch::Tensor xr = torch::randint(-127, 128, {sh.in}, torch::kInt8);
      std::copy(xr.data_ptr<int8_t>(), xr.data_ptr<int8_t>() + sh.in, xq.begin());
      const torch::Tensor dr = torch::rand({nb}) * 0.01 + 0.005;
      std::copy(dr.data_ptr<float>(), dr.data_ptr<float>() + nb, dx.begin());
      std::vector<float> y0(static_cast<size_t>(sh.out)), y1(static_cast<size_t>(sh.out));
      const uint8_t* cp = codes.data_ptr<uint8_t>();
      const uint8_t* sp = sub.data_ptr<uint8_t>();
      const uint16_t* hp = reinterpret_cast<const uint16_t*>(hs.data_ptr<at::Half>());
      const float* stp = st.data_ptr<float>();
      // One call over rows [r0, r1) of copy `c` into y.
      auto call = [&](bool cur, int64_t c, int64_t rows, float* y) {
        const uint8_t* cc = cp + c * mat_bytes;
        if (group == 16) {
          const uint8_t* ss = sp + c * sh.out * 2 * nb;
          if (cur) path.k->gemv16(cc, nb, 0, rows, ss, stp, lp, xq.data(), dx.data(), y);
          else path.gemv16_prev(cc, nb, 0, rows, ss, stp, lp, xq.data(), dx.data(), y);
        } else {
          const uint16_t* gg = hp + c * sh.out * nb;
          if (cur) path.k->gemv(cc, nb, 1, 0, rows, gg, lp, xq.data(), dx.data(), y);
          else path.gemv_prev(cc, nb, 1, 0, rows, gg, lp, xq.data(), dx.data(), y);
        }
      };
      call(false, 0, sh.out, y0.data());
      call(true, 0, sh.out, y1.data());
      float maxdiff = 0.f, maxabs = 0.f;
      for (size_t i = 0; i < y0.size(); ++i) {
        maxdiff = std::max(maxdiff, std::fabs(y0[i] - y1[i]));
        maxabs = std::max(maxabs, std::fabs(y0[i]));
      }
      char same[64];
      if (maxdiff == 0.f) std::snprintf(same, sizeof(same), "bit-identical");
      else std::snprintf(same, sizeof(same), "max diff %.1e of max abs y", static_cast<double>(maxdiff / maxabs));
      const int64_t l2_rows = std::min<int64_t>(sh.out, (int64_t{192} << 10) / row_bytes);
      const int l2_reps = static_cast<int>(std::max<int64_t>(1, mat_bytes / (l2_rows * row_bytes)));
      for (bool streamed : {false, true}) {
        const double bytes = streamed ? static_cast<double>(copies * mat_bytes)
                                      : static_cast<double>(l2_reps) * static_cast<double>(l2_rows * row_bytes);
        const auto [mp, mc] = qins::bench::previous_vs_current(rounds, bytes, [&](bool cur) {
          if (streamed) {
            for (int64_t c = 0; c < copies; ++c) call(cur, c, sh.out, y0.data());
          } else {
            for (int k = 0; k < l2_reps; ++k) call(cur, 0, l2_rows, y0.data());
          }
        });
        std::printf("| %d | %lld x %lld | %s | %.2f | %.2f | %.2fx | %s |\n", group, static_cast<long long>(sh.out),
                    static_cast<long long>(sh.in),
                    streamed ? "streamed (> 64 MiB)" : "L2-resident (192 KiB)", mp, mc, mc / mp, same);
      }
    }
  }
}

// The kernel rows: each x86 path's current gemv16 / gemv against its previous one, one thread.
void bench_kernels(int rounds, const torch::Tensor& lut) {
  const std::vector<PrevPath> paths = prev_paths();
  if (paths.empty()) std::printf("kernel rows: no AVX2 on this CPU, skipped\n");
  for (const PrevPath& path : paths) bench_kernels_on(path, rounds, lut);
}

// The small-batch rows: n rows of x through gemv_rows / gemv16_rows against n GEMV calls, one thread.
void bench_rows_on(const char* name, const qc::kernels4::Kernel4* avx2, int rounds, const torch::Tensor& lut) {
  const Shape sh{8192, 3072};
  const int8_t* lp = lut.data_ptr<int8_t>();
  const torch::Tensor st = qc::sub_scale_table(2e-4f);
  const StreamedCodes sc = streamed_codes(sh, int64_t{64} << 20);
  const int64_t nb = sc.nb, mat_bytes = sc.mat_bytes, copies = sc.copies, all_rows = sc.all_rows;
  const torch::Tensor& codes = sc.codes;
  const torch::Tensor& sub = sc.sub;
  const torch::Tensor hs = (torch::rand({all_rows, nb}) * 1e-4 + 1e-4).to(torch::kHalf);
  const int max_x = 8;
  const torch::Tensor xr = torch::randint(-127, 128, {max_x, sh.in}, torch::kInt8);  // [8, in] int8
  const torch::Tensor dr = torch::rand({max_x, nb}) * 0.01 + 0.005;                 // [8, nb] fp32
  const int8_t* xq = xr.data_ptr<int8_t>();
  const float* dx = dr.data_ptr<float>();
  std::vector<float> ya(static_cast<size_t>(max_x * sh.out)), yb(ya.size());
  std::printf("\nsmall-batch rows: one thread, %s, %lld x %lld codes streamed (%lld MB), n rows of x through the "
              "batched kernel vs n GEMV calls, %d interleaved rounds (medians)\n",
              name, static_cast<long long>(sh.out), static_cast<long long>(sh.in),
              static_cast<long long>(copies * mat_bytes / 1000000), rounds);
  std::printf("| group | rows of x | n GEMV calls, ms | batched kernel, ms | speed-up | batched cost in one-row GEMVs | same outputs |\n"
              "|---|---:|---:|---:|---:|---:|---|\n");
  for (int group : {16, 32}) {
    for (int n : {2, 4, 8}) {
      // One pass over every copy: batched (cur) or the GEMV per row of x.
      auto pass = [&](bool cur, float* y) {
        for (int64_t c = 0; c < copies; ++c) {
          const uint8_t* cc = codes.data_ptr<uint8_t>() + c * mat_bytes;
          if (group == 16) {
            const uint8_t* ss = sub.data_ptr<uint8_t>() + c * sh.out * 2 * nb;
            if (cur) {
              avx2->gemv16_rows(cc, nb, 0, sh.out, ss, st.data_ptr<float>(), lp, xq, dx, n, y, sh.out);
            } else {
              for (int j = 0; j < n; ++j)
                avx2->gemv16(cc, nb, 0, sh.out, ss, st.data_ptr<float>(), lp, xq + j * sh.in, dx + j * nb, y + j * sh.out);
            }
          } else {
            const uint16_t* gg = reinterpret_cast<const uint16_t*>(hs.data_ptr<at::Half>()) + c * sh.out * nb;
            if (cur) {
              avx2->gemv_rows(cc, nb, 1, 0, sh.out, gg, lp, xq, dx, n, y, sh.out);
            } else {
              for (int j = 0; j < n; ++j)
                avx2->gemv(cc, nb, 1, 0, sh.out, gg, lp, xq + j * sh.in, dx + j * nb, y + j * sh.out);
            }
          }
        }
      };
      pass(false, ya.data());
      pass(true, yb.data());
      const bool same = std::equal(ya.begin(), ya.begin() + n * sh.out, yb.begin());
      const double bytes = static_cast<double>(copies * mat_bytes);
      const auto [mp, mc] = qins::bench::previous_vs_current(rounds, bytes, [&](bool cur) { pass(cur, ya.data()); });
      const double ms_p = bytes / mp / 1e9 * 1e3, ms_c = bytes / mc / 1e9 * 1e3;
      std::printf("| %d | %d | %.1f | %.1f | %.2fx | %.2f | %s |\n", group, n, ms_p, ms_c, mc / mp, n * mp / mc,
                  same ? "bit-identical" : "DIFFERENT");
    }
  }
}

// Group 16 on AVX-512: the super-block loop against the two-block steps it replaced (the same
// kernel, given a sub-scale table whose log-table check fails: one entry moved by 2^-20, so that the
// kernel runs its fallback, which is the previous stop's loop), rows of x 1, 2, 4 and 8, codes of
// the qkv shape streamed (384 MiB of copies, past any cache), at one thread and at every ATen
// thread (rows split as the model splits them); outputs compared.
void bench_superblocks(int rounds, const torch::Tensor& lut) {
  const qc::kernels4::Kernel4* k = qc::kernels4::avx512_kernel4();
  if (k == nullptr) {
    std::printf("\nsuper-block rows: no AVX-512 VNNI on this CPU, skipped\n");
    return;
  }
  const Shape sh{9216, 3072};
  const int8_t* lp = lut.data_ptr<int8_t>();
  const torch::Tensor st = qc::sub_scale_table(2e-4f);
  torch::Tensor st_off = st.clone();
  st_off[200] = st_off[200] * (1.f + std::ldexp(1.f, -20));
  const StreamedCodes sc = streamed_codes(sh, int64_t{384} << 20);
  const int64_t nb = sc.nb, mat_bytes = sc.mat_bytes, copies = sc.copies;
  const torch::Tensor& codes = sc.codes;
  const torch::Tensor& sub = sc.sub;
  const int max_x = 8;
  const torch::Tensor xr = torch::randint(-127, 128, {max_x, sh.in}, torch::kInt8);  // [8, in] int8
  const torch::Tensor dr = torch::rand({max_x, nb}) * 0.01 + 0.005;                 // [8, nb] fp32
  std::vector<float> ya(static_cast<size_t>(max_x * sh.out)), yb(ya.size());
  const int before = at::get_num_threads();
  const int all_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::printf("\nsuper-block rows: AVX-512 group 16, %lld x %lld codes streamed (%lld MB), super-block loop vs the "
              "two-block steps (a table its check rejects), %d interleaved rounds (medians), GB/s of code bytes\n",
              static_cast<long long>(sh.out), static_cast<long long>(sh.in),
              static_cast<long long>(copies * mat_bytes / 1000000), rounds);
  std::printf("| threads | rows of x | two-block steps GB/s | super-blocks GB/s | super-blocks / steps | max diff of max abs y |\n"
              "|---:|---:|---:|---:|---:|---:|\n");
  std::vector<int> thread_counts = {1};
  if (all_threads > 1) thread_counts.push_back(all_threads);
  for (int threads : thread_counts) {
    at::set_num_threads(threads);
    for (int n : {1, 2, 4, 8}) {
      auto pass = [&](bool cur, float* y) {
        const float* stp = (cur ? st : st_off).data_ptr<float>();
        for (int64_t c = 0; c < copies; ++c) {
          const uint8_t* cc = codes.data_ptr<uint8_t>() + c * mat_bytes;
          const uint8_t* ss = sub.data_ptr<uint8_t>() + c * sh.out * 2 * nb;
          at::parallel_for(0, sh.out, 256, [&](int64_t b, int64_t e) {
            k->gemv16_rows(cc, nb, b, e, ss, stp, lp, xr.data_ptr<int8_t>(), dr.data_ptr<float>(), n, y + b, sh.out);
          });
        }
      };
      pass(false, ya.data());
      pass(true, yb.data());
      float maxdiff = 0.f, maxabs = 0.f;
      for (size_t i = 0; i < static_cast<size_t>(n * sh.out); ++i) {
        maxdiff = std::max(maxdiff, std::fabs(ya[i] - yb[i]));
        maxabs = std::max(maxabs, std::fabs(ya[i]));
      }
      const double bytes = static_cast<double>(copies * mat_bytes);
      const auto [mp, mc] = qins::bench::previous_vs_current(rounds, bytes, [&](bool cur) { pass(cur, ya.data()); });
      std::printf("| %d | %d | %.1f | %.1f | %.2fx | %.1e |\n", threads, n, mp, mc, mc / mp,
                  static_cast<double>(maxdiff / maxabs));
    }
  }
  at::set_num_threads(before);
}

// The batched group-16 loop with its rows of x kept in L1 (tiles of code rows over column
// segments, the default 24 KB budget) against one segment per row (the whole x per code row), on
// the Phi-3 shapes whose x outgrows L1 first, codes streamed, all threads.
void bench_segments(int rounds, const torch::Tensor& lut) {
  const qc::kernels4::Kernel4* k = qc::kernels4::avx512_kernel4();
  if (k == nullptr) return;
  const int8_t* lp = lut.data_ptr<int8_t>();
  const torch::Tensor st = qc::sub_scale_table(2e-4f);
  const int before = at::get_num_threads();
  at::set_num_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  std::printf("\ncolumn segments: AVX-512 group 16, batched rows, codes streamed (>= 384 MB), %d threads, %d "
              "interleaved rounds (medians), GB/s of code bytes; one segment = the whole row of x per code row\n",
              at::get_num_threads(), rounds);
  std::printf("| codes | rows of x | x bytes per row of codes | one segment GB/s | 24 KB segments GB/s | segments / one |\n"
              "|---|---:|---:|---:|---:|---:|\n");
  for (const Shape& sh : {Shape{3072, 8192}, Shape{9216, 3072}, Shape{16384, 3072}}) {
    const StreamedCodes sc = streamed_codes(sh, int64_t{384} << 20);
    const int64_t nb = sc.nb, mat_bytes = sc.mat_bytes, copies = sc.copies;
    const torch::Tensor& codes = sc.codes;
    const torch::Tensor& sub = sc.sub;
    const torch::Tensor xr = torch::randint(-127, 128, {8, sh.in}, torch::kInt8);  // [8, in] int8
    const torch::Tensor dr = torch::rand({8, nb}) * 0.01 + 0.005;                 // [8, nb] fp32
    std::vector<float> ya(static_cast<size_t>(8 * sh.out)), yb(ya.size());
    for (int n : {2, 4, 8}) {
      auto pass = [&](bool cur, float* y) {
        qc::kernels4::set_sb_x_bytes(cur ? 0 : (int64_t{1} << 40));
        for (int64_t c = 0; c < copies; ++c) {
          const uint8_t* cc = codes.data_ptr<uint8_t>() + c * mat_bytes;
          const uint8_t* ss = sub.data_ptr<uint8_t>() + c * sh.out * 2 * nb;
          at::parallel_for(0, sh.out, 256, [&](int64_t b, int64_t e) {
            k->gemv16_rows(cc, nb, b, e, ss, st.data_ptr<float>(), lp, xr.data_ptr<int8_t>(), dr.data_ptr<float>(), n,
                           y + b, sh.out);
          });
        }
      };
      pass(false, ya.data());
      pass(true, yb.data());
      if (ya != yb) std::printf("(results differ: a defect)\n");
      const double bytes = static_cast<double>(copies * mat_bytes);
      const auto [mp, mc] = qins::bench::previous_vs_current(rounds, bytes, [&](bool cur) { pass(cur, ya.data()); });
      std::printf("| %lld x %lld | %d | %lld KB | %.1f | %.1f | %.2fx |\n", static_cast<long long>(sh.out),
                  static_cast<long long>(sh.in), n, static_cast<long long>(n * (sh.in / 256) * 384 / 1024), mp, mc,
                  mc / mp);
    }
  }
  qc::kernels4::set_sb_x_bytes(0);
  at::set_num_threads(before);
}

void bench_rows(int rounds, const torch::Tensor& lut) {
  bool any = false;
  for (const PrevPath& path : prev_paths()) {
    if (path.k->gemv_rows == nullptr || path.k->gemv16_rows == nullptr) continue;
    bench_rows_on(path.name, path.k, rounds, lut);
    any = true;
  }
  if (!any) std::printf("small-batch rows: no x86 path with a batched loop on this CPU, skipped\n");
}
#endif

}  // namespace

int main(int argc, char** argv) {
  int n_layers = 8, rounds = 7, prefill_rows = 64, kernel_rounds = 15;
  bool kernels_only = false;
  auto usage = [] {
    std::fprintf(stderr,
                 "usage: bench_qins4 [--layers N] [--rounds N] [--prefill-rows N] [--kernel-rounds N] "
                 "[--kernels-only 0|1]\n");
    return 2;
  };
  if (argc % 2 == 0) return usage();  // every option takes a value
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (a == "--layers") n_layers = std::max(1, v);
    else if (a == "--rounds") rounds = std::max(1, v);
    else if (a == "--prefill-rows") prefill_rows = std::max(2, v);
    else if (a == "--kernel-rounds") kernel_rounds = std::max(1, v);
    else if (a == "--kernels-only") kernels_only = v != 0;
    else return usage();
  }
  torch::manual_seed(1);
  // A realistic table: the fitted one of a heavy-tailed matrix.
  const torch::Tensor lut = qc::quantize4(torch::randn({64, 256}) / torch::randn({64, 256}).abs().add(0.5)).lut;
  if (kernels_only) {
#if defined(__x86_64__) || defined(__i386__)
    bench_kernels(kernel_rounds, lut);
    bench_rows(std::max(3, kernel_rounds / 3), lut);
    bench_superblocks(std::max(3, kernel_rounds / 3), lut);
    bench_segments(std::max(3, kernel_rounds / 3), lut);
#else
    std::printf("kernel rows: x86 only\n");
#endif
    return 0;
  }

  std::vector<std::vector<qc::QuantizedTensor>> l8(static_cast<size_t>(n_layers));
  std::vector<std::vector<qc::Quantized4Tensor>> l4(static_cast<size_t>(n_layers)), l16(static_cast<size_t>(n_layers));
  int64_t bytes8 = 0, bytes4 = 0, bytes16 = 0;
  for (int l = 0; l < n_layers; ++l)
    for (const Shape& s : kLayer) {
      l8[static_cast<size_t>(l)].push_back(random_q8(s));
      l4[static_cast<size_t>(l)].push_back(random_q4(s, lut));
      bytes8 += s.out * s.in + s.out * 4;
      bytes4 += l4[static_cast<size_t>(l)].back().bytes();
      l16[static_cast<size_t>(l)].push_back(random_q4_g16(s, lut));
      bytes16 += l16[static_cast<size_t>(l)].back().bytes();
    }
  const qc::QuantizedTensor lm = random_q8(kLmHead);
  // The plain read: one buffer as large as the QINS-4 layers.
  torch::Tensor plain = qc::empty_large({bytes4 / 8}, torch::kInt64);
  plain.fill_(1);
  qc::promote_to_huge_pages(plain);

  std::vector<torch::Tensor> xs, ys;
  for (const Shape& s : kLayer) {
    xs.push_back(torch::randn({prefill_rows, s.in}));  // [rows, in] fp32
    ys.push_back(torch::empty({prefill_rows, s.out}));
  }
  torch::Tensor xlm = torch::randn({kLmHead.in}), ylm = torch::empty({kLmHead.out});

  auto decode8 = [&] {
    for (auto& layer : l8)
      for (size_t p = 0; p < layer.size(); ++p) qc::qins_matmul(layer[p], xs[p].data_ptr<float>(), 1, ys[p].data_ptr<float>());
  };
  auto decode4 = [&] {
    for (auto& layer : l4)
      for (size_t p = 0; p < layer.size(); ++p) qc::qins4_matmul(layer[p], xs[p].data_ptr<float>(), 1, ys[p].data_ptr<float>());
  };
  auto decode16 = [&] {
    for (auto& layer : l16)
      for (size_t p = 0; p < layer.size(); ++p) qc::qins4_matmul(layer[p], xs[p].data_ptr<float>(), 1, ys[p].data_ptr<float>());
  };
  volatile uint64_t sink = 0;
  auto read_plain = [&] {
    const int64_t n = plain.numel();
    const uint64_t* p = reinterpret_cast<const uint64_t*>(plain.data_ptr<int64_t>());
    const int64_t nt = at::get_num_threads();
    std::vector<uint64_t> part(static_cast<size_t>(nt), 0);
    at::parallel_for(0, nt, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const int64_t i0 = n * t / nt, i1 = n * (t + 1) / nt;
        part[static_cast<size_t>(t)] = sum_plain(p + i0, i1 - i0);
      }
    });
    uint64_t s = 0;
    for (uint64_t v : part) s += v;
    sink = sink + s;
  };
  auto prefill8 = [&] {
    for (size_t p = 0; p < 4; ++p) qc::qins_matmul(l8[0][p], xs[p].data_ptr<float>(), prefill_rows, ys[p].data_ptr<float>());
  };
  auto prefill4 = [&] {
    for (size_t p = 0; p < 4; ++p) qc::qins4_matmul(l4[0][p], xs[p].data_ptr<float>(), prefill_rows, ys[p].data_ptr<float>());
  };

  auto prefill16 = [&] {
    for (size_t p = 0; p < 4; ++p) qc::qins4_matmul(l16[0][p], xs[p].data_ptr<float>(), prefill_rows, ys[p].data_ptr<float>());
  };

  decode8(), decode4(), decode16(), read_plain(), prefill8(), prefill4(), prefill16();  // warm-up
  std::vector<double> t8, t4, t16, tp, tlm, p8, p4, p16;
  for (int r = 0; r < rounds; ++r) {
    auto t = Clock::now();
    decode8();
    t8.push_back(since(t) / n_layers);
    t = Clock::now();
    decode4();
    t4.push_back(since(t) / n_layers);
    t = Clock::now();
    decode16();
    t16.push_back(since(t) / n_layers);
    t = Clock::now();
    read_plain();
    tp.push_back(since(t) / n_layers);
    t = Clock::now();
    qc::qins_matmul(lm, xlm.data_ptr<float>(), 1, ylm.data_ptr<float>());
    tlm.push_back(since(t));
    t = Clock::now();
    prefill8();
    p8.push_back(since(t));
    t = Clock::now();
    prefill4();
    p4.push_back(since(t));
    t = Clock::now();
    prefill16();
    p16.push_back(since(t));
  }
  const double m8 = median(t8), m4 = median(t4), m16 = median(t16), mp = median(tp), mlm = median(tlm);
  const double mp8 = median(p8), mp4 = median(p4), mp16 = median(p16);
  const double layer8 = static_cast<double>(bytes8) / n_layers, layer4 = static_cast<double>(bytes4) / n_layers;
  const double layer16 = static_cast<double>(bytes16) / n_layers;
  std::printf("bench_qins4: %d threads, kernels: 8-bit %s, QINS-4 %s; %d layers x 4 projections, %d rounds (medians)\n",
              at::get_num_threads(), qc::kernel_isa(), qc::kernel4_isa(), n_layers, rounds);
  std::printf("| | 8-bit | QINS-4 g32 | QINS-4 g16 | g32 / 8-bit | g16 / 8-bit |\n|---|---:|---:|---:|---:|---:|\n");
  std::printf("| bytes per layer (MB) | %.1f | %.1f | %.1f | %.3f | %.3f |\n", layer8 / 1e6, layer4 / 1e6, layer16 / 1e6,
              layer4 / layer8, layer16 / layer8);
  std::printf("| decode, ms per layer | %.2f | %.2f | %.2f | %.2fx faster | %.2fx faster |\n", 1e3 * m8, 1e3 * m4, 1e3 * m16,
              m8 / m4, m8 / m16);
  std::printf("| decode, GB/s streamed | %.1f | %.1f | %.1f | | |\n", layer8 / m8 / 1e9, layer4 / m4 / 1e9,
              layer16 / m16 / 1e9);
  std::printf("| plain read of the g32 bytes, ms per layer | | %.2f | | %.0f %% of roofline (g32) | %.0f %% (g16) |\n",
              1e3 * mp, 100.0 * mp / m4, 100.0 * mp / m16);
  std::printf("| projected decode tok/s (32 layers + 8-bit lm_head %.1f ms) | %.2f | %.2f | %.2f | %.2fx | %.2fx |\n",
              1e3 * mlm, 1.0 / (32 * m8 + mlm), 1.0 / (32 * m4 + mlm), 1.0 / (32 * m16 + mlm),
              (32 * m8 + mlm) / (32 * m4 + mlm), (32 * m8 + mlm) / (32 * m16 + mlm));
  std::printf("| prefill %d rows, ms per layer | %.1f | %.1f | %.1f | %.2fx faster | %.2fx faster |\n", prefill_rows,
              1e3 * mp8, 1e3 * mp4, 1e3 * mp16, mp8 / mp4, mp8 / mp16);
#if defined(__x86_64__) || defined(__i386__)
  bench_kernels(kernel_rounds, lut);
  bench_rows(std::max(3, kernel_rounds / 3), lut);
  bench_superblocks(std::max(3, kernel_rounds / 3), lut);
#endif
  return sink == 42 ? 1 : 0;
}
