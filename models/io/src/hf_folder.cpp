#include "qins/io/hf_folder.h"
#include "qins/io/model_checks.h"

#include "qins/graph/phi3_layout.h"
#include "qins/util/files.h"

#include <filesystem>
#include <set>

#include "qins/util/errors.h"

namespace fs = std::filesystem;

namespace qins {

torch::Tensor read_tensor_f32(const st::Checkpoint& ckpt, const Phi3Config& c, const std::string& name) {
  const st::TensorView& t = ckpt.get(name);
  const auto want = expected_shape(c, name);
  if (t.shape != want)
    throw Error(t.file + ": tensor '" + name + "' has shape " + shape_str(t.shape) + ", config.json implies " +
                shape_str(want));
  auto out = torch::empty(want, torch::kFloat32);
  st::to_float32(t, out.data_ptr<float>());
  // Every loader and the converter read through here: a NaN or Inf (one flipped exponent bit) is
  // refused with the tensor's name, not found later as NaN logits or a nameless quantize error.
  if (!torch::isfinite(out).all().item<bool>())
    throw Error(t.file + ": tensor '" + name + "' contains NaN or Inf");
  return out;
}

std::vector<std::string> check_checkpoint_tensors(const st::Checkpoint& ckpt, const Phi3Config& c) {
  std::set<std::string> used;
  for (const TensorSpec& s : phi3_tensors(c)) {
    const st::TensorView* t = ckpt.find(s.name);
    if (!t) throw Error(ckpt.dir() + ": tensor '" + s.name + "' (implied by config.json) is missing");
    if (t->shape != s.shape)
      throw Error(t->file + ": tensor '" + s.name + "' has shape " + shape_str(t->shape) + ", config.json implies " +
                  shape_str(s.shape));
    used.insert(s.name);
  }
  std::vector<std::string> extra;
  for (const auto& name : ckpt.names())
    if (!used.count(name) && !(c.tie_word_embeddings && name == "lm_head.weight")) extra.push_back(name);
  return extra;
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
  const bool quantized = opts.mode == WeightMode::Qins || opts.mode == WeightMode::Naive;
  WeightMakers make;
  make.embedding = [&](const TensorSpec& s) -> std::unique_ptr<EmbeddingOp> {
    auto embed = read_tensor_f32(ckpt, c, s.name);  // [vocab, hidden]
    if (quantized) return std::make_unique<QinsEmbedding>(core::quantize(embed, opts.quant));
    if (opts.mode == WeightMode::BF16) embed = embed.to(torch::kBFloat16);
    if (opts.requires_grad) embed.set_requires_grad(true);
    return std::make_unique<DenseEmbedding>(embed);
  };
  make.norm = [&](const TensorSpec& s) {
    auto t = read_tensor_f32(ckpt, c, s.name);
    if (opts.requires_grad) t.set_requires_grad(true);
    return t;
  };
  make.linear = [&](const TensorSpec& s) { return make_linear(read_tensor_f32(ckpt, c, s.name), opts); };
  // Progress in steps of the embedding, each layer, and the rest.
  const double steps = c.num_hidden_layers + 2.0;
  make.after = [&](size_t i, const std::vector<TensorSpec>& specs) {
    const TensorSpec& s = specs[i];
    const bool step_done = s.slot == LayerSlot::Embed || s.slot == LayerSlot::Down || i + 1 == specs.size();
    const double done = i + 1 == specs.size() ? steps : s.slot == LayerSlot::Embed ? 1.0 : s.layer + 2.0;
    if (step_done && progress && !progress(done / steps)) throw Cancelled();
  };
  return assemble_weights(c, make);
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
    m.generation = parse_generation_config(read_file(paths.generation_config, kMaxConfigBytes), paths.generation_config);
  m.tokenizer = std::make_unique<tok::Tokenizer>(tok::Tokenizer::from_files(paths.tokenizer_model, paths.tokenizer_config));
  validate_token_ids(config, m.generation, *m.tokenizer, dir);
  auto ckpt = st::Checkpoint::open_dir(dir);
  check_config_against_files(config, ckpt->total_bytes(), dir);
  (void)check_checkpoint_tensors(*ckpt, config);  // every tensor present and shaped, before allocating
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
