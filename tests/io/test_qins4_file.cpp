// QINS-4 in .qins files (issue 17 part 1): the converter's mixed file (qins4 layer projections,
// qins8 embedding and lm_head) round-trips to exactly the model built in memory, its nibble codes
// are used in place from the mapping, and every damaged or inconsistent qins4 field is a clean
// error naming the file.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <functional>
#include <string>
#include <tuple>
#include <vector>
#include <fstream>
#include <map>
#include <sstream>

#include "fixture_dir.h"
#include "qins/compression/container.h"
#include "qins/io/converter.h"
#include "qins/io/hf_folder.h"
#include "qins/io/qins_file.h"
#include "qins/io/safetensors.h"
#include "qins/runtime/internal.h"
#include "qins/tools/eval.h"
#include "qins/tools/inspect.h"

namespace qins {
namespace {

namespace fs = std::filesystem;

std::string convert4(const std::string& name, int group = 32) {
  const auto out = (test::temp_root() / (name + ".qins")).string();
  if (fs::exists(out)) return out;
  ConvertOptions o;
  o.qins4 = true;
  o.quant.pole = 0.0;  // as `qins convert --codebook qins4`: the 8-bit tensors fit their pole
  o.quant4.group = group;
  convert_to_qins(test::fixture("mha", {}), out, o);
  return out;
}

// A copy of `good` named NAME.qins in which tensor `target`'s record and section bytes are changed.
std::string rewrite_tensor(const std::string& good, const std::string& target, const std::string& name,
                           const std::function<void(comp::TensorInfo&)>& change_rec,
                           const std::function<void(const std::string&, std::vector<uint8_t>&)>& change_bytes) {
  const auto out = (test::temp_root() / (name + ".qins")).string();
  const comp::ContainerReader r = comp::ContainerReader::open(good);
  comp::ContainerWriter w(out);
  for (const auto& k : r.metadata_keys()) w.put_metadata(k, r.metadata(k));
  for (const auto& t0 : r.tensors()) {
    comp::TensorInfo t = t0;
    std::vector<std::vector<uint8_t>> bytes;
    std::vector<comp::SectionData> sections;
    bytes.reserve(t.sections.size());
    for (const auto& s : t0.sections) {
      bytes.emplace_back(s.raw_size);
      r.decode_section(t0, s.name, bytes.back().data(), bytes.back().size());
      if (t.name == target) change_bytes(s.name, bytes.back());
      sections.push_back({s.name, bytes.back().data(), bytes.back().size()});
    }
    if (t.name == target) change_rec(t);
    w.add_tensor({t.name, t.shape, t.encoding, t.codebook, t.extras}, sections, comp::EncodeOptions{});
  }
  w.commit();
  return out;
}

std::vector<int> reply_ids(Engine& e, const std::string& text, int n = 12) {
  engine_internals(e).stop_ids.clear();
  auto s = e.new_session();
  std::vector<int> ids;
  s->generate({{Role::User, text}}, test::greedy(n), {}, nullptr, &ids);
  return ids;
}

const core::Quantized4Tensor& q4_of(LinearOp* op) {
  auto* q = dynamic_cast<Qins4LinearOp*>(op);
  if (!q) throw std::runtime_error("not a Qins4LinearOp: " + (op ? op->kind() : std::string("null")));
  return q->module()->quantized();
}

// The line of /proc/self/maps whose address range holds p ("" when none).
std::string mapping_of(const void* p) {
  std::ifstream maps("/proc/self/maps");
  const auto at = reinterpret_cast<uintptr_t>(p);
  for (std::string line; std::getline(maps, line);) {
    unsigned long long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%llx-%llx", &lo, &hi) == 2 && at >= lo && at < hi) return line;
  }
  return "";
}

std::string load_error(const std::string& file) {
  try {
    read_qins_model(file, 1, true);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string inspect_error(const std::string& file) {
  try {
    inspect_model(file, false);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// The file holds both encodings, as the mixed precision policy says, and is model version 2.
TEST(Qins4File, MixedFileHoldsQins4ProjectionsAndQins8EmbeddingAndHead) {
  const auto file = convert4("mixed4");
  const auto r = comp::ContainerReader::open(file);
  std::map<std::string, int> enc;
  for (const auto& t : r.tensors()) {
    ++enc[t.encoding];
    if (t.name.find("embed_tokens") != std::string::npos || t.name == "lm_head.weight") {
      EXPECT_EQ(t.encoding, "qins8") << t.name;
    }
    if (t.name.find("_proj.weight") != std::string::npos) {
      EXPECT_EQ(t.encoding, "qins4") << t.name;
      EXPECT_EQ(t.codebook, "lloyd") << t.name;
      EXPECT_EQ(t.extras.at("group"), "32") << t.name;
    }
  }
  EXPECT_GT(enc["qins4"], 0);
  EXPECT_GT(enc["qins8"], 0);
  EXPECT_GT(enc["f32"], 0);
  const auto info = nlohmann::json::parse(r.metadata("qins.json"));
  EXPECT_EQ(info["version"], 2);
  EXPECT_EQ(info["converter"]["codebook"], "qins4");
  // An 8-bit file stays version 1, which every earlier reader loads.
  const auto file8 = (test::temp_root() / "plain8.qins").string();
  convert_to_qins(test::fixture("mha", {}), file8, ConvertOptions{});
  EXPECT_EQ(nlohmann::json::parse(comp::ContainerReader::open(file8).metadata("qins.json"))["version"], 1);
  // inspect names the encoding and its bits per weight.
  const auto rep = inspect_model(file, true);
  EXPECT_TRUE(rep.ok) << rep.text;
  EXPECT_NE(rep.text.find("qins4-g32"), std::string::npos) << rep.text;
  const auto j = nlohmann::json::parse(rep.json);
  for (const auto& t : j["tensors"])
    if (t["encoding"] == "qins4") {
      EXPECT_GT(t["bits_per_weight"].get<double>(), 3.5);  // zstd may shrink the scales chunk
      EXPECT_LT(t["bits_per_weight"].get<double>(), 5.5);  // 4.5 + the table; small rows pad a group
    }
}

// Loading the file gives exactly the model `qins eval --scheme qins4` builds in memory from the same
// checkpoint (Qins4Linear over quantize4's codes): the same bytes in every tensor, the same greedy
// reply, token for token.
TEST(Qins4File, RoundTripEqualsTheModelBuiltInMemory) {
  const auto file = convert4("rt4");
  LoadOptions lo;
  lo.context_length = 128;
  auto from_file = Engine::load(file, lo);
  EXPECT_EQ(from_file->info().codebook, "qins4");
  EXPECT_EQ(engine_internals(*from_file).weights.layers[0].qkv->kind(), "qins4");

  const std::string dir = test::fixture("mha", {});
  const Phi3Config c = read_phi3_config(find_hf_files(dir).config);
  auto ckpt = st::Checkpoint::open_dir(dir);
  const EvalVariant v = scheme_variants("qins4").at(0);
  lo.weight_format = "f32";
  auto in_memory = Engine::load(dir, lo);
  engine_internals(*in_memory).weights = quantize_checkpoint(*ckpt, c, v, nullptr);
  apply_thread_policy(engine_internals(*in_memory).weights);

  auto& a = engine_internals(*from_file).weights;
  auto& b = engine_internals(*in_memory).weights;
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t l = 0; l < a.layers.size(); ++l)
    for (auto [x, y] : {std::pair{a.layers[l].qkv.get(), b.layers[l].qkv.get()}, {a.layers[l].o.get(), b.layers[l].o.get()},
                        {a.layers[l].gate_up.get(), b.layers[l].gate_up.get()}, {a.layers[l].down.get(), b.layers[l].down.get()}}) {
      const auto& qa = q4_of(x);
      const auto& qb = q4_of(y);
      EXPECT_TRUE(torch::equal(qa.codes, qb.codes)) << l;
      EXPECT_TRUE(torch::equal(qa.scales, qb.scales)) << l;
      EXPECT_TRUE(torch::equal(qa.lut, qb.lut)) << l;
      EXPECT_EQ(qa.in_features, qb.in_features);
      EXPECT_EQ(qa.group, qb.group);
    }
  EXPECT_TRUE(torch::equal(dynamic_cast<QinsEmbedding&>(*a.embed).quantized().codes,
                           dynamic_cast<QinsEmbedding&>(*b.embed).quantized().codes));
  EXPECT_EQ(reply_ids(*from_file, "What does harbour mean?"), reply_ids(*in_memory, "What does harbour mean?"));

  // The decode step (forward_row) of a loaded op against the slow twin (dequantize4 + linear):
  // within the int8-activation budget of docs/qins.md (4.5 % of the output's norm on random x).
  Qins4LinearOp& op = dynamic_cast<Qins4LinearOp&>(*a.layers[1].gate_up);
  const torch::Tensor x = torch::randn({1, op.in_features()}, torch::TensorOptions().dtype(torch::kFloat32));
  torch::Tensor y = torch::empty({op.out_features()}, torch::kFloat32);
  op.forward_row(x.data_ptr<float>(), y.data_ptr<float>());
  const torch::Tensor ref = op.module()->forward_reference(x).view({-1});
  EXPECT_LT((y - ref).norm().item<double>(), 0.045 * ref.norm().item<double>());
  // forward_rows (batched decode) is forward_row per row, exactly.
  const torch::Tensor xs = torch::randn({3, op.in_features()}, torch::TensorOptions().dtype(torch::kFloat32));
  torch::Tensor ys = torch::empty({3, op.out_features()}, torch::kFloat32);
  op.forward_rows(xs.data_ptr<float>(), 3, ys.data_ptr<float>());
  for (int i = 0; i < 3; ++i) {
    op.forward_row(xs[i].data_ptr<float>(), y.data_ptr<float>());
    EXPECT_TRUE(torch::equal(ys[i], y)) << i;
  }
}

// Group 16 (8-bit log-scale codes + the table's top, the default of `qins convert --codebook qins4`):
// the file holds exactly what `qins eval --scheme qins4-g16` builds in memory, and replies the same;
// a bad top or a missing one is a clean error naming the file and tensor.
TEST(Qins4File, Group16RoundTripAndItsFields) {
  const auto file = convert4("rt16", 16);
  auto from_file = Engine::load(file);
  const std::string dir = test::fixture("mha", {});
  const Phi3Config c = read_phi3_config(find_hf_files(dir).config);
  auto ckpt = st::Checkpoint::open_dir(dir);
  LoadOptions lo;
  lo.weight_format = "f32";
  auto in_memory = Engine::load(dir, lo);
  engine_internals(*in_memory).weights = quantize_checkpoint(*ckpt, c, scheme_variants("qins4-g16").at(0), nullptr);
  apply_thread_policy(engine_internals(*in_memory).weights);
  auto& a = engine_internals(*from_file).weights;
  auto& b = engine_internals(*in_memory).weights;
  for (size_t l = 0; l < a.layers.size(); ++l) {
    const auto& qa = q4_of(a.layers[l].down.get());
    const auto& qb = q4_of(b.layers[l].down.get());
    EXPECT_EQ(qa.group, 16);
    EXPECT_EQ(qa.scales.scalar_type(), torch::kUInt8);
    EXPECT_TRUE(torch::equal(qa.codes, qb.codes)) << l;
    EXPECT_TRUE(torch::equal(qa.scales, qb.scales)) << l;
    EXPECT_TRUE(torch::equal(qa.sub_table, qb.sub_table)) << l;
  }
  EXPECT_EQ(reply_ids(*from_file, "What does harbour mean?"), reply_ids(*in_memory, "What does harbour mean?"));

  const std::string down = "model.layers.0.mlp.down_proj.weight";
  auto none_rec = [](comp::TensorInfo&) {};
  const std::vector<std::tuple<std::string, std::string, std::function<void(comp::TensorInfo&)>,
                               std::function<void(const std::string&, std::vector<uint8_t>&)>>>
      cases = {
          {"top_nan", "its top-scale bytes contain NaN or Inf", none_rec,
           [](const std::string& s, std::vector<uint8_t>& b) {
             if (s == "top") b = {0x00, 0x00, 0xC0, 0x7F};  // a quiet NaN, little-endian
           }},
          {"top_negative", "top scale is not a finite value >= 0", none_rec,
           [](const std::string& s, std::vector<uint8_t>& b) {
             if (s == "top") b[3] |= 0x80;
           }},
          {"group32", "unexpected section 'top' for qins4", [](comp::TensorInfo& t) { t.extras["group"] = "32"; },
           [](const std::string&, std::vector<uint8_t>&) {}},
      };
  for (const auto& [name, expect, rec, bytes] : cases) {
    const std::string bad = rewrite_tensor(file, down, "bad16_" + name, rec, bytes);
    const std::string what = load_error(bad);
    EXPECT_EQ(what.find(bad), 0u) << name << ": " << what;
    EXPECT_NE(what.find(down), std::string::npos) << name << ": " << what;
    EXPECT_NE(what.find(expect), std::string::npos) << name << ": " << what;
  }
}

// Raw nibble codes point into the file mapping, as qins8 codes do; QINS_MMAP=0-style copies are not
// needed for a 4-bit model to start.
TEST(Qins4File, NibbleCodesAreUsedInPlaceFromTheMapping) {
  const auto file = convert4("mapped4", 64);
  auto e = Engine::load(file);
  const auto& q = q4_of(engine_internals(*e).weights.layers[1].gate_up.get());
  EXPECT_EQ(q.group, 64);
  const std::string where = mapping_of(q.codes.data_ptr());
  EXPECT_NE(where.find("mapped4.qins"), std::string::npos) << "nibble codes should lie in the file mapping: " << where;
}

// A damaged byte in a qins4 codes chunk: the checksum pass names the file, tensor and chunk.
TEST(Qins4File, CorruptQins4ChunkIsACleanErrorNamingTheFile) {
  const auto good = convert4("corrupt4_src");
  const auto bad = (test::temp_root() / "corrupt4.qins").string();
  fs::copy_file(good, bad, fs::copy_options::overwrite_existing);
  std::string victim;
  uint64_t at = 0;
  {
    const auto r = comp::ContainerReader::open(bad);
    for (const auto& t : r.tensors())
      if (t.encoding == "qins4") {
        victim = t.name;
        at = t.section("codes")->chunks[0].offset + 3;
        break;
      }
  }
  ASSERT_FALSE(victim.empty());
  {
    std::fstream f(bad, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(at));
    char ch = 0;
    f.read(&ch, 1);
    ch = static_cast<char>(ch ^ 0x11);
    f.seekp(static_cast<std::streamoff>(at));
    f.write(&ch, 1);
  }
  const std::string what = load_error(bad);
  EXPECT_NE(what.find("corrupt4.qins"), std::string::npos) << what;
  EXPECT_NE(what.find("bad checksum in tensor '" + victim + "' section 'codes' chunk 0"), std::string::npos) << what;
}

// Every qins4 field is held to the shape before anything is decoded: group, table name, section
// sizes; and after decoding, the table's range and the scales' finiteness.
TEST(Qins4File, InconsistentQins4FieldsAreCleanErrors) {
  const auto good = convert4("fields_src");
  const std::string down = "model.layers.0.mlp.down_proj.weight";
  auto with_extras = [&](const std::string& name, std::function<void(comp::TensorInfo&)> change_rec,
                         std::function<void(const std::string&, std::vector<uint8_t>&)> change_bytes) {
    return rewrite_tensor(good, down, name, change_rec, change_bytes);
  };
  auto none_rec = [](comp::TensorInfo&) {};
  auto none_bytes = [](const std::string&, std::vector<uint8_t>&) {};
  struct Case {
    std::string name, expect;
    std::function<void(comp::TensorInfo&)> rec;
    std::function<void(const std::string&, std::vector<uint8_t>&)> bytes;
  };
  const std::vector<Case> cases = {
      {"group48", "qins4 group '48' is not 16, 32 or 64", [](comp::TensorInfo& t) { t.extras["group"] = "48"; }, none_bytes},
      {"nogroup", "qins4 needs the extra 'group'", [](comp::TensorInfo& t) { t.extras.erase("group"); }, none_bytes},
      {"group64", "section 'scales' declares 512 bytes", [](comp::TensorInfo& t) { t.extras["group"] = "64"; }, none_bytes},
      {"table", "unknown QINS-4 table 'bogus'", [](comp::TensorInfo& t) { t.codebook = "bogus"; }, none_bytes},
      {"lut17", "section 'lut' declares 17 bytes", none_rec,
       [](const std::string& s, std::vector<uint8_t>& b) { if (s == "lut") b.push_back(0); }},
      {"scales_short", "section 'scales' declares", none_rec,
       [](const std::string& s, std::vector<uint8_t>& b) { if (s == "scales") b.resize(b.size() - 2); }},
      {"lut_m128", "lut entry 3 is -128", none_rec,
       [](const std::string& s, std::vector<uint8_t>& b) { if (s == "lut") b[3] = 0x80; }},
      {"scale_nan", "its group scales contain NaN or Inf", none_rec,
       [](const std::string& s, std::vector<uint8_t>& b) { if (s == "scales") b[0] = 0x00, b[1] = 0x7E; }},
  };
  for (const auto& c : cases) {
    const auto file = with_extras("bad4_" + c.name, c.rec, c.bytes);
    const std::string what = load_error(file);
    EXPECT_EQ(what.find(file), 0u) << c.name << ": " << what;
    EXPECT_NE(what.find(down), std::string::npos) << c.name << ": " << what;
    EXPECT_NE(what.find(c.expect), std::string::npos) << c.name << ": " << what;
  }
  // inspect refuses the size/field cases before decoding anything, naming the file and tensor.
  const std::string what = inspect_error((test::temp_root() / "bad4_group48.qins").string());
  EXPECT_NE(what.find("bad4_group48.qins: tensor '" + down + "': qins4 group '48'"), std::string::npos) << what;
}

// Mutations: bytes flipped at a stride through a whole 4-bit file never crash the loader; each
// load either fails with an error naming the file or (a flip in padding, which nothing covers)
// loads.
TEST(Qins4File, FlippedBytesAreCleanErrorsOrHarmless) {
  const auto good = convert4("mut_src");
  std::string bytes;
  {
    std::ifstream in(good, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    bytes = ss.str();
  }
  const auto bad = (test::temp_root() / "mut4.qins").string();
  int rejected = 0, trials = 0;
  const size_t stride = std::max<size_t>(1, bytes.size() / 97);
  for (size_t at = 0; at < bytes.size(); at += stride) {
    std::string m = bytes;
    m[at] = static_cast<char>(m[at] ^ 0x5A);
    std::ofstream(bad, std::ios::binary | std::ios::trunc) << m;
    ++trials;
    const std::string what = load_error(bad);
    if (!what.empty()) {
      ++rejected;
      EXPECT_NE(what.find("mut4.qins"), std::string::npos) << at << ": " << what;
    }
  }
  EXPECT_GT(rejected, trials / 2) << rejected << " of " << trials;
}

}  // namespace
}  // namespace qins
