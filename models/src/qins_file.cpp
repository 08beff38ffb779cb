// .qins model files: writer, converter, parallel loader, inspector.
#include "qins/models/qins_file.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "qins/compression/container.h"
#include "qins/core/qins.h"
#include "qins/models/engine_impl.h"
#include "qins/models/file_util.h"
#include "qins/models/hf_loader.h"
#include "qins/models/inspect.h"
#include "qins/models/safetensors.h"

namespace fs = std::filesystem;

namespace qins {

namespace {

using Clock = std::chrono::steady_clock;

std::vector<uint64_t> u64_shape(const torch::Tensor& t) {
  std::vector<uint64_t> s;
  for (auto d : t.sizes()) s.push_back(static_cast<uint64_t>(d));
  return s;
}

std::string fmt_pole(double pole) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", pole);
  return buf;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Writer

QinsFileWriter::QinsFileWriter(const std::string& path) : path_(path) { open(); }
QinsFileWriter::~QinsFileWriter() = default;

void QinsFileWriter::open() {
  comp::WriterOptions wo;
  wo.before_write = [this](uint64_t off, std::size_t n) {
    if (hook_) hook_(off, n);
  };
  try {
    w_ = std::make_unique<comp::ContainerWriter>(path_, wo);
  } catch (const std::exception& e) {
    throw Error(path_ + ": cannot create (" + e.what() + ")");
  }
}

void QinsFileWriter::set_write_hook(std::function<void(uint64_t, size_t)> hook) { hook_ = std::move(hook); }

void QinsFileWriter::put_metadata(const std::string& key, const std::string& bytes) { w_->put_metadata(key, bytes); }

void QinsFileWriter::add_quantized(const std::string& name, const core::QuantizedTensor& q) {
  const auto codes = q.codes.contiguous();
  const auto scales = q.scales.to(torch::kFloat32).contiguous();
  const auto lut = q.lut.to(torch::kFloat32).contiguous();
  comp::TensorRecord rec{name, u64_shape(codes), "qins8", core::codebook_name(q.codebook), {{"pole", fmt_pole(q.pole)}}};
  w_->add_tensor(rec, {{"codes", codes.data_ptr(), static_cast<size_t>(codes.numel())},
                       {"scales", scales.data_ptr(), static_cast<size_t>(scales.numel()) * 4},
                       {"lut", lut.data_ptr(), static_cast<size_t>(lut.numel()) * 4}});
}

void QinsFileWriter::add_f32(const std::string& name, const torch::Tensor& t) {
  const auto data = t.to(torch::kFloat32).contiguous();
  comp::TensorRecord rec{name, u64_shape(data), "f32", "", {}};
  w_->add_tensor(rec, {{"data", data.data_ptr(), static_cast<size_t>(data.numel()) * 4}});
}

void QinsFileWriter::commit() {
  try {
    w_->commit();
  } catch (const std::exception& e) {
    throw Error(path_ + ": writing failed, nothing was written under this name (" + e.what() + ")");
  }
}

void put_model_metadata(QinsFileWriter& w, const QinsModelMeta& m) {
  nlohmann::json info = {{"format", kQinsFormatName}, {"version", kQinsModelVersion}};
  if (!m.info_json.empty()) info["converter"] = nlohmann::json::parse(m.info_json);
  w.put_metadata("qins.json", info.dump(2));
  w.put_metadata("config.json", m.config_json);
  if (!m.generation_config_json.empty()) w.put_metadata("generation_config.json", m.generation_config_json);
  w.put_metadata("tokenizer.model", m.tokenizer_model);
  w.put_metadata("tokenizer_config.json", m.tokenizer_config_json);
}

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

// ---------------------------------------------------------------------------------------------
// Converter

ConvertReport convert_to_qins(const std::string& hf_dir, const std::string& out_path, const ConvertOptions& opts,
                              const std::function<bool(double, const std::string&)>& progress) {
  const auto t0 = Clock::now();
  const HfPaths paths = find_hf_files(hf_dir);
  const Phi3Config c = read_phi3_config(paths.config);
  // The tokenizer must load before anything is written: a bad one fails the conversion early.
  (void)tok::Tokenizer::from_files(paths.tokenizer_model, paths.tokenizer_config);
  auto ckpt = st::Checkpoint::open_dir(hf_dir);

  QinsModelMeta meta;
  meta.config_json = c.source_json;
  if (!paths.generation_config.empty()) meta.generation_config_json = read_file(paths.generation_config);
  meta.tokenizer_model = read_file(paths.tokenizer_model);
  meta.tokenizer_config_json = read_file(paths.tokenizer_config);
  meta.info_json = nlohmann::json({{"source", fs::path(hf_dir).filename().string()},
                                   {"codebook", core::codebook_name(opts.quant.codebook)},
                                   {"pole", opts.quant.pole},
                                   {"prune_index", opts.prune_index}})
                       .dump();

  // Tensor order: embedding, each layer, final norm, lm_head (the loader does not depend on it).
  std::vector<std::string> names{"model.embed_tokens.weight"};
  for (int il = 0; il < c.num_hidden_layers; ++il)
    for (const char* s : {"input_layernorm.weight", "self_attn.qkv_proj.weight", "self_attn.o_proj.weight",
                          "post_attention_layernorm.weight", "mlp.gate_up_proj.weight", "mlp.down_proj.weight"})
      names.push_back(layer_tensor_name(il, s));
  names.push_back("model.norm.weight");
  if (!c.tie_word_embeddings) names.push_back("lm_head.weight");

  int64_t total = 0;
  for (const auto& n : names) total += ckpt->get(n).numel();

  ConvertReport report;
  report.input_bytes = ckpt->total_bytes();
  QinsFileWriter w(out_path);
  put_model_metadata(w, meta);
  int64_t done = 0;
  for (const auto& name : names) {
    if (progress && !progress(static_cast<double>(done) / static_cast<double>(total), name)) throw Cancelled();
    torch::Tensor t = read_tensor_f32(*ckpt, c, name);  // one tensor in f32 at a time
    ConvertedTensor ct{name, t.sizes().vec(), t.dim() == 2, 0.0, 0.0};
    if (t.dim() == 2) {
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
  report.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return report;
}

void convert_model(const std::string& hf_dir, const std::string& out_path, const std::string& codebook,
                   const ProgressFn& progress) {
  ConvertOptions o;
  try {
    o.quant.codebook = core::codebook_from_name(codebook);
  } catch (const std::invalid_argument& e) {
    throw Error(e.what());
  }
  convert_to_qins(hf_dir, out_path, o, [&](double f, const std::string&) {
    return !progress || progress(f, "converting to .qins");
  });
}

// ---------------------------------------------------------------------------------------------
// Loader

bool is_qins_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[8] = {};
  if (!in.read(magic, 8)) return false;
  static const char kMagic[8] = {'\x89', 'Q', 'I', 'N', 'S', '\r', '\n', '\x1a'};
  return std::memcmp(magic, kMagic, 8) == 0;
}

namespace {

// Where a decoded tensor lands.
struct Pending {
  const comp::TensorInfo* info = nullptr;
  core::QuantizedTensor q;  // qins8
  torch::Tensor f;          // f32
};

std::vector<int64_t> i64_shape(const comp::TensorInfo& t) {
  std::vector<int64_t> s;
  for (auto d : t.shape) s.push_back(static_cast<int64_t>(d));
  return s;
}

}  // namespace

std::unique_ptr<Engine> load_qins_engine(const std::string& path, const LoadOptions& options, const ProgressFn& progress) {
  const auto t0 = Clock::now();
  configure_threads(options.threads);
  auto fail = [&](const std::string& what) -> Error { return Error(path + ": " + what); };
  try {
    const comp::ContainerReader r = comp::ContainerReader::open(path);
    if (!r.has_metadata("qins.json")) throw fail("not a QINS model (no qins.json metadata)");
    const auto info = nlohmann::json::parse(r.metadata("qins.json"));
    if (info.value("format", "") != kQinsFormatName) throw fail("not a QINS Phi-3 model file");
    if (info.value("version", 0) > kQinsModelVersion)
      throw fail("model version " + std::to_string(info.value("version", 0)) + " is newer than this build reads (" +
                 std::to_string(kQinsModelVersion) + ")");
    for (const char* k : {"config.json", "tokenizer.model", "tokenizer_config.json"})
      if (!r.has_metadata(k)) throw fail(std::string("missing metadata '") + k + "'");

    auto impl = std::make_unique<Engine::Impl>();
    impl->options = options;
    const Phi3Config c = parse_phi3_config(r.metadata("config.json"), path + " (config.json)");
    if (r.has_metadata("generation_config.json"))
      impl->generation = parse_generation_config(r.metadata("generation_config.json"), path + " (generation_config.json)");
    impl->tokenizer = std::make_unique<tok::Tokenizer>(
        tok::Tokenizer::from_memory(r.metadata("tokenizer.model"), r.metadata("tokenizer_config.json"), path));

    // Allocate every destination, then decode all chunks in parallel straight into them.
    std::map<std::string, Pending> pending;
    std::vector<comp::DecodeJob> jobs;
    for (const auto& t : r.tensors()) {
      Pending p;
      p.info = &t;
      const auto shape = i64_shape(t);
      std::vector<int64_t> want;
      try {
        want = expected_shape(c, t.name);
      } catch (const Error&) {
        throw fail("unexpected tensor '" + t.name + "'");
      }
      if (shape != want) throw fail("tensor '" + t.name + "' has the wrong shape for config.json");
      if (t.encoding == "qins8") {
        if (shape.size() != 2) throw fail("tensor '" + t.name + "': qins8 needs 2 dimensions");
        p.q.codebook = core::codebook_from_name(t.codebook);
        p.q.pole = t.extras.count("pole") ? std::strtod(t.extras.at("pole").c_str(), nullptr) : 0.0;
        p.q.codes = core::empty_large(shape, torch::kUInt8);  // huge pages: decoding streams it per token
        p.q.scales = torch::empty({shape[0]}, torch::kFloat32);
        p.q.lut = torch::empty({128}, torch::kFloat32);
        jobs.push_back({t.name, "codes", p.q.codes.data_ptr(), static_cast<size_t>(p.q.codes.numel())});
        jobs.push_back({t.name, "scales", p.q.scales.data_ptr(), static_cast<size_t>(shape[0]) * 4});
        jobs.push_back({t.name, "lut", p.q.lut.data_ptr(), 128 * 4});
      } else if (t.encoding == "f32") {
        p.f = torch::empty(shape, torch::kFloat32);
        jobs.push_back({t.name, "data", p.f.data_ptr(), static_cast<size_t>(p.f.numel()) * 4});
      } else {
        throw fail("tensor '" + t.name + "' has unsupported encoding '" + t.encoding + "'");
      }
      pending.emplace(t.name, std::move(p));
    }
    comp::DecodeOptions dopt;
    dopt.threads = options.threads > 0 ? static_cast<unsigned>(options.threads) : 0;
    dopt.verify = options.verify_checksums;
    r.decode_parallel(jobs, dopt, [&](double f) { return !progress || progress(f, "decompressing"); });

    // Assemble the graph: every projection becomes a QinsLinear over the decoded codes.
    auto take = [&](const std::string& name) -> Pending& {
      auto it = pending.find(name);
      if (it == pending.end()) throw fail("missing tensor '" + name + "'");
      return it->second;
    };
    auto quantized = [&](const std::string& name) -> core::QuantizedTensor& {
      Pending& p = take(name);
      if (!p.q.codes.defined()) throw fail("tensor '" + name + "' must be qins8");
      return p.q;
    };
    auto norm = [&](const std::string& name) -> torch::Tensor {
      Pending& p = take(name);
      if (!p.f.defined()) throw fail("tensor '" + name + "' must be f32");
      return p.f;
    };
    auto linear = [&](const std::string& name) {
      return std::make_unique<QinsLinear>(core::ProjectiveLinear(quantized(name)));
    };
    Phi3Weights& w = impl->weights;
    w.config = c;
    const auto& embed_q = quantized("model.embed_tokens.weight");
    w.embed = std::make_unique<QinsEmbedding>(embed_q);
    w.layers.resize(static_cast<size_t>(c.num_hidden_layers));
    for (int il = 0; il < c.num_hidden_layers; ++il) {
      Phi3Layer& L = w.layers[static_cast<size_t>(il)];
      L.input_norm = norm(layer_tensor_name(il, "input_layernorm.weight"));
      L.post_norm = norm(layer_tensor_name(il, "post_attention_layernorm.weight"));
      L.qkv = linear(layer_tensor_name(il, "self_attn.qkv_proj.weight"));
      L.o = linear(layer_tensor_name(il, "self_attn.o_proj.weight"));
      L.gate_up = linear(layer_tensor_name(il, "mlp.gate_up_proj.weight"));
      L.down = linear(layer_tensor_name(il, "mlp.down_proj.weight"));
    }
    w.final_norm = norm("model.norm.weight");
    w.lm_head = c.tie_word_embeddings ? std::make_unique<QinsLinear>(core::ProjectiveLinear(embed_q))
                                      : linear("lm_head.weight");

    // The name of the model the file was converted from ("demo"), else the file's stem.
    impl->info.name = fs::path(path).stem().string();
    if (info.contains("converter") && info["converter"].is_object() && info["converter"].contains("source") &&
        info["converter"]["source"].is_string() && !info["converter"]["source"].get<std::string>().empty())
      impl->info.name = info["converter"]["source"].get<std::string>();
    impl->info.path = path;
    impl->info.format = "qins";
    impl->info.codebook = core::codebook_name(embed_q.codebook);
    impl->info.file_bytes = static_cast<int64_t>(r.file_size());
    auto engine = make_engine(std::move(impl));
    engine->impl().info.load_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    if (progress) progress(1.0, "ready");
    return engine;
  } catch (const comp::Cancelled&) {
    throw Cancelled();
  } catch (const comp::FormatError& e) {
    throw Error(e.what());  // already names the file
  } catch (const tok::TokenizerError& e) {
    throw Error(e.what());
  } catch (const nlohmann::json::exception& e) {
    throw fail(std::string("bad metadata JSON (") + e.what() + ")");
  } catch (const std::invalid_argument& e) {
    throw fail(e.what());
  }
}

// ---------------------------------------------------------------------------------------------
// Inspector

ModelReport inspect_qins(const std::string& path, bool verify) {
  ModelReport rep;
  try {
    const comp::ContainerReader r = comp::ContainerReader::open(path);
    const Phi3Config c = parse_phi3_config(r.metadata("config.json"), path + " (config.json)");
    nlohmann::json j;
    j["path"] = path;
    j["format"] = "qins";
    j["version"] = std::to_string(r.version_major()) + "." + std::to_string(r.version_minor());
    j["file_bytes"] = r.file_size();
    j["config"] = nlohmann::json::parse(c.source_json);
    j["qins"] = nlohmann::json::parse(r.metadata("qins.json"));
    std::ostringstream t;
    t << "model file: " << path << " (format " << j["version"].get<std::string>() << ", " << r.file_size()
      << " bytes)\n";
    t << "config: hidden " << c.hidden_size << ", intermediate " << c.intermediate_size << ", layers "
      << c.num_hidden_layers << ", heads " << c.num_attention_heads << " (kv " << c.num_key_value_heads << "), vocab "
      << c.vocab_size << "\n\n";
    char line[320];
    std::snprintf(line, sizeof line, "%-48s %-10s %-18s %12s %7s %8s %7s %7s  %s\n", "tensor", "codebook", "shape",
                  "stored", "bits/w", "entropy", "vs bf16", "vs f32", "codecs");
    t << line;
    int64_t params = 0;
    uint64_t stored_total = 0, raw_total = 0;
    bool all_ok = true;
    std::vector<uint8_t> scratch;
    for (const auto& ti : r.tensors()) {
      const auto st = comp::tensor_stats(ti);
      int64_t n = 1;
      for (auto d : ti.shape) n *= static_cast<int64_t>(d);
      params += n;
      stored_total += st.stored_bytes;
      raw_total += st.raw_bytes;
      // Empirical order-0 entropy of the codes: the bound a per-symbol code could reach.
      double entropy = 0.0;
      std::string status = "not checked";
      const comp::SectionInfo* codes = ti.section(ti.encoding == "qins8" ? "codes" : "data");
      if (codes) {
        scratch.resize(codes->raw_size);
        try {
          r.decode_section(ti, codes->name, scratch.data(), scratch.size(), verify);
          entropy = comp::entropy_bits_per_byte(scratch.data(), scratch.size());
          status = verify ? "ok" : "not checked";
        } catch (const comp::FormatError& e) {
          status = std::string("BAD: ") + e.what();
          all_ok = false;
        }
      }
      std::string codecs;
      for (unsigned k = 0; k < comp::kNumCodecs; ++k)
        if (st.chunks[k]) codecs += (codecs.empty() ? "" : ",") + std::string(comp::codec_name(static_cast<comp::Codec>(k))) + "x" + std::to_string(st.chunks[k]);
      std::string shape = "[";
      for (size_t i = 0; i < ti.shape.size(); ++i) shape += (i ? ", " : "") + std::to_string(ti.shape[i]);
      shape += "]";
      const double bits = 8.0 * static_cast<double>(st.stored_bytes) / static_cast<double>(n);
      std::snprintf(line, sizeof line, "%-48s %-10s %-18s %12llu %7.3f %8.3f %6.2fx %6.2fx  %s%s\n", ti.name.c_str(),
                    ti.codebook.empty() ? ti.encoding.c_str() : ti.codebook.c_str(), shape.c_str(),
                    static_cast<unsigned long long>(st.stored_bytes), bits, entropy, 2.0 * n / st.stored_bytes,
                    4.0 * n / st.stored_bytes, codecs.c_str(), verify ? ("  " + status).c_str() : "");
      t << line;
      j["tensors"].push_back({{"name", ti.name},
                              {"encoding", ti.encoding},
                              {"codebook", ti.codebook},
                              {"shape", ti.shape},
                              {"stored_bytes", st.stored_bytes},
                              {"raw_bytes", st.raw_bytes},
                              {"bits_per_weight", bits},
                              {"code_entropy_bits", entropy},
                              {"codecs", codecs},
                              {"checksum", status}});
    }
    if (verify) {
      for (const auto& k : r.metadata_keys()) {
        try {
          (void)r.metadata(k);
        } catch (const comp::FormatError& e) {
          t << "metadata '" << k << "': BAD: " << e.what() << "\n";
          all_ok = false;
        }
      }
    }
    const double fsz = static_cast<double>(r.file_size());
    std::snprintf(line, sizeof line,
                  "\ntotal: %lld parameters, file %.1f MB = %.3f bits/weight; %.2fx smaller than bf16, %.2fx than f32; "
                  "decoded %.1f MB\n",
                  static_cast<long long>(params), fsz / 1e6, 8.0 * fsz / params, 2.0 * params / fsz, 4.0 * params / fsz,
                  raw_total / 1e6);
    t << line;
    if (verify) t << (all_ok ? "checksums: all chunks and metadata verified\n" : "checksums: PROBLEMS FOUND (see above)\n");
    j["parameters"] = params;
    j["stored_bytes"] = stored_total;
    j["raw_bytes"] = raw_total;
    j["ratio_vs_bf16"] = 2.0 * params / fsz;
    j["ratio_vs_f32"] = 4.0 * params / fsz;
    if (verify) j["verified"] = all_ok;
    rep.text = t.str();
    rep.json = j.dump(2) + "\n";
    rep.ok = all_ok;
    return rep;
  } catch (const comp::FormatError& e) {
    throw Error(e.what());
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": bad metadata JSON (" + e.what() + ")");
  }
}

}  // namespace qins
