// `qins synth`: Phi-3-shaped .qins files with random weights, one tensor at a time.
// Where time goes: for Phi-3.5-mini, 3.8 G random numbers, their quantization and the
// compression of 3.8 GB of codes. The generator is a counter-based splitmix64 (no state shared
// between threads, so rows fill in parallel and the output does not depend on the thread count).
#include "qins/graph/phi3_layout.h"
#include "qins/util/files.h"
#include "qins/util/timing.h"
#include "qins/tools/synth.h"

#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "qins/runtime/engine.h"
#include "qins/runtime/internal.h"
#include "qins/tools/fixture.h"
#include "qins/io/hf_folder.h"
#include "qins/graph/phi3_config.h"
#include "qins/io/converter.h"
#include "qins/io/qins_file.h"
#include "qins/tokenizer/tokenizer.h"

namespace fs = std::filesystem;

namespace qins {

namespace {

struct SynthShape {
  int hidden, intermediate, layers, heads, kv_heads, vocab;
  int max_position, original_max_position;
  bool longrope;
};

SynthShape shape_for(const std::string& like) {
  // phi-3.5-mini: PHI3.md §2 (32 layers, 3072, 8192, 32 heads, vocab 32064, 128k longrope).
  if (like == "phi-3.5-mini") return {3072, 8192, 32, 32, 32, 32064, 131072, 4096, true};
  if (like == "mid") return {1536, 4096, 16, 16, 16, 32064, 131072, 4096, true};
  if (like == "demo") return {256, 768, 4, 4, 4, 32064, 4096, 4096, false};
  if (like == "tiny") return {64, 128, 2, 4, 2, 384, 4096, 4096, false};  // tests: seconds, GQA
  throw Error("synth: unknown --like '" + like + "' (expected phi-3.5-mini, mid, demo or tiny)");
}

// splitmix64: a bijective mixer; counter-based use gives independent streams per (seed, row).
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Approximately standard normal: Irwin-Hall sum of eight 16-bit uniforms from two 64-bit draws,
// centred and scaled to unit variance. Tails stop at +-4.9 sigma (a true normal has ~1 in 10^6
// samples beyond that); the body matches to < 1 %. Vectorises: no libm calls.
inline float approx_normal(uint64_t a, uint64_t b) {
  const uint32_t s = static_cast<uint32_t>((a & 0xFFFF) + ((a >> 16) & 0xFFFF) + ((a >> 32) & 0xFFFF) + (a >> 48) +
                                           (b & 0xFFFF) + ((b >> 16) & 0xFFFF) + ((b >> 32) & 0xFFFF) + (b >> 48));
  // mean 8 * 32767.5, variance 8 * (65536^2 - 1) / 12
  constexpr float kMean = 8.0f * 32767.5f;
  constexpr float kInvSd = 1.0f / 53509.6f;  // sqrt(8 * (65536^2 - 1) / 12)
  return (static_cast<float>(s) - kMean) * kInvSd;
}

inline float unit_uniform(uint64_t a) {  // (0, 1)
  return (static_cast<float>(a >> 40) + 0.5f) * (1.0f / 16777216.0f);
}

}  // namespace

SynthDist synth_dist_from_name(const std::string& name) {
  if (name == "gaussian") return SynthDist::Gaussian;
  if (name == "laplace") return SynthDist::Laplace;
  if (name == "t5") return SynthDist::StudentT5;
  throw Error("synth: unknown --dist '" + name + "' (expected gaussian, laplace or t5)");
}

void synth_fill(float* out, int64_t n, SynthDist dist, double std_dev, uint64_t seed, uint64_t stream) {
  const uint64_t base = mix64(seed ^ mix64(stream + 0x9E3779B97F4A7C15ull));
  const float sd = static_cast<float>(std_dev);
  switch (dist) {
    case SynthDist::Gaussian:
      for (int64_t i = 0; i < n; ++i) {
        const uint64_t c = base + 2 * static_cast<uint64_t>(i);
        out[i] = sd * approx_normal(mix64(c), mix64(c + 1));
      }
      break;
    case SynthDist::Laplace: {
      // Inverse CDF with a random sign; b = std / sqrt(2).
      const float b = sd / std::sqrt(2.0f);
      for (int64_t i = 0; i < n; ++i) {
        const uint64_t r = mix64(base + static_cast<uint64_t>(i));
        const float mag = -b * std::log(unit_uniform(r));
        out[i] = (r & 1) ? -mag : mag;
      }
      break;
    }
    case SynthDist::StudentT5: {
      // t5 = z / sqrt(chi2_5 / 5), variance 5/3: scaled down by sqrt(3/5) to the requested std.
      const float k = sd * std::sqrt(3.0f / 5.0f);
      for (int64_t i = 0; i < n; ++i) {
        const uint64_t c = base + 12 * static_cast<uint64_t>(i);
        const float z = approx_normal(mix64(c), mix64(c + 1));
        float chi = 0.0f;
        for (int j = 1; j <= 5; ++j) {
          const float g = approx_normal(mix64(c + 2 * j), mix64(c + 2 * j + 1));
          chi += g * g;
        }
        out[i] = k * z / std::sqrt(std::max(chi, 1e-6f) / 5.0f);
      }
      break;
    }
  }
}

namespace {

// The tiny tokenizer, trained on the built-in corpus in a scratch folder next to the output.
void synth_tokenizer(const std::string& out_path, int base_vocab, QinsModelMeta& meta) {
  const fs::path out(out_path);
  const fs::path scratch = (out.has_parent_path() ? out.parent_path() : fs::path(".")) /
                           (out.filename().string() + ".synth-tok");
  fs::create_directories(scratch);
  try {
    write_file_atomic((scratch / "corpus.txt").string(), fixture_corpus());
    tok::train_phi3_style_tokenizer((scratch / "corpus.txt").string(), base_vocab, scratch.string());
    meta.tokenizer_model = read_file((scratch / "tokenizer.model").string());
    meta.tokenizer_config_json = read_file((scratch / "tokenizer_config.json").string());
  } catch (...) {
    std::error_code ec;
    fs::remove_all(scratch, ec);
    throw;
  }
  std::error_code ec;
  fs::remove_all(scratch, ec);
}

Phi3Config synth_config(const SynthShape& s, int base_vocab, const std::string& origin) {
  Phi3Config c;
  c.hidden_size = s.hidden;
  c.intermediate_size = s.intermediate;
  c.num_hidden_layers = s.layers;
  c.num_attention_heads = s.heads;
  c.num_key_value_heads = s.kv_heads;
  c.vocab_size = s.vocab;
  c.max_position_embeddings = s.max_position;
  c.original_max_position_embeddings = s.original_max_position;
  c.eos_token_ids = {base_vocab + 7};  // <|end|> of the tiny tokenizer
  c.pad_token_id = base_vocab;
  c.sliding_window = s.max_position * 2;
  c.torch_dtype = "bfloat16";
  if (s.longrope) {
    // Plausible LongRoPE factors (not Phi-3.5's): short ~1 rising gently, long rising
    // geometrically towards the low-frequency end, as a 32x context extension needs.
    c.rope_scaling_type = "longrope";
    const int half = s.hidden / s.heads / 2;
    for (int j = 0; j < half; ++j) {
      const double t = static_cast<double>(j) / (half - 1);
      c.short_factor.push_back(static_cast<float>(1.0 + 0.1 * t * t));
      c.long_factor.push_back(static_cast<float>(std::pow(48.0, t * t)));
    }
  }
  return complete_phi3_config(c, origin);
}

std::string synth_info_json(const SynthOptions& o) {
  static const char* kDistNames[] = {"gaussian", "laplace", "t5"};
  nlohmann::json j({{"source", "synthetic"},
                    {"like", o.like},
                    {"dist", kDistNames[static_cast<int>(o.dist)]},
                    {"std", o.weight_std},
                    {"seed", o.seed},
                    {"codebook", o.qins4 ? "qins4" : core::codebook_name(o.quant.codebook)},
                    {"pole", o.quant.pole}});
  if (o.qins4)
    j["qins4"] = {{"table", core::table4_name(o.quant4.table)}, {"group", o.quant4.group}, {"refine_scales", o.quant4.refine_scales}};
  return j.dump();
}

// One tensor's random values: matrices row by row in parallel (stream = tensor index, row),
// norm gains near 1 (trained RMSNorm gains sit around 1 with small spread).
torch::Tensor synth_tensor(const TensorSpec& spec, size_t ti, const SynthOptions& o) {
  torch::Tensor t = torch::empty(spec.shape, torch::kFloat32);  // [out, in] or [hidden] f32
  float* p = t.data_ptr<float>();
  if (spec.is_matrix()) {
    const int64_t rows = spec.shape[0], cols = spec.shape[1];
    at::parallel_for(0, rows, 16, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        synth_fill(p + r * cols, cols, o.dist, o.weight_std, o.seed, (static_cast<uint64_t>(ti) << 32) | r);
    });
  } else {
    synth_fill(p, spec.shape[0], SynthDist::Gaussian, 0.05, o.seed, static_cast<uint64_t>(ti) << 32);
    t += 1.0f;
  }
  return t;
}

// Generates, quantizes and writes every tensor of c, one at a time.
void write_synth_tensors(QinsFileWriter& w, const Phi3Config& c, const SynthOptions& o, SynthReport& rep,
                         const std::function<bool(double, const std::string&)>& progress) {
  const std::vector<TensorSpec> specs = phi3_tensors(c);
  const int64_t total = phi3_numel(specs);
  int64_t done = 0;
  for (size_t ti = 0; ti < specs.size(); ++ti) {
    const TensorSpec& spec = specs[ti];
    if (progress && !progress(static_cast<double>(done) / static_cast<double>(total), spec.name)) throw Cancelled();
    auto t1 = Clock::now();
    torch::Tensor t = synth_tensor(spec, ti, o);
    rep.generate_seconds += seconds_since(t1);
    t1 = Clock::now();
    if (o.qins4 && stored_as_qins4(spec)) {
      core::Quantize4Options qo = o.quant4;
      qo.threads = o.quant.threads;
      const core::Quantized4Tensor q = core::quantize4(t, qo);
      rep.quantize_seconds += seconds_since(t1);
      t = torch::Tensor();
      rep.code_bytes += q.bytes();
      t1 = Clock::now();
      w.add_qins4(spec.name, q);
    } else if (spec.is_matrix()) {
      core::QuantizedTensor q = core::quantize(t, o.quant);
      rep.quantize_seconds += seconds_since(t1);
      t = torch::Tensor();  // free the f32 copy before compressing
      rep.code_bytes += q.codes.numel() + q.scales.numel() * 4;
      t1 = Clock::now();
      w.add_quantized(spec.name, q);
    } else {
      w.add_f32(spec.name, t);
    }
    rep.write_seconds += seconds_since(t1);
    done += spec.numel();
  }
  rep.params = total;
}

std::string config_summary(const std::string& like, const Phi3Config& c) {
  std::ostringstream cs;
  cs << like << ": hidden " << c.hidden_size << ", intermediate " << c.intermediate_size << ", layers "
     << c.num_hidden_layers << ", heads " << c.num_attention_heads << " (kv " << c.num_key_value_heads << "), vocab "
     << c.vocab_size << (c.has_longrope() ? ", longrope" : "");
  return cs.str();
}

}  // namespace

SynthReport write_synthetic_model(const std::string& out_path, const SynthOptions& o,
                                  const std::function<bool(double, const std::string&)>& progress) {
  const auto t0 = Clock::now();
  const SynthShape s = shape_for(o.like);
  configure_threads(o.quant.threads);  // Debian's libtorch starts with one thread
  const int base_vocab = 320;  // the tiny tokenizer; the config's vocab stays Phi-3.5's (rows past it are never sampled)

  QinsModelMeta meta;
  synth_tokenizer(out_path, base_vocab, meta);
  const Phi3Config c = synth_config(s, base_vocab, out_path + " (config.json)");
  meta.config_json = c.source_json;
  meta.generation_config_json =
      nlohmann::json({{"bos_token_id", 1}, {"eos_token_id", {base_vocab, base_vocab + 7}}}).dump(2);
  meta.info_json = synth_info_json(o);
  meta.has_qins4 = o.qins4;

  SynthReport rep;
  QinsFileWriter w(out_path);
  put_model_metadata(w, meta);
  write_synth_tensors(w, c, o, rep, progress);
  w.commit();
  if (progress) progress(1.0, "done");
  rep.file_bytes = static_cast<int64_t>(fs::file_size(out_path));
  rep.seconds = seconds_since(t0);
  rep.config_summary = config_summary(o.like, c);
  return rep;
}

}  // namespace qins
