// config.json (PHI3.md §1) and generation_config.json readers. Every key is read with its type
// checked; missing keys take the defaults of transformers' Phi3Config; derived values
// (head_dim, rotary_dim, attention_factor) are computed once here.
#include "qins/graph/phi3_config.h"

#include "qins/util/files.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "qins/util/errors.h"

namespace qins {

namespace {

using json = nlohmann::json;

[[noreturn]] void fail(const std::string& origin, const std::string& problem) {
  throw Error(origin + ": " + problem);
}

// Parse with duplicate-key detection (nlohmann silently keeps the last duplicate).
json parse_strict(const std::string& text, const std::string& origin) {
  std::vector<std::set<std::string>> keys_per_object;
  auto on_event = [&](int depth, json::parse_event_t event, json& parsed) -> bool {
    if (depth > 64) fail(origin, "JSON nests deeper than 64 levels");
    if (event == json::parse_event_t::object_start) {
      keys_per_object.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      if (!keys_per_object.empty()) keys_per_object.pop_back();
    } else if (event == json::parse_event_t::key) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!keys_per_object.empty() && !keys_per_object.back().insert(key).second)
        fail(origin, "duplicate key '" + key + "'");
    }
    return true;
  };
  // nlohmann's lexer takes a NUL byte for the end of input and would ignore what follows.
  if (text.find('\0') != std::string::npos) fail(origin, "invalid JSON: contains a NUL byte");
  json j;
  try {
    j = json::parse(text, on_event, /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const json::exception& e) {
    fail(origin, std::string("invalid JSON: ") + e.what());
  }
  if (!j.is_object()) fail(origin, "top level is not a JSON object");
  return j;
}

// The value of `key`, or nullptr when missing or null.
const json* find_value(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

int as_int(const json& v, const std::string& origin, const std::string& key) {
  if (!v.is_number_integer()) fail(origin, "'" + key + "' must be an integer");
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int>::max()))
      fail(origin, "'" + key + "' = " + std::to_string(u) + " is out of range");
    return static_cast<int>(u);
  }
  const int64_t s = v.get<int64_t>();
  if (s < std::numeric_limits<int>::min() || s > std::numeric_limits<int>::max())
    fail(origin, "'" + key + "' = " + std::to_string(s) + " is out of range");
  return static_cast<int>(s);
}

double as_double(const json& v, const std::string& origin, const std::string& key) {
  if (!v.is_number()) fail(origin, "'" + key + "' must be a number");
  const double d = v.get<double>();
  if (!std::isfinite(d)) fail(origin, "'" + key + "' is not finite");
  return d;
}

int get_int(const json& obj, const char* key, const std::string& origin) {
  const json* v = find_value(obj, key);
  if (!v) fail(origin, std::string("missing required key '") + key + "'");
  return as_int(*v, origin, key);
}

int get_int_or(const json& obj, const char* key, int fallback, const std::string& origin) {
  const json* v = find_value(obj, key);
  return v ? as_int(*v, origin, key) : fallback;
}

double get_double_or(const json& obj, const char* key, double fallback, const std::string& origin) {
  const json* v = find_value(obj, key);
  return v ? as_double(*v, origin, key) : fallback;
}

void require_positive(int value, const char* key, const std::string& origin) {
  if (value <= 0) fail(origin, std::string("'") + key + "' must be positive, got " + std::to_string(value));
}

// Every count and size is held to a sane upper bound before anything is sized from it (a
// num_hidden_layers of 2^31-1 once made the converter build tensor names until memory ran out).
// The limits are far above any released model (Phi-3.5: 3072 hidden, 8192 intermediate, 32
// layers, 32 heads, 32064 vocab, 131072 positions); whether the files hold that many parameters is
// checked by the loaders against the checkpoint (check_config_against_files in models/io).
constexpr int kMaxHidden = 1 << 16;        // 65536
constexpr int kMaxIntermediate = 1 << 18;  // 262144
constexpr int kMaxLayers = 1024;
constexpr int kMaxHeads = 1024;
constexpr int kMaxHeadDim = 4096;
constexpr int kMaxVocab = 1 << 22;      // 4194304
constexpr int kMaxPositions = 1 << 24;  // 16777216 (also bounds sliding_window)

void require_range(int value, int max, const char* key, const std::string& origin) {
  require_positive(value, key, origin);
  if (value > max)
    fail(origin, std::string("'") + key + "' = " + std::to_string(value) + " is larger than the limit " +
                     std::to_string(max));
}

// eos_token_id: an int or a list of ints; missing -> `fallback`.
std::vector<int> get_id_list(const json& obj, const char* key, std::vector<int> fallback,
                             const std::string& origin) {
  const json* v = find_value(obj, key);
  if (!v) return fallback;
  std::vector<int> out;
  if (v->is_array()) {
    for (const json& e : *v) out.push_back(as_int(e, origin, key));
  } else {
    out.push_back(as_int(*v, origin, key));
  }
  for (int id : out)
    if (id < 0) fail(origin, std::string("'") + key + "' has a negative id " + std::to_string(id));
  return out;
}

std::vector<float> get_factors(const json& rs, const char* key, std::size_t expected,
                               const std::string& origin) {
  const std::string name = std::string("rope_scaling.") + key;
  const json* v = find_value(rs, key);
  if (!v || !v->is_array()) fail(origin, "'" + name + "' must be an array of numbers");
  if (v->size() != expected)
    fail(origin, "'" + name + "' has " + std::to_string(v->size()) + " values, expected rotary_dim/2 = " +
                     std::to_string(expected));
  std::vector<float> out;
  out.reserve(expected);
  for (const json& e : *v) {
    const double d = as_double(e, origin, name);
    const float f = static_cast<float>(d);
    if (!(f > 0.0f) || !std::isfinite(f))
      fail(origin, "'" + name + "' has a value that is not a positive finite float32");
    out.push_back(f);
  }
  return out;
}

// sqrt(1 + ln(max/orig) / ln(orig)): LongRoPE's attention factor when the context is extended.
double derived_attention_factor(int max_pos, int orig_max_pos) {
  const double scale = static_cast<double>(max_pos) / orig_max_pos;
  return std::sqrt(1.0 + std::log(scale) / std::log(static_cast<double>(orig_max_pos)));
}

}  // namespace

namespace {

// Sizes: hidden, intermediate, layers, heads, key/value heads, head_dim, vocab.
void parse_sizes(const json& j, const std::string& origin, Phi3Config& c) {
  c.hidden_size = get_int(j, "hidden_size", origin);
  c.intermediate_size = get_int(j, "intermediate_size", origin);
  c.num_hidden_layers = get_int(j, "num_hidden_layers", origin);
  c.num_attention_heads = get_int(j, "num_attention_heads", origin);
  c.vocab_size = get_int(j, "vocab_size", origin);
  require_range(c.hidden_size, kMaxHidden, "hidden_size", origin);
  require_range(c.intermediate_size, kMaxIntermediate, "intermediate_size", origin);
  require_range(c.num_hidden_layers, kMaxLayers, "num_hidden_layers", origin);
  require_range(c.num_attention_heads, kMaxHeads, "num_attention_heads", origin);
  require_range(c.vocab_size, kMaxVocab, "vocab_size", origin);

  c.num_key_value_heads = get_int_or(j, "num_key_value_heads", c.num_attention_heads, origin);
  require_range(c.num_key_value_heads, kMaxHeads, "num_key_value_heads", origin);
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    fail(origin, "num_attention_heads " + std::to_string(c.num_attention_heads) +
                     " is not divisible by num_key_value_heads " + std::to_string(c.num_key_value_heads));

  if (find_value(j, "head_dim")) {
    c.head_dim = get_int(j, "head_dim", origin);
    require_range(c.head_dim, kMaxHeadDim, "head_dim", origin);
  } else {
    if (c.hidden_size % c.num_attention_heads != 0)
      fail(origin, "hidden_size " + std::to_string(c.hidden_size) +
                       " is not divisible by num_attention_heads " + std::to_string(c.num_attention_heads) +
                       " (and no head_dim is given)");
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  // The attention width (q, and k/v) is a matrix dimension too.
  if (int64_t{c.head_dim} * c.num_attention_heads > kMaxIntermediate)
    fail(origin, "num_attention_heads x head_dim = " + std::to_string(int64_t{c.head_dim} * c.num_attention_heads) +
                     " is larger than the limit " + std::to_string(kMaxIntermediate));

}

// The norm epsilon and the rotary embedding: theta, partial rotary factor, positions, LongRoPE.
void parse_rope(const json& j, const std::string& origin, Phi3Config& c) {
  c.rms_norm_eps = get_double_or(j, "rms_norm_eps", 1e-5, origin);
  if (!(c.rms_norm_eps > 0)) fail(origin, "'rms_norm_eps' must be positive");
  c.rope_theta = get_double_or(j, "rope_theta", 10000.0, origin);
  if (!(c.rope_theta > 0)) fail(origin, "'rope_theta' must be positive");
  c.partial_rotary_factor = get_double_or(j, "partial_rotary_factor", 1.0, origin);
  if (!(c.partial_rotary_factor > 0 && c.partial_rotary_factor <= 1))
    fail(origin, "'partial_rotary_factor' must be in (0, 1]");
  c.rotary_dim = static_cast<int>(c.head_dim * c.partial_rotary_factor);  // as transformers: int()
  if (c.rotary_dim <= 0 || c.rotary_dim % 2 != 0)
    fail(origin, "rotary dimension head_dim * partial_rotary_factor = " + std::to_string(c.rotary_dim) +
                     " must be positive and even");

  c.max_position_embeddings = get_int_or(j, "max_position_embeddings", 4096, origin);
  require_range(c.max_position_embeddings, kMaxPositions, "max_position_embeddings", origin);
  c.original_max_position_embeddings =
      get_int_or(j, "original_max_position_embeddings", c.max_position_embeddings, origin);
  require_range(c.original_max_position_embeddings, kMaxPositions, "original_max_position_embeddings", origin);

  if (const json* rs = find_value(j, "rope_scaling")) {
    if (!rs->is_object()) fail(origin, "'rope_scaling' must be an object or null");
    const json* type = find_value(*rs, "type");
    if (!type) type = find_value(*rs, "rope_type");  // newer transformers spell it rope_type
    if (!type || !type->is_string()) fail(origin, "'rope_scaling' has no string \"type\"");
    c.rope_scaling_type = type->get<std::string>();
    if (c.rope_scaling_type != "longrope" && c.rope_scaling_type != "su")
      fail(origin, "unsupported rope_scaling type '" + c.rope_scaling_type + "' (supported: longrope, su)");
    const std::size_t half = static_cast<std::size_t>(c.rotary_dim / 2);
    c.short_factor = get_factors(*rs, "short_factor", half, origin);
    c.long_factor = get_factors(*rs, "long_factor", half, origin);
    if (const json* af = find_value(*rs, "attention_factor")) {
      c.attention_factor = as_double(*af, origin, "rope_scaling.attention_factor");
      if (!(c.attention_factor > 0)) fail(origin, "'rope_scaling.attention_factor' must be positive");
    } else if (c.max_position_embeddings > c.original_max_position_embeddings) {
      if (c.original_max_position_embeddings < 2)
        fail(origin, "'original_max_position_embeddings' must be at least 2 for longrope");
      c.attention_factor = derived_attention_factor(c.max_position_embeddings, c.original_max_position_embeddings);
    }
  }

}

// Sliding window, tied embeddings, special token ids, dtype.
void parse_rest(const json& j, const std::string& origin, Phi3Config& c) {
  if (const json* sw = find_value(j, "sliding_window")) {
    c.sliding_window = as_int(*sw, origin, "sliding_window");
    require_positive(*c.sliding_window, "sliding_window", origin);
    // Phi-3 configs carry sliding_window = max_position_embeddings or larger (2^31-1 means "none"):
    // clamp rather than refuse; nothing is sized from it beyond the context.
    if (*c.sliding_window > kMaxPositions) c.sliding_window = kMaxPositions;
  }

  if (const json* t = find_value(j, "tie_word_embeddings")) {
    if (!t->is_boolean()) fail(origin, "'tie_word_embeddings' must be true or false");
    c.tie_word_embeddings = t->get<bool>();
  }

  c.bos_token_id = get_int_or(j, "bos_token_id", 1, origin);
  c.eos_token_ids = get_id_list(j, "eos_token_id", {32000}, origin);  // transformers' default
  if (const json* p = find_value(j, "pad_token_id")) c.pad_token_id = as_int(*p, origin, "pad_token_id");

  const json* dt = find_value(j, "torch_dtype");
  if (!dt) dt = find_value(j, "dtype");  // newer transformers
  if (dt) {
    if (!dt->is_string()) fail(origin, "'torch_dtype' must be a string");
    c.torch_dtype = dt->get<std::string>();
  }
}

}  // namespace

Phi3Config parse_phi3_config(const std::string& json_text, const std::string& origin) {
  const json j = parse_strict(json_text, origin);
  Phi3Config c;
  c.source_json = json_text;

  if (const json* mt = find_value(j, "model_type")) {
    if (!mt->is_string()) fail(origin, "'model_type' must be a string");
    c.model_type = mt->get<std::string>();
    if (c.model_type != "phi3")
      fail(origin, "unsupported model_type '" + c.model_type + "' (only 'phi3' is supported)");
  }

  parse_sizes(j, origin, c);
  parse_rope(j, origin, c);
  parse_rest(j, origin, c);
  return c;
}

Phi3Config read_phi3_config(const std::string& path) {
  return parse_phi3_config(read_file(path, kMaxConfigBytes), path);
}

std::string phi3_config_to_json(const Phi3Config& c) {
  json j = json::object();
  j["architectures"] = {"Phi3ForCausalLM"};
  j["model_type"] = c.model_type;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["vocab_size"] = c.vocab_size;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  j["partial_rotary_factor"] = c.partial_rotary_factor;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["original_max_position_embeddings"] = c.original_max_position_embeddings;
  if (c.rope_scaling_type.empty()) {
    j["rope_scaling"] = nullptr;
  } else {
    json rs = json::object();
    rs["type"] = c.rope_scaling_type;
    // float -> double is exact, and nlohmann prints doubles so they read back bit-identical.
    rs["short_factor"] = std::vector<double>(c.short_factor.begin(), c.short_factor.end());
    rs["long_factor"] = std::vector<double>(c.long_factor.begin(), c.long_factor.end());
    // Write attention_factor only where the reader would not derive the same value by itself.
    bool explicit_factor = true;
    if (c.max_position_embeddings <= c.original_max_position_embeddings) {
      explicit_factor = c.attention_factor != 1.0;
    } else if (c.original_max_position_embeddings >= 2) {
      explicit_factor =
          c.attention_factor != derived_attention_factor(c.max_position_embeddings, c.original_max_position_embeddings);
    }
    if (explicit_factor) rs["attention_factor"] = c.attention_factor;
    j["rope_scaling"] = std::move(rs);
  }
  j["sliding_window"] = c.sliding_window ? json(*c.sliding_window) : json(nullptr);
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["bos_token_id"] = c.bos_token_id;
  if (c.eos_token_ids.size() == 1) j["eos_token_id"] = c.eos_token_ids[0];
  else j["eos_token_id"] = c.eos_token_ids;
  j["pad_token_id"] = c.pad_token_id ? json(*c.pad_token_id) : json(nullptr);
  j["torch_dtype"] = c.torch_dtype;
  return j.dump(2) + "\n";
}

Phi3Config complete_phi3_config(Phi3Config c, const std::string& origin) {
  if (c.head_dim == 0 && c.num_attention_heads > 0) c.head_dim = c.hidden_size / c.num_attention_heads;
  c.rotary_dim = static_cast<int>(c.head_dim * c.partial_rotary_factor);
  c.attention_factor = 1.0;
  if (c.has_longrope() && c.max_position_embeddings > c.original_max_position_embeddings &&
      c.original_max_position_embeddings >= 2)
    c.attention_factor = derived_attention_factor(c.max_position_embeddings, c.original_max_position_embeddings);
  return parse_phi3_config(phi3_config_to_json(c), origin);
}

GenerationConfig parse_generation_config(const std::string& json_text, const std::string& origin) {
  const json j = parse_strict(json_text, origin);
  GenerationConfig g;
  g.source_json = json_text;
  g.eos_token_ids = get_id_list(j, "eos_token_id", {}, origin);
  if (const json* t = find_value(j, "temperature")) {
    g.temperature = static_cast<float>(as_double(*t, origin, "temperature"));
    if (*g.temperature < 0) fail(origin, "'temperature' must not be negative");
  }
  if (const json* p = find_value(j, "top_p")) {
    g.top_p = static_cast<float>(as_double(*p, origin, "top_p"));
    if (!(*g.top_p > 0 && *g.top_p <= 1)) fail(origin, "'top_p' must be in (0, 1]");
  }
  if (const json* k = find_value(j, "top_k")) {
    g.top_k = as_int(*k, origin, "top_k");
    if (*g.top_k < 0) fail(origin, "'top_k' must not be negative");
  }
  return g;
}

}  // namespace qins
