#include "qins/io/hf_folder.h"

#include "qins/graph/phi3_layout.h"
#include "qins/util/files.h"

#include <filesystem>

#include "qins/util/errors.h"

namespace fs = std::filesystem;

namespace qins {

namespace {
std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}
}  // namespace

torch::Tensor read_tensor_f32(const st::Checkpoint& ckpt, const Phi3Config& c, const std::string& name) {
  const st::TensorView& t = ckpt.get(name);
  const auto want = expected_shape(c, name);
  if (t.shape != want)
    throw Error(t.file + ": tensor '" + name + "' has shape " + shape_str(t.shape) + ", config.json implies " +
                shape_str(want));
  auto out = torch::empty(want, torch::kFloat32);
  st::to_float32(t, out.data_ptr<float>());
  return out;
}

namespace {

std::unique_ptr<LinearOp> make_linear(torch::Tensor w /*[out, in] f32*/, const WeightLoadOptions& o) {
  switch (o.mode) {
    case WeightMode::F32:
      if (o.requires_grad) w.set_requires_grad(true);
      return std::make_unique<DenseLinear>(std::move(w));
    case WeightMode::BF16:
      return std::make_unique<DenseLinear>(w.to(torch::kBFloat16));
    case WeightMode::Qins:
      return std::make_unique<QinsLinear>(core::ProjectiveLinear(core::quantize(w, o.quant)));
    case WeightMode::Naive:
      return std::make_unique<NaiveQinsLinear>(core::ProjectiveLinear(core::quantize(w, o.quant)));
  }
  return nullptr;
}

}  // namespace

Phi3Weights load_hf_weights(const st::Checkpoint& ckpt, const Phi3Config& c, const WeightLoadOptions& opts,
                            const std::function<bool(double)>& progress) {
  Phi3Weights w;
  w.config = c;
  const double steps = c.num_hidden_layers + 2.0;
  auto report = [&](double done) {
    if (progress && !progress(done / steps)) throw Cancelled();
  };
  auto norm = [&](const std::string& name) {
    auto t = read_tensor_f32(ckpt, c, name);
    if (opts.requires_grad) t.set_requires_grad(true);
    return t;
  };

  auto embed = read_tensor_f32(ckpt, c, "model.embed_tokens.weight");  // [vocab, hidden]
  const bool quantized = opts.mode == WeightMode::Qins || opts.mode == WeightMode::Naive;
  if (quantized) {
    auto q = core::quantize(embed, opts.quant);
    w.embed = std::make_unique<QinsEmbedding>(q);
    if (c.tie_word_embeddings) w.lm_head = std::make_unique<QinsLinear>(core::ProjectiveLinear(q));
  } else {
    if (opts.mode == WeightMode::BF16) embed = embed.to(torch::kBFloat16);
    if (opts.requires_grad) embed.set_requires_grad(true);
    w.embed = std::make_unique<DenseEmbedding>(embed);
    if (c.tie_word_embeddings) w.lm_head = std::make_unique<DenseLinear>(embed);
  }
  report(1);
  w.layers.resize(static_cast<size_t>(c.num_hidden_layers));
  for (int il = 0; il < c.num_hidden_layers; ++il) {
    Phi3Layer& L = w.layers[static_cast<size_t>(il)];
    L.input_norm = norm(layer_tensor_name(il, "input_layernorm.weight"));
    L.post_norm = norm(layer_tensor_name(il, "post_attention_layernorm.weight"));
    L.qkv = make_linear(read_tensor_f32(ckpt, c, layer_tensor_name(il, "self_attn.qkv_proj.weight")), opts);
    L.o = make_linear(read_tensor_f32(ckpt, c, layer_tensor_name(il, "self_attn.o_proj.weight")), opts);
    L.gate_up = make_linear(read_tensor_f32(ckpt, c, layer_tensor_name(il, "mlp.gate_up_proj.weight")), opts);
    L.down = make_linear(read_tensor_f32(ckpt, c, layer_tensor_name(il, "mlp.down_proj.weight")), opts);
    report(il + 2);
  }
  w.final_norm = norm("model.norm.weight");
  if (!c.tie_word_embeddings) w.lm_head = make_linear(read_tensor_f32(ckpt, c, "lm_head.weight"), opts);
  report(steps);
  return w;
}

HfPaths find_hf_files(const std::string& dir) {
  HfPaths p;
  auto in = [&](const char* f) { return (fs::path(dir) / f).string(); };
  if (!fs::is_directory(dir)) throw Error(dir + ": not a directory (expected a Hugging Face model folder or a .qins file)");
  p.config = in("config.json");
  if (!fs::exists(p.config)) throw Error(p.config + ": missing (every Hugging Face model folder has a config.json)");
  if (fs::exists(in("generation_config.json"))) p.generation_config = in("generation_config.json");
  p.tokenizer_model = in("tokenizer.model");
  if (!fs::exists(p.tokenizer_model)) throw Error(p.tokenizer_model + ": missing (the SentencePiece tokenizer model)");
  if (fs::exists(in("tokenizer_config.json")))
    p.tokenizer_config = in("tokenizer_config.json");
  else if (fs::exists(in("tokenizer.json")))
    p.tokenizer_config = in("tokenizer.json");
  else
    throw Error(dir + ": neither tokenizer_config.json nor tokenizer.json found (needed for the added tokens)");
  return p;
}

LoadedModel read_hf_model(const std::string& dir, const std::string& weight_format, const ProgressFn& progress) {
  LoadedModel m;
  const HfPaths paths = find_hf_files(dir);
  const Phi3Config config = read_phi3_config(paths.config);
  if (!paths.generation_config.empty())
    m.generation = parse_generation_config(read_file(paths.generation_config), paths.generation_config);
  m.tokenizer = std::make_unique<tok::Tokenizer>(tok::Tokenizer::from_files(paths.tokenizer_model, paths.tokenizer_config));
  if (m.tokenizer->vocab_size() > config.vocab_size)
    throw Error(paths.tokenizer_config + ": the tokenizer has " + std::to_string(m.tokenizer->vocab_size()) +
                " tokens but config.json says vocab_size " + std::to_string(config.vocab_size));
  auto ckpt = st::Checkpoint::open_dir(dir);
  WeightLoadOptions wo;
  const std::string& fmt = weight_format;
  if (fmt == "f32" || fmt.empty() || fmt == "auto") wo.mode = WeightMode::F32;
  else if (fmt == "bf16") wo.mode = WeightMode::BF16;
  else {
    wo.mode = WeightMode::Qins;
    try {
      wo.quant.codebook = core::codebook_from_name(fmt);
    } catch (const std::invalid_argument& ex) {
      throw Error(std::string("weight format: ") + ex.what());
    }
  }
  m.weights = load_hf_weights(*ckpt, config, wo, [&](double f) { return !progress || progress(f, "loading weights"); });
  m.name = fs::path(dir).filename().string();
  if (m.name.empty()) m.name = fs::path(dir).parent_path().filename().string();
  m.path = dir;
  m.format = "hf";
  m.codebook = wo.mode == WeightMode::Qins ? fmt : "none";
  m.file_bytes = ckpt->total_bytes();
  return m;
}

}  // namespace qins
