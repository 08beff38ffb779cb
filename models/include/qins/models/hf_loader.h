// Loading a Hugging Face Phi-3 directory (config.json, safetensors, tokenizer files) into the
// graph's weight structs. Every shape is checked against the config; errors name the file.
#pragma once

#include <string>

#include "qins/core/qins.h"
#include "qins/models/phi3_config.h"
#include "qins/models/phi3_model.h"
#include "qins/models/safetensors.h"

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

// Tensor names of the Phi-3 layout (PHI3.md §2).
std::string layer_tensor_name(int il, const char* suffix);  // "model.layers.{il}.{suffix}"

// The shape the config implies for a named tensor; throws qins::Error for an unknown name.
std::vector<int64_t> expected_shape(const Phi3Config& c, const std::string& name);

// Reads one tensor of the checkpoint as f32 [shape], checking its shape against the config.
torch::Tensor read_tensor_f32(const st::Checkpoint& ckpt, const Phi3Config& c, const std::string& name);

Phi3Weights load_hf_weights(const st::Checkpoint& ckpt, const Phi3Config& c, const WeightLoadOptions& opts,
                            const std::function<bool(double)>& progress = {});

// Paths inside a Hugging Face directory.
struct HfPaths {
  std::string config, generation_config, tokenizer_model, tokenizer_config;  // empty if absent (optional ones)
};
HfPaths find_hf_files(const std::string& dir);  // throws qins::Error when a required file is missing

}  // namespace qins
