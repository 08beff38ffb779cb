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
//   ./build/bench/bench_qins4 [--layers 8] [--rounds 7] [--prefill-rows 64]
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "qins/core/projective_linear.h"
#include "qins/core/qins.h"
#include "qins/core/qins4.h"

namespace qc = qins::core;

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct Shape {
  int64_t out, in;
};
const Shape kLayer[] = {{9216, 3072}, {3072, 3072}, {16384, 3072}, {3072, 8192}};
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

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int n_layers = 8, rounds = 7, prefill_rows = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (a == "--layers") n_layers = std::max(1, v);
    else if (a == "--rounds") rounds = std::max(1, v);
    else if (a == "--prefill-rows") prefill_rows = std::max(2, v);
    else {
      std::fprintf(stderr, "usage: bench_qins4 [--layers N] [--rounds N] [--prefill-rows N]\n");
      return 2;
    }
  }
  torch::manual_seed(1);
  // A realistic table: the fitted one of a heavy-tailed matrix.
  const torch::Tensor lut = qc::quantize4(torch::randn({64, 256}) / torch::randn({64, 256}).abs().add(0.5)).lut;

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
  return sink == 42 ? 1 : 0;
}
