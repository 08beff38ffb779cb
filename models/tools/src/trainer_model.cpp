// The trainer's model side: the config it writes, fresh weights, the trainable tensors by
// layout name, the Hugging Face folder it saves, and conversations as training examples.
#include "qins/tools/trainer.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "qins/graph/phi3_layout.h"
#include "qins/io/safetensors.h"
#include "qins/tools/chat_corpus.h"
#include "qins/util/errors.h"
#include "qins/util/files.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace qins::train {
namespace {

std::vector<uint8_t> tensor_bytes(const torch::Tensor& t, bool bf16) {
  auto f = t.detach().to(torch::kFloat32).contiguous();
  const float* p = f.data_ptr<float>();
  const int64_t n = f.numel();
  std::vector<uint8_t> out(static_cast<size_t>(n) * (bf16 ? 2 : 4));
  if (!bf16) {
    std::memcpy(out.data(), p, out.size());
    return out;
  }
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = st::float_to_bf16(p[i]);
    std::memcpy(out.data() + i * 2, &h, 2);
  }
  return out;
}

}  // namespace

Example make_example(const std::vector<tok::ChatTurn>& turns, const tok::Tokenizer& tok) {
  const std::vector<int> ids = tok.encode_chat(turns, false);
  Example e;
  e.target = assistant_mask(ids, tok);
  e.ids.assign(ids.begin(), ids.end());
  return e;
}

std::vector<Example> load_examples(const std::string& path, const tok::Tokenizer& tok) {
  std::vector<Example> out;
  read_chat_jsonl(path, [&](const std::vector<tok::ChatTurn>& turns, const std::string& where) {
    bool has_assistant = false;
    for (const auto& t : turns) has_assistant |= t.role == tok::ChatRole::Assistant;
    if (!has_assistant) throw Error(where + ": conversation has no assistant message to learn from");
    out.push_back(make_example(turns, tok));
    return true;
  });
  if (out.empty()) throw Error(path + ": no conversations");
  return out;
}

Phi3Config make_config(const TrainOptions& o, const tok::Tokenizer& tok) {
  if (o.hidden <= 0 || o.hidden % 64 != 0) throw Error("--hidden must be a positive multiple of 64");
  if (o.heads <= 0 || o.hidden % o.heads != 0) throw Error("--heads must divide --hidden");
  if (o.kv_heads <= 0 || o.heads % o.kv_heads != 0) throw Error("--kv-heads must divide --heads");
  if ((o.hidden / o.heads) % 2 != 0) throw Error("head size (hidden / heads) must be even for RoPE");
  if (o.layers <= 0 || o.intermediate <= 0) throw Error("--layers and --intermediate must be positive");
  const int eot = tok.token_id("<|endoftext|>");
  // Phi-3.5 pads its 32011 ids to 32064 rows; pad to a multiple of 64 the same way.
  const int vocab = (tok.vocab_size() + 63) / 64 * 64;
  Phi3Config c;
  c.hidden_size = o.hidden;
  c.intermediate_size = o.intermediate;
  c.num_hidden_layers = o.layers;
  c.num_attention_heads = o.heads;
  c.num_key_value_heads = o.kv_heads;
  c.vocab_size = vocab;
  c.max_position_embeddings = c.original_max_position_embeddings = 4096;
  c.eos_token_ids = {eot};
  c.pad_token_id = eot;
  c.torch_dtype = o.bf16 ? "bfloat16" : "float32";
  return complete_phi3_config(c, "trainer config");
}

Phi3Weights init_weights(const Phi3Config& c, uint64_t seed) {
  torch::manual_seed(seed);
  // GPT-2's init: N(0, 0.02), the projections into the residual stream scaled by 1/sqrt(2 L).
  const double std_dev = 0.02, resid = 0.02 / std::sqrt(2.0 * c.num_hidden_layers);
  auto normal = [](const std::vector<int64_t>& shape, double s) {
    return (torch::randn(shape, torch::kFloat32) * s).requires_grad_(true);
  };
  WeightMakers make;
  make.embedding = [&](const TensorSpec& s) { return std::make_unique<DenseEmbedding>(normal(s.shape, std_dev)); };
  make.norm = [](const TensorSpec& s) { return torch::ones(s.shape, torch::kFloat32).requires_grad_(true); };
  make.linear = [&](const TensorSpec& s) {
    const bool into_residual = s.slot == LayerSlot::O || s.slot == LayerSlot::Down;
    return std::make_unique<DenseLinear>(normal(s.shape, into_residual ? resid : std_dev));
  };
  return assemble_weights(c, make);
}

std::vector<std::pair<std::string, torch::Tensor>> named_parameters(Phi3Weights& w) {
  const std::vector<TensorSpec> specs = phi3_tensors(w.config);
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const WeightRef& r : weight_refs(w, specs)) {
    if (r.norm) {
      out.emplace_back(r.spec->name, *r.norm);
    } else if (r.embedding) {
      auto* emb = dynamic_cast<DenseEmbedding*>(r.embedding);
      if (!emb) throw Error("training needs a dense embedding");
      out.emplace_back(r.spec->name, emb->table());
    } else {
      auto* d = dynamic_cast<DenseLinear*>(r.linear);
      if (!d) throw Error("training needs dense weights (load with WeightMode::F32)");
      out.emplace_back(r.spec->name, d->weight());
    }
  }
  return out;
}

void save_hf_model(Phi3Weights& w, const tok::Tokenizer& tok, const std::string& dir_str, bool bf16) {
  const fs::path dir(dir_str);
  fs::create_directories(dir);
  Phi3Config c = w.config;
  c.torch_dtype = bf16 ? "bfloat16" : "float32";
  write_file_atomic((dir / "config.json").string(), phi3_config_to_json(c));
  const int eot = tok.token_id("<|endoftext|>"), assistant = tok.token_id("<|assistant|>"), end = tok.token_id("<|end|>");
  const json gen = {{"_from_model_config", true}, {"bos_token_id", 1}, {"eos_token_id", {eot, assistant, end}},
                    {"pad_token_id", eot}};
  write_file_atomic((dir / "generation_config.json").string(), gen.dump(2) + "\n");
  std::vector<st::TensorData> tensors;
  for (auto& [name, t] : named_parameters(w)) {
    st::TensorData d;
    d.name = name;
    d.dtype = bf16 ? st::DType::BF16 : st::DType::F32;
    d.shape = t.sizes().vec();
    d.bytes = tensor_bytes(t, bf16);
    tensors.push_back(std::move(d));
  }
  st::write_file((dir / "model.safetensors").string(), tensors, {{"format", "pt"}});
}

}  // namespace qins::train
