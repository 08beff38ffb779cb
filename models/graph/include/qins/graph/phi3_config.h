// Phi-3 hyper-parameters (config.json, PHI3.md §1) and generation settings (generation_config.json).
// Derived values are computed once when read.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace qins {

struct Phi3Config {
  std::string model_type = "phi3";
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int num_key_value_heads = 0;      // missing: = num_attention_heads
  int head_dim = 0;                 // missing: hidden_size / num_attention_heads
  int vocab_size = 0;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  double partial_rotary_factor = 1.0;
  int max_position_embeddings = 4096;
  int original_max_position_embeddings = 4096;  // missing: = max_position_embeddings
  // rope_scaling: "longrope" (or "su") with short/long factors of head_dim*partial/2 values each.
  std::string rope_scaling_type;    // "" when rope_scaling is null
  std::vector<float> short_factor;
  std::vector<float> long_factor;
  std::optional<int> sliding_window;  // null / missing: no window
  bool tie_word_embeddings = false;
  int bos_token_id = 1;
  std::vector<int> eos_token_ids;   // from config.json eos_token_id (int or list)
  std::optional<int> pad_token_id;  // may be null or out of range: never index with it
  std::string torch_dtype = "float32";

  // Derived
  int rotary_dim = 0;               // head_dim * partial_rotary_factor
  int n_rep() const { return num_attention_heads / num_key_value_heads; }
  int qkv_out() const { return (num_attention_heads + 2 * num_key_value_heads) * head_dim; }
  // sqrt(1 + ln(max/orig) / ln(orig)) for longrope when max > orig, else 1.
  double attention_factor = 1.0;
  bool has_longrope() const { return !short_factor.empty(); }

  // The JSON text it was read from (kept so a .qins file can carry it verbatim).
  std::string source_json;
};

// Parse config.json text. `origin` names the file in errors. Throws qins::Error.
Phi3Config parse_phi3_config(const std::string& json_text, const std::string& origin);
Phi3Config read_phi3_config(const std::string& path);
// Serialize back to config.json (round-trips through parse_phi3_config).
std::string phi3_config_to_json(const Phi3Config& c);
// A config built in code (the fixture, synthetic and trained models): its derived values
// (head_dim when 0, rotary_dim, attention_factor) filled in, checked and given its source_json by
// a round trip through phi3_config_to_json / parse_phi3_config. Throws qins::Error.
Phi3Config complete_phi3_config(Phi3Config c, const std::string& origin);

struct GenerationConfig {
  std::vector<int> eos_token_ids;   // stop ids
  std::optional<float> temperature, top_p;
  std::optional<int> top_k;
  std::string source_json;
};
GenerationConfig parse_generation_config(const std::string& json_text, const std::string& origin);

}  // namespace qins
