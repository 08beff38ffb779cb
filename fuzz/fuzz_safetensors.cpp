// libFuzzer entry: drives the safetensors header parser and the config.json / generation_config.json
// readers with the same bytes. Every accepted tensor is converted to float32 so that a view that
// points outside the input is caught by the sanitizer.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "qins/graph/phi3_config.h"
#include "qins/io/safetensors.h"
#include "qins/util/errors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  try {
    auto file = qins::st::File::parse(data, size, "fuzz.safetensors");
    std::size_t total = 0;
    for (const auto& kv : file->tensors()) {
      const qins::st::TensorView& t = kv.second;
      std::vector<float> out(static_cast<std::size_t>(t.numel()));  // numel * size <= input size
      qins::st::to_float32(t, out.data());
      float acc = 0.0f;
      for (float v : out) acc += v;
      volatile float sink = acc;
      (void)sink;
      total += t.nbytes;
    }
    for (const auto& kv : file->metadata()) total += kv.first.size() + kv.second.size();
    volatile std::size_t sink = total;
    (void)sink;
  } catch (const qins::Error&) {
  }
  const std::string text(reinterpret_cast<const char*>(data), size);
  bool parsed = false;
  qins::Phi3Config c;
  try {
    c = qins::parse_phi3_config(text, "fuzz/config.json");
    parsed = true;
  } catch (const qins::Error&) {
  }
  if (parsed) {
    // Whatever parses must serialize and parse back to the same values; an exception escaping
    // here is a finding.
    const qins::Phi3Config back = qins::parse_phi3_config(qins::phi3_config_to_json(c), "fuzz/roundtrip.json");
    if (back.short_factor != c.short_factor || back.long_factor != c.long_factor ||
        back.attention_factor != c.attention_factor || back.rotary_dim != c.rotary_dim ||
        back.head_dim != c.head_dim || back.eos_token_ids != c.eos_token_ids ||
        back.sliding_window != c.sliding_window || back.rope_scaling_type != c.rope_scaling_type)
      __builtin_trap();
  }
  try {
    qins::parse_generation_config(text, "fuzz/generation_config.json");
  } catch (const qins::Error&) {
  }
  return 0;
}
