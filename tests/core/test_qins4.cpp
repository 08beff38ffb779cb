// QINS-4: the fp16 helpers, quantize4 / dequantize4, every kernel path against the scalar twin on
// awkward shapes, the prefill tile path against the reference, and Qins4Linear.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include "qins/core/blas_threads.h"
#include "qins/core/qins4.h"
#include "parallel_rows.h"
#include "qins4_kernels.h"
#include "qins_kernels.h"

using namespace qins::core;

namespace {

// Restores the default kernel path and prefill GEMM when a test ends.
struct Kernel4Guard {
  ~Kernel4Guard() {
    set_kernel4_isa("auto");
    set_prefill4_path("auto");
  }
};

torch::Tensor heavy_tailed(int64_t out, int64_t in, uint64_t seed) {
  torch::manual_seed(seed);
  // Student-t-like: normal / sqrt(chi2/3), with an occasional outlier column as trained weights have.
  torch::Tensor n = torch::randn({out, in});
  torch::Tensor c = torch::randn({out, in, 3}).pow(2).sum(2).div(3).sqrt();
  return (n / c * 0.02).contiguous();
}

double rel_err(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).norm().item<double>() / std::max(1e-30, b.norm().item<double>());
}

double sqnr_db(const torch::Tensor& w, const torch::Tensor& q) {
  return 10.0 * std::log10(w.pow(2).sum().item<double>() / (w - q).pow(2).sum().item<double>());
}

}  // namespace

TEST(Qins4Half, EveryHalfRoundTripsThroughFloat) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = kernels4::half_to_float(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(kernels4::float_to_half(f), h) << "half 0x" << std::hex << h;
  }
}

TEST(Qins4Half, MatchesTorchRounding) {
  torch::manual_seed(3);
  const torch::Tensor x = torch::cat({torch::randn({20000}) * 1000, torch::randn({20000}) * 1e-5,
                                      torch::tensor({65519.f, 65520.f, 70000.f, -1e-8f, 0.f})});
  const torch::Tensor h = x.to(torch::kHalf);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const uint16_t want = reinterpret_cast<const uint16_t*>(h.data_ptr<at::Half>())[i];
    ASSERT_EQ(kernels4::float_to_half(x[i].item<float>()), want) << "x = " << x[i].item<float>();
  }
}

TEST(Qins4Quantize, ShapesBytesAndTable) {
  const torch::Tensor w = heavy_tailed(7, 100, 1);
  for (int group : {32, 64}) {
    Quantize4Options o;
    o.group = group;
    const Quantized4Tensor q = quantize4(w, o);
    EXPECT_NO_THROW(q.validate("q"));
    const int64_t n_groups = (100 + group - 1) / group;
    EXPECT_EQ(q.codes.sizes(), (std::vector<int64_t>{7, n_groups * group / 2}));
    EXPECT_EQ(q.scales.sizes(), (std::vector<int64_t>{7, n_groups}));
    EXPECT_EQ(q.bytes(), 7 * n_groups * group / 2 + 7 * n_groups * 2 + 16);
    const int8_t* l = q.lut.data_ptr<int8_t>();
    for (int k = 1; k < 16; ++k) EXPECT_LT(l[k - 1], l[k]) << "the table is sorted and distinct";
    EXPECT_EQ(dequantize4(q).sizes(), w.sizes());
  }
}

// Group 16: 8-bit log-scale codes into the tensor's table; rows padded to whole 32-column blocks.
TEST(Qins4Quantize, Group16LogScales) {
  const torch::Tensor w = heavy_tailed(7, 100, 1);
  Quantize4Options o;
  o.group = 16;
  const Quantized4Tensor q = quantize4(w, o);
  EXPECT_NO_THROW(q.validate("q"));
  EXPECT_EQ(q.codes.sizes(), (std::vector<int64_t>{7, 64}));  // 100 columns -> 128 (4 blocks)
  EXPECT_EQ(q.scales.sizes(), (std::vector<int64_t>{7, 8}));  // 8 groups of 16, the last one padding
  EXPECT_EQ(q.scales.scalar_type(), torch::kUInt8);
  EXPECT_EQ(q.bytes(), 7 * 64 + 7 * 8 + 16 + 4);  // 4.5 bits per weight + the table + top
  const float* st = q.sub_table.data_ptr<float>();
  EXPECT_EQ(st[0], 0.f);
  for (int k = 2; k < 256; ++k) EXPECT_NEAR(st[k] / st[k - 1], std::exp2(1.0 / 16), 1e-5) << k;
  const uint8_t* sub = q.scales.data_ptr<uint8_t>();
  int top_codes = 0;
  for (int64_t r = 0; r < 7; ++r) {
    top_codes += *std::max_element(sub + r * 8, sub + r * 8 + 7) == 255;
    EXPECT_EQ(sub[r * 8 + 7], 0) << "padding group, row " << r;
  }
  EXPECT_GE(top_codes, 1) << "the largest group of the tensor sits at the top of the table";
  // Each weight is st[code of its group] * level.
  const torch::Tensor d = dequantize4(q);
  const int8_t* lut = q.lut.data_ptr<int8_t>();
  const float v = d[2][40].item<float>();
  bool found = false;
  for (int k = 0; k < 16; ++k) found |= v == st[sub[2 * 8 + 2]] * static_cast<float>(lut[k]);
  EXPECT_TRUE(found) << v;
  // Finer groups at the same 4.5 bits: a smaller weight error than group 32 with fp16 scales.
  const torch::Tensor big = heavy_tailed(256, 512, 5);
  Quantize4Options o32;
  EXPECT_GT(sqnr_db(big, dequantize4(quantize4(big, o))), sqnr_db(big, dequantize4(quantize4(big, o32))) + 0.5);
  // validate: group 16 needs uint8 codes and its log table; the other groups must not have one.
  Quantized4Tensor bad = q;
  bad.sub_table = torch::Tensor();
  EXPECT_THROW(bad.validate("q"), std::invalid_argument);
  bad = q;
  bad.sub_table = q.sub_table.clone();
  bad.sub_table[3] = 1.f;
  EXPECT_THROW(bad.validate("q"), std::invalid_argument);
  bad = q;
  bad.scales = q.scales.to(torch::kHalf);
  EXPECT_THROW(bad.validate("q"), std::invalid_argument);
  Quantized4Tensor g32 = quantize4(w);
  g32.sub_table = q.sub_table;
  EXPECT_THROW(g32.validate("q"), std::invalid_argument);
}

TEST(Qins4Quantize, DeterministicAcrossThreads) {
  const torch::Tensor w = heavy_tailed(65, 300, 2);
  Quantize4Options a, b;
  a.threads = 1;
  b.threads = 4;
  const Quantized4Tensor qa = quantize4(w, a), qb = quantize4(w, b);
  EXPECT_TRUE(torch::equal(qa.codes, qb.codes));
  EXPECT_TRUE(torch::equal(qa.scales.view(torch::kInt16), qb.scales.view(torch::kInt16)));
  EXPECT_TRUE(torch::equal(qa.lut, qb.lut));
}

TEST(Qins4Quantize, RejectsBadInput) {
  EXPECT_THROW(quantize4(torch::randn({4})), std::invalid_argument);
  EXPECT_THROW(quantize4(torch::zeros({0, 4})), std::invalid_argument);
  Quantize4Options o;
  o.group = 48;
  EXPECT_THROW(quantize4(torch::randn({4, 64}), o), std::invalid_argument);
  torch::Tensor w = torch::randn({4, 64});
  w[1][3] = std::nanf("");
  EXPECT_THROW(quantize4(w), std::invalid_argument);
  // validate names the problem.
  Quantized4Tensor q = quantize4(torch::randn({4, 64}));
  q.scales = q.scales.narrow(1, 0, 1);
  try {
    q.validate("layer.weight");
    FAIL() << "validate accepted scales of the wrong shape";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("layer.weight: scales"), std::string::npos) << e.what();
  }
}

TEST(Qins4Quantize, ZeroRowsAndGroupsStayZero) {
  torch::Tensor w = heavy_tailed(3, 96, 4);
  w[1].zero_();
  w[2].narrow(0, 32, 32).zero_();
  for (int group : {16, 32}) {
    Quantize4Options o;
    o.group = group;
    const torch::Tensor d = dequantize4(quantize4(w, o));
    EXPECT_EQ(d[1].abs().max().item<float>(), 0.f) << group;
    EXPECT_EQ(d[2].narrow(0, 32, 32).abs().max().item<float>(), 0.f) << group;
  }
}

// The weight error of each table and group: the fitted tables beat the uniform one on
// heavy-tailed weights, and group 32 beats group 64. (The choice of the default is made on output
// error, docs/qins.md; this only holds the fits to doing their job.)
TEST(Qins4Quantize, FittedTablesBeatUniformOnHeavyTails) {
  const torch::Tensor w = heavy_tailed(256, 512, 5);
  auto sq = [&](Table4 t, int group, bool refine) {
    Quantize4Options o;
    o.table = t;
    o.group = group;
    o.refine_scales = refine;
    return sqnr_db(w, dequantize4(quantize4(w, o)));
  };
  const double uni = sq(Table4::Uniform, 32, false), proj = sq(Table4::Projective, 32, false);
  const double lloyd = sq(Table4::Lloyd, 32, true), lloyd64 = sq(Table4::Lloyd, 64, true);
  const double uni_refined = sq(Table4::Uniform, 32, true);
  EXPECT_GT(uni, 15.0);
  EXPECT_GE(proj, uni);
  EXPECT_GT(uni_refined, uni);
  EXPECT_GT(lloyd, uni_refined);
  EXPECT_GT(lloyd, lloyd64);
}

TEST(Qins4Quantize, DequantizeRowMatchesMatrix) {
  const Quantized4Tensor q = quantize4(heavy_tailed(5, 77, 6));
  const torch::Tensor d = dequantize4(q);
  std::vector<float> row(77);
  for (int64_t r = 0; r < 5; ++r) {
    dequantize4_row_into(q, r, row.data());
    EXPECT_TRUE(torch::equal(torch::from_blob(row.data(), {77}), d[r]));
  }
  EXPECT_THROW(dequantize4_row_into(q, 5, row.data()), std::out_of_range);
}

// parallel_rows (the decode GEMVs' row scheduler): every row exactly once, in pieces of at least
// grain rows (but the last), on 1-4 threads and nested in a parallel region.
TEST(ParallelRows, EveryRowOnceInPieces) {
  const int before = at::get_num_threads();
  for (int threads : {1, 2, 3, 4}) {
    at::set_num_threads(threads);
    for (int64_t n : {0, 1, 5, 16, 17, 100, 1000, 9216}) {
      for (int64_t grain : {1, 16, 42, 5000}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::atomic<int> short_pieces{0}, bad{0};
        parallel_rows(n, grain, [&](int64_t b, int64_t e) {
          if (b < 0 || e > n || b >= e) ++bad;
          if (e - b < grain && e != n) ++short_pieces;
          for (int64_t i = b; i < e && i < n && i >= 0; ++i) ++hits[static_cast<size_t>(i)];
        });
        const std::string what = std::to_string(threads) + " threads, n " + std::to_string(n) + ", grain " +
                                 std::to_string(grain);
        EXPECT_EQ(bad.load(), 0) << what;
        EXPECT_EQ(short_pieces.load(), 0) << what;
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << what << " row " << i;
      }
    }
  }
  at::set_num_threads(std::max(2, before));
  std::vector<std::atomic<int>> hits(1000);
  at::parallel_for(0, 2, 1, [&](int64_t b, int64_t e) {  // nested: runs on the calling worker alone
    for (int64_t t = b; t < e; ++t)
      parallel_rows(500, 16, [&](int64_t r0, int64_t r1) {
        for (int64_t i = r0; i < r1; ++i) ++hits[static_cast<size_t>(t * 500 + i)];
      });
  });
  for (size_t i = 0; i < hits.size(); ++i) ASSERT_EQ(hits[i].load(), 1) << "nested, row " << i;
  at::set_num_threads(before);
}

TEST(Qins4Kernels, ScalarAlwaysAvailable) {
  const auto isas = available_kernel4_isas();
  EXPECT_EQ(isas.front(), "scalar");
  EXPECT_THROW(set_kernel4_isa("no-such-isa"), std::invalid_argument);
}

// Every path's batch-1 GEMV against the scalar twin (same int8 rounding of x, exact integer sums:
// only the float accumulation order differs), on shapes with odd rows, odd column counts and
// partial groups; and the twin against the exact fp32 product within the int8-activation budget.
TEST(Qins4Kernels, EveryPathMatchesScalarTwin) {
  Kernel4Guard guard;
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{1, 1}, {3, 31}, {5, 33}, {7, 95}, {17, 200},
                                                           {33, 513}, {64, 1024}, {9, 3072}};
  for (int group : {16, 32, 64}) {
    for (const auto& [out, in] : shapes) {
      Quantize4Options o;
      o.group = group;
      const Quantized4Tensor q = quantize4(heavy_tailed(out, in, static_cast<uint64_t>(out * 1000 + in)), o);
      torch::manual_seed(static_cast<uint64_t>(in));
      const torch::Tensor x = torch::randn({in});
      std::vector<float> ref(static_cast<size_t>(out));
      qins4_gemv_reference(q, x.data_ptr<float>(), ref.data());
      const torch::Tensor rt = torch::from_blob(ref.data(), {out});
      const torch::Tensor exact = torch::mv(dequantize4(q), x);
      // int8 activations (per 32 columns) against fp32: 4.5 % relative on random x is ~30x the
      // expected error of the rounding (1/(2*127) per element, relative to the block max).
      EXPECT_LT(rel_err(rt, exact), 0.045) << out << "x" << in << " group " << group;
      for (const std::string& isa : available_kernel4_isas()) {
        set_kernel4_isa(isa);
        std::vector<float> y(static_cast<size_t>(out));
        qins4_matmul(q, x.data_ptr<float>(), 1, y.data());
        const torch::Tensor yt = torch::from_blob(y.data(), {out});
        const double scale = rt.abs().max().item<double>() + 1e-30;
        EXPECT_LT((yt - rt).abs().max().item<double>() / scale, 2e-5)
            << isa << " " << out << "x" << in << " group " << group;
      }
    }
  }
}

// The prefill path (tile expand + GEMM) of every kernel against dequantize4 + matmul: exact (fp32
// tiles through the BLAS) within fp32 rounding; the bf16 GEMM within its own rounding (next test).
TEST(Qins4Kernels, EveryPathPrefillMatchesReference) {
  Kernel4Guard guard;
  for (const auto& [out, in, group] : std::vector<std::tuple<int64_t, int64_t, int>>{
           {3, 31, 32}, {130, 95, 32}, {257, 200, 32}, {3, 31, 16}, {130, 95, 16}, {257, 200, 16}, {5, 130, 64}}) {
    Quantize4Options o;
    o.group = group;
    const Quantized4Tensor q = quantize4(heavy_tailed(out, in, 9), o);
    torch::manual_seed(10);
    const torch::Tensor x = torch::randn({6, in});
    const torch::Tensor ref = torch::mm(x, dequantize4(q).t());
    for (const std::string& path : available_prefill4_paths()) {
      set_prefill4_path(path);
      for (const std::string& isa : available_kernel4_isas()) {
        set_kernel4_isa(isa);
        torch::Tensor y = torch::empty({6, out});
        qins4_matmul(q, x.data_ptr<float>(), 6, y.data_ptr<float>());
        EXPECT_LT(rel_err(y, ref), path == "fp32" ? 1e-5 : 8e-3)
            << path << " " << isa << " " << out << "x" << in << " group " << group;
      }
    }
  }
}

// The bf16 prefill GEMM computes sum_k bf16(W[r, k]) * bf16(x[i, k]) with fp32 sums: against that
// product in double, on shapes past one tile of rows (48) and of columns (2048), a partial last
// 64-column block, column counts that are not whole blocks, and 1-3 chunks of tokens (64 each);
// and against the exact product within bf16's rounding (2^-8 of each |w x|, plus the sums').
TEST(Qins4Kernels, Bf16PrefillIsTheProductOfTheRoundedOperands) {
  Kernel4Guard guard;
  const auto paths = available_prefill4_paths();
  if (std::find(paths.begin(), paths.end(), "bf16") == paths.end()) GTEST_SKIP() << "no AVX512-BF16 on this CPU";
  set_prefill4_path("bf16");
  EXPECT_STREQ(prefill4_path(), "bf16");
  for (const auto& [out, in, group] : std::vector<std::tuple<int64_t, int64_t, int>>{
           {130, 4100, 16}, {50, 2100, 32}, {97, 4160, 64}, {49, 200, 16}}) {
    Quantize4Options o;
    o.group = group;
    const Quantized4Tensor q = quantize4(heavy_tailed(out, in, static_cast<uint64_t>(out + in)), o);
    const torch::Tensor w = dequantize4(q).to(torch::kFloat64);
    const torch::Tensor wb = dequantize4(q).to(torch::kBFloat16).to(torch::kFloat64);
    for (int64_t m : {2, 17, 70, 130}) {
      torch::manual_seed(static_cast<uint64_t>(m));
      const torch::Tensor x = torch::randn({m, in});
      const torch::Tensor mag = torch::mm(x.to(torch::kFloat64).abs(), w.abs().t());
      const torch::Tensor rounded = torch::mm(x.to(torch::kBFloat16).to(torch::kFloat64), wb.t());
      const torch::Tensor exact = torch::mm(x.to(torch::kFloat64), w.t());
      for (const std::string& isa : available_kernel4_isas()) {
        set_kernel4_isa(isa);
        torch::Tensor y = torch::empty({m, out});
        qins4_matmul(q, x.data_ptr<float>(), m, y.data_ptr<float>());
        const torch::Tensor yd = y.to(torch::kFloat64);
        const double to_rounded = ((yd - rounded).abs() / (mag + 1e-30)).max().item<double>();
        const double to_exact = ((yd - exact).abs() / (mag + 1e-30)).max().item<double>();
        EXPECT_LT(to_rounded, 2e-5) << isa << " " << out << "x" << in << " group " << group << " m=" << m;
        EXPECT_LE(to_exact, 1.0 / 128 + static_cast<double>(in) * std::ldexp(1.0, -23))
            << isa << " " << out << "x" << in << " group " << group << " m=" << m;
        EXPECT_GT(to_exact, 0.0) << "bf16 rounding should show somewhere";
      }
    }
  }
}

// The bf16 GEMM's tiles straight from the codes (expand_bf16_avx512) are, bit for bit, what the
// bf16 kernel's pack_x makes of the scalar expand's fp32 row: group 16 with a log and a linear
// sub-scale table, groups of 32 and 64 with fp16 scales (normal, tiny and zero), segments that
// start at block 0 and at a later 64-column boundary, whole 64-column blocks and a partial last one
// (natural order), down to a segment shorter than one block.
TEST(Qins4Kernels, Bf16TileRowsAreThePackedExpansion) {
  namespace k4 = kernels4;
  const k4::ExpandBf16 direct = k4::expand_bf16_avx512();
  const kernels::Kernel* bf = kernels::avx512bf16_kernel();
  ASSERT_EQ(direct == nullptr, bf == nullptr) << "the direct form exists exactly where the bf16 GEMM does";
  if (!direct) GTEST_SKIP() << "no AVX512-BF16 on this CPU";
  torch::manual_seed(77);
  const int64_t nb = 96;  // one row of 3072 columns
  const torch::Tensor codes = torch::randint(0, 256, {nb * 16}, torch::kUInt8);
  const torch::Tensor sub = torch::randint(0, 256, {nb * 2}, torch::kUInt8);
  std::vector<uint16_t> halves(static_cast<size_t>(nb));
  for (int64_t b = 0; b < nb; ++b) {
    const float v = b % 11 == 3 ? 0.f : b % 7 == 1 ? 3e-7f : 0.001f + 0.0003f * static_cast<float>(b);
    halves[static_cast<size_t>(b)] = k4::float_to_half(v);
  }
  const torch::Tensor lut = torch::randint(-127, 128, {16}, torch::kInt8);
  const torch::Tensor log_table = sub_scale_table(2e-3f), linear = torch::arange(256, torch::kFloat32) * 1e-5f;
  const uint8_t* c = codes.data_ptr<uint8_t>();
  const int8_t* l = lut.data_ptr<int8_t>();
  int checked = 0;
  for (const int group : {16, 32, 64}) {
    for (const torch::Tensor& st : {log_table, linear}) {
      if (group != 16 && st.data_ptr() == linear.data_ptr()) continue;
      for (const int64_t k0 : {int64_t{0}, int64_t{2048}}) {
        for (const int64_t n : {int64_t{1024}, int64_t{1000}, int64_t{64}, int64_t{100}, int64_t{20}}) {
          const int64_t b0 = k0 / 32, nbs = (n + 31) / 32, gb = group / 32;
          const uint8_t* cs = c + b0 * 16;
          std::vector<float> row(static_cast<size_t>(nbs * 32));
          std::vector<uint16_t> want(static_cast<size_t>(n)), got(static_cast<size_t>(n), 0xFFFF);
          if (group == 16) {
            k4::scalar_kernel4().expand16(cs, nbs, 0, 1, sub.data_ptr<uint8_t>() + b0 * 2, st.data_ptr<float>(), l,
                                          row.data());
            direct(cs, sub.data_ptr<uint8_t>() + b0 * 2, st.data_ptr<float>(), nullptr, 1, l, n, got.data());
          } else {
            k4::scalar_kernel4().expand(cs, nbs, static_cast<int>(gb), 0, 1, halves.data() + b0 / gb, l, row.data());
            direct(cs, nullptr, nullptr, halves.data() + b0 / gb, static_cast<int>(gb), l, n, got.data());
          }
          bf->pack_x(row.data(), n, want.data());
          for (int64_t j = 0; j < n; ++j)
            ASSERT_EQ(got[static_cast<size_t>(j)], want[static_cast<size_t>(j)])
                << "group " << group << " k0 " << k0 << " n " << n << " position " << j;
          ++checked;
        }
      }
    }
  }
  EXPECT_EQ(checked, 40);
}

TEST(Qins4Kernels, PrefillPathChoice) {
  Kernel4Guard guard;
  const auto paths = available_prefill4_paths();
  ASSERT_FALSE(paths.empty());
  EXPECT_EQ(paths.front(), "fp32");
  EXPECT_THROW(set_prefill4_path("no-such-path"), std::invalid_argument);
  set_prefill4_path("fp32");
  EXPECT_STREQ(prefill4_path(), "fp32");
  set_prefill4_path("auto");  // the best: bf16 where the CPU has it
  EXPECT_STREQ(prefill4_path(), paths.back().c_str());
}

// Prefill with a one-thread BLAS (the engine's policy for QINS graphs): tiles expanded and
// multiplied in parallel give what one tile at a time with the BLAS's threads gives (the fp32 path,
// the one that runs through the BLAS).
TEST(Qins4Kernels, PrefillTilesInParallelWithAOneThreadBlas) {
  Kernel4Guard guard;
  set_prefill4_path("fp32");
  if (at::get_num_threads() < 2) GTEST_SKIP() << "one thread: no parallel tiles";
  for (const int group : {16, 32}) {
    Quantize4Options o;
    o.group = group;
    const Quantized4Tensor q = quantize4(heavy_tailed(300, 200, 11), o);  // 3 tiles of 128 rows
    torch::manual_seed(12);
    const torch::Tensor x = torch::randn({7, 200});
    const torch::Tensor ref = torch::mm(x, dequantize4(q).t());
    for (const std::string& isa : available_kernel4_isas()) {
      set_kernel4_isa(isa);
      torch::Tensor serial = torch::empty({7, 300}), parallel = torch::empty({7, 300});
      set_blas_threads(at::get_num_threads());
      qins4_matmul(q, x.data_ptr<float>(), 7, serial.data_ptr<float>());
      set_blas_threads(1);
      const bool one = blas_single_threaded();
      qins4_matmul(q, x.data_ptr<float>(), 7, parallel.data_ptr<float>());
      set_blas_threads(at::get_num_threads());
      if (!one) GTEST_SKIP() << "the BLAS is not OpenBLAS: its thread count cannot be set";
      EXPECT_LT(rel_err(parallel, serial), 1e-6) << isa << " group " << group;
      EXPECT_LT(rel_err(parallel, ref), 1e-5) << isa << " group " << group;
    }
  }
}

// The kernel table's GEMVs called directly: odd and even block counts (the AVX2 loops take two
// blocks per step and the odd last block alone), every row range [r0, r1) of a 9-row matrix (a
// row's result must not depend on which rows share the call), and a call with other activations
// and another block count in between (the AVX2 kernels keep a per-thread permuted copy of xq).
// Each path against the scalar twin within the kernel test's budget; across row ranges and
// repeated calls, bit-identical.
TEST(Qins4Kernels, GemvRowRangesAndOddBlockCounts) {
  namespace k4 = kernels4;
  std::vector<std::pair<std::string, const k4::Kernel4*>> paths = {{"scalar", &k4::scalar_kernel4()}};
  if (k4::avx2_kernel4()) paths.emplace_back("avx2", k4::avx2_kernel4());
  if (k4::avx512_kernel4()) paths.emplace_back("avx512", k4::avx512_kernel4());
  if (k4::neon_kernel4()) paths.emplace_back("neon", k4::neon_kernel4());
  const int64_t rows = 9;
  torch::manual_seed(21);
  const torch::Tensor lut = torch::randint(-127, 128, {16}, torch::kInt8);
  const torch::Tensor st = sub_scale_table(3e-3f);
  const int8_t* lp = lut.data_ptr<int8_t>();
  const float* stp = st.data_ptr<float>();
  for (int64_t nb : {1, 2, 3, 4, 5, 7, 8, 15, 16, 18, 32, 97}) {
    for (int group_blocks : {0, 1, 2}) {  // 0: group 16 (gemv16)
      if (group_blocks == 2 && nb % 2 != 0) continue;  // a group of 64 is two whole blocks
      const torch::Tensor codes = torch::randint(0, 256, {rows, nb * 16}, torch::kUInt8);
      const torch::Tensor sub = torch::randint(0, 256, {rows, nb * 2}, torch::kUInt8);
      const int64_t n_groups = group_blocks ? nb / group_blocks : 0;
      const torch::Tensor hs = (torch::rand({rows, std::max<int64_t>(n_groups, 1)}) + 0.5).to(torch::kHalf);
      const torch::Tensor xq = torch::randint(-127, 128, {nb * 32}, torch::kInt8);
      const torch::Tensor dx = torch::rand({nb}) * 0.02;
      const torch::Tensor xq2 = torch::randint(-127, 128, {nb * 32}, torch::kInt8);
      const torch::Tensor dx2 = torch::rand({nb});
      auto run = [&](const k4::Kernel4& k, const torch::Tensor& x, const torch::Tensor& d, int64_t n, int64_t r0,
                     int64_t r1, float* y) {
        const auto* h = reinterpret_cast<const uint16_t*>(hs.data_ptr<at::Half>());
        if (group_blocks == 0)
          k.gemv16(codes.data_ptr<uint8_t>(), n, r0, r1, sub.data_ptr<uint8_t>(), stp, lp, x.data_ptr<int8_t>(),
                   d.data_ptr<float>(), y);
        else
          k.gemv(codes.data_ptr<uint8_t>(), n, group_blocks, r0, r1, h, lp, x.data_ptr<int8_t>(), d.data_ptr<float>(),
                 y);
      };
      std::vector<float> ref(static_cast<size_t>(rows));
      run(k4::scalar_kernel4(), xq, dx, nb, 0, rows, ref.data());
      const torch::Tensor rt = torch::from_blob(ref.data(), {rows});
      const double scale = rt.abs().max().item<double>() + 1e-30;
      for (const auto& [name, k] : paths) {
        const std::string what = name + " n_blocks " + std::to_string(nb) + " group_blocks " +
                                 std::to_string(group_blocks);
        std::vector<float> full(static_cast<size_t>(rows));
        run(*k, xq, dx, nb, 0, rows, full.data());
        const torch::Tensor ft = torch::from_blob(full.data(), {rows});
        EXPECT_LT((ft - rt).abs().max().item<double>() / scale, 2e-5) << what;
        for (int64_t r0 = 0; r0 < rows; ++r0) {
          for (int64_t r1 = r0 + 1; r1 <= rows; ++r1) {
            // Another call first: other activations, another block count where one fits the rows.
            const int64_t n_other = nb > 2 ? nb - std::max(group_blocks, 1) : nb;
            std::vector<float> other(static_cast<size_t>(rows));
            run(*k, xq2, dx2, n_other, 0, rows, other.data());
            std::vector<float> part(static_cast<size_t>(r1 - r0), -1.f);
            run(*k, xq, dx, nb, r0, r1, part.data());
            for (int64_t r = r0; r < r1; ++r)
              ASSERT_EQ(part[static_cast<size_t>(r - r0)], full[static_cast<size_t>(r)])
                  << what << " rows [" << r0 << ", " << r1 << ") row " << r;
          }
        }
      }
    }
  }
}

// Group 16 with sub-scale tables other than sub_scale_table's log table (a table the loader would
// reject, but the kernels take any): the AVX-512 super-block loop checks the log table's identity
// and otherwise falls back to its two-block steps, so every path still matches the scalar twin on
// a perturbed table, a linear one and a log table whose top is tiny; and the batched rows stay the
// GEMV's bit for bit.
TEST(Qins4Kernels, Group16AnySubScaleTable) {
  namespace k4 = kernels4;
  std::vector<const k4::Kernel4*> paths;
  for (const k4::Kernel4* k : {k4::avx2_kernel4(), k4::avx512_kernel4(), k4::neon_kernel4()})
    if (k) paths.push_back(k);
  if (paths.empty()) GTEST_SKIP() << "only the scalar path on this CPU";
  torch::manual_seed(41);
  const torch::Tensor lut = torch::randint(-127, 128, {16}, torch::kInt8);
  torch::Tensor perturbed = sub_scale_table(2e-3f).clone();
  perturbed[200] = perturbed[200] * 1.01f;
  const torch::Tensor linear = torch::arange(256, torch::kFloat32) * 1e-5f;
  const std::vector<std::pair<std::string, torch::Tensor>> tables = {
      {"log", sub_scale_table(2e-3f)}, {"log, tiny top", sub_scale_table(1e-36f)}, {"perturbed", perturbed},
      {"linear", linear}};
  const int64_t rows = 5, n_x = 3;
  for (int64_t nb : {8, 16, 97}) {
    const torch::Tensor codes = torch::randint(0, 256, {rows, nb * 16}, torch::kUInt8);
    const torch::Tensor sub = torch::randint(0, 256, {rows, nb * 2}, torch::kUInt8);
    const torch::Tensor xq = torch::randint(-127, 128, {n_x, nb * 32}, torch::kInt8);
    const torch::Tensor dx = torch::rand({n_x, nb}) * 0.02 + 0.001;
    for (const auto& [tname, st] : tables) {
      const float* stp = st.data_ptr<float>();
      for (int64_t j = 0; j < n_x; ++j) {
        std::vector<float> ref(static_cast<size_t>(rows));
        k4::scalar_kernel4().gemv16(codes.data_ptr<uint8_t>(), nb, 0, rows, sub.data_ptr<uint8_t>(), stp,
                                    lut.data_ptr<int8_t>(), xq[j].data_ptr<int8_t>(), dx[j].data_ptr<float>(),
                                    ref.data());
        const torch::Tensor rt = torch::from_blob(ref.data(), {rows});
        const double scale = rt.abs().max().item<double>();
        ASSERT_GT(scale, 0.0) << tname;
        for (const k4::Kernel4* k : paths) {
          const std::string what = std::string(k->name) + " table " + tname + " n_blocks " + std::to_string(nb);
          std::vector<float> y(static_cast<size_t>(rows));
          k->gemv16(codes.data_ptr<uint8_t>(), nb, 0, rows, sub.data_ptr<uint8_t>(), stp, lut.data_ptr<int8_t>(),
                    xq[j].data_ptr<int8_t>(), dx[j].data_ptr<float>(), y.data());
          const torch::Tensor yt = torch::from_blob(y.data(), {rows});
          EXPECT_LT((yt - rt).abs().max().item<double>() / scale, 2e-5) << what;
          if (!k->gemv16_rows) continue;
          std::vector<float> yr(static_cast<size_t>(n_x * rows));
          k->gemv16_rows(codes.data_ptr<uint8_t>(), nb, 0, rows, sub.data_ptr<uint8_t>(), stp,
                         lut.data_ptr<int8_t>(), xq.data_ptr<int8_t>(), dx.data_ptr<float>(), n_x, yr.data(), rows);
          for (int64_t r = 0; r < rows; ++r)
            EXPECT_EQ(yr[static_cast<size_t>(j * rows + r)], y[static_cast<size_t>(r)]) << what << " row " << r;
        }
      }
    }
  }
}

// The small-batch decode paths (Kernel4::gemv_rows / gemv16_rows, where a path has them) against
// its own GEMV: for 1 to 9 rows of x (passes of 3 and 4 rows and their remainders), odd and even
// block counts, two row ranges and an output stride wider than the rows, each x row's outputs
// are bit for bit the GEMV's for that row alone, and nothing outside them is written.
TEST(Qins4Kernels, SmallBatchRowsAreTheGemvBitForBit) {
  namespace k4 = kernels4;
  std::vector<std::pair<std::string, const k4::Kernel4*>> paths;
  for (const k4::Kernel4* k : {&k4::scalar_kernel4(), k4::avx2_kernel4(), k4::avx512_kernel4(), k4::neon_kernel4()})
    if (k && k->gemv_rows && k->gemv16_rows) paths.emplace_back(k->name, k);
  if (paths.empty()) GTEST_SKIP() << "no path with a small-batch loop on this CPU (the GEMV runs per row)";
  // 37 rows: two full tiles of 16 and a partial one where the group-16 GEMV sums its outputs a tile at a time.
  const int64_t rows = 37, stride = rows + 3;
  torch::manual_seed(31);
  const torch::Tensor lut = torch::randint(-127, 128, {16}, torch::kInt8);
  const torch::Tensor st = sub_scale_table(3e-3f);
  for (int64_t nb : {1, 2, 3, 5, 8, 15, 16, 18, 32, 97}) {
    for (int group_blocks : {0, 1, 2}) {  // 0: group 16
      if (group_blocks == 2 && nb % 2 != 0) continue;
      const torch::Tensor codes = torch::randint(0, 256, {rows, nb * 16}, torch::kUInt8);
      const torch::Tensor sub = torch::randint(0, 256, {rows, nb * 2}, torch::kUInt8);
      const int64_t n_groups = group_blocks ? nb / group_blocks : 1;
      const torch::Tensor hs = (torch::rand({rows, n_groups}) + 0.5).to(torch::kHalf);
      const torch::Tensor xq = torch::randint(-127, 128, {9, nb * 32}, torch::kInt8);  // [9, nb*32]
      const torch::Tensor dx = torch::rand({9, nb}) * 0.02;                            // [9, nb]
      const auto* h = reinterpret_cast<const uint16_t*>(hs.data_ptr<at::Half>());
      for (const auto& [name, k] : paths) {
        for (int64_t n_x = 1; n_x <= 9; ++n_x) {
          for (const auto& [r0, r1] : std::vector<std::pair<int64_t, int64_t>>{{0, rows}, {2, 5}}) {
            const std::string what = name + " n_blocks " + std::to_string(nb) + " group_blocks " +
                                     std::to_string(group_blocks) + " rows of x " + std::to_string(n_x) + " [" +
                                     std::to_string(r0) + ", " + std::to_string(r1) + ")";
            std::vector<float> y(static_cast<size_t>(9 * stride), -7.f);
            if (group_blocks == 0)
              k->gemv16_rows(codes.data_ptr<uint8_t>(), nb, r0, r1, sub.data_ptr<uint8_t>(), st.data_ptr<float>(),
                             lut.data_ptr<int8_t>(), xq.data_ptr<int8_t>(), dx.data_ptr<float>(), n_x, y.data(), stride);
            else
              k->gemv_rows(codes.data_ptr<uint8_t>(), nb, group_blocks, r0, r1, h, lut.data_ptr<int8_t>(),
                           xq.data_ptr<int8_t>(), dx.data_ptr<float>(), n_x, y.data(), stride);
            for (int64_t j = 0; j < 9; ++j) {
              std::vector<float> one(static_cast<size_t>(r1 - r0));
              if (group_blocks == 0)
                k->gemv16(codes.data_ptr<uint8_t>(), nb, r0, r1, sub.data_ptr<uint8_t>(), st.data_ptr<float>(),
                          lut.data_ptr<int8_t>(), xq[j].data_ptr<int8_t>(), dx[j].data_ptr<float>(), one.data());
              else
                k->gemv(codes.data_ptr<uint8_t>(), nb, group_blocks, r0, r1, h, lut.data_ptr<int8_t>(),
                        xq[j].data_ptr<int8_t>(), dx[j].data_ptr<float>(), one.data());
              for (int64_t i = 0; i < stride; ++i) {
                const float got = y[static_cast<size_t>(j * stride + i)];
                if (j < n_x && i < r1 - r0)
                  ASSERT_EQ(got, one[static_cast<size_t>(i)]) << what << " x row " << j << " output " << i;
                else
                  ASSERT_EQ(got, -7.f) << what << ": wrote outside its outputs at x row " << j << " index " << i;
              }
            }
          }
        }
      }
    }
  }
}

// Many rows of x over long rows of codes: the AVX-512 loop then runs tiles of code rows over column
// segments (x larger than its L1 budget), the accumulators carried from segment to segment; and a
// kernel called again on the same x buffer after it changed (the per-thread x buffers are reused
// only for equal bytes) must see the new x. Every path, bit for bit the GEMV.
TEST(Qins4Kernels, BatchedRowsOverColumnSegmentsAndRewrittenX) {
  namespace k4 = kernels4;
  torch::manual_seed(37);
  const torch::Tensor lut = torch::randint(-127, 128, {16}, torch::kInt8);
  const torch::Tensor st = sub_scale_table(2e-3f);
  const int64_t rows = 41;  // tiles of 16 code rows and a rest
  for (int group_blocks : {0, 1, 2}) {  // 0: group 16; 1, 2: groups 32, 64 (fp16 scales)
    // 32 super-blocks (16 double ones) and a tail of one or two blocks
    const int64_t nb = group_blocks == 2 ? 258 : 257, n_groups = group_blocks ? nb / group_blocks : 1;
    const torch::Tensor codes = torch::randint(0, 256, {rows, nb * 16}, torch::kUInt8);
    const torch::Tensor sub = torch::randint(0, 256, {rows, nb * 2}, torch::kUInt8);
    const torch::Tensor hs = (torch::rand({rows, n_groups}) + 0.5).to(torch::kHalf);
    const auto* h = reinterpret_cast<const uint16_t*>(hs.data_ptr<at::Half>());
    for (const k4::Kernel4* k : {&k4::scalar_kernel4(), k4::avx2_kernel4(), k4::avx512_kernel4(), k4::neon_kernel4()}) {
      if (!k || !k->gemv16_rows || !k->gemv_rows) continue;
      auto rows_call = [&](const torch::Tensor& xq, const torch::Tensor& dx, int64_t n_x, int64_t r0, int64_t r1,
                           float* y, int64_t stride) {
        if (group_blocks == 0)
          k->gemv16_rows(codes.data_ptr<uint8_t>(), nb, r0, r1, sub.data_ptr<uint8_t>(), st.data_ptr<float>(),
                         lut.data_ptr<int8_t>(), xq.data_ptr<int8_t>(), dx.data_ptr<float>(), n_x, y, stride);
        else
          k->gemv_rows(codes.data_ptr<uint8_t>(), nb, group_blocks, r0, r1, h, lut.data_ptr<int8_t>(),
                       xq.data_ptr<int8_t>(), dx.data_ptr<float>(), n_x, y, stride);
      };
      auto gemv_call = [&](const k4::Kernel4& kk, const torch::Tensor& xq, const torch::Tensor& dx, int64_t r0,
                           int64_t r1, float* y) {
        if (group_blocks == 0)
          kk.gemv16(codes.data_ptr<uint8_t>(), nb, r0, r1, sub.data_ptr<uint8_t>(), st.data_ptr<float>(),
                    lut.data_ptr<int8_t>(), xq.data_ptr<int8_t>(), dx.data_ptr<float>(), y);
        else
          kk.gemv(codes.data_ptr<uint8_t>(), nb, group_blocks, r0, r1, h, lut.data_ptr<int8_t>(),
                  xq.data_ptr<int8_t>(), dx.data_ptr<float>(), y);
      };
      for (int64_t n_x : {2, 4, 8}) {
        // Three calls on the same buffers, back to back (nothing between them rebuilds the thread's
        // x buffer): x as drawn, then new xq, then new dx; checked after all three against copies.
        torch::Tensor xq = torch::randint(-127, 128, {n_x, nb * 32}, torch::kInt8);
        torch::Tensor dx = torch::rand({n_x, nb}) * 0.02;
        const int64_t r0 = 3, r1 = 38;
        std::vector<std::vector<float>> ys;
        std::vector<std::pair<torch::Tensor, torch::Tensor>> xs;
        for (int round = 0; round < 3; ++round) {
          if (round == 1) xq.copy_(torch::randint(-127, 128, {n_x, nb * 32}, torch::kInt8));
          if (round == 2) dx.mul_(1.5);
          std::vector<float> y(static_cast<size_t>(n_x * rows), -7.f);
          rows_call(xq, dx, n_x, r0, r1, y.data(), rows);
          ys.push_back(std::move(y));
          xs.emplace_back(xq.clone(), dx.clone());
        }
        for (int round = 0; round < 3; ++round) {
          const auto& [xr, dr] = xs[static_cast<size_t>(round)];
          const std::vector<float>& y = ys[static_cast<size_t>(round)];
          const std::string what = std::string(k->name) + " group_blocks " + std::to_string(group_blocks) +
                                   " rows of x " + std::to_string(n_x) + " call " + std::to_string(round);
          for (int64_t j = 0; j < n_x; ++j) {
            std::vector<float> one(static_cast<size_t>(r1 - r0)), own(static_cast<size_t>(r1 - r0));
            gemv_call(k4::scalar_kernel4(), xr[j], dr[j], r0, r1, one.data());
            gemv_call(*k, xr[j], dr[j], r0, r1, own.data());
            float top = 0.f;  // the twin is summed in another order: compared to the largest output
            for (float v : one) top = std::max(top, std::fabs(v));
            for (int64_t i = 0; i < r1 - r0; ++i) {
              const float got = y[static_cast<size_t>(j * rows + i)];
              ASSERT_EQ(got, own[static_cast<size_t>(i)]) << what << " x row " << j << " output " << i;
              ASSERT_NEAR(got, one[static_cast<size_t>(i)], 1e-4f * top) << what << " against the scalar twin";
            }
            for (int64_t i = r1 - r0; i < rows; ++i) ASSERT_EQ(y[static_cast<size_t>(j * rows + i)], -7.f) << what;
          }
        }
      }
    }
  }
}

// The vector form of the activation rounding writes quantize_x_scalar's bytes, and the scalar twin
// is the definition: dx = max |x| / 127 per block of 32, round to nearest even, clamp to +-127,
// zero past `in` — checked on ties (k + 0.5 after scaling), tiny and huge blocks, zero blocks and
// every tail length.
TEST(Qins4Kernels, QuantizeXVectorFormIsTheScalarTwin) {
  namespace k4 = kernels4;
  torch::manual_seed(41);
  for (int64_t in : {1, 31, 32, 33, 64, 95, 100, 3072, 3073, 8192}) {
    for (int trial = 0; trial < 20; ++trial) {
      const int64_t nb = (in + 31) / 32 + (trial % 3 == 0 ? 1 : 0);  // sometimes a padded block more
      torch::Tensor x = torch::randn({in}) * (trial % 4 == 1 ? 1e-30 : trial % 4 == 2 ? 1e30 : 1.0);
      if (trial % 5 == 3) {  // ties: block max 127, values k + 0.5
        x = (torch::randint(-126, 126, {in}).to(torch::kFloat32) + 0.5);
        for (int64_t b = 0; b * 32 < in; ++b) x[b * 32] = 127.f;
      }
      if (trial % 7 == 4 && in >= 64) x.narrow(0, 32, 32).zero_();
      const float* xp = x.data_ptr<float>();
      std::vector<int8_t> qa(static_cast<size_t>(nb * 32), 99), qb(static_cast<size_t>(nb * 32), 98);
      std::vector<float> da(static_cast<size_t>(nb), -1.f), db(static_cast<size_t>(nb), -2.f);
      k4::quantize_x(xp, in, nb, qa.data(), da.data());
      k4::quantize_x_scalar(xp, in, nb, qb.data(), db.data());
      ASSERT_EQ(qa, qb) << "in " << in << " trial " << trial;
      ASSERT_EQ(da, db) << "in " << in << " trial " << trial;
      for (int64_t b = 0; b < nb; ++b) {
        float amax = 0.f;
        for (int64_t i = b * 32; i < std::min(in, b * 32 + 32); ++i) amax = std::max(amax, std::fabs(xp[i]));
        ASSERT_EQ(db[static_cast<size_t>(b)], amax / 127.f) << "in " << in << " block " << b;
        const float id = amax > 0.f ? 127.f / amax : 0.f;
        for (int64_t i = b * 32; i < b * 32 + 32; ++i) {
          const float want = i < in ? std::clamp(std::nearbyint(xp[i] * id), -127.f, 127.f) : 0.f;
          ASSERT_EQ(qb[static_cast<size_t>(i)], static_cast<int8_t>(want)) << "in " << in << " column " << i;
        }
      }
    }
  }
}

// qins4_matmul_rows (the batched decode step of a QINS-4 layer) on every path: row i is bit for bit
// qins4_matmul of row i alone (the int8 GEMV), for 1 to 9 rows, groups 16 / 32 / 64, odd shapes.
TEST(Qins4Kernels, MatmulRowsIsTheGemvPerRowOnEveryPath) {
  Kernel4Guard guard;
  for (const auto& [out, in, group] : std::vector<std::tuple<int64_t, int64_t, int>>{
           {5, 33, 32}, {67, 200, 16}, {130, 95, 16}, {40, 256, 64}, {9, 3072, 16}}) {
    Quantize4Options o;
    o.group = group;
    const Quantized4Tensor q = quantize4(heavy_tailed(out, in, static_cast<uint64_t>(out + in)), o);
    torch::manual_seed(static_cast<uint64_t>(out));
    const torch::Tensor x = torch::randn({9, in});
    for (const std::string& isa : available_kernel4_isas()) {
      set_kernel4_isa(isa);
      for (int64_t n = 1; n <= 9; ++n) {
        torch::Tensor y = torch::full({n, out}, -7.f);
        qins4_matmul_rows(q, x.data_ptr<float>(), n, y.data_ptr<float>());
        for (int64_t i = 0; i < n; ++i) {
          torch::Tensor one = torch::empty({out});
          qins4_matmul(q, x[i].data_ptr<float>(), 1, one.data_ptr<float>());
          EXPECT_TRUE(torch::equal(y[i], one)) << isa << " " << out << "x" << in << " group " << group << " rows "
                                               << n << " row " << i;
        }
      }
    }
  }
}

// The AVX-512 path is tested by the two tests above where the CPU has it; this says so, or skips.
TEST(Qins4Kernels, Avx512PathPresentWhereTheCpuHasIt) {
  const auto isas = available_kernel4_isas();
  if (std::find(isas.begin(), isas.end(), "avx512") == isas.end()) GTEST_SKIP() << "no AVX-512BW on this CPU";
  EXPECT_STREQ(kernel4_isa(), "avx512");
}

// (scripts/test-arm64.sh runs the Qins4 tests under qemu.)
TEST(Qins4Kernels, NeonIsDefaultOnArm64) {
#if defined(__aarch64__)
  EXPECT_STREQ(kernel4_isa(), "neon");
#else
  GTEST_SKIP() << "not an aarch64 build";
#endif
}

TEST(Qins4Linear, ForwardRowBiasBf16AndShapes) {
  const torch::Tensor w = heavy_tailed(40, 70, 11);
  const torch::Tensor bias = torch::randn({40});
  Qins4Linear lin(Qins4LinearImpl::from_linear(w, bias));
  EXPECT_EQ(lin->in_features(), 70);
  EXPECT_EQ(lin->out_features(), 40);
  EXPECT_EQ(lin->weight_bytes(), lin->quantized().bytes() + 40 * 4);
  torch::manual_seed(12);
  const torch::Tensor x = torch::randn({2, 3, 70});
  const torch::Tensor y = lin->forward(x), ref = lin->forward_reference(x);
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{2, 3, 40}));
  // The prefill GEMM: exact in fp32, within bf16's rounding (a few 1e-3 on random x) in bf16.
  EXPECT_LT(rel_err(y, ref), std::string(prefill4_path()) == "fp32" ? 1e-5 : 8e-3);
  const torch::Tensor yb = lin->forward(x.to(torch::kBFloat16));
  EXPECT_EQ(yb.scalar_type(), torch::kBFloat16);
  EXPECT_LT(rel_err(yb.to(torch::kFloat32), ref), 0.03);
  // Decode row: int8 activations, within the same budget as the kernel test.
  const torch::Tensor x1 = torch::randn({70});
  std::vector<float> y1(40);
  lin->forward_row(x1.data_ptr<float>(), y1.data());
  EXPECT_LT(rel_err(torch::from_blob(y1.data(), {40}), lin->forward_reference(x1)), 0.045);
  EXPECT_THROW(lin->forward(torch::randn({3, 71})), c10::Error);
}
