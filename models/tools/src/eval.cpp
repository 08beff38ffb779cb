// The accuracy report: per-tensor weight error and end-to-end perplexity / KL / top-1 agreement
// of each QINS codebook against the fp32 model. Where time goes: the forward passes (one per
// batch of windows per row; the reference's log-probabilities are computed once and kept when
// they fit in memory), then quantization itself (the fitted pole tries 13 tables per tensor).
#include "qins/io/converter.h"
#include "qins/graph/phi3_layout.h"
#include "qins/tools/eval.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <sstream>

#include "qins/runtime/engine.h"
#include "qins/runtime/internal.h"
#include "qins/io/hf_folder.h"
#include "qins/graph/linear.h"
#include "qins/io/qins_file.h"
#include "qins/tokenizer/tokenizer.h"

namespace qins {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string pole_label(double pole) { return fmt("%g", pole); }

EvalVariant make_variant(core::Codebook cb, double pole, int prune) {
  EvalVariant v;
  v.codebook = cb;
  v.pole = cb == core::Codebook::Projective ? pole : 0.0;
  v.prune_index = prune;
  v.name = core::codebook_name(cb);
  if (cb == core::Codebook::Projective) v.name += pole > 0 ? " C=" + pole_label(pole) : " fitted C";
  if (prune > 0) v.name += ", prune j<=" + std::to_string(prune);
  return v;
}

}  // namespace

std::vector<EvalVariant> eval_variants(const std::string& codebooks, double pole, int prune_index) {
  std::vector<core::Codebook> cbs;
  if (codebooks == "all") {
    cbs = {core::Codebook::Inverse, core::Codebook::Projective, core::Codebook::Uniform};
  } else {
    try {
      cbs = {core::codebook_from_name(codebooks)};
    } catch (const std::invalid_argument&) {
      throw Error("--codebook: unknown codebook '" + codebooks + "' (expected inverse, projective, uniform or all)");
    }
  }
  if (prune_index < 0 || prune_index > 126) throw Error("--prune-index: must be in 0..126");
  if (pole > 0 && pole <= 127) throw Error("--pole: the projective pole C must be > 127 (or <= 0 to fit it per tensor)");
  std::vector<EvalVariant> out;
  for (const core::Codebook cb : cbs) {
    if (cb == core::Codebook::Projective) {
      if (pole > 0) out.push_back(make_variant(cb, pole, 0));
      out.push_back(make_variant(cb, 0.0, 0));
    } else {
      out.push_back(make_variant(cb, 0.0, 0));
    }
  }
  if (prune_index > 0)
    for (const core::Codebook cb : cbs) out.push_back(make_variant(cb, pole > 0 ? pole : 0.0, prune_index));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Text

namespace {

std::string read_prefix(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open the evaluation text");
  std::string s(max_bytes, '\0');
  in.read(s.data(), static_cast<std::streamsize>(max_bytes));
  s.resize(static_cast<size_t>(in.gcount()));
  return s;
}

tok::ChatRole parse_role(const std::string& role, const std::string& where) {
  if (role == "system") return tok::ChatRole::System;
  if (role == "user") return tok::ChatRole::User;
  if (role == "assistant") return tok::ChatRole::Assistant;
  throw Error(where + ": unknown role '" + role + "' (expected system, user or assistant)");
}

void add_sequence(EvalText& t, std::vector<int64_t> ids, std::vector<uint8_t> target) {
  int64_t n = 0;
  for (size_t i = 1; i < target.size(); ++i) n += target[i];
  target[0] = 0;  // nothing predicts the first token
  t.tokens += static_cast<int64_t>(ids.size());
  t.targets += n;
  t.seqs.push_back(std::move(ids));
  t.is_target.push_back(std::move(target));
}

}  // namespace

EvalText load_eval_text(const std::string& path, const tok::Tokenizer& tok, int window, int64_t max_tokens) {
  if (window < 2) throw Error("--window: must be at least 2 tokens");
  if (max_tokens < 2) throw Error("--max-tokens: must be at least 2");
  if (!fs::is_regular_file(path)) throw Error(path + ": no such file (the evaluation text)");
  EvalText t;
  t.path = path;
  t.window = window;
  const bool chat = fs::path(path).extension() == ".jsonl";
  t.mode = chat ? "chat" : "text";
  if (!chat) {
    // A token is at least one byte and rarely more than ~16: read only what max_tokens can use.
    const size_t budget = static_cast<size_t>(std::max<int64_t>(int64_t{1} << 20, max_tokens * 32));
    std::string text = read_prefix(path, budget);
    if (text.size() == budget) {
      const size_t nl = text.rfind('\n');
      if (nl != std::string::npos && nl > 0) text.resize(nl);
    }
    std::vector<int> ids = tok.encode(text, /*allow_special=*/false);
    if (tok.add_bos()) ids.insert(ids.begin(), tok.bos_id());
    if (static_cast<int64_t>(ids.size()) > max_tokens) ids.resize(static_cast<size_t>(max_tokens));
    for (size_t start = 0; start + 1 < ids.size(); start += static_cast<size_t>(window)) {
      const size_t end = std::min(ids.size(), start + static_cast<size_t>(window));
      std::vector<int64_t> seq(ids.begin() + static_cast<std::ptrdiff_t>(start), ids.begin() + static_cast<std::ptrdiff_t>(end));
      std::vector<uint8_t> target(seq.size(), 1);
      add_sequence(t, std::move(seq), std::move(target));
    }
    if (t.targets == 0) throw Error(path + ": the text has fewer than 2 tokens; nothing to evaluate");
    return t;
  }
  const int id_assistant = tok.token_id("<|assistant|>");
  const int id_end = tok.token_id("<|end|>");
  if (id_assistant < 0 || id_end < 0)
    throw Error(path + ": the model's tokenizer has no <|assistant|> / <|end|> tokens, needed to score chat text");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open the evaluation text");
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    std::vector<tok::ChatTurn> turns;
    try {
      const auto j = nlohmann::json::parse(line);
      if (!j.is_object() || !j.contains("messages") || !j["messages"].is_array())
        throw Error(where + ": expected {\"messages\": [...]}");
      for (const auto& m : j["messages"]) {
        if (!m.is_object() || !m.contains("role") || !m.contains("content") || !m["role"].is_string() ||
            !m["content"].is_string())
          throw Error(where + ": each message needs string \"role\" and \"content\"");
        turns.push_back({parse_role(m["role"].get<std::string>(), where), m["content"].get<std::string>()});
      }
    } catch (const nlohmann::json::exception& e) {
      throw Error(where + ": not valid JSON (" + std::string(e.what()) + ")");
    }
    std::vector<int> ids = tok.encode_chat(turns, /*add_generation_prompt=*/false);
    if (ids.size() < 2) continue;
    if (static_cast<int64_t>(ids.size()) > window) {
      ids.resize(static_cast<size_t>(window));
      ++t.truncated;
    }
    if (!t.seqs.empty() && t.tokens + static_cast<int64_t>(ids.size()) > max_tokens) break;
    std::vector<int64_t> seq(ids.begin(), ids.end());
    std::vector<uint8_t> target(seq.size(), 0);
    bool in_reply = false;
    for (size_t i = 0; i < seq.size(); ++i) {
      if (in_reply) target[i] = 1;
      if (seq[i] == id_assistant) in_reply = true;
      else if (seq[i] == id_end) in_reply = false;
    }
    add_sequence(t, std::move(seq), std::move(target));
    if (t.tokens >= max_tokens) break;
  }
  if (t.targets == 0) throw Error(path + ": no assistant tokens to score (expected chat lines {\"messages\": [...]})");
  return t;
}

// ---------------------------------------------------------------------------------------------
// Scoring

namespace {

struct Batch {
  torch::Tensor ids;      // [B, T] int64, right-padded with 0
  torch::Tensor rows;     // [N] int64: flat b * T + t of the positions whose next token is a target
  torch::Tensor targets;  // [N] int64: the target ids
};

std::vector<Batch> make_batches(const EvalText& text, int batch_tokens) {
  std::vector<Batch> out;
  size_t i = 0;
  while (i < text.seqs.size()) {
    size_t j = i;
    size_t t_max = 0;
    while (j < text.seqs.size()) {
      const size_t t = std::max(t_max, text.seqs[j].size());
      if (j > i && static_cast<int64_t>(t * (j - i + 1)) > batch_tokens) break;
      t_max = t;
      ++j;
    }
    const int64_t B = static_cast<int64_t>(j - i), T = static_cast<int64_t>(t_max);
    Batch b;
    b.ids = torch::zeros({B, T}, torch::kInt64);  // [B, T]
    auto ip = b.ids.accessor<int64_t, 2>();
    std::vector<int64_t> rows, targets;
    for (int64_t r = 0; r < B; ++r) {
      const auto& s = text.seqs[i + static_cast<size_t>(r)];
      const auto& m = text.is_target[i + static_cast<size_t>(r)];
      for (size_t k = 0; k < s.size(); ++k) ip[r][static_cast<int64_t>(k)] = s[k];
      for (size_t k = 1; k < s.size(); ++k)
        if (m[k]) {
          rows.push_back(r * T + static_cast<int64_t>(k) - 1);
          targets.push_back(s[k]);
        }
    }
    b.rows = torch::tensor(rows, torch::kInt64);
    b.targets = torch::tensor(targets, torch::kInt64);
    if (!rows.empty()) out.push_back(std::move(b));
    i = j;
  }
  return out;
}

// log_softmax of the logits at the batch's target-predicting positions: [N, V] f32.
torch::Tensor target_log_probs(Phi3Weights& w, const Batch& b) {
  torch::NoGradGuard ng;
  const torch::Tensor logits = forward(w, b.ids, nullptr);  // [B, T, V] f32
  const int64_t V = logits.size(2);
  return torch::log_softmax(logits.reshape({-1, V}).index_select(0, b.rows).to(torch::kFloat32), -1);
}

// Reference log-probs per batch, computed once when they fit in `budget_bytes`.
struct RefCache {
  std::vector<torch::Tensor> lp;  // per batch [N, V] f32, or empty (recompute)
};

EvalScores score_batches(Phi3Weights& model, Phi3Weights* reference, const std::vector<Batch>& batches,
                         RefCache* cache) {
  torch::NoGradGuard ng;
  const auto t0 = Clock::now();
  double nll = 0.0, kl = 0.0, d_sum = 0.0, d_sq = 0.0;
  int64_t agree = 0, n = 0;
  for (size_t k = 0; k < batches.size(); ++k) {
    const Batch& b = batches[k];
    const torch::Tensor lp = target_log_probs(model, b);  // [N, V]
    const torch::Tensor tnll = -lp.gather(1, b.targets.unsqueeze(1)).squeeze(1).to(torch::kFloat64);  // [N]
    nll += tnll.sum().item<double>();
    n += b.rows.size(0);
    if (!reference) continue;
    torch::Tensor ref;  // [N, V]
    if (reference == &model) ref = lp;
    else if (cache && k < cache->lp.size() && cache->lp[k].defined()) ref = cache->lp[k];
    else ref = target_log_probs(*reference, b);
    if (ref.size(1) != lp.size(1)) throw Error("the reference and the evaluated model have different vocabulary sizes");
    // KL(P_ref || P) = sum_v p_ref (log p_ref - log p), per position; double accumulation.
    kl += (ref.exp() * (ref - lp)).sum(1).to(torch::kFloat64).sum().item<double>();
    agree += ref.argmax(1).eq(lp.argmax(1)).sum().item<int64_t>();
    const torch::Tensor d = tnll + ref.gather(1, b.targets.unsqueeze(1)).squeeze(1).to(torch::kFloat64);  // [N]
    d_sum += d.sum().item<double>();
    d_sq += d.pow(2).sum().item<double>();
  }
  EvalScores s;
  s.targets = n;
  s.nll = n ? nll / static_cast<double>(n) : kNaN;
  s.perplexity = std::exp(s.nll);
  s.kl = reference && n ? kl / static_cast<double>(n) : kNaN;
  s.top1 = reference && n ? static_cast<double>(agree) / static_cast<double>(n) : kNaN;
  s.nll_delta_se = kNaN;
  if (reference && n > 1) {
    const double dn = static_cast<double>(n), mean = d_sum / dn;
    s.nll_delta_se = std::sqrt(std::max(0.0, (d_sq / dn - mean * mean) * dn / (dn - 1.0)) / dn);
  }
  s.seconds = seconds_since(t0);
  return s;
}

}  // namespace

EvalScores score_model(Phi3Weights& model, Phi3Weights* reference, const EvalText& text, int batch_tokens) {
  return score_batches(model, reference, make_batches(text, batch_tokens), nullptr);
}

// ---------------------------------------------------------------------------------------------
// Quantized models

namespace {

TensorError tensor_error(const std::string& name, const torch::Tensor& w, const core::QuantizedTensor& q,
                         int64_t pruned) {
  TensorError e;
  e.name = name;
  e.shape = w.sizes().vec();
  const core::ErrorStats st = core::measure_error(w, q);
  e.sqnr_db = st.sqnr_db;
  e.rel_error = st.rel_error;
  e.pole = q.codebook == core::Codebook::Projective ? q.pole : 0.0;
  e.signal_sq = w.to(torch::kFloat64).pow(2).sum().item<double>();
  e.noise_sq = e.signal_sq * st.rel_error * st.rel_error;
  e.numel = w.numel();
  e.zero_codes = q.codes.bitwise_and(0x7F).eq(0).sum().item<int64_t>();
  e.pruned_codes = pruned;
  return e;
}

// The matrices of the Phi-3 layout, in file order.
std::vector<std::string> quantized_tensor_names(const Phi3Config& c) {
  std::vector<std::string> names{"model.embed_tokens.weight"};
  for (int il = 0; il < c.num_hidden_layers; ++il)
    for (const char* s : {"self_attn.qkv_proj.weight", "self_attn.o_proj.weight", "mlp.gate_up_proj.weight",
                          "mlp.down_proj.weight"})
      names.push_back(layer_tensor_name(il, s));
  if (!c.tie_word_embeddings) names.push_back("lm_head.weight");
  return names;
}

}  // namespace

Phi3Weights quantize_checkpoint(const st::Checkpoint& ckpt, const Phi3Config& c, const EvalVariant& v,
                                std::vector<TensorError>* errors, int threads) {
  core::QuantizeOptions qo;
  qo.codebook = v.codebook;
  qo.pole = v.pole;
  qo.threads = threads;
  auto quant = [&](const std::string& name) {
    const torch::Tensor t = read_tensor_f32(ckpt, c, name);  // [out, in] f32
    core::QuantizedTensor q = core::quantize(t, qo);
    const int64_t pruned = prune_codes(q, v.prune_index);
    if (errors) errors->push_back(tensor_error(name, t, q, pruned));
    return q;
  };
  auto linear = [&](const std::string& name) -> std::unique_ptr<LinearOp> {
    return std::make_unique<QinsLinear>(core::ProjectiveLinear(quant(name)));
  };
  Phi3Weights w;
  w.config = c;
  const core::QuantizedTensor embed = quant("model.embed_tokens.weight");
  w.embed = std::make_unique<QinsEmbedding>(embed);
  if (c.tie_word_embeddings) w.lm_head = std::make_unique<QinsLinear>(core::ProjectiveLinear(embed));
  w.layers.resize(static_cast<size_t>(c.num_hidden_layers));
  for (int il = 0; il < c.num_hidden_layers; ++il) {
    Phi3Layer& L = w.layers[static_cast<size_t>(il)];
    L.input_norm = read_tensor_f32(ckpt, c, layer_tensor_name(il, "input_layernorm.weight"));
    L.post_norm = read_tensor_f32(ckpt, c, layer_tensor_name(il, "post_attention_layernorm.weight"));
    L.qkv = linear(layer_tensor_name(il, "self_attn.qkv_proj.weight"));
    L.o = linear(layer_tensor_name(il, "self_attn.o_proj.weight"));
    L.gate_up = linear(layer_tensor_name(il, "mlp.gate_up_proj.weight"));
    L.down = linear(layer_tensor_name(il, "mlp.down_proj.weight"));
  }
  w.final_norm = read_tensor_f32(ckpt, c, "model.norm.weight");
  if (!c.tie_word_embeddings) w.lm_head = linear("lm_head.weight");
  return w;
}

namespace {

// Summaries of a row's tensor errors.
void summarize(EvalRow& row) {
  double sig = 0, noise = 0, sum = 0, worst = std::numeric_limits<double>::infinity();
  for (const auto& t : row.tensors) {
    sig += t.signal_sq;
    noise += t.noise_sq;
    sum += t.sqnr_db;
    worst = std::min(worst, t.sqnr_db);
    row.codes += t.numel;
    row.zero_codes += t.zero_codes;
    row.pruned_codes += t.pruned_codes;
  }
  if (row.tensors.empty()) {
    row.weight_sqnr_db = row.mean_tensor_sqnr_db = row.worst_tensor_sqnr_db = kNaN;
    return;
  }
  row.weight_sqnr_db = noise > 0 ? 10.0 * std::log10(sig / noise) : std::numeric_limits<double>::infinity();
  row.mean_tensor_sqnr_db = sum / static_cast<double>(row.tensors.size());
  row.worst_tensor_sqnr_db = worst;
}

// The quantized tensors of a loaded .qins model, by Phi-3 name.
std::map<std::string, const core::QuantizedTensor*> qins_tensors(Phi3Weights& w) {
  std::map<std::string, const core::QuantizedTensor*> out;
  auto lin = [&](const std::string& name, LinearOp* op) {
    if (auto* q = dynamic_cast<QinsLinear*>(op)) out[name] = &q->module()->quantized();
  };
  if (auto* e = dynamic_cast<QinsEmbedding*>(w.embed.get())) out["model.embed_tokens.weight"] = &e->quantized();
  for (size_t il = 0; il < w.layers.size(); ++il) {
    const int i = static_cast<int>(il);
    lin(layer_tensor_name(i, "self_attn.qkv_proj.weight"), w.layers[il].qkv.get());
    lin(layer_tensor_name(i, "self_attn.o_proj.weight"), w.layers[il].o.get());
    lin(layer_tensor_name(i, "mlp.gate_up_proj.weight"), w.layers[il].gate_up.get());
    lin(layer_tensor_name(i, "mlp.down_proj.weight"), w.layers[il].down.get());
  }
  if (!w.config.tie_word_embeddings) lin("lm_head.weight", w.lm_head.get());
  return out;
}

EvalRow reference_row(Phi3Weights& ref, const std::vector<Batch>& batches, RefCache& cache, int64_t V,
                      const EvalOptions& o) {
  EvalRow row;
  row.label = "fp32 (reference)";
  row.variant.name = "f32";
  row.quantized = false;
  // Keep the reference log-probs when they fit in 1 GiB; otherwise they are recomputed per row.
  int64_t targets = 0;
  for (const auto& b : batches) targets += b.rows.size(0);
  const bool keep = targets * V * 4 <= (int64_t{1} << 30);
  const auto t0 = Clock::now();
  double nll = 0;
  for (const auto& b : batches) {
    torch::Tensor lp = target_log_probs(ref, b);  // [N, V]
    nll -= lp.gather(1, b.targets.unsqueeze(1)).sum().item<double>();
    cache.lp.push_back(keep ? lp : torch::Tensor());
  }
  row.scores.targets = targets;
  row.scores.nll = nll / static_cast<double>(targets);
  row.scores.perplexity = std::exp(row.scores.nll);
  row.scores.kl = 0.0;
  row.scores.top1 = 1.0;
  row.scores.nll_delta_se = 0.0;
  row.scores.seconds = seconds_since(t0);
  summarize(row);
  if (o.log) o.log("fp32 reference: perplexity " + fmt("%.4f", row.scores.perplexity));
  return row;
}

}  // namespace

EvalReport evaluate(const std::string& model_path, const std::string& text_path, const EvalOptions& o) {
  configure_threads(o.threads);
  EvalReport r;
  r.model = model_path;
  std::error_code ec;
  const bool hf = fs::is_directory(model_path, ec);
  r.model_format = hf ? "hf" : "qins";
  auto log = [&](const std::string& s) {
    if (o.log) o.log(s);
  };

  if (hf) {
    if (!o.reference.empty()) throw Error("--reference: only for a .qins model (a Hugging Face folder is its own reference)");
    const std::vector<EvalVariant> variants = eval_variants(o.codebooks, o.pole, o.prune_index);
    const HfPaths paths = find_hf_files(model_path);
    const Phi3Config c = read_phi3_config(paths.config);
    const tok::Tokenizer tok = tok::Tokenizer::from_files(paths.tokenizer_model, paths.tokenizer_config);
    EvalText text = load_eval_text(text_path, tok, o.window, o.max_tokens);
    log("text: " + std::to_string(text.seqs.size()) + " sequences, " + std::to_string(text.tokens) + " tokens, " +
        std::to_string(text.targets) + " targets");
    const auto batches = make_batches(text, o.batch_tokens);
    auto ckpt = st::Checkpoint::open_dir(model_path);
    WeightLoadOptions wo;
    wo.mode = WeightMode::F32;
    Phi3Weights ref = load_hf_weights(*ckpt, c, wo);
    r.n_params = ref.n_params();
    r.reference = model_path;
    r.has_reference = true;
    RefCache cache;
    r.rows.push_back(reference_row(ref, batches, cache, c.vocab_size, o));
    for (const EvalVariant& v : variants) {
      EvalRow row;
      row.variant = v;
      row.label = v.name;
      log(v.name + ": quantizing");
      const auto t0 = Clock::now();
      Phi3Weights qw = quantize_checkpoint(*ckpt, c, v, &row.tensors, o.threads);
      row.quantize_seconds = seconds_since(t0);
      summarize(row);
      log(v.name + ": scoring (weight SQNR " + fmt("%.2f", row.weight_sqnr_db) + " dB)");
      row.scores = score_batches(qw, &ref, batches, &cache);
      log(v.name + ": perplexity " + fmt("%.4f", row.scores.perplexity) + ", KL " + fmt("%.5f", row.scores.kl));
      r.rows.push_back(std::move(row));
    }
    text.seqs.clear();
    text.is_target.clear();
    r.text = std::move(text);
    return r;
  }

  // A .qins file: its codebook is fixed; the reference (if any) is the HF folder it came from.
  LoadOptions lo;
  lo.threads = o.threads;
  lo.context_length = 16;  // no KV cache is used here
  auto engine = Engine::load(model_path, lo);
  Phi3Weights& model = engine_internals(*engine).weights;
  const tok::Tokenizer& tok = *engine_internals(*engine).tokenizer;
  r.n_params = model.n_params();
  EvalText text = load_eval_text(text_path, tok, o.window, o.max_tokens);
  const auto batches = make_batches(text, o.batch_tokens);
  EvalRow row;
  row.label = model_path + " (" + engine->info().codebook + ")";
  row.variant.name = engine->info().codebook;
  if (engine->info().codebook != "none") row.variant.codebook = core::codebook_from_name(engine->info().codebook);
  if (o.reference.empty()) {
    r.note = "no --reference given: the .qins model's perplexity alone (no fp32 comparison, no per-tensor error)";
    row.scores = score_batches(model, nullptr, batches, nullptr);
    summarize(row);
    r.rows.push_back(std::move(row));
  } else {
    const HfPaths paths = find_hf_files(o.reference);
    const Phi3Config c = read_phi3_config(paths.config);
    const Phi3Config& mc = model.config;
    if (c.vocab_size != mc.vocab_size || c.hidden_size != mc.hidden_size || c.num_hidden_layers != mc.num_hidden_layers ||
        c.intermediate_size != mc.intermediate_size)
      throw Error(o.reference + ": not the same architecture as " + model_path +
                  " (vocab, hidden size, layers or intermediate size differ)");
    auto ckpt = st::Checkpoint::open_dir(o.reference);
    WeightLoadOptions wo;
    wo.mode = WeightMode::F32;
    Phi3Weights ref = load_hf_weights(*ckpt, c, wo);
    r.reference = o.reference;
    r.has_reference = true;
    RefCache cache;
    r.rows.push_back(reference_row(ref, batches, cache, c.vocab_size, o));
    for (const auto& [name, q] : qins_tensors(model)) {
      row.tensors.push_back(tensor_error(name, read_tensor_f32(*ckpt, c, name), *q, 0));
      if (q->codebook == core::Codebook::Projective) row.variant.pole = q->pole;
    }
    // Keep the Phi-3 file order in the table.
    const auto order = quantized_tensor_names(c);
    std::stable_sort(row.tensors.begin(), row.tensors.end(), [&](const TensorError& a, const TensorError& b) {
      return std::find(order.begin(), order.end(), a.name) < std::find(order.begin(), order.end(), b.name);
    });
    summarize(row);
    row.scores = score_batches(model, &ref, batches, &cache);
    r.rows.push_back(std::move(row));
  }
  text.seqs.clear();
  text.is_target.clear();
  r.text = std::move(text);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Output

namespace {

std::string num(double v, const char* f) {
  if (std::isnan(v)) return "n/a";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return fmt(f, v);
}

nlohmann::json jnum(double v) {
  if (std::isfinite(v)) return v;
  return nullptr;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "x" : "") + std::to_string(s[i]);
  return out;
}

}  // namespace

std::string eval_report_markdown(const EvalReport& r) {
  std::ostringstream o;
  o << "## qins eval: `" << r.model << "`\n\n";
  o << "Model: " << r.model_format << ", " << r.n_params << " parameters. ";
  o << "Text: `" << r.text.path << "` (" << r.text.mode << ": "
    << (r.text.mode == "chat" ? "Phi-3 chat template, assistant tokens scored"
                              : "plain text, every token after the first of a window scored")
    << "), " << r.text.tokens << " tokens, " << r.text.targets << " targets, window " << r.text.window;
  if (r.text.truncated) o << ", " << r.text.truncated << " conversation(s) cut to the window";
  o << ".\n";
  if (!r.note.empty()) o << "\nNote: " << r.note << ".\n";
  if (r.has_reference)
    o << "\n\"vs fp32\": perplexity change ± one standard error of the paired per-token difference.\n";
  o << "\n| model | perplexity | vs fp32 | mean KL (nats) | top-1 agree | weight SQNR (dB) | worst tensor (dB) | zero codes |\n";
  o << "|---|---:|---:|---:|---:|---:|---:|---:|\n";
  const double ref_ppl = r.has_reference ? r.rows.front().scores.perplexity : kNaN;
  for (const auto& row : r.rows) {
    const auto& s = row.scores;
    const bool has_err = row.quantized && !row.tensors.empty();
    o << "| " << row.label << " | " << num(s.perplexity, "%.4f") << " | "
      << (row.quantized && r.has_reference
              ? num(100.0 * (s.perplexity / ref_ppl - 1.0), "%+.2f") + " ± " + num(100.0 * s.perplexity / ref_ppl * s.nll_delta_se, "%.2f %%")
              : "")
      << " | "
      << num(s.kl, "%.5f") << " | " << num(100.0 * s.top1, "%.2f %%") << " | "
      << (has_err ? num(row.weight_sqnr_db, "%.2f") : "") << " | "
      << (has_err ? num(row.worst_tensor_sqnr_db, "%.2f") : "") << " | "
      << (row.quantized && row.codes ? num(100.0 * static_cast<double>(row.zero_codes) / static_cast<double>(row.codes), "%.2f %%")
                                      : "")
      << " |\n";
  }
  // Per tensor: one column per quantized row that has tensors.
  std::vector<const EvalRow*> cols;
  for (const auto& row : r.rows)
    if (row.quantized && !row.tensors.empty()) cols.push_back(&row);
  if (!cols.empty()) {
    o << "\nPer tensor: SQNR dB / relative error |W-Q|/|W|";
    bool fitted = false;
    for (const auto* c : cols) fitted |= c->variant.codebook == core::Codebook::Projective && c->variant.pole <= 0;
    if (fitted) o << " (fitted pole C in brackets)";
    o << ".\n\n| tensor | shape |";
    for (const auto* c : cols) o << " " << c->label << " |";
    o << "\n|---|---|";
    for (size_t i = 0; i < cols.size(); ++i) o << "---:|";
    o << "\n";
    for (size_t k = 0; k < cols.front()->tensors.size(); ++k) {
      const TensorError& t0 = cols.front()->tensors[k];
      o << "| " << t0.name << " | " << shape_str(t0.shape) << " |";
      for (const auto* c : cols) {
        if (k >= c->tensors.size()) {
          o << " |";
          continue;
        }
        const TensorError& t = c->tensors[k];
        o << " " << num(t.sqnr_db, "%.2f") << " / " << num(t.rel_error, "%.4f");
        if (c->variant.codebook == core::Codebook::Projective && c->variant.pole <= 0) o << " [" << pole_label(t.pole) << "]";
        o << " |";
      }
      o << "\n";
    }
  }
  return o.str();
}

std::string eval_report_json(const EvalReport& r) {
  using nlohmann::json;
  json j;
  j["model"] = r.model;
  j["model_format"] = r.model_format;
  j["n_params"] = r.n_params;
  j["reference"] = r.has_reference ? json(r.reference) : json(nullptr);
  if (!r.note.empty()) j["note"] = r.note;
  j["text"] = {{"path", r.text.path},     {"mode", r.text.mode},       {"window", r.text.window},
               {"tokens", r.text.tokens}, {"targets", r.text.targets}, {"truncated", r.text.truncated},
               {"scored", r.text.mode == "chat" ? "assistant tokens" : "every token after the first of a window"}};
  const double ref_ppl = r.has_reference ? r.rows.front().scores.perplexity : kNaN;
  json rows = json::array();
  for (const auto& row : r.rows) {
    json jr;
    jr["name"] = row.label;
    jr["quantized"] = row.quantized;
    if (row.quantized) {
      jr["codebook"] = row.variant.name == "none" ? "none" : core::codebook_name(row.variant.codebook);
      jr["pole"] = row.variant.codebook == core::Codebook::Projective ? json(row.variant.pole > 0 ? json(row.variant.pole) : json("fitted"))
                                                                       : json(nullptr);
      jr["prune_index"] = row.variant.prune_index;
    }
    const auto& s = row.scores;
    jr["perplexity"] = jnum(s.perplexity);
    jr["nll"] = jnum(s.nll);
    jr["perplexity_delta_pct"] = row.quantized ? jnum(100.0 * (s.perplexity / ref_ppl - 1.0)) : json(0.0);
    jr["perplexity_delta_se_pct"] = row.quantized ? jnum(100.0 * s.perplexity / ref_ppl * s.nll_delta_se) : json(0.0);
    jr["kl"] = jnum(s.kl);
    jr["top1_agreement"] = jnum(s.top1);
    jr["targets"] = s.targets;
    jr["score_seconds"] = s.seconds;
    if (row.quantized) {
      jr["quantize_seconds"] = row.quantize_seconds;
      jr["weight_sqnr_db"] = jnum(row.weight_sqnr_db);
      jr["mean_tensor_sqnr_db"] = jnum(row.mean_tensor_sqnr_db);
      jr["worst_tensor_sqnr_db"] = jnum(row.worst_tensor_sqnr_db);
      jr["codes"] = row.codes;
      jr["zero_codes"] = row.zero_codes;
      jr["pruned_codes"] = row.pruned_codes;
      json ts = json::array();
      for (const auto& t : row.tensors)
        ts.push_back({{"name", t.name},
                      {"shape", t.shape},
                      {"sqnr_db", jnum(t.sqnr_db)},
                      {"rel_error", jnum(t.rel_error)},
                      {"pole", t.pole > 0 ? json(t.pole) : json(nullptr)},
                      {"zero_codes", t.zero_codes},
                      {"pruned_codes", t.pruned_codes}});
      jr["tensors"] = ts;
    }
    rows.push_back(jr);
  }
  j["rows"] = rows;
  return j.dump(2) + "\n";
}

// ---------------------------------------------------------------------------------------------
// Synthetic weights

namespace {

// Uniform in (0, 1), never 0 or 1: the top 53 bits plus half a step.
double uniform01(std::mt19937_64& g) { return (static_cast<double>(g() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

// Box-Muller, both outputs used.
struct Normal {
  bool have = false;
  double next = 0;
  double operator()(std::mt19937_64& g) {
    if (have) {
      have = false;
      return next;
    }
    const double r = std::sqrt(-2.0 * std::log(uniform01(g))), th = 2.0 * M_PI * uniform01(g);
    next = r * std::sin(th);
    have = true;
    return r * std::cos(th);
  }
};

}  // namespace

torch::Tensor synthetic_weights(const std::string& dist, int64_t rows, int64_t cols, uint64_t seed) {
  if (rows <= 0 || cols <= 0) throw Error("--rows / --cols: must be positive");
  if (dist != "gaussian" && dist != "laplace" && dist != "t5")
    throw Error("--synthetic: unknown distribution '" + dist + "' (expected gaussian, laplace, t5 or all)");
  torch::Tensor w = torch::empty({rows, cols}, torch::kFloat32);  // [rows, cols] f32
  float* p = w.data_ptr<float>();
  std::mt19937_64 g(seed);
  Normal normal;
  const int64_t n = rows * cols;
  constexpr double kStd = 0.02;  // a typical trained weight scale (the codebooks are scale-invariant)
  for (int64_t i = 0; i < n; ++i) {
    double x;
    if (dist == "gaussian") {
      x = normal(g);
    } else if (dist == "laplace") {
      // Inverse CDF; b = 1/sqrt(2) gives unit variance.
      const double u = uniform01(g) - 0.5;
      x = -(1.0 / std::sqrt(2.0)) * (u < 0 ? -1.0 : 1.0) * std::log(1.0 - 2.0 * std::fabs(u));
    } else {
      // Student-t(5) = Z / sqrt(chi2_5 / 5); variance 5/3, scaled to unit variance.
      const double z = normal(g);
      double chi2 = 0;
      for (int k = 0; k < 5; ++k) {
        const double e = normal(g);
        chi2 += e * e;
      }
      x = z / std::sqrt(chi2 / 5.0) * std::sqrt(3.0 / 5.0);
    }
    p[i] = static_cast<float>(kStd * x);
  }
  return w;
}

std::vector<SyntheticResult> evaluate_synthetic(const std::string& dists, int64_t rows, int64_t cols, uint64_t seed,
                                                double pole, int threads) {
  configure_threads(threads);
  if (!(pole > 127.0)) throw Error("--pole: the fixed projective pole must be > 127 for --synthetic");
  std::vector<std::string> names =
      dists == "all" ? std::vector<std::string>{"gaussian", "laplace", "t5"} : std::vector<std::string>{dists};
  std::vector<SyntheticResult> out;
  for (const auto& d : names) {
    SyntheticResult r;
    r.dist = d;
    r.rows = rows;
    r.cols = cols;
    r.seed = seed;
    const torch::Tensor w = synthetic_weights(d, rows, cols, seed);
    r.variants = {make_variant(core::Codebook::Inverse, 0, 0), make_variant(core::Codebook::Projective, pole, 0),
                  make_variant(core::Codebook::Projective, 0, 0), make_variant(core::Codebook::Uniform, 0, 0)};
    for (const auto& v : r.variants) {
      core::QuantizeOptions qo;
      qo.codebook = v.codebook;
      qo.pole = v.pole;
      qo.threads = threads;
      const core::QuantizedTensor q = core::quantize(w, qo);
      r.errors.push_back(core::measure_error(w, q));
      r.poles.push_back(v.codebook == core::Codebook::Projective ? q.pole : 0.0);
    }
    out.push_back(std::move(r));
  }
  return out;
}

std::string synthetic_markdown(const std::vector<SyntheticResult>& rs) {
  std::ostringstream o;
  if (rs.empty()) return "";
  o << "Synthetic weights [" << rs.front().rows << " x " << rs.front().cols << "], seed " << rs.front().seed
    << ": SQNR dB (relative error |W-Q|/|W|).\n\n| weights |";
  for (const auto& v : rs.front().variants) o << " " << v.name << " |";
  o << "\n|---|";
  for (size_t i = 0; i < rs.front().variants.size(); ++i) o << "---:|";
  o << "\n";
  for (const auto& r : rs) {
    o << "| " << (r.dist == "t5" ? "Student-t(5)" : r.dist == "gaussian" ? "Gaussian" : "Laplace") << " |";
    for (size_t i = 0; i < r.errors.size(); ++i) {
      o << " " << num(r.errors[i].sqnr_db, "%.2f") << " (" << num(r.errors[i].rel_error, "%.4f") << ")";
      if (r.variants[i].codebook == core::Codebook::Projective && r.variants[i].pole <= 0)
        o << " C=" << pole_label(r.poles[i]);
      o << " |";
    }
    o << "\n";
  }
  return o.str();
}

std::string synthetic_json(const std::vector<SyntheticResult>& rs) {
  using nlohmann::json;
  json arr = json::array();
  for (const auto& r : rs) {
    json cols = json::array();
    for (size_t i = 0; i < r.errors.size(); ++i)
      cols.push_back({{"name", r.variants[i].name},
                      {"codebook", core::codebook_name(r.variants[i].codebook)},
                      {"pole", r.poles[i] > 0 ? json(r.poles[i]) : json(nullptr)},
                      {"pole_fitted", r.variants[i].codebook == core::Codebook::Projective && r.variants[i].pole <= 0},
                      {"sqnr_db", jnum(r.errors[i].sqnr_db)},
                      {"rel_error", jnum(r.errors[i].rel_error)}});
    arr.push_back({{"dist", r.dist}, {"rows", r.rows}, {"cols", r.cols}, {"seed", r.seed}, {"codebooks", cols}});
  }
  return json({{"synthetic", arr}}).dump(2) + "\n";
}

}  // namespace qins
