// Tiny random-weight Phi-3 checkpoints in the Hugging Face layout (config.json, model.safetensors,
// tokenizer.model, tokenizer_config.json, generation_config.json), for tests and as the default
// model until a trained one exists. Deterministic given the seed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace qins {

struct FixtureOptions {
  int hidden_size = 64;
  int intermediate_size = 128;
  int num_layers = 2;
  int num_heads = 4;
  int num_kv_heads = 4;          // < num_heads: grouped-query attention
  bool longrope = false;         // rope_scaling longrope with random factors
  int original_max_position = 4096;
  int max_position = 4096;       // with longrope: > original_max_position
  std::optional<int> sliding_window;
  bool tie_embeddings = false;
  bool bf16 = false;             // store weights as BF16 instead of F32
  bool sharded = false;          // two shards + model.safetensors.index.json
  int base_vocab = 320;          // SentencePiece pieces; the 11 Phi-3 added tokens follow
  float weight_std = 0.08f;
  uint64_t seed = 1234;
};

// Writes the model into `dir` (created if needed). Trains a tiny tokenizer on built-in text.
void write_fixture_model(const std::string& dir, const FixtureOptions& options = {});

// The built-in text the fixture tokenizer is trained on.
const char* fixture_corpus();

}  // namespace qins
