// The code a converted model gets, shared by `qins convert`, `qins pull` and `qins synth`:
// --codebook (an 8-bit QINS codebook, or qins4), --group and --table (QINS-4 only).
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "qins/core/qins.h"
#include "qins/core/qins4.h"
#include "qins/util/errors.h"

namespace qins::cli {

inline const char* codebook_help() {
  return "inverse | projective | uniform: 8-bit QINS codes everywhere. qins4: the layer projections "
         "(qkv, o, gate_up, down) as 4-bit QINS-4 codes (4.5 bits per weight at --group 16 or 32, 4.25 at 64); "
         "the token embedding and lm_head stay 8-bit QINS (projective, pole fitted per tensor unless --pole is "
         "given), norms fp32";
}

inline void add_qins4_options(CLI::App& app, int& group, std::string& table) {
  app.add_option("--group", group,
                 "qins4: columns per scale: 16 (8-bit log-scale codes, the lowest error at 4.5 bits per weight), "
                 "32 (fp16 scales) or 64 (fp16, 4.25 bits per weight)")
      ->capture_default_str()
      ->check(CLI::IsMember({16, 32, 64}));
  app.add_option("--table", table, "qins4: how the 16-level table is fitted: lloyd | projective | uniform")
      ->capture_default_str()
      ->check(CLI::IsMember({"lloyd", "projective", "uniform"}));
}

// Fills the 8-bit options (codebook, pole; with qins4 the embedding and lm_head get projective) and
// the QINS-4 ones; returns true for qins4.
// With qins4 the 8-bit tensors get a pole fitted per tensor unless --pole was given (pole_given).
inline bool apply_code_choice(const std::string& codebook, double pole, bool pole_given, int group,
                              const std::string& table, core::QuantizeOptions& q8, core::Quantize4Options& q4) {
  const bool qins4 = codebook == "qins4";
  try {
    q8.codebook = qins4 ? core::Codebook::Projective : core::codebook_from_name(codebook);
    q4.table = core::table4_from_name(table);
  } catch (const std::invalid_argument& e) {
    throw Error(std::string("--codebook: ") + e.what());
  }
  q8.pole = qins4 && !pole_given ? 0.0 : pole;
  q4.group = group;
  return qins4;
}

}  // namespace qins::cli
