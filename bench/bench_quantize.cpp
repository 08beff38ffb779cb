// quantize() on one thread at the Phi-3.5-mini row widths: the reference scale fit (one full pass
// over the row per evaluated scale, the algorithm quantize() used before) vs the library's fit
// (sorted row summary), each shape and codebook one after the other in the same run, so the
// ratio of the two items_per_second (weights per second) is the speed-up.
//
//   nice -n 5 ./build/bench/bench_quantize
//
// The reference variant is the whole old quantize(): input check, reference fit + nearest-code
// encode per row. Both variants run on one thread (QuantizeOptions::threads = 1).
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "qins/core/qins.h"
#include "scale_fit.h"

namespace qc = qins::core;
namespace fit = qins::core::fit;

namespace {

struct Shape {
  int64_t out, in;
  const char* name;
};
const Shape kShapes[] = {{3072, 3072, "o_proj"}, {3072, 8192, "down_proj"}};
const qc::Codebook kCodebooks[] = {qc::Codebook::Projective, qc::Codebook::Uniform};

torch::Tensor weights(const Shape& s) {
  torch::manual_seed(42);
  return (torch::randn({s.out, s.in}) * 0.02).contiguous();  // [out, in] fp32
}

// The pre-summary quantize() for a fixed table (pole given): per row, the reference fit, then
// the nearest code of every weight.
qc::QuantizedTensor quantize_reference(const torch::Tensor& w, qc::Codebook cb) {
  const torch::Tensor lut_t = qc::make_lut(cb, 300.0);
  std::array<float, 128> lut{};
  std::copy(lut_t.data_ptr<float>(), lut_t.data_ptr<float>() + 128, lut.begin());
  const fit::NearestCode nc(lut);
  // The same input check quantize() makes, so both variants pay it.
  if (!torch::isfinite(w).all().item<bool>()) throw std::invalid_argument("weight contains NaN or Inf");
  const int64_t rows = w.size(0), cols = w.size(1);
  qc::QuantizedTensor q;
  q.codebook = cb;
  q.pole = cb == qc::Codebook::Projective ? 300.0 : 0.0;
  q.codes = torch::empty({rows, cols}, torch::kUInt8);  // [out, in] uint8
  q.scales = torch::empty({rows}, torch::kFloat32);     // [out] fp32
  q.lut = lut_t;
  const float* wp = w.data_ptr<float>();
  uint8_t* cp = q.codes.data_ptr<uint8_t>();
  float* sp = q.scales.data_ptr<float>();
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = wp + r * cols;
    const float s = fit::fit_scale_reference(row, cols, nc, nullptr);
    sp[r] = s;
    const float inv = s > 0.f ? 1.f / s : 0.f;
    for (int64_t i = 0; i < cols; ++i) {
      const int j = s > 0.f ? nc.index(std::fabs(row[i]) * inv) : 0;
      cp[r * cols + i] = static_cast<uint8_t>(j | ((std::signbit(row[i]) && j != 0) ? 0x80 : 0));
    }
  }
  return q;
}

void run(benchmark::State& state, const Shape& shape, qc::Codebook cb, bool reference) {
  const torch::Tensor w = weights(shape);
  qc::QuantizeOptions o;
  o.codebook = cb;
  o.pole = 300.0;
  o.threads = 1;
  double sqnr = 0.0;
  for (auto _ : state) {
    qc::QuantizedTensor q = reference ? quantize_reference(w, cb) : qc::quantize(w, o);
    benchmark::DoNotOptimize(q.codes.data_ptr<uint8_t>());
    state.PauseTiming();
    sqnr = qc::measure_error(w, q).sqnr_db;
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * shape.out * shape.in);
  state.counters["sqnr_db"] = sqnr;
}

}  // namespace

int main(int argc, char** argv) {
  at::set_num_threads(1);
  for (const auto& s : kShapes) {
    for (auto cb : kCodebooks) {
      for (bool reference : {true, false}) {
        const std::string name = std::string("quantize/") + s.name + "/" + qc::codebook_name(cb) + "/" +
                                 (reference ? "reference" : "summary");
        benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) { run(st, s, cb, reference); })
            ->Unit(benchmark::kMillisecond);
      }
    }
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
