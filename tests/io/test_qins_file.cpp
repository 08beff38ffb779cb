// .qins model files: convert -> load round trip (bit-exact codes, same generation as quantizing
// at load), every codebook, atomic writes under injected failures, corrupt files.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "fixture_dir.h"
#include "qins/io/converter.h"
#include "qins/runtime/internal.h"
#include "qins/tools/inspect.h"
#include "qins/io/qins_file.h"
#include "qins/compression/container.h"

namespace qins {
namespace {

namespace fs = std::filesystem;

using test::greedy;

std::string convert(const std::string& name, core::Codebook cb, int prune = 0) {
  const auto out = (test::temp_root() / (name + ".qins")).string();
  if (fs::exists(out)) return out;
  ConvertOptions o;
  o.quant.codebook = cb;
  o.prune_index = prune;
  convert_to_qins(test::fixture("mha", {}), out, o);
  return out;
}

std::vector<int> reply_ids(Engine& e, const std::string& text, int n = 12) {
  engine_internals(e).stop_ids.clear();
  auto s = e.new_session();
  std::vector<int> ids;
  s->generate({{Role::User, text}}, greedy(n), {}, nullptr, &ids);
  return ids;
}

TEST(QinsFile, RoundTripMatchesQuantizingAtLoad) {
  for (auto cb : {core::Codebook::Inverse, core::Codebook::Projective, core::Codebook::Uniform}) {
    const std::string name = core::codebook_name(cb);
    const auto file = convert("rt_" + name, cb);
    ASSERT_TRUE(is_qins_file(file));
    LoadOptions lo;
    lo.context_length = 128;
    auto from_file = Engine::load(file, lo);
    EXPECT_EQ(from_file->info().format, "qins");
    EXPECT_EQ(from_file->info().codebook, name);
    lo.weight_format = name;
    auto at_load = Engine::load(test::fixture("mha", {}), lo);
    // Quantization is deterministic: the decoded codes are the very bytes quantize() gives.
    auto* a = dynamic_cast<QinsLinear*>(engine_internals(*from_file).weights.layers[1].gate_up.get());
    auto* b = dynamic_cast<QinsLinear*>(engine_internals(*at_load).weights.layers[1].gate_up.get());
    ASSERT_TRUE(a && b);
    EXPECT_TRUE(torch::equal(a->module()->quantized().codes, b->module()->quantized().codes)) << name;
    EXPECT_TRUE(torch::equal(a->module()->quantized().scales, b->module()->quantized().scales)) << name;
    EXPECT_EQ(reply_ids(*from_file, "What does harbour mean?"), reply_ids(*at_load, "What does harbour mean?")) << name;
  }
}

TEST(QinsFile, CarriesEverythingNeededToChat) {
  const auto file = convert("alone", core::Codebook::Projective);
  // Copy the file somewhere with nothing else around it.
  const auto lonely = test::temp_root() / "lonely";
  fs::create_directories(lonely);
  fs::copy_file(file, lonely / "m.qins", fs::copy_options::overwrite_existing);
  auto e = Engine::load((lonely / "m.qins").string());
  auto s = e->new_session();
  std::string text;
  auto st = s->generate({{Role::System, "Be brief."}, {Role::User, "Hello"}}, greedy(6),
                        [&](std::string_view p) { text.append(p); return true; });
  EXPECT_GT(st.prompt_tokens, 3);
  EXPECT_EQ(e->info().chat_template_note, "");
}

TEST(QinsFile, PruningZeroesSmallCodes) {
  const auto plain = convert("p0", core::Codebook::Projective);
  const auto pruned = convert("p8", core::Codebook::Projective, 8);
  auto a = Engine::load(plain), b = Engine::load(pruned);
  auto* qa = dynamic_cast<QinsLinear*>(engine_internals(*a).weights.layers[0].down.get());
  auto* qb = dynamic_cast<QinsLinear*>(engine_internals(*b).weights.layers[0].down.get());
  const auto za = (qa->module()->quantized().codes == 0).sum().item<int64_t>();
  const auto zb = (qb->module()->quantized().codes == 0).sum().item<int64_t>();
  EXPECT_GT(zb, za);
}

TEST(QinsFile, InjectedWriteFailureLeavesNoFileAndKeepsTheOldOne) {
  const auto target = (test::temp_root() / "atomic.qins").string();
  // No file before: after a failure there is still none (and no temp file left behind).
  for (uint64_t fail_after : {0ull, 100ull, 3000ull}) {
    try {
      QinsFileWriter w(target);
      uint64_t written = 0;
      w.set_write_hook([&](uint64_t, size_t n) {
        written += n;
        if (written > fail_after) throw std::runtime_error("injected failure");
      });
      put_model_metadata(w, {"{}", "", "model", "{}", ""});
      w.add_f32("x", torch::randn({4096}));
      w.commit();
      FAIL() << "expected the injected failure";
    } catch (const std::exception&) {
    }
    EXPECT_FALSE(fs::exists(target));
  }
  for (const auto& entry : fs::directory_iterator(test::temp_root()))
    EXPECT_EQ(entry.path().filename().string().find("atomic.qins.tmp"), std::string::npos) << entry.path();
  // An existing file stays byte-for-byte untouched.
  fs::copy_file(convert("keep", core::Codebook::Uniform), target, fs::copy_options::overwrite_existing);
  const auto before = fs::file_size(target);
  try {
    QinsFileWriter w(target);
    uint64_t written = 0;
    w.set_write_hook([&](uint64_t, size_t n) {
      written += n;
      if (written > 1000) throw std::runtime_error("disk full");
    });
    put_model_metadata(w, {"{}", "", "model", "{}", ""});
    w.add_f32("x", torch::randn({4096}));
    w.commit();
    FAIL();
  } catch (const std::exception&) {
  }
  EXPECT_EQ(fs::file_size(target), before);
  EXPECT_NO_THROW(Engine::load(target));
}

TEST(QinsFile, CorruptChunkIsACleanErrorNamingTheFile) {
  const auto good = convert("corrupt_src", core::Codebook::Projective);
  const auto bad = (test::temp_root() / "corrupt.qins").string();
  std::string bytes;
  {
    std::ifstream in(good, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    bytes = ss.str();
  }
  // Inside the chunk that holds the file's middle byte (padding between chunks, zero bytes that
  // raw page-aligned chunks leave, is covered by no checksum).
  uint64_t at = 0;
  const auto reader = comp::ContainerReader::open(good);
  for (const auto& t : reader.tensors())
    for (const auto& s : t.sections)
      for (const auto& c : s.chunks)
        if (at == 0 || (c.offset <= bytes.size() / 2 && c.offset + c.stored_size > bytes.size() / 2))
          at = c.offset + c.stored_size / 2;
  bytes[at] ^= 0x5A;
  std::ofstream(bad, std::ios::binary) << bytes;
  try {
    Engine::load(bad);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("corrupt.qins"), std::string::npos) << e.what();
  }
  auto report = inspect_model(bad, /*verify=*/true);
  EXPECT_FALSE(report.ok);
  // Truncated.
  std::ofstream(bad, std::ios::binary | std::ios::trunc) << bytes.substr(0, bytes.size() / 3);
  try {
    Engine::load(bad);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("corrupt.qins"), std::string::npos) << e.what();
  }
}

TEST(QinsFile, InspectReportsEveryTensor) {
  const auto file = convert("inspect", core::Codebook::Projective);
  auto r = inspect_model(file, true);
  EXPECT_TRUE(r.ok);
  EXPECT_NE(r.text.find("model.layers.1.mlp.down_proj.weight"), std::string::npos);
  EXPECT_NE(r.text.find("checksums: all chunks and metadata verified"), std::string::npos) << r.text;
}

// A copy of a converted model's metadata with one extra tensor `rec` of the given sections.
std::string with_tensor(const std::string& name, const comp::TensorRecord& rec,
                        const std::vector<comp::SectionData>& sections) {
  const auto good = convert("inspect", core::Codebook::Projective);
  const auto out = (test::temp_root() / (name + ".qins")).string();
  const comp::ContainerReader r = comp::ContainerReader::open(good);
  comp::ContainerWriter w(out);
  for (const auto& k : r.metadata_keys()) w.put_metadata(k, r.metadata(k));
  w.add_tensor(rec, sections, comp::EncodeOptions{});
  w.commit();
  return out;
}

std::string inspect_error(const std::string& file, bool verify) {
  try {
    inspect_model(file, verify);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Issue 16 item 5: a section that declares more bytes than its tensor's shape holds (64 MiB of
// zeros compress to a few KB) is refused by inspect and --verify before anything is decoded, as
// by the loader. (Chunks sharing stored bytes: tests/data/bad_qins/overlapping_chunks.qins.)
TEST(QinsFile, InspectRefusesSectionsLargerThanTheShape) {
  const std::vector<uint8_t> zeros(64u << 20, 0);
  const auto file = with_tensor("bomb", {"model.norm.weight", {64}, "f32", "", {}},
                                {{"data", zeros.data(), zeros.size()}});
  if (const char* keep = std::getenv("QINS_KEEP_BOMB")) fs::copy_file(file, keep, fs::copy_options::overwrite_existing);
  EXPECT_LT(fs::file_size(file), 200000u);
  for (const bool verify : {false, true}) {
    const std::string what = inspect_error(file, verify);
    EXPECT_NE(what.find("tensor 'model.norm.weight': section 'data' declares 67108864 bytes, its shape [64] implies 256"),
              std::string::npos) << what;
  }
}

// Issue 16 item 11: the loader refuses the same file in one line naming the file once (a size
// mismatch once read "<path>: <path>: tensor ... has N bytes, buffer has M").
TEST(QinsFile, LoaderRefusesSectionsLargerThanTheShapeNamingTheFileOnce) {
  const std::vector<uint8_t> zeros(1u << 20, 0);
  const auto file = with_tensor("bomb_load", {"model.norm.weight", {64}, "f32", "", {}},
                                {{"data", zeros.data(), zeros.size()}});
  try {
    read_qins_model(file, 1, true);
    ADD_FAILURE();
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.find(file), 0u) << what;
    EXPECT_EQ(what.find(file, 1), std::string::npos) << what;
    EXPECT_NE(what.find("declares 1048576 bytes"), std::string::npos) << what;
  }
}

// Issue 16 item 11: a shape of [2^33, 2^33] overflowed inspect's parameter count.
TEST(QinsFile, InspectRefusesShapesPastTwoToThe48) {
  const std::vector<uint8_t> one(4, 0);
  const uint64_t big = uint64_t{1} << 33;
  const auto file = with_tensor("huge_shape", {"model.layers.0.mlp.down_proj.weight", {big, big}, "qins8", "projective", {}},
                                {{"codes", one.data(), 1}});
  const std::string what = inspect_error(file, false);
  EXPECT_NE(what.find("shape [8589934592, 8589934592] has more than 2^48 elements"), std::string::npos) << what;
}

TEST(QinsFile, LoadProgressIsMonotoneAndCancellable) {
  const auto file = convert("progress", core::Codebook::Projective);
  std::vector<double> seen;
  Engine::load(file, {}, [&](double f, std::string_view) {
    seen.push_back(f);
    return true;
  });
  ASSERT_FALSE(seen.empty());
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_DOUBLE_EQ(seen.back(), 1.0);
  EXPECT_THROW(Engine::load(file, {}, [](double, std::string_view) { return false; }), Cancelled);
}

}  // namespace
}  // namespace qins

namespace qins {
namespace {

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

const torch::Tensor& gate_up_codes(Engine& e, int layer) {
  auto* q = dynamic_cast<QinsLinear*>(engine_internals(e).weights.layers[layer].gate_up.get());
  if (!q) throw std::runtime_error("not a QinsLinear");
  return q->module()->quantized().codes;
}

}  // namespace

// Codes stored raw are used where they lie in the file mapping; replacing the file on disk the way
// the converter does (write a temp file, rename it over the name) leaves the loaded model on the
// old inode, answering exactly as before, while a new load reads the new file.
TEST(QinsFile, MappedCodesOutliveTheFileBeingReplaced) {
  const auto target = (test::temp_root() / "replaced.qins").string();
  fs::copy_file(convert("replace_a", core::Codebook::Projective), target, fs::copy_options::overwrite_existing);
  auto e = Engine::load(target);
  const torch::Tensor& codes = gate_up_codes(*e, 1);
  const std::string before_map = mapping_of(codes.data_ptr());
  ASSERT_NE(before_map.find("replaced.qins"), std::string::npos)
      << "raw codes should point into the file mapping, found: " << before_map;
  const torch::Tensor saved = codes.clone();
  const auto ids = reply_ids(*e, "What does harbour mean?");

  ConvertOptions o;
  o.quant.codebook = core::Codebook::Uniform;  // other codes under the same name
  convert_to_qins(test::fixture("mha", {}), target, o);
  const std::string after_map = mapping_of(codes.data_ptr());
  EXPECT_NE(after_map.find("(deleted)"), std::string::npos) << "the mapping should keep the old inode: " << after_map;
  EXPECT_TRUE(torch::equal(codes, saved));
  EXPECT_EQ(reply_ids(*e, "What does harbour mean?"), ids);

  auto fresh = Engine::load(target);
  EXPECT_EQ(fresh->info().codebook, "uniform");
  EXPECT_FALSE(torch::equal(gate_up_codes(*fresh, 1), saved));
  // The engine alone keeps the mapping alive: after it goes, the old inode's mapping is gone.
  const void* old_ptr = codes.data_ptr();
  e.reset();
  EXPECT_EQ(mapping_of(old_ptr).find("replaced.qins"), std::string::npos);
}

// A damaged byte in codes used in place from the mapping: the load's checksum pass names the
// file, the tensor and the chunk; --no-verify (verify_checksums = false) skips that pass.
TEST(QinsFile, CorruptMappedChunkIsACleanErrorNamingTheFile) {
  const auto good = convert("mapped_src", core::Codebook::Projective);
  const auto bad = (test::temp_root() / "corrupt_mapped.qins").string();
  fs::copy_file(good, bad, fs::copy_options::overwrite_existing);
  std::string victim;
  uint64_t at = 0;
  {
    const auto r = comp::ContainerReader::open(bad);
    for (const auto& t : r.tensors())
      if (t.encoding == "qins8" && r.mapped_section(t, "codes")) {
        victim = t.name;
        at = t.section("codes")->chunks[0].offset + 5;
        break;
      }
  }
  ASSERT_FALSE(victim.empty()) << "the fixture should have raw codes";
  {
    std::fstream f(bad, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(at));
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x40);
    f.seekp(static_cast<std::streamoff>(at));
    f.write(&c, 1);
  }
  try {
    Engine::load(bad);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("corrupt_mapped.qins"), std::string::npos) << m;
    EXPECT_NE(m.find("bad checksum in tensor '" + victim + "' section 'codes' chunk 0"), std::string::npos) << m;
  }
  LoadOptions lo;
  lo.verify_checksums = false;
  EXPECT_NO_THROW(Engine::load(bad, lo));
}

// Pruned codes are mostly zeros: sparse-coded chunks next to raw ones (scales, the small
// tensors) in one file, and what loads is what the file stores.
TEST(QinsFile, RawAndCodedChunksMixedLoadAsStored) {
  const auto file = convert("mixed_p8", core::Codebook::Projective, 8);
  const auto r = comp::ContainerReader::open(file);
  uint64_t raw = 0, coded = 0;
  for (const auto& t : r.tensors()) {
    const auto st = comp::tensor_stats(t);
    raw += st.chunks[unsigned(comp::Codec::raw)];
    coded += st.chunks[unsigned(comp::Codec::sparse_huffman)] + st.chunks[unsigned(comp::Codec::huffman)] +
             st.chunks[unsigned(comp::Codec::zstd)];
  }
  EXPECT_GT(raw, 0u);
  EXPECT_GT(coded, 0u);
  auto e = Engine::load(file);
  for (int layer : {0, 1}) {
    const auto* t = r.find_tensor("model.layers." + std::to_string(layer) + ".mlp.gate_up_proj.weight");
    ASSERT_NE(t, nullptr);
    const torch::Tensor& codes = gate_up_codes(*e, layer);
    std::vector<uint8_t> want(static_cast<size_t>(codes.numel()));
    r.decode_section(*t, "codes", want.data(), want.size());
    EXPECT_EQ(std::memcmp(want.data(), codes.data_ptr(), want.size()), 0) << layer;
  }
}

// A file written before raw chunks were page-aligned and before the minimum saving (every chunk
// 64-byte aligned, Huffman kept for any saving) loads and matches a fresh conversion.
TEST(QinsFile, OldFormatGoldenFileStillLoads) {
  const std::string old_file = std::string(QINS_OLD_QINS_DIR) + "/fixture_mha_seed1234.qins";
  auto old_engine = Engine::load(old_file);
  auto new_engine = Engine::load(convert("golden_twin", core::Codebook::Projective));
  for (int layer : {0, 1})
    EXPECT_TRUE(torch::equal(gate_up_codes(*old_engine, layer), gate_up_codes(*new_engine, layer))) << layer;
  EXPECT_EQ(reply_ids(*old_engine, "What does harbour mean?"), reply_ids(*new_engine, "What does harbour mean?"));
  const auto r = comp::ContainerReader::open(old_file);
  uint64_t huffman = 0;
  for (const auto& t : r.tensors()) huffman += comp::tensor_stats(t).chunks[unsigned(comp::Codec::huffman)];
  EXPECT_GT(huffman, 0u) << "the golden file should hold old-style Huffman chunks";
}

}  // namespace qins
