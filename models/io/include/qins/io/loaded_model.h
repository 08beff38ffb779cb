// What a loader (a .qins file or a Hugging Face folder) hands the runtime: the graph's weights,
// the tokenizer, the generation settings and where they came from.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "qins/graph/phi3_config.h"
#include "qins/graph/phi3_model.h"
#include "qins/tokenizer/tokenizer.h"

namespace qins {

struct LoadedModel {
  Phi3Weights weights;                       // weights.config is the model's Phi3Config
  GenerationConfig generation;               // empty when the model has no generation_config.json
  std::unique_ptr<tok::Tokenizer> tokenizer;
  std::string name;                          // the model's name (converter source, else file/folder name)
  std::string path;
  std::string format;                        // "hf" | "qins"
  std::string codebook;                      // "none" for float weights
  int64_t file_bytes = 0;                    // bytes on disk (all shards, or the .qins file)
};

}  // namespace qins
