// Checks every loader and the converter run on a model's parts before anything is sized from
// them, so a folder, a .qins file and a conversion accept and refuse the same models with the
// same one-line errors (issue 16 items 2, 6, 7).
#pragma once

#include <cstdint>
#include <string>

#include "qins/graph/phi3_config.h"
#include "qins/tokenizer/tokenizer.h"

namespace qins {

// The tokenizer fits the embedding (its vocab_size() <= config.vocab_size) and every special id
// (config bos/eos/pad, generation_config eos, the tokenizer's bos) is a row of it. `origin` names
// the model (a folder, a .qins file). Throws qins::Error.
void validate_token_ids(const Phi3Config& c, const GenerationConfig& g, const tok::Tokenizer& t,
                        const std::string& origin);

// The parameters config.json implies fit in the weight files: at least one byte each (no
// safetensors dtype is smaller). Throws qins::Error naming `origin` before anything is allocated.
void check_config_against_files(const Phi3Config& c, int64_t file_bytes, const std::string& origin);

}  // namespace qins
