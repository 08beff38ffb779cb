// The accuracy report (`qins eval`): what each QINS codebook costs a model, measured against the
// unquantized fp32 weights.
//
// - Per tensor: SQNR (dB) and relative error |W-Q|/|W| of every quantized matrix, for each variant
//   (codebook, pole, pruning), with the same core::quantize() (and prune_codes()) the converter uses.
// - End to end: perplexity on a text, mean KL(P_ref || P_q) of the next-token distributions, and
//   top-1 agreement with the reference, each variant against the fp32 model, full forward (no KV
//   cache) per window.
// - Synthetic weights (Gaussian / Laplace / Student-t(5)) for codebook SQNR without a model.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "qins/io/converter.h"
#include "qins/core/qins.h"
#include "qins/graph/phi3_config.h"
#include "qins/graph/phi3_model.h"
#include "qins/io/safetensors.h"

namespace qins::tok {
class Tokenizer;
}

namespace qins {

// One quantization setting, evaluated as its own row.
struct EvalVariant {
  std::string name;                                 // e.g. "projective C=300", "uniform, prune j<=2"
  core::Codebook codebook = core::Codebook::Projective;
  double pole = 300.0;                              // projective: fixed C; <= 0: fitted per tensor by weight MSE
  int prune_index = 0;                              // codes with 0 < j <= prune_index become zero (0 = off)
  // Empty: the 8-bit QINS codebook above. Otherwise the layer projections use another code and the
  // embedding and lm_head stay 8-bit QINS (projective, fitted pole; the mixed-precision policy of
  // docs/qins.md): "qins4" (Lloyd table, group 32), "qins4-g64", "qins4-projective",
  // "qins4-uniform", or a simulated llama.cpp format "q4_0", "q4_1", "q4_k", "q8_0" (sim_quant.h).
  std::string scheme;
};

// The rows a `--scheme` list asks for (comma-separated names above, or "4bit" for qins4,
// qins4-g64, q4_0, q4_1, q4_k and q8_0). Throws qins::Error naming an unknown entry.
std::vector<EvalVariant> scheme_variants(const std::string& list);

// The rows a `--codebook` choice asks for: "inverse" | "projective" | "uniform" | "all".
// projective gives two rows, the fixed pole (`pole`, when > 0) and the per-tensor MSE-fitted pole.
// With prune_index > 0 each codebook also gets one pruned row (projective: at the fixed pole, or
// the fitted one when pole <= 0). Throws qins::Error for an unknown name.
// One variant: its codebook, pole (projective only; <= 0: fitted per tensor), pruning and name.
EvalVariant make_eval_variant(core::Codebook cb, double pole, int prune_index);
std::vector<EvalVariant> eval_variants(const std::string& codebooks, double pole, int prune_index);

// The evaluation text as token sequences of at most `window` tokens and the targets scored in each.
// - Plain text: the tokenizer's encode(text, allow_special = false) of the whole file (BOS first when
//   the tokenizer config says add_bos_token), cut into consecutive windows; every token of a window
//   but its first is a target.
// - .jsonl chat ({"messages": [{"role", "content"}, ...]} per line): each conversation is rendered by
//   encode_chat (no generation prompt) and is its own sequence (cut to `window` if longer); targets
//   are the assistant tokens: every token after an <|assistant|> token up to and including its <|end|>.
// Stops once `max_tokens` tokens are collected (whole conversations; at least one).
struct EvalText {
  std::string path;
  std::string mode;                             // "text" | "chat"
  int window = 0;
  std::vector<std::vector<int64_t>> seqs;       // token ids, each 2..window long
  std::vector<std::vector<uint8_t>> is_target;  // is_target[i][t] = 1: seqs[i][t] is scored (t >= 1)
  int64_t tokens = 0;                           // sum of sequence lengths
  int64_t targets = 0;                          // scored positions
  int truncated = 0;                            // chat conversations cut to the window
};
EvalText load_eval_text(const std::string& path, const tok::Tokenizer& tok, int window, int64_t max_tokens);

// End-to-end scores of one model (against a reference model when one is given).
struct EvalScores {
  double nll = 0.0;         // mean negative log-likelihood per target (nats)
  double perplexity = 0.0;  // exp(nll)
  double kl = 0.0;          // mean KL(P_ref || P_model) per target (nats); NaN without reference
  double top1 = 0.0;        // fraction of targets whose argmax equals the reference's; NaN without reference
  // Standard error of the mean per-target NLL difference (model - reference), nats: how far the
  // perplexity ratio exp(mean difference) could move on another sample of text. NaN without reference.
  double nll_delta_se = 0.0;
  double kl_se = 0.0;       // standard error of the mean KL over targets; NaN without reference
  int64_t targets = 0;
  double seconds = 0.0;     // forward passes + scoring
};

// Scores `model` on `text` (right-padded batches of about `batch_tokens` tokens; causal attention
// keeps the padding invisible to real tokens). `reference` may be null, or the same object.
EvalScores score_model(Phi3Weights& model, Phi3Weights* reference, const EvalText& text, int batch_tokens = 2048);

// Weight error of one quantized tensor.
struct TensorError {
  std::string name;
  std::vector<int64_t> shape;
  double sqnr_db = 0.0;
  double rel_error = 0.0;
  double pole = 0.0;          // projective: the pole used (fitted or fixed); 0 otherwise
  double signal_sq = 0.0;     // |W|^2
  double noise_sq = 0.0;      // |W-Q|^2
  int64_t numel = 0;
  int64_t zero_codes = 0;     // codes with j == 0 (after pruning)
  int64_t pruned_codes = 0;   // codes pruning set to zero
  double bits = 0.0;          // bits the code stores for this tensor (codes, scales, tables)
};

// Quantizes every projection and the embedding of a Hugging Face checkpoint like the converter
// does (embedding shared with lm_head when tied; norms stay fp32) into a model on the fused QINS
// kernels, recording each tensor's error in `errors` (if not null).
Phi3Weights quantize_checkpoint(const st::Checkpoint& ckpt, const Phi3Config& c, const EvalVariant& v,
                                std::vector<TensorError>* errors, int threads = 0);

struct EvalRow {
  EvalVariant variant;
  std::string label;                // what the table shows
  bool quantized = true;            // false for the fp32 reference row
  EvalScores scores;
  std::vector<TensorError> tensors; // empty when not known (a .qins file without --reference)
  double weight_sqnr_db = 0.0;      // over all quantized tensors: 10 log10(sum |W|^2 / sum |W-Q|^2)
  double mean_tensor_sqnr_db = 0.0;
  double worst_tensor_sqnr_db = 0.0;
  int64_t codes = 0, zero_codes = 0, pruned_codes = 0;
  double quantize_seconds = 0.0;
  double bits_per_weight = 0.0;     // over the layer projections (not the embedding / lm_head)
};

struct EvalOptions {
  std::string codebooks = "all";    // inverse | projective | uniform | all | none (HF models)
  std::string schemes;              // extra rows (HF models): see scheme_variants()
  double pole = 300.0;              // fixed pole of the projective rows (<= 0: only the fitted pole)
  int prune_index = 0;              // > 0: add pruned rows
  int window = 256;
  int64_t max_tokens = 4096;
  int batch_tokens = 2048;
  std::string reference;            // a .qins model: the HF folder of its unquantized weights
  int threads = 0;                  // 0 = all cores
  std::function<void(const std::string&)> log;  // progress lines (may be empty)
};

struct EvalReport {
  std::string model;                // path
  std::string model_format;         // "hf" | "qins"
  std::string reference;            // path of the fp32 reference ("" when there is none)
  bool has_reference = false;
  std::string note;                 // e.g. why there is no reference
  EvalText text;                    // sequences cleared; counts kept
  int64_t n_params = 0;
  std::vector<EvalRow> rows;        // the fp32 reference first (when there is one)
};

// Evaluates a Hugging Face folder (fp32 reference + each variant) or a .qins file (with
// options.reference as its fp32 reference, or alone). Errors throw qins::Error naming the file.
EvalReport evaluate(const std::string& model_path, const std::string& text_path, const EvalOptions& options);

std::string eval_report_markdown(const EvalReport& r);
std::string eval_report_json(const EvalReport& r);  // pretty-printed JSON

// Synthetic weights: "gaussian" | "laplace" | "t5" (Student-t with 5 degrees of freedom), unit-free
// (the codebooks are scale-invariant), [rows, cols] fp32, from a portable generator (mt19937_64 +
// explicit transforms): the same numbers on every platform for a seed.
torch::Tensor synthetic_weights(const std::string& dist, int64_t rows, int64_t cols, uint64_t seed);

struct SyntheticResult {
  std::string dist;
  int64_t rows = 0, cols = 0;
  uint64_t seed = 0;
  std::vector<EvalVariant> variants;     // inverse, projective fixed, projective fitted, uniform
  std::vector<core::ErrorStats> errors;  // one per variant
  std::vector<double> poles;             // the pole used per variant (0 when not projective)
};
// `dists`: one name or "all". Pole of the fixed projective column: `pole`.
std::vector<SyntheticResult> evaluate_synthetic(const std::string& dists, int64_t rows, int64_t cols, uint64_t seed,
                                                double pole, int threads = 0);
std::string synthetic_markdown(const std::vector<SyntheticResult>& r);
std::string synthetic_json(const std::vector<SyntheticResult>& r);

}  // namespace qins
