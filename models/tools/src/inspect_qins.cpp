// `qins inspect` on a .qins file: per-tensor codec, size, bits/weight, entropy; --verify decodes
// every chunk against its checksum.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <sstream>

#include "qins/compression/container.h"
#include "qins/graph/phi3_config.h"
#include "qins/graph/phi3_layout.h"
#include "qins/io/qins_file.h"
#include "qins/tools/inspect.h"
#include "qins/util/errors.h"

namespace qins {

namespace {

// One tensor's row of the table and its JSON entry.
struct TensorRow {
  std::string line;
  nlohmann::json json;
  int64_t params = 0;
  uint64_t stored = 0, raw = 0;
  bool ok = true;
};

TensorRow inspect_tensor(const comp::ContainerReader& r, const comp::TensorInfo& ti, bool verify,
                         std::vector<uint8_t>& scratch) {
  TensorRow row;
  const auto st = comp::tensor_stats(ti);
  std::vector<int64_t> shape(ti.shape.begin(), ti.shape.end());
  int64_t n = 1;
  for (auto d : shape) n *= d;
  row.params = n;
  row.stored = st.stored_bytes;
  row.raw = st.raw_bytes;
  // Empirical order-0 entropy of the codes: the bound a per-symbol code could reach.
  double entropy = 0.0;
  std::string status = "not checked";
  const comp::SectionInfo* codes = ti.section(ti.encoding == "f32" ? "data" : "codes");
  if (codes) {
    scratch.resize(codes->raw_size);
    try {
      r.decode_section(ti, codes->name, scratch.data(), scratch.size(), verify);
      entropy = comp::entropy_bits_per_byte(scratch.data(), scratch.size());
      status = verify ? "ok" : "not checked";
    } catch (const comp::FormatError& e) {
      status = std::string("BAD: ") + e.what();
      row.ok = false;
    }
  }
  std::string codecs;
  for (unsigned k = 0; k < comp::kNumCodecs; ++k)
    if (st.chunks[k]) codecs += (codecs.empty() ? "" : ",") + std::string(comp::codec_name(static_cast<comp::Codec>(k))) + "x" + std::to_string(st.chunks[k]);
  const double bits = 8.0 * static_cast<double>(st.stored_bytes) / static_cast<double>(n);
  // The code column: the 8-bit codebook, "qins4-gG" (4-bit, group G; the table fit in the JSON), or
  // the float encoding.
  const auto group = ti.extras.find("group");
  const std::string code = ti.encoding == "qins4" ? "qins4-g" + (group == ti.extras.end() ? "?" : group->second)
                           : ti.codebook.empty() ? ti.encoding
                                                 : ti.codebook;
  char line[320];
  std::snprintf(line, sizeof line, "%-48s %-10s %-18s %12llu %7.3f %8.3f %6.2fx %6.2fx  %s%s\n", ti.name.c_str(),
                code.c_str(), shape_str(shape).c_str(),
                static_cast<unsigned long long>(st.stored_bytes), bits, entropy, 2.0 * n / st.stored_bytes,
                4.0 * n / st.stored_bytes, codecs.c_str(), verify ? ("  " + status).c_str() : "");
  row.line = line;
  row.json = {{"name", ti.name},
              {"encoding", ti.encoding},
              {"codebook", ti.codebook},
              {"code", code},
              {"shape", ti.shape},
              {"stored_bytes", st.stored_bytes},
              {"raw_bytes", st.raw_bytes},
              {"bits_per_weight", bits},
              {"code_entropy_bits", entropy},
              {"codecs", codecs},
              {"checksum", status}};
  return row;
}

// Decodes every metadata blob; a bad one is reported in t.
bool verify_metadata(const comp::ContainerReader& r, std::ostringstream& t) {
  bool ok = true;
  for (const auto& k : r.metadata_keys()) {
    try {
      (void)r.metadata(k);
    } catch (const comp::FormatError& e) {
      t << "metadata '" << k << "': BAD: " << e.what() << "\n";
      ok = false;
    }
  }
  return ok;
}

}  // namespace

ModelReport inspect_qins(const std::string& path, bool verify) {
  ModelReport rep;
  try {
    const comp::ContainerReader r = comp::ContainerReader::open(path);
    const Phi3Config c = parse_phi3_config(r.metadata("config.json"), path + " (config.json)");
    // Every tensor's declared sizes against its shape, before anything is decoded (the reader has
    // already refused overlapping chunks): a small file cannot make inspect decode gigabytes.
    for (const auto& ti : r.tensors()) check_qins_tensor(ti, path);
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
    if (const auto& q = j["qins"]; q.contains("converter") && q["converter"].contains("origin")) {
      const auto& o = q["converter"]["origin"];  // written by `qins pull`
      t << "origin: " << o.value("repo", "?") << " at commit " << o.value("commit", "?") << " (" << o.value("hub", "")
        << ")\n";
    }
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
      TensorRow row = inspect_tensor(r, ti, verify, scratch);
      params += row.params;
      stored_total += row.stored;
      raw_total += row.raw;
      all_ok &= row.ok;
      t << row.line;
      j["tensors"].push_back(std::move(row.json));
    }
    if (verify) all_ok &= verify_metadata(r, t);
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
