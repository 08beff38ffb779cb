// Loading a Hugging Face Phi-3 directory (config.json, safetensors, tokenizer files) into the
// graph's weight structs. Every shape is checked against the config; errors name the file.
#pragma once

#include <string>

#include "qins/core/qins.h"
#include "qins/graph/phi3_config.h"
#include "qins/graph/phi3_model.h"
#include "qins/io/loaded_model.h"
#include "qins/io/safetensors.h"
#include "qins/util/progress.h"

namespace qins {

enum class WeightMode {
  F32,    // dense fp32 torch::linear
  BF16,   // dense bf16 torch::linear
  Qins,   // quantize every projection + the embedding to QINS codes (fused kernels)
  Naive,  // QINS codes, expanded to fp32 on every call (the naive baseline)
};

struct WeightLoadOptions {
  WeightMode mode = WeightMode::F32;
  core::QuantizeOptions quant;       // for Qins / Naive
  bool requires_grad = false;        // dense weights as trainable leaves (the trainer)
};

// Reads one tensor of the checkpoint as f32 [shape], checking its shape against the config.
torch::Tensor read_tensor_f32(const st::Checkpoint& ckpt, const Phi3Config& c, const std::string& name);

Phi3Weights load_hf_weights(const st::Checkpoint& ckpt, const Phi3Config& c, const WeightLoadOptions& opts,
                            const std::function<bool(double)>& progress = {});

// Every tensor config.json implies is in the checkpoint with its shape (throws qins::Error naming
// the file and the tensor otherwise); returns the names of tensors the config does not use (a
// note for inspect, not an error: some exports carry extra buffers).
std::vector<std::string> check_checkpoint_tensors(const st::Checkpoint& ckpt, const Phi3Config& c);

// Paths inside a Hugging Face directory.
struct HfPaths {
  std::string config, generation_config, tokenizer_model, tokenizer_config;  // empty if absent (optional ones)
};
HfPaths find_hf_files(const std::string& dir);  // throws qins::Error when a required file is missing

// Loads a whole folder: config, generation config, tokenizer (checked against vocab_size) and the
// weights in `weight_format`: "f32" (or "" / "auto"), "bf16", or a QINS codebook name to quantize
// every projection at load. progress returning false cancels (qins::Cancelled).
LoadedModel read_hf_model(const std::string& dir, const std::string& weight_format, const ProgressFn& progress = {});

}  // namespace qins
