// Synthetic weights: the codebooks on random matrices of known distributions (qins synth's generator).
#include <ATen/Parallel.h>

#include "qins/io/converter.h"
#include "qins/graph/phi3_layout.h"
#include "qins/util/timing.h"
#include "qins/tools/chat_corpus.h"
#include "qins/tools/nll.h"
#include "qins/tools/eval.h"
#include "qins/tools/synth.h"
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
// Synthetic weights

torch::Tensor synthetic_weights(const std::string& dist, int64_t rows, int64_t cols, uint64_t seed) {
  if (rows <= 0 || cols <= 0) throw Error("--rows / --cols: must be positive");
  SynthDist d;
  try {
    d = synth_dist_from_name(dist);
  } catch (const Error&) {
    throw Error("--synthetic: unknown distribution '" + dist + "' (expected gaussian, laplace, t5 or all)");
  }
  constexpr double kStd = 0.02;  // a typical trained weight scale (the codebooks are scale-invariant)
  torch::Tensor w = torch::empty({rows, cols}, torch::kFloat32);  // [rows, cols] f32
  float* p = w.data_ptr<float>();
  at::parallel_for(0, rows, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) synth_fill(p + r * cols, cols, d, kStd, seed, static_cast<uint64_t>(r));
  });
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
    r.variants = {make_eval_variant(core::Codebook::Inverse, 0, 0), make_eval_variant(core::Codebook::Projective, pole, 0),
                  make_eval_variant(core::Codebook::Projective, 0, 0), make_eval_variant(core::Codebook::Uniform, 0, 0)};
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
