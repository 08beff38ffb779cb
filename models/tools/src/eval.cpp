// The accuracy report: per-tensor weight error and end-to-end perplexity / KL / top-1 agreement
// of each QINS codebook against the fp32 model. Where time goes: the forward passes (one per
// batch of windows per row; the reference's log-probabilities are computed once and kept when
// they fit in memory), then quantization itself (the fitted pole tries 13 tables per tensor).
#include "qins/io/converter.h"
#include "qins/graph/phi3_layout.h"
#include "qins/util/timing.h"
#include "qins/tools/chat_corpus.h"
#include "qins/tools/nll.h"
#include "qins/tools/eval.h"
#include "qins/tools/sim_quant.h"
#include "qins/core/qins4.h"
#include "qins/core/qins8g.h"
#include "eval_format.h"

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

EvalVariant make_eval_variant(core::Codebook cb, double pole, int prune) {
  EvalVariant v;
  v.codebook = cb;
  v.pole = cb == core::Codebook::Projective ? pole : 0.0;
  v.prune_index = prune;
  v.name = core::codebook_name(cb);
  if (cb == core::Codebook::Projective) v.name += pole > 0 ? " C=" + pole_label(pole) : " fitted C";
  if (prune > 0) v.name += ", prune j<=" + std::to_string(prune);
  return v;
}

std::vector<EvalVariant> eval_variants(const std::string& codebooks, double pole, int prune_index) {
  std::vector<core::Codebook> cbs;
  if (codebooks == "none") {
    // no 8-bit rows (e.g. only --scheme rows)
  } else if (codebooks == "all") {
    cbs = {core::Codebook::Inverse, core::Codebook::Projective, core::Codebook::Uniform};
  } else {
    try {
      cbs = {core::codebook_from_name(codebooks)};
    } catch (const std::invalid_argument&) {
      throw Error("--codebook: unknown codebook '" + codebooks + "' (expected inverse, projective, uniform, all or none)");
    }
  }
  if (prune_index < 0 || prune_index > 126) throw Error("--prune-index: must be in 0..126");
  if (pole > 0 && pole <= 127) throw Error("--pole: the projective pole C must be > 127 (or <= 0 to fit it per tensor)");
  std::vector<EvalVariant> out;
  for (const core::Codebook cb : cbs) {
    if (cb == core::Codebook::Projective) {
      if (pole > 0) out.push_back(make_eval_variant(cb, pole, 0));
      out.push_back(make_eval_variant(cb, 0.0, 0));
    } else {
      out.push_back(make_eval_variant(cb, 0.0, 0));
    }
  }
  if (prune_index > 0)
    for (const core::Codebook cb : cbs) out.push_back(make_eval_variant(cb, pole > 0 ? pole : 0.0, prune_index));
  return out;
}

namespace {

std::string scheme_label(const std::string& s) {
  if (s == "qins4") return "QINS-4 (lloyd table, group 32)";
  if (s == "qins4-g64") return "QINS-4 (lloyd table, group 64)";
  if (s == "qins4-g16") return "QINS-4 (lloyd table, group 16, 8-bit log scales)";
  if (s == "qins4-projective") return "QINS-4 (projective table, group 32)";
  if (s == "qins4-uniform") return "QINS-4 (uniform table, group 32)";
  if (s == "q4_0") return "sim llama.cpp Q4_0";
  if (s == "q4_1") return "sim llama.cpp Q4_1";
  if (s == "q4_k") return "sim llama.cpp Q4_K";
  if (s == "q8_0") return "sim llama.cpp Q8_0";
  if (s == "qins8-g32") return "QINS-8 (projective table, group 32, 8-bit log scales)";
  if (s == "qins8-g64") return "QINS-8 (projective table, group 64, 8-bit log scales)";
  if (s == "qins8-g32-fp16") return "QINS-8 (projective table, group 32, fp16 scales)";
  if (s == "qins8-g64-fp16") return "QINS-8 (projective table, group 64, fp16 scales)";
  return "";
}

}  // namespace

std::vector<EvalVariant> scheme_variants(const std::string& list) {
  std::vector<std::string> names;
  std::stringstream ss(list);
  for (std::string item; std::getline(ss, item, ',');) {
    if (item.empty()) continue;
    if (item == "4bit") {
      for (const char* n : {"qins4", "qins4-g16", "qins4-g64", "q4_0", "q4_1", "q4_k", "q8_0"}) names.emplace_back(n);
      continue;
    }
    if (item == "8bit") {
      for (const char* n : {"qins8-g32", "qins8-g64", "qins8-g32-fp16", "qins8-g64-fp16", "q8_0"}) names.emplace_back(n);
      continue;
    }
    if (scheme_label(item).empty())
      throw Error("--scheme: unknown scheme '" + item +
                  "' (expected qins4, qins4-g16, qins4-g64, qins4-projective, qins4-uniform, qins8-g32, qins8-g64, "
                  "qins8-g32-fp16, qins8-g64-fp16, q4_0, q4_1, q4_k, q8_0, 4bit or 8bit)");
    names.push_back(item);
  }
  std::vector<EvalVariant> out;
  for (const std::string& n : names) {
    EvalVariant v = make_eval_variant(core::Codebook::Projective, 0.0, 0);
    v.scheme = n;
    v.name = scheme_label(n);
    out.push_back(v);
  }
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
  read_chat_jsonl(path, [&](const std::vector<tok::ChatTurn>& turns, const std::string&) {
    std::vector<int> ids = tok.encode_chat(turns, /*add_generation_prompt=*/false);
    if (ids.size() < 2) return true;
    if (static_cast<int64_t>(ids.size()) > window) {
      ids.resize(static_cast<size_t>(window));
      ++t.truncated;
    }
    if (!t.seqs.empty() && t.tokens + static_cast<int64_t>(ids.size()) > max_tokens) return false;
    std::vector<uint8_t> target = assistant_mask(ids, tok);
    add_sequence(t, std::vector<int64_t>(ids.begin(), ids.end()), std::move(target));
    return t.tokens < max_tokens;
  });
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
// Scoring alternates the QINS model and the fp32 reference batch by batch: each gets its own BLAS
// thread policy (a no-op when it does not change).
torch::Tensor target_log_probs(Phi3Weights& w, const Batch& b) {
  apply_thread_policy(w);
  return log_probs_at(w, b.ids, b.rows);
}

// Reference log-probs per batch, computed once when they fit in `budget_bytes`.
struct RefCache {
  std::vector<torch::Tensor> lp;  // per batch [N, V] f32, or empty (recompute)
};

EvalScores score_batches(Phi3Weights& model, Phi3Weights* reference, const std::vector<Batch>& batches,
                         RefCache* cache) {
  torch::NoGradGuard ng;
  const auto t0 = Clock::now();
  double nll = 0.0, kl = 0.0, kl_sq = 0.0, d_sum = 0.0, d_sq = 0.0;
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
    const torch::Tensor klp = (ref.exp() * (ref - lp)).sum(1).to(torch::kFloat64);  // [N]
    kl += klp.sum().item<double>();
    kl_sq += klp.pow(2).sum().item<double>();
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
  s.kl_se = kNaN;
  if (reference && n > 1) {
    const double dn = static_cast<double>(n), mean = d_sum / dn;
    s.nll_delta_se = std::sqrt(std::max(0.0, (d_sq / dn - mean * mean) * dn / (dn - 1.0)) / dn);
    const double kmean = kl / dn;
    s.kl_se = std::sqrt(std::max(0.0, (kl_sq / dn - kmean * kmean) * dn / (dn - 1.0)) / dn);
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
  e.bits = 8.0 * static_cast<double>(q.codes.numel()) + 32.0 * static_cast<double>(q.scales.numel() + q.lut.numel());
  return e;
}

// A tensor stored in another code: its error from the expanded matrix `wq`.
TensorError tensor_error_dense(const std::string& name, const torch::Tensor& w, const torch::Tensor& wq, double bits) {
  TensorError e;
  e.name = name;
  e.shape = w.sizes().vec();
  const torch::Tensor w64 = w.to(torch::kFloat64), d = w64 - wq.to(torch::kFloat64);
  e.signal_sq = w64.pow(2).sum().item<double>();
  e.noise_sq = d.pow(2).sum().item<double>();
  e.sqnr_db = e.noise_sq > 0 ? 10.0 * std::log10(e.signal_sq / e.noise_sq) : std::numeric_limits<double>::infinity();
  e.rel_error = e.signal_sq > 0 ? std::sqrt(e.noise_sq / e.signal_sq) : 0.0;
  e.numel = w.numel();
  e.bits = bits;
  return e;
}

bool is_layer_projection(const std::string& name) {
  return name.find("embed_tokens") == std::string::npos && name.find("lm_head") == std::string::npos;
}

}  // namespace

Phi3Weights quantize_checkpoint(const st::Checkpoint& ckpt, const Phi3Config& c, const EvalVariant& v,
                                std::vector<TensorError>* errors, int threads) {
  core::QuantizeOptions qo;
  qo.codebook = v.codebook;
  qo.pole = v.pole;
  qo.threads = threads;
  auto quant = [&](const TensorSpec& s) {
    const torch::Tensor t = read_tensor_f32(ckpt, c, s.name);  // [out, in] f32
    core::QuantizedTensor q = core::quantize(t, qo);
    const int64_t pruned = prune_codes(q, v.prune_index);
    if (errors) errors->push_back(tensor_error(s.name, t, q, pruned));
    return q;
  };
  WeightMakers make;
  make.embedding = [&](const TensorSpec& s) { return std::make_unique<QinsEmbedding>(quant(s)); };
  make.norm = [&](const TensorSpec& s) { return read_tensor_f32(ckpt, c, s.name); };
  make.linear = [&](const TensorSpec& s) -> std::unique_ptr<LinearOp> {
    if (v.scheme.empty() || !is_layer_projection(s.name))
      return std::make_unique<QinsLinear>(core::ProjectiveLinear(quant(s)));
    const torch::Tensor t = read_tensor_f32(ckpt, c, s.name);  // [out, in] f32
    if (v.scheme.rfind("qins4", 0) == 0) {
      core::Quantize4Options o4;
      o4.group = v.scheme == "qins4-g64" ? 64 : v.scheme == "qins4-g16" ? 16 : 32;
      o4.table = v.scheme == "qins4-projective" ? core::Table4::Projective
                 : v.scheme == "qins4-uniform"  ? core::Table4::Uniform
                                                : core::Table4::Lloyd;
      o4.threads = threads;
      core::Quantized4Tensor q = core::quantize4(t, o4);
      if (errors) errors->push_back(tensor_error_dense(s.name, t, core::dequantize4(q), 8.0 * static_cast<double>(q.bytes())));
      return std::make_unique<Qins4LinearOp>(core::Qins4Linear(std::move(q)));
    }
    if (v.scheme.rfind("qins8-", 0) == 0) {
      // QINS-8 grouped: evaluated on its dequantized matrix (its kernel computes in fp32 on the
      // same stored values, so only the order of the additions differs).
      core::Quantize8gOptions o8;
      o8.group = v.scheme.rfind("qins8-g64", 0) == 0 ? 64 : 32;
      o8.scale = v.scheme.size() > 5 && v.scheme.compare(v.scheme.size() - 5, 5, "-fp16") == 0 ? core::Scale8::Fp16
                                                                                              : core::Scale8::Log8;
      o8.threads = threads;
      const core::Quantized8gTensor q = core::quantize8g(t, o8);
      torch::Tensor wq = core::dequantize8g(q);  // [out, in] f32
      if (errors) errors->push_back(tensor_error_dense(s.name, t, wq, 8.0 * static_cast<double>(q.bytes())));
      return std::make_unique<DenseLinear>(std::move(wq));
    }
    torch::Tensor wq = simulate_gguf(v.scheme, t);  // [out, in] f32
    if (errors) errors->push_back(tensor_error_dense(s.name, t, wq, gguf_bits_per_weight(v.scheme) * static_cast<double>(t.numel())));
    return std::make_unique<DenseLinear>(std::move(wq));
  };
  return assemble_weights(c, make);
}

namespace {

// Summaries of a row's tensor errors.
void summarize(EvalRow& row) {
  double sig = 0, noise = 0, sum = 0, worst = std::numeric_limits<double>::infinity();
  double layer_bits = 0, layer_numel = 0;
  for (const auto& t : row.tensors) {
    if (is_layer_projection(t.name)) layer_bits += t.bits, layer_numel += static_cast<double>(t.numel);
    sig += t.signal_sq;
    noise += t.noise_sq;
    sum += t.sqnr_db;
    worst = std::min(worst, t.sqnr_db);
    row.codes += t.numel;
    row.zero_codes += t.zero_codes;
    row.pruned_codes += t.pruned_codes;
  }
  row.bits_per_weight = layer_numel > 0 ? layer_bits / layer_numel : kNaN;
  if (row.tensors.empty()) {
    row.weight_sqnr_db = row.mean_tensor_sqnr_db = row.worst_tensor_sqnr_db = kNaN;
    return;
  }
  row.weight_sqnr_db = noise > 0 ? 10.0 * std::log10(sig / noise) : std::numeric_limits<double>::infinity();
  row.mean_tensor_sqnr_db = sum / static_cast<double>(row.tensors.size());
  row.worst_tensor_sqnr_db = worst;
}

// The quantized tensors of a loaded .qins model with their Phi-3 names, in file order.
std::vector<std::pair<std::string, const core::QuantizedTensor*>> qins_tensors(Phi3Weights& w) {
  std::vector<std::pair<std::string, const core::QuantizedTensor*>> out;
  const std::vector<TensorSpec> specs = phi3_tensors(w.config);
  for (const WeightRef& r : weight_refs(w, specs)) {
    if (auto* e = dynamic_cast<QinsEmbedding*>(r.embedding)) out.emplace_back(r.spec->name, &e->quantized());
    if (auto* q = dynamic_cast<QinsLinear*>(r.linear)) out.emplace_back(r.spec->name, &q->module()->quantized());
  }
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

namespace {

// A Hugging Face folder: its fp32 weights are the reference, each variant is quantized from it.
void evaluate_hf(const std::string& model_path, const std::string& text_path, const EvalOptions& o, EvalReport& r,
                 const std::function<void(const std::string&)>& log) {
  if (!o.reference.empty()) throw Error("--reference: only for a .qins model (a Hugging Face folder is its own reference)");
  std::vector<EvalVariant> variants = eval_variants(o.codebooks, o.pole, o.prune_index);
  for (EvalVariant& v : scheme_variants(o.schemes)) variants.push_back(std::move(v));
  if (variants.empty()) throw Error("eval: nothing to evaluate (--codebook none and no --scheme)");
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
}

// A .qins file: its codebook is fixed; the reference (if any) is the HF folder it came from.
void evaluate_qins(const std::string& model_path, const std::string& text_path, const EvalOptions& o, EvalReport& r) {
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
  // A QINS-4 file: its layer projections are the "qins4" scheme (group 64: "qins4-g64"; another table:
  // "qins4-<table>"), the embedding and lm_head 8-bit projective, as `--scheme qins4` builds them.
  std::vector<std::pair<std::string, const core::Quantized4Tensor*>> q4_tensors;
  const std::vector<TensorSpec> specs = phi3_tensors(model.config);
  for (const WeightRef& wr : weight_refs(model, specs))
    if (auto* q4 = dynamic_cast<Qins4LinearOp*>(wr.linear)) q4_tensors.emplace_back(wr.spec->name, &q4->module()->quantized());
  if (!q4_tensors.empty()) {
    const core::Quantized4Tensor& q = *q4_tensors.front().second;
    row.variant.scheme = q.group == 64 ? "qins4-g64" : q.group == 16 ? "qins4-g16" : q.table == core::Table4::Lloyd ? "qins4" : std::string("qins4-") + core::table4_name(q.table);
    row.variant.codebook = core::Codebook::Projective;
    row.variant.pole = 0.0;
  } else if (engine->info().codebook != "none") {
    row.variant.codebook = core::codebook_from_name(engine->info().codebook);
  }
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
    for (const auto& [name, q] : qins_tensors(model)) {  // in the Phi-3 file order
      row.tensors.push_back(tensor_error(name, read_tensor_f32(*ckpt, c, name), *q, 0));
      if (q->codebook == core::Codebook::Projective && q4_tensors.empty()) row.variant.pole = q->pole;
    }
    for (const auto& [name, q] : q4_tensors)
      row.tensors.push_back(tensor_error_dense(name, read_tensor_f32(*ckpt, c, name), core::dequantize4(*q),
                                               8.0 * static_cast<double>(q->bytes())));
    summarize(row);
    row.scores = score_batches(model, &ref, batches, &cache);
    r.rows.push_back(std::move(row));
  }
  text.seqs.clear();
  text.is_target.clear();
  r.text = std::move(text);
}

}  // namespace

EvalReport evaluate(const std::string& model_path, const std::string& text_path, const EvalOptions& o) {
  configure_threads(o.threads);
  EvalReport r;
  r.model = model_path;
  std::error_code ec;
  const bool hf = fs::is_directory(model_path, ec);
  r.model_format = hf ? "hf" : "qins";
  if (hf)
    evaluate_hf(model_path, text_path, o, r, [&](const std::string& s) {
      if (o.log) o.log(s);
    });
  else
    evaluate_qins(model_path, text_path, o, r);
  return r;
}

}  // namespace qins
