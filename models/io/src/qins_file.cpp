// .qins model files: the writer and the parallel loader (the bytes are compression/'s container).
#include "qins/graph/phi3_layout.h"
#include "qins/io/qins_file.h"
#include "qins/io/model_checks.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <sstream>

#include "qins/compression/container.h"
#include "qins/core/qins.h"
#include "qins/core/qins4.h"

namespace fs = std::filesystem;

namespace qins {

namespace {

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

void QinsFileWriter::add_qins4(const std::string& name, const core::Quantized4Tensor& q) {
  q.validate(path_ + ": tensor '" + name + "'");
  const auto codes = q.codes.contiguous();
  // fp16 (group 32, 64: 2 bytes little-endian, x86 and arm64) or uint8 log-scale codes (group 16).
  const auto scales = q.scales.contiguous();
  const auto lut = q.lut.contiguous();
  const std::vector<uint64_t> shape{static_cast<uint64_t>(q.out_features()), static_cast<uint64_t>(q.in_features)};
  comp::TensorRecord rec{name, shape, "qins4", core::table4_name(q.table), {{"group", std::to_string(q.group)}}};
  std::vector<comp::SectionData> sections{
      {"codes", codes.data_ptr(), static_cast<size_t>(codes.numel())},
      {"scales", scales.data_ptr(), static_cast<size_t>(scales.numel() * scales.element_size())},
      {"lut", lut.data_ptr(), static_cast<size_t>(lut.numel())}};
  float top = 0.f;  // group 16: the table of scales is rebuilt from its top (fp32) when loading
  if (q.sub_scales()) {
    top = q.sub_table.to(torch::kCPU).contiguous().data_ptr<float>()[255];
    sections.push_back({"top", &top, sizeof(top)});
  }
  w_->add_tensor(rec, sections);
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
  nlohmann::json info = {{"format", kQinsFormatName},
                         {"version", m.has_qins4 ? kQinsModelVersion : kQinsModelVersionQins8}};
  if (!m.info_json.empty()) info["converter"] = nlohmann::json::parse(m.info_json);
  w.put_metadata("qins.json", info.dump(2));
  w.put_metadata("config.json", m.config_json);
  if (!m.generation_config_json.empty()) w.put_metadata("generation_config.json", m.generation_config_json);
  w.put_metadata("tokenizer.model", m.tokenizer_model);
  w.put_metadata("tokenizer_config.json", m.tokenizer_config_json);
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
  core::QuantizedTensor q;    // qins8
  core::Quantized4Tensor q4;  // qins4
  torch::Tensor q4_top;       // qins4 group 16: [1] fp32, the top of its table of scales
  torch::Tensor f;            // f32
};

constexpr uint64_t kMaxTensorElements = uint64_t{1} << 48;
std::string comp_shape_str(const std::vector<uint64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}
}  // namespace

int64_t check_qins_tensor(const comp::TensorInfo& t, const std::string& path) {
  const std::string where = path + ": tensor '" + t.name + "'";
  uint64_t n = 1;
  for (const uint64_t d : t.shape) {
    if (d != 0 && n > kMaxTensorElements / d)
      throw Error(where + ": shape " + comp_shape_str(t.shape) + " has more than 2^48 elements");
    n *= d;
  }
  std::map<std::string, uint64_t> want;
  if (t.encoding == "qins8") {
    if (t.shape.size() != 2) throw Error(where + ": qins8 needs 2 dimensions");
    want = {{"codes", n}, {"scales", t.shape[0] * 4}, {"lut", 128 * 4}};
  } else if (t.encoding == "qins4") {
    if (t.shape.size() != 2) throw Error(where + ": qins4 needs 2 dimensions");
    if (t.shape[1] == 0) throw Error(where + ": qins4 needs at least one column");
    const auto g = t.extras.find("group");
    if (g == t.extras.end()) throw Error(where + ": qins4 needs the extra 'group'");
    if (g->second != "16" && g->second != "32" && g->second != "64")
      throw Error(where + ": qins4 group '" + g->second + "' is not 16, 32 or 64");
    try {
      core::table4_from_name(t.codebook);
    } catch (const std::invalid_argument& e) {
      throw Error(where + ": " + e.what());
    }
    const uint64_t group = std::stoull(g->second);
    // Rows are whole groups, padded to whole 32-column blocks (16 bytes); shape[1] < 2^48: no overflow.
    const uint64_t blocks = ((t.shape[1] + group - 1) / group * group + 31) / 32;
    const uint64_t groups = blocks * 32 / group;
    if (group == 16)  // 8-bit log-scale codes and the table's top
      want = {{"codes", t.shape[0] * blocks * 16}, {"scales", t.shape[0] * groups}, {"lut", 16}, {"top", 4}};
    else
      want = {{"codes", t.shape[0] * blocks * 16}, {"scales", t.shape[0] * groups * 2}, {"lut", 16}};
  } else if (t.encoding == "f32") {
    want = {{"data", n * 4}};
  } else {
    throw Error(where + ": unsupported encoding '" + t.encoding + "'");
  }
  for (const auto& s : t.sections) {
    const auto it = want.find(s.name);
    if (it == want.end()) throw Error(where + ": unexpected section '" + s.name + "' for " + t.encoding);
    if (s.raw_size != it->second)
      throw Error(where + ": section '" + s.name + "' declares " + std::to_string(s.raw_size) + " bytes, its shape " +
                  comp_shape_str(t.shape) + " implies " + std::to_string(it->second));
  }
  for (const auto& [name, bytes] : want)
    if (!t.section(name)) throw Error(where + ": missing section '" + name + "'");
  return static_cast<int64_t>(n);
}

namespace {

std::vector<int64_t> i64_shape(const comp::TensorInfo& t) {
  std::vector<int64_t> s;
  for (auto d : t.shape) s.push_back(static_cast<int64_t>(d));
  return s;
}

}  // namespace

namespace {

using FailFn = std::function<Error(const std::string&)>;

// QINS_MMAP=0 copies raw codes out of the file like decoded ones (for comparisons).
bool map_in_place() {
  static const bool on = [] {
    const char* v = std::getenv("QINS_MMAP");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  return on;
}

// The file's qins.json, checked to be a Phi-3 model this build reads.
nlohmann::json read_model_info(const comp::ContainerReader& r, const FailFn& fail) {
  if (!r.has_metadata("qins.json")) throw fail("not a QINS model (no qins.json metadata)");
  auto info = nlohmann::json::parse(r.metadata("qins.json"));
  if (info.value("format", "") != kQinsFormatName) throw fail("not a QINS Phi-3 model file");
  if (info.value("version", 0) > kQinsModelVersion)
    throw fail("model version " + std::to_string(info.value("version", 0)) + " is newer than this build reads (" +
               std::to_string(kQinsModelVersion) + ")");
  for (const char* k : {"config.json", "tokenizer.model", "tokenizer_config.json"})
    if (!r.has_metadata(k)) throw fail(std::string("missing metadata '") + k + "'");
  return info;
}

// A destination for every tensor of the file (checked against the config), and the decode jobs
// that fill them.
std::map<std::string, Pending> allocate_tensors(const comp::ContainerReader& r, const Phi3Config& c,
                                                std::vector<comp::DecodeJob>& jobs, const FailFn& fail) {
  std::map<std::string, Pending> pending;
  for (const auto& t : r.tensors()) check_qins_tensor(t, r.path());  // all, before allocating any
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
      if (const uint8_t* mapped = map_in_place() ? r.mapped_section(t, "codes") : nullptr) {
        // Raw codes are used where they lie in the file mapping (no copy); the tensor holds the
        // mapping, which keeps the file's pages even if the file is replaced on disk.
        p.q.codes = torch::from_blob(const_cast<uint8_t*>(mapped), shape, [keep = r.mapping()](void*) {},
                                     torch::TensorOptions().dtype(torch::kUInt8));
        comp::DecodeJob j{t.name, "codes", nullptr, static_cast<size_t>(p.q.codes.numel())};
        j.in_place = true;
        jobs.push_back(j);
      } else {
        p.q.codes = core::empty_large(shape, torch::kUInt8);  // huge pages: decoding streams it per token
        jobs.push_back({t.name, "codes", p.q.codes.data_ptr(), static_cast<size_t>(p.q.codes.numel())});
      }
      p.q.scales = torch::empty({shape[0]}, torch::kFloat32);
      p.q.lut = torch::empty({128}, torch::kFloat32);
      jobs.push_back({t.name, "scales", p.q.scales.data_ptr(), static_cast<size_t>(shape[0]) * 4});
      jobs.push_back({t.name, "lut", p.q.lut.data_ptr(), 128 * 4});
    } else if (t.encoding == "qins4") {
      // Sizes were held to the shape by check_qins_tensor above.
      p.q4.group = std::stoi(t.extras.at("group"));
      p.q4.table = core::table4_from_name(t.codebook);
      p.q4.in_features = shape[1];
      const int64_t blocks = ((shape[1] + p.q4.group - 1) / p.q4.group * p.q4.group + 31) / 32;
      const int64_t groups = blocks * 32 / p.q4.group;
      const std::vector<int64_t> code_shape{shape[0], blocks * 16};
      if (const uint8_t* mapped = map_in_place() ? r.mapped_section(t, "codes") : nullptr) {
        // As qins8: raw nibble codes are used where they lie in the file mapping.
        p.q4.codes = torch::from_blob(const_cast<uint8_t*>(mapped), code_shape, [keep = r.mapping()](void*) {},
                                      torch::TensorOptions().dtype(torch::kUInt8));
        comp::DecodeJob j{t.name, "codes", nullptr, static_cast<size_t>(p.q4.codes.numel())};
        j.in_place = true;
        jobs.push_back(j);
      } else {
        p.q4.codes = core::empty_large(code_shape, torch::kUInt8);
        jobs.push_back({t.name, "codes", p.q4.codes.data_ptr(), static_cast<size_t>(p.q4.codes.numel())});
      }
      p.q4.scales = torch::empty({shape[0], groups}, p.q4.group == 16 ? torch::kUInt8 : torch::kHalf);
      p.q4.lut = torch::empty({16}, torch::kInt8);
      jobs.push_back({t.name, "scales", p.q4.scales.data_ptr(),
                      static_cast<size_t>(p.q4.scales.numel() * p.q4.scales.element_size())});
      jobs.push_back({t.name, "lut", p.q4.lut.data_ptr(), 16});
      if (p.q4.group == 16) {
        p.q4_top = torch::empty({1}, torch::kFloat32);
        jobs.push_back({t.name, "top", p.q4_top.data_ptr(), 4});
      }
    } else if (t.encoding == "f32") {
      p.f = torch::empty(shape, torch::kFloat32);
      jobs.push_back({t.name, "data", p.f.data_ptr(), static_cast<size_t>(p.f.numel()) * 4});
    } else {
      throw fail("tensor '" + t.name + "' has unsupported encoding '" + t.encoding + "'");
    }
    pending.emplace(t.name, std::move(p));
  }
  return pending;
}

// The graph over the decoded tensors: every projection becomes a QinsLinear over its codes.
Phi3Weights assemble_decoded(const Phi3Config& c, std::map<std::string, Pending>& pending, const FailFn& fail) {
  auto take = [&](const std::string& name) -> Pending& {
    auto it = pending.find(name);
    if (it == pending.end()) throw fail("missing tensor '" + name + "'");
    return it->second;
  };
  // Checksums catch damage after writing, not a NaN written in (or a bit flipped before hashing).
  auto finite = [&](const torch::Tensor& t, const std::string& name, const char* part) {
    if (!torch::isfinite(t).all().item<bool>()) throw fail("tensor '" + name + "': " + part + " contain NaN or Inf");
  };
  auto quantized = [&](const TensorSpec& s) -> core::QuantizedTensor& {
    Pending& p = take(s.name);
    if (!p.q.codes.defined()) throw fail("tensor '" + s.name + "' must be qins8");
    finite(p.q.scales, s.name, "its scales");
    finite(p.q.lut, s.name, "its lookup table values");
    return p.q;
  };
  WeightMakers make;
  make.embedding = [&](const TensorSpec& s) { return std::make_unique<QinsEmbedding>(quantized(s)); };
  make.norm = [&](const TensorSpec& s) -> torch::Tensor {
    Pending& p = take(s.name);
    if (!p.f.defined()) throw fail("tensor '" + s.name + "' must be f32");
    finite(p.f, s.name, "its values");
    return p.f;
  };
  make.linear = [&](const TensorSpec& s) -> std::unique_ptr<LinearOp> {
    Pending& p = take(s.name);
    if (p.q4.codes.defined()) {
      if (p.q4.group == 16) {
        finite(p.q4_top, s.name, "its top-scale bytes");
        p.q4.sub_table = core::sub_scale_table(p.q4_top.item<float>());
      } else {
        finite(p.q4.scales.to(torch::kFloat32), s.name, "its group scales");
      }
      try {
        p.q4.validate("tensor '" + s.name + "'");  // the table: 16 levels in [-127, 127]
      } catch (const std::invalid_argument& e) {
        throw fail(e.what());
      }
      return std::make_unique<Qins4LinearOp>(core::Qins4Linear(p.q4));
    }
    return std::make_unique<QinsLinear>(core::ProjectiveLinear(quantized(s)));
  };
  return assemble_weights(c, make);
}

// The name of the model the file was converted from ("demo"), else the file's stem.
std::string model_name(const nlohmann::json& info, const std::string& path) {
  if (info.contains("converter") && info["converter"].is_object() && info["converter"].contains("source") &&
      info["converter"]["source"].is_string() && !info["converter"]["source"].get<std::string>().empty())
    return info["converter"]["source"].get<std::string>();
  return fs::path(path).stem().string();
}

}  // namespace

LoadedModel read_qins_model(const std::string& path, int threads, bool verify_checksums, const ProgressFn& progress) {
  const FailFn fail = [&](const std::string& what) -> Error { return Error(path + ": " + what); };
  try {
    const comp::ContainerReader r = comp::ContainerReader::open(path);
    const nlohmann::json info = read_model_info(r, fail);
    LoadedModel m;
    const Phi3Config c = parse_phi3_config(r.metadata("config.json"), path + " (config.json)");
    if (r.has_metadata("generation_config.json"))
      m.generation = parse_generation_config(r.metadata("generation_config.json"), path + " (generation_config.json)");
    m.tokenizer = std::make_unique<tok::Tokenizer>(
        tok::Tokenizer::from_memory(r.metadata("tokenizer.model"), r.metadata("tokenizer_config.json"), path));
    validate_token_ids(c, m.generation, *m.tokenizer, path);

    // Allocate every destination, then decode all chunks in parallel straight into them.
    std::vector<comp::DecodeJob> jobs;
    std::map<std::string, Pending> pending = allocate_tensors(r, c, jobs, fail);
    comp::DecodeOptions dopt;
    dopt.threads = threads > 0 ? static_cast<unsigned>(threads) : 0;
    dopt.verify = verify_checksums;
    r.decode_parallel(jobs, dopt, [&](double f) { return !progress || progress(f, "decompressing"); });

    m.weights = assemble_decoded(c, pending, fail);
    m.name = model_name(info, path);
    m.path = path;
    m.format = "qins";
    m.codebook = core::codebook_name(dynamic_cast<QinsEmbedding&>(*m.weights.embed).quantized().codebook);
    for (const auto& t : r.tensors())
      if (t.encoding == "qins4") m.codebook = "qins4";  // the layer projections' code names the model
    m.file_bytes = static_cast<int64_t>(r.file_size());
    return m;
  } catch (const comp::Cancelled&) {
    throw Cancelled();
  } catch (const comp::FormatError& e) {
    throw Error(e.what());  // already names the file
  } catch (const tok::TokenizerError& e) {
    throw Error(e.what());
  } catch (const nlohmann::json::exception& e) {
    throw fail(std::string("bad metadata JSON (") + e.what() + ")");
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();  // the container's own messages already name the file
    throw what.compare(0, path.size() + 2, path + ": ") == 0 ? Error(what) : fail(what);
  }
}

}  // namespace qins
