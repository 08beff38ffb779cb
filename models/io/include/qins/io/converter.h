// The converter: a Hugging Face folder -> one .qins file (quantize + compress), one tensor at a
// time from the mapped safetensors, with a report of what the quantization costs per tensor.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "qins/core/qins.h"
#include "qins/core/qins4.h"

namespace qins {

struct ConvertOptions {
  core::QuantizeOptions quant;   // codebook, pole, threads
  // QINS-4 (mixed precision policy): the layer projections (qkv, o, gate_up, down) as 4-bit codes
  // with `quant4` (table, group); the token embedding and lm_head stay 8-bit QINS with `quant`.
  bool qins4 = false;
  core::Quantize4Options quant4;
  // Opt-in lossy pruning: codes whose magnitude index j is <= prune_index become exact zeros
  // (which the sparse codec then stores almost for free). 0 = off.
  int prune_index = 0;
  // Where the model came from, recorded in qins.json's "converter" object: `source_name` replaces
  // the folder's name as "source" (the model's display name) when set; `origin_json`, a JSON object
  // (qins pull: hub, repo, revision, commit, files with sha256), is stored as "origin".
  std::string source_name;
  std::string origin_json;
};

struct ConvertedTensor {
  std::string name;
  std::vector<int64_t> shape;
  bool quantized = false;
  double sqnr_db = 0.0, rel_error = 0.0;  // quantized only
};

struct ConvertReport {
  std::vector<ConvertedTensor> tensors;
  int64_t params = 0;
  int64_t input_bytes = 0;
  int64_t output_bytes = 0;
  double seconds = 0.0;
};

// One tensor at a time from the mmapped safetensors: memory stays near one tensor in f32.
// progress(fraction, tensor name) returning false cancels (throws Cancelled, no file written).
ConvertReport convert_to_qins(const std::string& hf_dir, const std::string& out_path, const ConvertOptions& opts,
                              const std::function<bool(double, const std::string&)>& progress = {});

// The mixed precision policy of a QINS-4 file: true for the tensors stored as QINS-4 (the layer
// projections); the embedding and lm_head stay 8-bit, norms f32.
struct TensorSpec;
bool stored_as_qins4(const TensorSpec& spec);

// QINS-4's weight error (SQNR, relative error) against the fp32 weights.
core::ErrorStats measure_error4(const torch::Tensor& w, const core::Quantized4Tensor& q);

// Applies the opt-in pruning to codes in place; returns how many codes became zero.
int64_t prune_codes(core::QuantizedTensor& q, int prune_index);

}  // namespace qins
