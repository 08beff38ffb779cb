// Synthetic .qins models with real Phi-3 shapes and random weights (`qins synth`): a way to
// measure load time, memory and speed at Phi-3.5-mini scale without a 7.6 GB checkpoint.
// Weights are generated one tensor at a time (f32), quantized, written and freed, so memory
// stays near the largest tensor (lm_head / gate_up: ~200 MB f32).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "qins/core/qins.h"
#include "qins/core/qins4.h"

namespace qins {

// The weight distribution of the synthetic projections (std is the same for all three).
enum class SynthDist { Gaussian, Laplace, StudentT5 };

struct SynthOptions {
  std::string like = "phi-3.5-mini";  // phi-3.5-mini | mid | demo | tiny (tests)
  SynthDist dist = SynthDist::Gaussian;
  double weight_std = 0.02;
  core::QuantizeOptions quant;        // codebook, pole, threads
  // QINS-4 file (as `qins convert --codebook qins4`): layer projections 4-bit with quant4, the
  // embedding and lm_head 8-bit with quant.
  bool qins4 = false;
  core::Quantize4Options quant4;
  uint64_t seed = 1;
};

struct SynthReport {
  int64_t params = 0;
  int64_t file_bytes = 0;
  int64_t code_bytes = 0;   // decoded codes + scales (what a decode step streams, roughly)
  double seconds = 0.0;
  double generate_seconds = 0.0;  // of which: random numbers
  double quantize_seconds = 0.0;  //            quantization
  double write_seconds = 0.0;     //            compression + writing
  std::string config_summary;
};

// Throws qins::Error for an unknown `like` and for I/O failures (the file is written atomically).
// progress(fraction, tensor name) returning false cancels (throws Cancelled, nothing written).
SynthReport write_synthetic_model(const std::string& out_path, const SynthOptions& options,
                                  const std::function<bool(double, const std::string&)>& progress = {});

SynthDist synth_dist_from_name(const std::string& name);  // throws qins::Error

// Fills `out[0..n)` with deterministic pseudo-random values of the distribution, mean 0, given
// std. `stream` selects an independent stream (e.g. tensor index * 2^32 + row).
void synth_fill(float* out, int64_t n, SynthDist dist, double std_dev, uint64_t seed, uint64_t stream);

}  // namespace qins
