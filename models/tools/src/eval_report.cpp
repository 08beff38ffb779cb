// The eval reports: markdown and JSON of an EvalReport.
#include "qins/io/converter.h"
#include "qins/graph/phi3_layout.h"
#include "qins/util/timing.h"
#include "qins/tools/chat_corpus.h"
#include "qins/tools/nll.h"
#include "qins/tools/eval.h"
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

// ---------------------------------------------------------------------------------------------
// Output


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
  if (r.has_reference) o << "Mean KL ± one standard error over the targets. ";
  o << "Bits/weight: what the code stores per weight of the layer projections (codes, scales, tables).\n";
  o << "\n| model | bits/weight | perplexity | vs fp32 | mean KL (nats) | top-1 agree | weight SQNR (dB) | worst tensor (dB) | zero codes |\n";
  o << "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  const double ref_ppl = r.has_reference ? r.rows.front().scores.perplexity : kNaN;
  for (const auto& row : r.rows) {
    const auto& s = row.scores;
    const bool has_err = row.quantized && !row.tensors.empty();
    o << "| " << row.label << " | " << (row.quantized ? num(row.bits_per_weight, "%.3f") : "32") << " | "
      << num(s.perplexity, "%.4f") << " | "
      << (row.quantized && r.has_reference
              ? num(100.0 * (s.perplexity / ref_ppl - 1.0), "%+.2f") + " ± " + num(100.0 * s.perplexity / ref_ppl * s.nll_delta_se, "%.2f %%")
              : "")
      << " | "
      << num(s.kl, "%.5f") << (row.quantized && r.has_reference ? " ± " + num(s.kl_se, "%.5f") : std::string())
      << " | " << num(100.0 * s.top1, "%.2f %%") << " | "
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
      o << "| " << t0.name << " | " << shape_str(t0.shape, true) << " |";
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
      jr["scheme"] = row.variant.scheme.empty() ? json("qins8") : json(row.variant.scheme);
      jr["bits_per_weight"] = jnum(row.bits_per_weight);
    }
    const auto& s = row.scores;
    jr["perplexity"] = jnum(s.perplexity);
    jr["nll"] = jnum(s.nll);
    jr["perplexity_delta_pct"] = row.quantized ? jnum(100.0 * (s.perplexity / ref_ppl - 1.0)) : json(0.0);
    jr["perplexity_delta_se_pct"] = row.quantized ? jnum(100.0 * s.perplexity / ref_ppl * s.nll_delta_se) : json(0.0);
    jr["kl"] = jnum(s.kl);
    jr["kl_se"] = row.quantized ? jnum(s.kl_se) : json(0.0);
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

}  // namespace qins
