// QINS-8 grouped against QINS 8-bit (one scale per row) on the Phi-3.5-mini projection shapes, in
// one run, in interleaved rounds (the machine is shared and noisy: read the ratios).
//
// Decode: one token's projections (qkv 9216x3072, o 3072x3072, gate_up 16384x3072, down
// 3072x8192) over `--layers` distinct copies (far more bytes than the caches hold), batch 1, each
// format's default kernel path: the 8-bit row-scale code, QINS-8 group 32 with 8-bit log-scale
// codes (8.25 bits per weight), group 32 with fp16 scales (8.5) and group 64 with log-scale codes
// (8.125). Every round runs the formats one after another in a rotating order.
//
//   ./build/bench/bench_qins8g [--layers 4] [--rounds 9]
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "qins/core/projective_linear.h"
#include "qins/core/qins.h"
#include "qins/core/qins4.h"
#include "qins/core/qins8g.h"

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

torch::Tensor random_codes(const Shape& s) {
  torch::Tensor c = qc::empty_large({s.out, s.in}, torch::kUInt8);  // [out, in] uint8
  c.copy_(torch::randint(0, 256, {s.out, s.in}, torch::kUInt8));
  qc::promote_to_huge_pages(c);
  return c;
}

qc::QuantizedTensor random_q8(const Shape& s) {
  qc::QuantizedTensor q;
  q.codebook = qc::Codebook::Projective;
  q.pole = 300.0;
  q.codes = random_codes(s);
  q.scales = torch::rand({s.out}) * 0.02 + 0.01;  // [out] fp32
  q.lut = qc::make_lut(q.codebook, q.pole);
  return q;
}

qc::Quantized8gTensor random_q8g(const Shape& s, int group, qc::Scale8 scale) {
  qc::Quantized8gTensor q;
  q.in_features = s.in;
  q.group = group;
  q.pole = 300.0;
  q.codes = random_codes(s);
  q.lut = qc::make_lut(qc::Codebook::Projective, 300.0);
  if (scale == qc::Scale8::Log8) {
    q.scales = torch::randint(128, 256, {s.out, s.in / group}, torch::kUInt8);  // [out, groups] log codes
    q.sub_table = qc::sub_scale_table(0.05f);
  } else {
    q.scales = (torch::rand({s.out, s.in / group}) * 0.02 + 0.01).to(torch::kHalf);  // [out, groups] fp16
  }
  q.validate("bench");
  return q;
}

}  // namespace

int main(int argc, char** argv) {
  int n_layers = 4, rounds = 9;
  if (argc % 2 == 0) {
    std::fprintf(stderr, "usage: bench_qins8g [--layers N] [--rounds N]\n");
    return 2;
  }
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (a == "--layers") n_layers = std::max(1, v);
    else if (a == "--rounds") rounds = std::max(1, v);
    else {
      std::fprintf(stderr, "usage: bench_qins8g [--layers N] [--rounds N]\n");
      return 2;
    }
  }
  torch::manual_seed(1);
  struct Variant {
    std::string name;
    int group;
    qc::Scale8 scale;
  };
  const std::vector<Variant> grouped = {
      {"g32 log8", 32, qc::Scale8::Log8}, {"g32 fp16", 32, qc::Scale8::Fp16}, {"g64 log8", 64, qc::Scale8::Log8}};
  std::vector<std::vector<qc::QuantizedTensor>> l8(static_cast<size_t>(n_layers));
  std::vector<std::vector<std::vector<qc::Quantized8gTensor>>> lg(grouped.size(), std::vector<std::vector<qc::Quantized8gTensor>>(static_cast<size_t>(n_layers)));
  int64_t bytes8 = 0;
  std::vector<int64_t> bytesg(grouped.size(), 0);
  for (int l = 0; l < n_layers; ++l)
    for (const Shape& s : kLayer) {
      l8[static_cast<size_t>(l)].push_back(random_q8(s));
      bytes8 += s.out * s.in + s.out * 4;
      for (size_t v = 0; v < grouped.size(); ++v) {
        lg[v][static_cast<size_t>(l)].push_back(random_q8g(s, grouped[v].group, grouped[v].scale));
        bytesg[v] += lg[v][static_cast<size_t>(l)].back().bytes();
      }
    }
  std::vector<torch::Tensor> xs, ys;
  for (const Shape& s : kLayer) {
    xs.push_back(torch::randn({s.in}));
    ys.push_back(torch::empty({s.out}));
  }
  std::vector<std::function<void()>> runs;
  runs.emplace_back([&] {
    for (auto& layer : l8)
      for (size_t p = 0; p < layer.size(); ++p) qc::qins_matmul(layer[p], xs[p].data_ptr<float>(), 1, ys[p].data_ptr<float>());
  });
  for (size_t v = 0; v < grouped.size(); ++v)
    runs.emplace_back([&, v] {
      for (auto& layer : lg[v])
        for (size_t p = 0; p < layer.size(); ++p) qc::qins8g_matmul(layer[p], xs[p].data_ptr<float>(), 1, ys[p].data_ptr<float>());
    });
  for (auto& r : runs) r();  // warm-up
  std::vector<std::vector<double>> t(runs.size());
  for (int r = 0; r < rounds; ++r)
    for (size_t k = 0; k < runs.size(); ++k) {
      const size_t i = (k + static_cast<size_t>(r)) % runs.size();  // rotate who goes first
      const auto t0 = Clock::now();
      runs[i]();
      t[i].push_back(since(t0) / n_layers);
    }
  std::printf("bench_qins8g: %d threads, kernels: 8-bit %s, QINS-8 grouped %s; %d layers x 4 projections, %d rounds (medians)\n",
              at::get_num_threads(), qc::kernel_isa(), qc::kernel8g_isa(), n_layers, rounds);
  std::printf("| format | bits/weight | MB per layer | decode ms per layer | time / 8-bit row-scale |\n|---|---:|---:|---:|---:|\n");
  const double m8 = median(t[0]);
  const double layer8 = static_cast<double>(bytes8) / n_layers;
  int64_t n_weights = 0;
  for (const Shape& s : kLayer) n_weights += s.out * s.in;
  std::printf("| 8-bit, one fp32 scale per row | %.3f | %.1f | %.2f | 1.00 |\n", 8.0 * layer8 / static_cast<double>(n_weights),
              layer8 / 1e6, 1e3 * m8);
  for (size_t v = 0; v < grouped.size(); ++v) {
    const double m = median(t[v + 1]);
    const double b = static_cast<double>(bytesg[v]) / n_layers;
    std::printf("| QINS-8 %s | %.3f | %.1f | %.2f | %.3f |\n", grouped[v].name.c_str(), 8.0 * b / static_cast<double>(n_weights),
                b / 1e6, 1e3 * m, m / m8);
  }
  return 0;
}
