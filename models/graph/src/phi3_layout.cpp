// The one table of Phi-3 tensor names (llama.cpp's llama-arch.cpp in miniature).
#include "qins/graph/phi3_layout.h"

#include "qins/graph/phi3_model.h"
#include "qins/util/errors.h"

namespace qins {

namespace {

struct LayerTensor {
  const char* suffix;
  TensorKind kind;
  LayerSlot slot;
};
// One layer's tensors in file order.
constexpr LayerTensor kLayerTensors[] = {
    {"input_layernorm.weight", TensorKind::Norm, LayerSlot::InputNorm},
    {"self_attn.qkv_proj.weight", TensorKind::Projection, LayerSlot::Qkv},
    {"self_attn.o_proj.weight", TensorKind::Projection, LayerSlot::O},
    {"post_attention_layernorm.weight", TensorKind::Norm, LayerSlot::PostNorm},
    {"mlp.gate_up_proj.weight", TensorKind::Projection, LayerSlot::GateUp},
    {"mlp.down_proj.weight", TensorKind::Projection, LayerSlot::Down},
};
constexpr const char* kEmbedName = "model.embed_tokens.weight";
constexpr const char* kFinalNormName = "model.norm.weight";
constexpr const char* kLmHeadName = "lm_head.weight";

std::vector<int64_t> layer_shape(const Phi3Config& c, LayerSlot slot) {
  const int64_t hidden = c.hidden_size, inter = c.intermediate_size;
  switch (slot) {
    case LayerSlot::InputNorm:
    case LayerSlot::PostNorm: return {hidden};
    case LayerSlot::Qkv: return {c.qkv_out(), hidden};
    case LayerSlot::O: return {hidden, int64_t(c.num_attention_heads) * c.head_dim};
    case LayerSlot::GateUp: return {2 * inter, hidden};
    case LayerSlot::Down: return {hidden, inter};
    default: break;
  }
  throw Error("not a layer slot");
}

}  // namespace

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_str(const std::vector<int64_t>& shape, bool compact) {
  std::string out = compact ? "" : "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? (compact ? "x" : ", ") : "") + std::to_string(shape[i]);
  return compact ? out : out + "]";
}

std::string layer_tensor_name(int il, const char* suffix) {
  return "model.layers." + std::to_string(il) + "." + suffix;
}

std::vector<TensorSpec> phi3_tensors(const Phi3Config& c) {
  const int64_t hidden = c.hidden_size;
  std::vector<TensorSpec> out;
  out.push_back({kEmbedName, {c.vocab_size, hidden}, TensorKind::Embedding, -1, LayerSlot::Embed});
  for (int il = 0; il < c.num_hidden_layers; ++il)
    for (const LayerTensor& t : kLayerTensors)
      out.push_back({layer_tensor_name(il, t.suffix), layer_shape(c, t.slot), t.kind, il, t.slot});
  out.push_back({kFinalNormName, {hidden}, TensorKind::Norm, -1, LayerSlot::FinalNorm});
  if (!c.tie_word_embeddings)
    out.push_back({kLmHeadName, {c.vocab_size, hidden}, TensorKind::LmHead, -1, LayerSlot::LmHead});
  return out;
}

int64_t phi3_numel(const std::vector<TensorSpec>& specs) {
  int64_t n = 0;
  for (const auto& s : specs) n += s.numel();
  return n;
}

std::vector<int64_t> expected_shape(const Phi3Config& c, const std::string& name) {
  // lm_head has a shape even for a tied config (a file may carry a copy).
  if (name == kLmHeadName) return {c.vocab_size, c.hidden_size};
  const std::string prefix = "model.layers.";
  if (name.compare(0, prefix.size(), prefix) == 0) {
    // Any layer index: the suffix alone decides the shape.
    const auto dot = name.find('.', prefix.size());
    const std::string suffix = dot == std::string::npos ? "" : name.substr(dot + 1);
    for (const LayerTensor& t : kLayerTensors)
      if (suffix == t.suffix) return layer_shape(c, t.slot);
  } else {
    Phi3Config one = c;
    one.num_hidden_layers = 0;
    for (const TensorSpec& s : phi3_tensors(one))
      if (s.name == name) return s.shape;
  }
  throw Error("unknown Phi-3 tensor '" + name + "'");
}

namespace {

std::unique_ptr<LinearOp> default_tied_head(EmbeddingOp& e) {
  if (auto* q = dynamic_cast<QinsEmbedding*>(&e)) return std::make_unique<QinsLinear>(core::ProjectiveLinear(q->quantized()));
  if (auto* d = dynamic_cast<DenseEmbedding*>(&e)) return std::make_unique<DenseLinear>(d->table());
  throw Error("tied lm_head: unknown embedding type");
}

}  // namespace

Phi3Weights assemble_weights(const Phi3Config& c, const WeightMakers& make) {
  const std::vector<TensorSpec> specs = phi3_tensors(c);
  Phi3Weights w;
  w.config = c;
  w.layers.resize(static_cast<size_t>(c.num_hidden_layers));
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorSpec& s = specs[i];
    Phi3Layer* L = s.layer >= 0 ? &w.layers[static_cast<size_t>(s.layer)] : nullptr;
    switch (s.slot) {
      case LayerSlot::Embed:
        w.embed = make.embedding(s);
        if (c.tie_word_embeddings) w.lm_head = make.tied_head ? make.tied_head(*w.embed) : default_tied_head(*w.embed);
        break;
      case LayerSlot::InputNorm: L->input_norm = make.norm(s); break;
      case LayerSlot::Qkv: L->qkv = make.linear(s); break;
      case LayerSlot::O: L->o = make.linear(s); break;
      case LayerSlot::PostNorm: L->post_norm = make.norm(s); break;
      case LayerSlot::GateUp: L->gate_up = make.linear(s); break;
      case LayerSlot::Down: L->down = make.linear(s); break;
      case LayerSlot::FinalNorm: w.final_norm = make.norm(s); break;
      case LayerSlot::LmHead: w.lm_head = make.linear(s); break;
    }
    if (make.after) make.after(i, specs);
  }
  return w;
}

std::vector<WeightRef> weight_refs(Phi3Weights& w, const std::vector<TensorSpec>& specs) {
  std::vector<WeightRef> out;
  out.reserve(specs.size());
  for (const TensorSpec& s : specs) {
    WeightRef r{&s};
    Phi3Layer* L = s.layer >= 0 ? &w.layers.at(static_cast<size_t>(s.layer)) : nullptr;
    switch (s.slot) {
      case LayerSlot::Embed: r.embedding = w.embed.get(); break;
      case LayerSlot::InputNorm: r.norm = &L->input_norm; break;
      case LayerSlot::Qkv: r.linear = L->qkv.get(); break;
      case LayerSlot::O: r.linear = L->o.get(); break;
      case LayerSlot::PostNorm: r.norm = &L->post_norm; break;
      case LayerSlot::GateUp: r.linear = L->gate_up.get(); break;
      case LayerSlot::Down: r.linear = L->down.get(); break;
      case LayerSlot::FinalNorm: r.norm = &w.final_norm; break;
      case LayerSlot::LmHead: r.linear = w.lm_head.get(); break;
    }
    out.push_back(r);
  }
  return out;
}

}  // namespace qins
