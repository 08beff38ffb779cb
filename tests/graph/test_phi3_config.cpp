// config.json and generation_config.json readers: Phi-3 family configs, defaults, longrope/su,
// round trip through phi3_config_to_json, and bad values.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "qins/graph/phi3_config.h"
#include "test_util.h"

using qins::GenerationConfig;
using qins::Phi3Config;
using qins_test::error_of;
using qins_test::TempDir;
using qins_test::write_text;

namespace {

// Shortest text that reads back as the same double.
std::string num(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

// 48 short factors as PHI3.md §1 lists them, written the way the real file does: the float32
// value printed as a double (1.02 -> 1.0199999809265137).
std::vector<double> phi35_short_factors() {
  std::vector<double> nominal = {1.0, 1.02, 1.03, 1.03};
  for (int i = 0; i < 5; ++i) nominal.push_back(1.05);
  for (double v : {1.07, 1.10, 1.11, 1.16, 1.16, 1.17, 1.29, 1.34, 1.68, 1.79, 1.82, 1.85, 1.88, 1.91, 1.94,
                   1.99})
    nominal.push_back(v);
  for (int i = 0; i < 6; ++i) nominal.push_back(2.02);
  for (int i = 0; i < 9; ++i) nominal.push_back(2.03);
  for (double v : {2.08, 2.09, 2.19, 2.22, 2.59, 2.73, 2.75, 2.84}) nominal.push_back(v);
  std::vector<double> out;
  for (double v : nominal) out.push_back(static_cast<double>(static_cast<float>(v)));
  return out;
}

std::vector<double> long_factors(int n) {
  std::vector<double> out;
  for (int i = 0; i < n; ++i) out.push_back(static_cast<double>(static_cast<float>(1.08 + 0.9 * i)));
  out.back() = 64.1;  // not float32-exact: must be stored as float(64.1)
  return out;
}

std::string array_text(const std::vector<double>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + num(v[i]);
  return s + "]";
}

std::string phi35_json() {
  return R"({
  "_name_or_path": "Phi-3.5-mini-instruct",
  "architectures": ["Phi3ForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 1,
  "embd_pdrop": 0.0,
  "eos_token_id": 32000,
  "hidden_act": "silu",
  "hidden_size": 3072,
  "initializer_range": 0.02,
  "intermediate_size": 8192,
  "max_position_embeddings": 131072,
  "model_type": "phi3",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 32,
  "original_max_position_embeddings": 4096,
  "pad_token_id": 32000,
  "resid_pdrop": 0.0,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "long_factor": )" + array_text(long_factors(48)) + R"(,
    "short_factor": )" + array_text(phi35_short_factors()) + R"(,
    "type": "longrope"
  },
  "rope_theta": 10000.0,
  "sliding_window": 262144,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.43.3",
  "use_cache": true,
  "vocab_size": 32064
})";
}

const char* kMini4k = R"({
  "architectures": ["Phi3ForCausalLM"], "model_type": "phi3",
  "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 32,
  "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32064,
  "max_position_embeddings": 4096, "original_max_position_embeddings": 4096,
  "rope_scaling": null, "sliding_window": 2047, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
  "bos_token_id": 1, "eos_token_id": [32000, 32007], "pad_token_id": 32000,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16"})";

// Phi-3-medium-like grouped-query attention.
const char* kGqa = R"({"model_type": "phi3", "hidden_size": 5120, "intermediate_size": 17920,
  "num_hidden_layers": 40, "num_attention_heads": 40, "num_key_value_heads": 10, "vocab_size": 32064,
  "max_position_embeddings": 4096, "rope_scaling": null, "sliding_window": 2047})";

// Only the required keys.
const char* kMinimal = R"({"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
  "num_attention_heads": 4, "vocab_size": 100})";

// A small config with its rope_scaling replaced by `rope` (JSON text).
std::string small_with_rope(const std::string& rope, const std::string& extra = "") {
  return R"({"model_type": "phi3", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "vocab_size": 100, "max_position_embeddings": 512,
    "original_max_position_embeddings": 64, )" + extra + R"("rope_scaling": )" + rope + "}";
}

std::string factors8(double start) {
  std::vector<double> v;
  for (int i = 0; i < 8; ++i) v.push_back(start + 0.25 * i);
  return array_text(v);
}

void expect_same(const Phi3Config& a, const Phi3Config& b) {
  EXPECT_EQ(a.model_type, b.model_type);
  EXPECT_EQ(a.hidden_size, b.hidden_size);
  EXPECT_EQ(a.intermediate_size, b.intermediate_size);
  EXPECT_EQ(a.num_hidden_layers, b.num_hidden_layers);
  EXPECT_EQ(a.num_attention_heads, b.num_attention_heads);
  EXPECT_EQ(a.num_key_value_heads, b.num_key_value_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.rms_norm_eps, b.rms_norm_eps);
  EXPECT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_EQ(a.partial_rotary_factor, b.partial_rotary_factor);
  EXPECT_EQ(a.max_position_embeddings, b.max_position_embeddings);
  EXPECT_EQ(a.original_max_position_embeddings, b.original_max_position_embeddings);
  EXPECT_EQ(a.rope_scaling_type, b.rope_scaling_type);
  EXPECT_EQ(a.short_factor, b.short_factor);
  EXPECT_EQ(a.long_factor, b.long_factor);
  EXPECT_EQ(a.sliding_window, b.sliding_window);
  EXPECT_EQ(a.tie_word_embeddings, b.tie_word_embeddings);
  EXPECT_EQ(a.bos_token_id, b.bos_token_id);
  EXPECT_EQ(a.eos_token_ids, b.eos_token_ids);
  EXPECT_EQ(a.pad_token_id, b.pad_token_id);
  EXPECT_EQ(a.torch_dtype, b.torch_dtype);
  EXPECT_EQ(a.rotary_dim, b.rotary_dim);
  EXPECT_EQ(a.attention_factor, b.attention_factor);
}

void expect_round_trip(const Phi3Config& c) {
  const std::string text = qins::phi3_config_to_json(c);
  const Phi3Config back = qins::parse_phi3_config(text, "roundtrip.json");
  expect_same(c, back);
  EXPECT_EQ(back.source_json, text);
}

std::string config_error(const std::string& text) {
  return error_of([&] { qins::parse_phi3_config(text, "bad/config.json"); });
}

}  // namespace

TEST(Phi3Config, Phi35MiniInstruct) {
  const std::string text = phi35_json();
  const Phi3Config c = qins::parse_phi3_config(text, "config.json");
  EXPECT_EQ(c.model_type, "phi3");
  EXPECT_EQ(c.hidden_size, 3072);
  EXPECT_EQ(c.intermediate_size, 8192);
  EXPECT_EQ(c.num_hidden_layers, 32);
  EXPECT_EQ(c.num_attention_heads, 32);
  EXPECT_EQ(c.num_key_value_heads, 32);
  EXPECT_EQ(c.head_dim, 96);
  EXPECT_EQ(c.rotary_dim, 96);
  EXPECT_EQ(c.n_rep(), 1);
  EXPECT_EQ(c.qkv_out(), 3 * 3072);
  EXPECT_EQ(c.vocab_size, 32064);
  EXPECT_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.partial_rotary_factor, 1.0);
  EXPECT_EQ(c.max_position_embeddings, 131072);
  EXPECT_EQ(c.original_max_position_embeddings, 4096);
  EXPECT_EQ(c.rope_scaling_type, "longrope");
  EXPECT_TRUE(c.has_longrope());
  const auto sf = phi35_short_factors();
  const auto lf = long_factors(48);
  ASSERT_EQ(c.short_factor.size(), 48u);
  ASSERT_EQ(c.long_factor.size(), 48u);
  for (int i = 0; i < 48; ++i) {
    EXPECT_EQ(c.short_factor[i], static_cast<float>(sf[i])) << i;
    EXPECT_EQ(c.long_factor[i], static_cast<float>(lf[i])) << i;
  }
  EXPECT_EQ(c.short_factor[1], 1.0199999809265137f);
  EXPECT_EQ(c.long_factor[47], static_cast<float>(64.1));
  // sqrt(1 + ln 32 / ln 4096)
  EXPECT_NEAR(c.attention_factor, 1.1902380714238083, 1e-15);
  EXPECT_EQ(c.sliding_window, 262144);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{32000});
  EXPECT_EQ(c.pad_token_id, 32000);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  EXPECT_EQ(c.source_json, text);
  expect_round_trip(c);
}

TEST(Phi3Config, Phi3Mini4k) {
  const Phi3Config c = qins::parse_phi3_config(kMini4k, "config.json");
  EXPECT_TRUE(c.rope_scaling_type.empty());
  EXPECT_FALSE(c.has_longrope());
  EXPECT_TRUE(c.long_factor.empty());
  EXPECT_EQ(c.attention_factor, 1.0);
  EXPECT_EQ(c.sliding_window, 2047);
  EXPECT_EQ(c.max_position_embeddings, 4096);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int>{32000, 32007}));
  expect_round_trip(c);
}

TEST(Phi3Config, GroupedQueryAttention) {
  const Phi3Config c = qins::parse_phi3_config(kGqa, "config.json");
  EXPECT_EQ(c.num_key_value_heads, 10);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.n_rep(), 4);
  EXPECT_EQ(c.qkv_out(), (40 + 2 * 10) * 128);
  EXPECT_EQ(c.original_max_position_embeddings, 4096);
  expect_round_trip(c);
}

TEST(Phi3Config, MissingKeysTakeDefaults) {
  const Phi3Config c = qins::parse_phi3_config(kMinimal, "config.json");
  EXPECT_EQ(c.model_type, "phi3");
  EXPECT_EQ(c.num_key_value_heads, 4);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.rotary_dim, 16);
  EXPECT_EQ(c.partial_rotary_factor, 1.0);
  EXPECT_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.max_position_embeddings, 4096);
  EXPECT_EQ(c.original_max_position_embeddings, 4096);
  EXPECT_TRUE(c.rope_scaling_type.empty());
  EXPECT_EQ(c.attention_factor, 1.0);
  EXPECT_FALSE(c.sliding_window.has_value());
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{32000});
  EXPECT_FALSE(c.pad_token_id.has_value());
  EXPECT_EQ(c.torch_dtype, "float32");
  expect_round_trip(c);

  // original_max_position_embeddings follows max_position_embeddings when missing.
  const std::string t = R"({"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "vocab_size": 100, "max_position_embeddings": 777,
    "sliding_window": null, "pad_token_id": null, "tie_word_embeddings": true})";
  const Phi3Config d = qins::parse_phi3_config(t, "config.json");
  EXPECT_EQ(d.original_max_position_embeddings, 777);
  EXPECT_FALSE(d.sliding_window.has_value());
  EXPECT_FALSE(d.pad_token_id.has_value());
  EXPECT_TRUE(d.tie_word_embeddings);
  expect_round_trip(d);
}

TEST(Phi3Config, SuTypeIsLongrope) {
  const Phi3Config c = qins::parse_phi3_config(
      small_with_rope(R"({"type": "su", "short_factor": )" + factors8(1.0) + R"(, "long_factor": )" +
                      factors8(2.0) + "}"),
      "config.json");
  EXPECT_EQ(c.rope_scaling_type, "su");
  EXPECT_TRUE(c.has_longrope());
  EXPECT_EQ(c.short_factor.size(), 8u);
  EXPECT_EQ(c.long_factor[7], 3.75f);
  EXPECT_DOUBLE_EQ(c.attention_factor, std::sqrt(1.0 + std::log(512.0 / 64) / std::log(64.0)));
  expect_round_trip(c);
}

TEST(Phi3Config, RopeTypeKeyAndExplicitAttentionFactor) {
  const Phi3Config c = qins::parse_phi3_config(
      small_with_rope(R"({"rope_type": "longrope", "attention_factor": 1.25, "short_factor": )" + factors8(1.0) +
                      R"(, "long_factor": )" + factors8(2.0) + "}"),
      "config.json");
  EXPECT_EQ(c.rope_scaling_type, "longrope");
  EXPECT_EQ(c.attention_factor, 1.25);
  expect_round_trip(c);
}

TEST(Phi3Config, LongropeWithoutExtensionHasUnitAttentionFactor) {
  // max == original: no extension, so no attention scaling even though factors are present.
  std::string t = small_with_rope(R"({"type": "longrope", "short_factor": )" + factors8(1.0) +
                                  R"(, "long_factor": )" + factors8(2.0) + "}");
  t.replace(t.find("\"max_position_embeddings\": 512"), 30, "\"max_position_embeddings\": 64");
  const Phi3Config c = qins::parse_phi3_config(t, "config.json");
  EXPECT_EQ(c.max_position_embeddings, 64);
  EXPECT_TRUE(c.has_longrope());
  EXPECT_EQ(c.attention_factor, 1.0);
  expect_round_trip(c);
}

// Found by the fuzzer: original_max 1 < max with an explicit factor of 1.0 must still round-trip
// (the reader cannot derive a factor from ln(1) = 0, so the writer must spell it out).
TEST(Phi3Config, ExplicitAttentionFactorWhereNoneCanBeDerived) {
  std::string t = small_with_rope(R"({"type": "longrope", "attention_factor": 1.0, "short_factor": )" +
                                  factors8(1.0) + R"(, "long_factor": )" + factors8(2.0) + "}");
  t.replace(t.find("\"original_max_position_embeddings\": 64"), 38, "\"original_max_position_embeddings\": 1");
  const Phi3Config c = qins::parse_phi3_config(t, "config.json");
  EXPECT_EQ(c.original_max_position_embeddings, 1);
  EXPECT_EQ(c.attention_factor, 1.0);
  expect_round_trip(c);
  std::string no_factor = t;
  no_factor.replace(no_factor.find("\"attention_factor\": 1.0, "), 25, "");
  EXPECT_ERROR_NAMES(config_error(no_factor), "bad/config.json",
                     "'original_max_position_embeddings' must be at least 2 for longrope");
}

TEST(Phi3Config, PartialRotaryFactor) {
  // head_dim 16 * 0.5 = 8 rotated dims: factors hold 4 values.
  const std::string t = R"({"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "vocab_size": 100, "partial_rotary_factor": 0.5,
    "max_position_embeddings": 256, "original_max_position_embeddings": 64,
    "rope_scaling": {"type": "longrope", "short_factor": [1, 1, 1, 1], "long_factor": [2, 2, 2, 2]}})";
  const Phi3Config c = qins::parse_phi3_config(t, "config.json");
  EXPECT_EQ(c.rotary_dim, 8);
  EXPECT_EQ(c.short_factor.size(), 4u);
  expect_round_trip(c);
  std::string bad = t;
  bad.replace(bad.find("[1, 1, 1, 1]"), 12, "[1, 1, 1, 1, 1, 1, 1, 1]");
  EXPECT_ERROR_NAMES(config_error(bad), "bad/config.json",
                     "'rope_scaling.short_factor' has 8 values, expected rotary_dim/2 = 4");
}

TEST(Phi3Config, ExplicitHeadDim) {
  const std::string t = R"({"hidden_size": 60, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "head_dim": 16, "vocab_size": 100})";
  const Phi3Config c = qins::parse_phi3_config(t, "config.json");
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.qkv_out(), 3 * 4 * 16);
  expect_round_trip(c);
}

TEST(Phi3Config, ReadFromFile) {
  TempDir dir;
  write_text(dir.file("config.json"), kGqa);
  const Phi3Config c = qins::read_phi3_config(dir.file("config.json"));
  EXPECT_EQ(c.n_rep(), 4);
  EXPECT_EQ(c.source_json, kGqa);
  EXPECT_ERROR_NAMES(error_of([&] { qins::read_phi3_config(dir.file("nope.json")); }), "nope.json",
                     "cannot open");
  write_text(dir.file("broken.json"), "{\"hidden_size\": 64,");
  EXPECT_ERROR_NAMES(error_of([&] { qins::read_phi3_config(dir.file("broken.json")); }), "broken.json",
                     "invalid JSON");
}

// ------------------------------------------------------------------------------------------
// Bad values: each names the file and the problem.

namespace {
// kMinimal with `key` replaced by (or added as) `value`.
std::string minimal_with(const std::string& key, const std::string& value) {
  nlohmann::json j = nlohmann::json::parse(kMinimal);
  j[key] = nlohmann::json::parse(value);
  return j.dump();
}
std::string minimal_without(const std::string& key) {
  nlohmann::json j = nlohmann::json::parse(kMinimal);
  j.erase(key);
  return j.dump();
}
}  // namespace

TEST(Phi3ConfigReject, OtherModelType) {
  EXPECT_ERROR_NAMES(config_error(minimal_with("model_type", "\"llama\"")), "bad/config.json",
                     "unsupported model_type 'llama'");
  EXPECT_ERROR_NAMES(config_error(minimal_with("model_type", "3")), "bad/config.json",
                     "'model_type' must be a string");
}

TEST(Phi3ConfigReject, UnsupportedRopeScalingType) {
  EXPECT_ERROR_NAMES(config_error(small_with_rope(R"({"type": "yarn", "factor": 4.0})")), "bad/config.json",
                     "unsupported rope_scaling type 'yarn'");
  EXPECT_ERROR_NAMES(config_error(small_with_rope(R"({"type": "linear", "factor": 2.0})")), "bad/config.json",
                     "unsupported rope_scaling type 'linear'");
  EXPECT_ERROR_NAMES(config_error(small_with_rope(R"({"factor": 2.0})")), "bad/config.json",
                     "'rope_scaling' has no string \"type\"");
  EXPECT_ERROR_NAMES(config_error(small_with_rope("[1, 2]")), "bad/config.json",
                     "'rope_scaling' must be an object or null");
}

TEST(Phi3ConfigReject, WrongFactorCountOrValues) {
  EXPECT_ERROR_NAMES(config_error(small_with_rope(R"({"type": "longrope", "short_factor": [1, 2],
                                                    "long_factor": )" + factors8(1) + "}")),
                     "bad/config.json", "'rope_scaling.short_factor' has 2 values, expected rotary_dim/2 = 8");
  EXPECT_ERROR_NAMES(config_error(small_with_rope(R"({"type": "longrope", "short_factor": )" + factors8(1) + "}")),
                     "bad/config.json", "'rope_scaling.long_factor' must be an array of numbers");
  EXPECT_ERROR_NAMES(config_error(small_with_rope(R"({"type": "longrope", "short_factor": )" + factors8(1) +
                                                  R"(, "long_factor": [1, 1, 1, 1, 1, 1, 1, "x"]})")),
                     "bad/config.json", "'rope_scaling.long_factor' must be a number");
  EXPECT_ERROR_NAMES(config_error(small_with_rope(R"({"type": "longrope", "short_factor": )" + factors8(1) +
                                                  R"(, "long_factor": [1, 1, 1, 1, 1, 1, 1, 0]})")),
                     "bad/config.json", "not a positive finite float32");
  EXPECT_ERROR_NAMES(config_error(small_with_rope(R"({"type": "longrope", "short_factor": )" + factors8(1) +
                                                  R"(, "long_factor": [1, 1, 1, 1, 1, 1, 1, 1e300]})")),
                     "bad/config.json", "not a positive finite float32");
}

TEST(Phi3ConfigReject, NonPositiveSizes) {
  for (const char* key : {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                          "vocab_size", "num_key_value_heads", "head_dim", "max_position_embeddings",
                          "original_max_position_embeddings", "sliding_window"}) {
    EXPECT_ERROR_NAMES(config_error(minimal_with(key, "0")), "bad/config.json",
                       std::string("'") + key + "' must be positive, got 0");
    EXPECT_ERROR_NAMES(config_error(minimal_with(key, "-3")), "bad/config.json",
                       std::string("'") + key + "' must be positive, got -3");
  }
}

// Issue 16 item 2: every count and size has an upper bound, checked before anything is sized
// from it (num_hidden_layers 2147483647 once made convert build tensor names without end).
TEST(Phi3ConfigReject, HugeSizes) {
  for (const char* key : {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                          "vocab_size", "num_key_value_heads", "head_dim", "max_position_embeddings",
                          "original_max_position_embeddings"}) {
    EXPECT_ERROR_NAMES(config_error(minimal_with(key, "2147483647")), "bad/config.json",
                       std::string("'") + key + "' = 2147483647 is larger than the limit");
  }
  // A window wider than any context is clamped, not refused (HF writes 2^31-1 for "none").
  const Phi3Config c = qins::parse_phi3_config(minimal_with("sliding_window", "2147483647"), "ok/config.json");
  EXPECT_EQ(*c.sliding_window, 1 << 24);
}

TEST(Phi3ConfigReject, MissingRequiredKeys) {
  for (const char* key : {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                          "vocab_size"})
    EXPECT_ERROR_NAMES(config_error(minimal_without(key)), "bad/config.json",
                       std::string("missing required key '") + key + "'");
}

TEST(Phi3ConfigReject, Divisibility) {
  EXPECT_ERROR_NAMES(config_error(minimal_with("hidden_size", "66")), "bad/config.json",
                     "hidden_size 66 is not divisible by num_attention_heads 4");
  EXPECT_ERROR_NAMES(config_error(minimal_with("num_key_value_heads", "3")), "bad/config.json",
                     "num_attention_heads 4 is not divisible by num_key_value_heads 3");
  EXPECT_ERROR_NAMES(config_error(minimal_with("partial_rotary_factor", "0.1")), "bad/config.json",
                     "rotary dimension head_dim * partial_rotary_factor = 1 must be positive and even");
  EXPECT_ERROR_NAMES(config_error(minimal_with("partial_rotary_factor", "1.5")), "bad/config.json",
                     "'partial_rotary_factor' must be in (0, 1]");
}

TEST(Phi3ConfigReject, WrongTypes) {
  EXPECT_ERROR_NAMES(config_error(minimal_with("hidden_size", "\"64\"")), "bad/config.json",
                     "'hidden_size' must be an integer");
  EXPECT_ERROR_NAMES(config_error(minimal_with("hidden_size", "64.0")), "bad/config.json",
                     "'hidden_size' must be an integer");
  EXPECT_ERROR_NAMES(config_error(minimal_with("hidden_size", "9999999999")), "bad/config.json",
                     "'hidden_size' = 9999999999 is out of range");
  EXPECT_ERROR_NAMES(config_error(minimal_with("rms_norm_eps", "\"1e-5\"")), "bad/config.json",
                     "'rms_norm_eps' must be a number");
  EXPECT_ERROR_NAMES(config_error(minimal_with("rms_norm_eps", "0")), "bad/config.json",
                     "'rms_norm_eps' must be positive");
  EXPECT_ERROR_NAMES(config_error(minimal_with("rope_theta", "-1")), "bad/config.json",
                     "'rope_theta' must be positive");
  EXPECT_ERROR_NAMES(config_error(minimal_with("tie_word_embeddings", "1")), "bad/config.json",
                     "'tie_word_embeddings' must be true or false");
  EXPECT_ERROR_NAMES(config_error(minimal_with("eos_token_id", "[32000, \"x\"]")), "bad/config.json",
                     "'eos_token_id' must be an integer");
  EXPECT_ERROR_NAMES(config_error(minimal_with("eos_token_id", "-1")), "bad/config.json",
                     "'eos_token_id' has a negative id -1");
  EXPECT_ERROR_NAMES(config_error(minimal_with("sliding_window", "true")), "bad/config.json",
                     "'sliding_window' must be an integer");
  EXPECT_ERROR_NAMES(config_error(minimal_with("torch_dtype", "16")), "bad/config.json",
                     "'torch_dtype' must be a string");
}

TEST(Phi3ConfigReject, BadJson) {
  EXPECT_ERROR_NAMES(config_error("{\"hidden_size\": 64"), "bad/config.json", "invalid JSON");
  EXPECT_ERROR_NAMES(config_error("[1, 2]"), "bad/config.json", "top level is not a JSON object");
  EXPECT_ERROR_NAMES(config_error("{\"a\": \"\xff\"}"), "bad/config.json", "UTF-8");
  EXPECT_ERROR_NAMES(config_error(std::string(kMinimal) + '\0' + "junk"), "bad/config.json", "NUL byte");
  EXPECT_ERROR_NAMES(config_error(R"({"hidden_size": 64, "hidden_size": 32})"), "bad/config.json",
                     "duplicate key 'hidden_size'");
  EXPECT_ERROR_NAMES(config_error(std::string(100, '[') + std::string(100, ']')), "bad/config.json",
                     "nests deeper than 64 levels");
}

// ------------------------------------------------------------------------------------------
// generation_config.json

TEST(GenerationConfig, Phi35) {
  const std::string t = R"({"_from_model_config": true, "bos_token_id": 1,
    "eos_token_id": [32007, 32001, 32000], "pad_token_id": 32000, "transformers_version": "4.43.3"})";
  const GenerationConfig g = qins::parse_generation_config(t, "generation_config.json");
  EXPECT_EQ(g.eos_token_ids, (std::vector<int>{32007, 32001, 32000}));
  EXPECT_FALSE(g.temperature.has_value());
  EXPECT_FALSE(g.top_p.has_value());
  EXPECT_FALSE(g.top_k.has_value());
  EXPECT_EQ(g.source_json, t);
}

TEST(GenerationConfig, SingleIdAndSampling) {
  const GenerationConfig g = qins::parse_generation_config(
      R"({"eos_token_id": 2, "temperature": 0.7, "top_p": 0.9, "top_k": 40, "do_sample": true})", "g.json");
  EXPECT_EQ(g.eos_token_ids, std::vector<int>{2});
  EXPECT_EQ(g.temperature, 0.7f);
  EXPECT_EQ(g.top_p, 0.9f);
  EXPECT_EQ(g.top_k, 40);
  const GenerationConfig e = qins::parse_generation_config("{}", "g.json");
  EXPECT_TRUE(e.eos_token_ids.empty());
}

TEST(GenerationConfig, Rejects) {
  auto err = [](const std::string& t) {
    return error_of([&] { qins::parse_generation_config(t, "dir/generation_config.json"); });
  };
  EXPECT_ERROR_NAMES(err(R"({"eos_token_id": "x"})"), "dir/generation_config.json",
                     "'eos_token_id' must be an integer");
  EXPECT_ERROR_NAMES(err(R"({"temperature": "hot"})"), "dir/generation_config.json",
                     "'temperature' must be a number");
  EXPECT_ERROR_NAMES(err(R"({"temperature": -1})"), "dir/generation_config.json",
                     "'temperature' must not be negative");
  EXPECT_ERROR_NAMES(err(R"({"top_p": 1.5})"), "dir/generation_config.json", "'top_p' must be in (0, 1]");
  EXPECT_ERROR_NAMES(err(R"({"top_k": 1.5})"), "dir/generation_config.json", "'top_k' must be an integer");
  EXPECT_ERROR_NAMES(err("not json"), "dir/generation_config.json", "invalid JSON");
}
