#include "qins/graph/phi3_layout.h"

#include "qins/util/errors.h"

namespace qins {

std::string layer_tensor_name(int il, const char* suffix) {
  return "model.layers." + std::to_string(il) + "." + suffix;
}

std::vector<int64_t> expected_shape(const Phi3Config& c, const std::string& name) {
  const int64_t hidden = c.hidden_size, inter = c.intermediate_size;
  if (name == "model.embed_tokens.weight" || name == "lm_head.weight") return {c.vocab_size, hidden};
  if (name == "model.norm.weight") return {hidden};
  const std::string prefix = "model.layers.";
  if (name.compare(0, prefix.size(), prefix) == 0) {
    const auto dot = name.find('.', prefix.size());
    const std::string suffix = dot == std::string::npos ? "" : name.substr(dot + 1);
    if (suffix == "input_layernorm.weight" || suffix == "post_attention_layernorm.weight") return {hidden};
    if (suffix == "self_attn.qkv_proj.weight") return {c.qkv_out(), hidden};
    if (suffix == "self_attn.o_proj.weight") return {hidden, int64_t(c.num_attention_heads) * c.head_dim};
    if (suffix == "mlp.gate_up_proj.weight") return {2 * inter, hidden};
    if (suffix == "mlp.down_proj.weight") return {hidden, inter};
  }
  throw Error("unknown Phi-3 tensor '" + name + "'");
}

}  // namespace qins
