// The converter: a Hugging Face folder -> one .qins file, one tensor at a time.
#include "qins/graph/phi3_layout.h"
#include "qins/io/converter.h"
#include "qins/io/model_checks.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <limits>

#include "qins/core/qins.h"
#include "qins/io/hf_folder.h"
#include "qins/io/qins_file.h"
#include "qins/io/safetensors.h"
#include "qins/tokenizer/tokenizer.h"
#include "qins/util/files.h"
#include "qins/util/timing.h"

namespace fs = std::filesystem;

namespace qins {

int64_t prune_codes(core::QuantizedTensor& q, int prune_index) {
  if (prune_index <= 0) return 0;
  auto codes = q.codes.contiguous();
  auto* p = codes.data_ptr<uint8_t>();
  int64_t pruned = 0;
  for (int64_t i = 0; i < codes.numel(); ++i) {
    const int j = p[i] & 0x7F;
    if (j != 0 && j <= prune_index) {
      p[i] = 0;
      ++pruned;
    }
  }
  q.codes = codes;
  return pruned;
}

bool stored_as_qins4(const TensorSpec& spec) { return spec.kind == TensorKind::Projection; }

core::ErrorStats measure_error4(const torch::Tensor& w, const core::Quantized4Tensor& q) {
  const torch::Tensor wf = w.to(torch::kFloat64);
  const torch::Tensor d = core::dequantize4(q).to(torch::kFloat64);
  const double sig = wf.pow(2).sum().item<double>();
  const double noise = (wf - d).pow(2).sum().item<double>();
  core::ErrorStats st;
  st.rel_error = sig > 0 ? std::sqrt(noise / sig) : 0.0;
  st.sqnr_db = noise > 0 ? 10.0 * std::log10(sig / noise) : std::numeric_limits<double>::infinity();
  return st;
}

ConvertReport convert_to_qins(const std::string& hf_dir, const std::string& out_path, const ConvertOptions& opts,
                              const std::function<bool(double, const std::string&)>& progress) {
  const auto t0 = Clock::now();
  const HfPaths paths = find_hf_files(hf_dir);
  const Phi3Config c = read_phi3_config(paths.config);
  // The tokenizer must load before anything is written: a bad one fails the conversion early.
  const tok::Tokenizer tokenizer = tok::Tokenizer::from_files(paths.tokenizer_model, paths.tokenizer_config);
  QinsModelMeta meta;
  GenerationConfig generation;
  if (!paths.generation_config.empty()) {
    meta.generation_config_json = read_file(paths.generation_config, kMaxConfigBytes);
    generation = parse_generation_config(meta.generation_config_json, paths.generation_config);
  }
  // The same checks as loading the folder: the tokenizer and special ids fit the vocabulary, the
  // files can hold what config.json describes (before the tensor list is built from it).
  validate_token_ids(c, generation, tokenizer, hf_dir);
  auto ckpt = st::Checkpoint::open_dir(hf_dir);
  check_config_against_files(c, ckpt->total_bytes(), hf_dir);

  meta.config_json = c.source_json;
  meta.tokenizer_model = read_file(paths.tokenizer_model, kMaxTokenizerBytes);
  meta.tokenizer_config_json = tokenizer.config_json();  // with the added tokens found beside it
  nlohmann::json info({{"source", opts.source_name.empty() ? fs::path(hf_dir).filename().string() : opts.source_name},
                       {"codebook", opts.qins4 ? "qins4" : core::codebook_name(opts.quant.codebook)},
                       {"pole", opts.quant.pole},
                       {"prune_index", opts.prune_index}});
  if (opts.qins4) {
    if (opts.prune_index > 0) throw Error("convert: --prune-index applies to 8-bit codes only, not to qins4");
    info["qins4"] = {{"table", core::table4_name(opts.quant4.table)},
                     {"group", opts.quant4.group},
                     {"policy", "layer projections 4-bit; embedding and lm_head 8-bit " +
                                    std::string(core::codebook_name(opts.quant.codebook))}};
    meta.has_qins4 = true;
  }
  if (!opts.origin_json.empty()) info["origin"] = nlohmann::json::parse(opts.origin_json);
  meta.info_json = info.dump();

  // Tensor order: the layout's (the loader does not depend on it).
  const std::vector<TensorSpec> specs = phi3_tensors(c);
  int64_t total = 0;
  for (const auto& s : specs) total += ckpt->get(s.name).numel();

  ConvertReport report;
  report.input_bytes = ckpt->total_bytes();
  QinsFileWriter w(out_path);
  put_model_metadata(w, meta);
  int64_t done = 0;
  for (const TensorSpec& spec : specs) {
    const std::string& name = spec.name;
    if (progress && !progress(static_cast<double>(done) / static_cast<double>(total), name)) throw Cancelled();
    torch::Tensor t = read_tensor_f32(*ckpt, c, name);  // one tensor in f32 at a time
    ConvertedTensor ct{name, t.sizes().vec(), t.dim() == 2, 0.0, 0.0};
    if (opts.qins4 && stored_as_qins4(spec)) {
      core::Quantize4Options qo = opts.quant4;
      qo.threads = opts.quant.threads;
      const core::Quantized4Tensor q = core::quantize4(t, qo);
      const auto err = measure_error4(t, q);
      ct.sqnr_db = err.sqnr_db;
      ct.rel_error = err.rel_error;
      w.add_qins4(name, q);
    } else if (t.dim() == 2) {
      core::QuantizedTensor q = core::quantize(t, opts.quant);
      prune_codes(q, opts.prune_index);
      const auto err = core::measure_error(t, q);
      ct.sqnr_db = err.sqnr_db;
      ct.rel_error = err.rel_error;
      w.add_quantized(name, q);
    } else {
      w.add_f32(name, t);
    }
    done += t.numel();
    report.params += t.numel();
    report.tensors.push_back(std::move(ct));
  }
  w.commit();
  if (progress) progress(1.0, "done");
  report.output_bytes = static_cast<int64_t>(fs::file_size(out_path));
  report.seconds = seconds_since(t0);
  return report;
}

}  // namespace qins
