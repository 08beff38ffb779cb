// Container round trip, atomic writes with injected failures, parallel decode, and golden
// errors: each kind of damaged file gives its own message, never a crash or a huge allocation.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "container_test_util.h"
#include "qins/compression/huffman.h"

using namespace qins::comp;
using namespace qins::comp::test;
namespace fs = std::filesystem;

namespace {

struct Fixture {
  std::vector<uint8_t> codes = qins_like_codes(300000, 1);
  std::vector<uint8_t> sparse = sparse_codes(70000, 2, 0.93);
  std::vector<uint8_t> scales = random_bytes(4096, 3);
  std::vector<uint8_t> lut = random_bytes(512, 4);
  std::vector<uint8_t> norm = std::vector<uint8_t>(12288, 0x3f);
  std::string config = R"({"hidden_size": 3072, "num_hidden_layers": 32})";
  std::string tokenizer = std::string(20000, 'x') + "\x00\x01\x02 binary";

  void write(const fs::path& p, WriterOptions wo = {}) const {
    ContainerWriter w(p.string(), std::move(wo));
    w.put_metadata("config.json", config);
    w.put_metadata("tokenizer.model", tokenizer);
    w.put_metadata("empty", "");
    EncodeOptions eo;
    eo.chunk_size = 64 * 1024;
    eo.threads = 2;
    w.add_tensor({"layers.0.mlp.down_proj.weight", {300, 1000}, "qins8", "cb0", {{"pole", "0.5"}}},
                 {{"codes", codes.data(), codes.size()},
                  {"scales", scales.data(), scales.size()},
                  {"lut", lut.data(), lut.size()}},
                 eo);
    w.add_tensor({"layers.0.sparse", {70000}, "qins8", "cb0", {}},
                 {{"codes", sparse.data(), sparse.size()}}, eo);
    w.add_tensor({"norm.weight", {3072}, "f32", "", {}}, {{"data", norm.data(), norm.size()}}, eo);
    w.add_tensor({"empty", {0}, "f32", "", {}}, {{"data", nullptr, 0}}, eo);
    w.commit();
  }
};

std::string open_error(const fs::path& p) {
  try {
    ContainerReader r = ContainerReader::open(p.string());
    r.verify();
  } catch (const FormatError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Container, RoundTrip) {
  TempDir d;
  const fs::path p = d.path() / "m.qins";
  Fixture fx;
  fx.write(p);
  EXPECT_EQ(d.file_count(), 1u) << "temp file left behind";
  ContainerReader r = ContainerReader::open(p.string());
  EXPECT_EQ(r.version_major(), kFormatMajor);
  EXPECT_EQ(r.metadata("config.json"), fx.config);
  EXPECT_EQ(r.metadata("tokenizer.model"), fx.tokenizer);
  EXPECT_EQ(r.metadata("empty"), "");
  EXPECT_TRUE(r.has_metadata("config.json"));
  EXPECT_FALSE(r.has_metadata("nope"));
  EXPECT_THROW(r.metadata("nope"), FormatError);
  ASSERT_EQ(r.tensors().size(), 4u);
  const TensorInfo* t = r.find_tensor("layers.0.mlp.down_proj.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->shape, (std::vector<uint64_t>{300, 1000}));
  EXPECT_EQ(t->encoding, "qins8");
  EXPECT_EQ(t->codebook, "cb0");
  EXPECT_EQ(t->extras.at("pole"), "0.5");
  ASSERT_EQ(t->sections.size(), 3u);
  EXPECT_EQ(t->sections[0].chunks.size(), 5u);  // 300000 / 64 KiB
  for (const auto& s : t->sections)
    for (const auto& c : s.chunks) EXPECT_EQ(c.offset % kDataAlignment, 0u);

  std::vector<uint8_t> codes(fx.codes.size());
  r.decode_section(*t, "codes", codes.data(), codes.size());
  EXPECT_EQ(codes, fx.codes);
  std::vector<uint8_t> lut(fx.lut.size());
  r.decode_section("layers.0.mlp.down_proj.weight", "lut", lut.data(), lut.size());
  EXPECT_EQ(lut, fx.lut);
  EXPECT_THROW(r.decode_section(*t, "codes", codes.data(), codes.size() - 1), std::invalid_argument);
  EXPECT_THROW(r.decode_section(*t, "nope", codes.data(), codes.size()), std::invalid_argument);

  // Codec choice: QINS-like codes compress with Huffman, mostly-zero codes with sparse coding.
  const SectionStats cs = section_stats(t->sections[0]);
  EXPECT_EQ(cs.raw_bytes, fx.codes.size());
  EXPECT_LT(cs.stored_bytes, fx.codes.size());
  EXPECT_GT(cs.chunks[unsigned(Codec::huffman)], 0u);
  const SectionStats ss = tensor_stats(*r.find_tensor("layers.0.sparse"));
  EXPECT_GT(ss.chunks[unsigned(Codec::sparse_huffman)], 0u);
  r.verify();
}

TEST(Container, ParallelDecodeWithProgressAndCancel) {
  TempDir d;
  const fs::path p = d.path() / "m.qins";
  Fixture fx;
  fx.write(p);
  ContainerReader r = ContainerReader::open(p.string());
  std::vector<uint8_t> codes(fx.codes.size()), sparse(fx.sparse.size()), scales(fx.scales.size()),
      norm(fx.norm.size());
  std::vector<DecodeJob> jobs = {
      {"layers.0.mlp.down_proj.weight", "codes", codes.data(), codes.size()},
      {"layers.0.mlp.down_proj.weight", "scales", scales.data(), scales.size()},
      {"layers.0.sparse", "codes", sparse.data(), sparse.size()},
      {"norm.weight", "data", norm.data(), norm.size()},
      {"empty", "data", nullptr, 0},
  };
  std::vector<double> seen;
  DecodeOptions o;
  o.threads = 3;
  r.decode_parallel(jobs, o, [&](double f) {
    seen.push_back(f);
    return true;
  });
  EXPECT_EQ(codes, fx.codes);
  EXPECT_EQ(sparse, fx.sparse);
  EXPECT_EQ(scales, fx.scales);
  EXPECT_EQ(norm, fx.norm);
  ASSERT_FALSE(seen.empty());
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_DOUBLE_EQ(seen.back(), 1.0);

  // Progress is reported at least once (at 1.0 when the pool finishes first), so a callback
  // that refuses on its first call always cancels.
  int calls = 0;
  EXPECT_THROW(r.decode_parallel(jobs, o, [&](double) { return ++calls > 1; }), Cancelled);
  EXPECT_EQ(calls, 1);
  EXPECT_THROW(r.verify(o, [](double) { return false; }), Cancelled);
  jobs[0].dst_size -= 1;
  EXPECT_THROW(r.decode_parallel(jobs, o), std::invalid_argument);
}

TEST(Container, InjectedFailureLeavesNoFileUnderTheTarget) {
  TempDir d;
  const fs::path p = d.path() / "m.qins";
  Fixture fx;
  // Fail at several points: the header placeholder, mid-chunks, the directory, the final header.
  for (uint64_t fail_after : {0ull, 1000ull, 100000ull, 200000ull}) {
    WriterOptions wo;
    uint64_t written = 0;
    wo.before_write = [&](uint64_t, std::size_t n) {
      if (written + n > fail_after) throw std::runtime_error("injected failure");
      written += n;
    };
    EXPECT_THROW(fx.write(p, wo), std::runtime_error) << fail_after;
    EXPECT_FALSE(fs::exists(p)) << fail_after;
    EXPECT_EQ(d.file_count(), 0u) << "temp file left after failure at " << fail_after;
  }
  // Failing on the final header rewrite (offset 0, after everything else).
  {
    WriterOptions wo;
    int calls = 0;
    wo.before_write = [&](uint64_t off, std::size_t) {
      if (off == 0 && ++calls == 2) throw std::runtime_error("injected failure at header");
    };
    EXPECT_THROW(fx.write(p, wo), std::runtime_error);
    EXPECT_FALSE(fs::exists(p));
    EXPECT_EQ(d.file_count(), 0u);
  }
  // An existing file under the target name stays byte-for-byte untouched.
  const std::vector<uint8_t> old = {'o', 'l', 'd'};
  write_all(p, old);
  WriterOptions wo;
  wo.before_write = [&](uint64_t off, std::size_t) {
    if (off > 5000) throw std::runtime_error("injected failure");
  };
  EXPECT_THROW(fx.write(p, wo), std::runtime_error);
  EXPECT_EQ(read_all(p), old);
  EXPECT_EQ(d.file_count(), 1u);
  // And a successful write replaces it.
  fx.write(p);
  EXPECT_NO_THROW(ContainerReader::open(p.string()).verify());
}

TEST(Container, DestructorWithoutCommitRemovesTempFile) {
  TempDir d;
  const fs::path p = d.path() / "m.qins";
  {
    ContainerWriter w(p.string());
    w.put_metadata("k", "v");
    EXPECT_TRUE(fs::exists(w.temp_path()));
  }
  EXPECT_EQ(d.file_count(), 0u);
}

TEST(Container, WriterRejectsDuplicates) {
  TempDir d;
  ContainerWriter w((d.path() / "m.qins").string());
  const uint8_t b[4] = {1, 2, 3, 4};
  w.add_tensor({"t", {4}, "f32", "", {}}, {{"data", b, 4}});
  EXPECT_THROW(w.add_tensor({"t", {4}, "f32", "", {}}, {{"data", b, 4}}), std::invalid_argument);
  w.put_metadata("k", "v");
  EXPECT_THROW(w.put_metadata("k", "v"), std::invalid_argument);
}

// ---- Golden errors, generated from a good file ----

class GoldenErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    good_path_ = dir_.path() / "good.qins";
    Fixture().write(good_path_);
    good_ = read_all(good_path_);
  }
  // Writes `bytes` and returns the FormatError message of opening + verifying it.
  std::string error_of(const std::vector<uint8_t>& bytes) {
    const fs::path p = dir_.path() / "bad.qins";
    write_all(p, bytes);
    const std::string e = open_error(p);
    // The same bytes parsed from memory give the same verdict.
    std::string m;
    try {
      ContainerReader::from_memory(bytes.data(), bytes.size(), p.string()).verify();
    } catch (const FormatError& x) {
      m = x.what();
    }
    EXPECT_EQ(e, m);
    return e;
  }
  TempDir dir_;
  fs::path good_path_;
  std::vector<uint8_t> good_;
};

#define EXPECT_ERROR_HAS(msg, needle) \
  EXPECT_NE((msg).find(needle), std::string::npos) << "message: '" << (msg) << "'"

TEST_F(GoldenErrors, GoodFileVerifies) { EXPECT_EQ(error_of(good_), ""); }

TEST_F(GoldenErrors, Truncated) {
  for (std::size_t n : {std::size_t(0), std::size_t(10), std::size_t(63)}) {
    const std::string e = error_of({good_.begin(), good_.begin() + std::ptrdiff_t(n)});
    EXPECT_ERROR_HAS(e, "truncated");
    EXPECT_ERROR_HAS(e, "bad.qins");  // names the file
  }
  for (std::size_t n : {std::size_t(64), good_.size() / 2, good_.size() - 1})
    EXPECT_ERROR_HAS(error_of({good_.begin(), good_.begin() + std::ptrdiff_t(n)}), "truncated: header says");
}

TEST_F(GoldenErrors, WrongMagic) {
  auto f = good_;
  f[1] = 'X';
  EXPECT_ERROR_HAS(error_of(f), "wrong magic");
  EXPECT_ERROR_HAS(error_of(std::vector<uint8_t>(200, 'a')), "wrong magic");
}

TEST_F(GoldenErrors, WrongVersion) {
  auto f = good_;
  f[8] = 2;
  EXPECT_ERROR_HAS(error_of(f), "unsupported version 2.0");
  // A newer minor version is accepted (only appended fields).
  f = good_;
  f[10] = 3;
  rehash(f);
  EXPECT_EQ(error_of(f), "");
}

TEST_F(GoldenErrors, BadHeaderAndDirectoryChecksums) {
  auto f = good_;
  f[17] ^= 1;  // file size field, without rehash
  EXPECT_ERROR_HAS(error_of(f), "bad header checksum");
  f = good_;
  f[std::size_t(load_le64(f.data() + 24)) + 5] ^= 0x40;  // inside the directory
  store_le64(f.data() + 56, checksum64(f.data(), 56));
  EXPECT_ERROR_HAS(error_of(f), "bad directory checksum");
}

TEST_F(GoldenErrors, BadChunkChecksum) {
  // Tensor "layers.0.mlp.down_proj.weight" section "scales" is random (stored raw): flipping a
  // payload byte decodes fine and only the checksum catches it.
  ContainerReader r = ContainerReader::open(good_path_.string());
  const ChunkInfo& c = r.find_tensor("layers.0.mlp.down_proj.weight")->section("scales")->chunks[0];
  ASSERT_EQ(c.codec, Codec::raw);
  auto f = good_;
  f[std::size_t(c.offset) + 7] ^= 1;
  const std::string e = error_of(f);
  EXPECT_ERROR_HAS(e, "bad checksum in tensor 'layers.0.mlp.down_proj.weight' section 'scales' chunk 0");
  // Metadata blobs are checksummed too.
  f = good_;
  // The metadata codec is zstd; corrupt the stored checksum field instead (directory edit).
  DirWalker w(f);
  w.u(4);
  w.str(2);
  const std::size_t checksum_pos = w.p + 1 + 24;
  f[checksum_pos] ^= 1;
  rehash(f);
  EXPECT_ERROR_HAS(error_of(f), "bad checksum in metadata 'config.json'");
}

TEST_F(GoldenErrors, BadHuffmanTable) {
  ContainerReader r = ContainerReader::open(good_path_.string());
  const ChunkInfo& c = r.find_tensor("layers.0.mlp.down_proj.weight")->section("codes")->chunks[1];
  ASSERT_EQ(c.codec, Codec::huffman);
  auto f = good_;
  f[std::size_t(c.offset) + 1] = 0x11;  // symbols 0 and 1 get 1-bit codes: oversubscribed
  const std::string e = error_of(f);
  EXPECT_ERROR_HAS(e, "tensor 'layers.0.mlp.down_proj.weight' section 'codes' chunk 1 (huffman)");
  EXPECT_ERROR_HAS(e, "bad Huffman table");
}

TEST_F(GoldenErrors, DamagedHuffmanChunkIsNamedWhicheverSideOfADecodePairItIs) {
  // The reader decodes Huffman chunks two at a time (huf::huffman_decode2); a bad one must
  // still be named exactly, first or second of its pair, through verify() and decode_parallel().
  ContainerReader r = ContainerReader::open(good_path_.string());
  const SectionInfo& s = *r.find_tensor("layers.0.mlp.down_proj.weight")->section("codes");
  ASSERT_GE(s.chunks.size(), 4u);
  for (std::size_t k = 0; k < 4; ++k) {
    ASSERT_EQ(s.chunks[k].codec, Codec::huffman);
    const std::string name =
        "tensor 'layers.0.mlp.down_proj.weight' section 'codes' chunk " + std::to_string(k);
    auto f = good_;
    f[std::size_t(s.chunks[k].offset) + 1] = 0x11;  // oversubscribed table
    std::string e = error_of(f);
    EXPECT_ERROR_HAS(e, name + " (huffman)");
    EXPECT_ERROR_HAS(e, "bad Huffman table");
    // A flipped bit in the middle of the bit streams: a decode error or a checksum mismatch,
    // either way naming this chunk.
    f = good_;
    f[std::size_t(s.chunks[k].offset + s.chunks[k].stored_size / 2)] ^= 0x10;
    e = error_of(f);
    EXPECT_ERROR_HAS(e, name);
    const auto fp = dir_.path() / "bad2.qins";
    write_all(fp, f);
    ContainerReader rb = ContainerReader::open(fp.string());
    std::vector<uint8_t> out(s.raw_size);
    DecodeOptions o;
    o.threads = 1;
    o.verify = true;
    try {
      rb.decode_parallel({{"layers.0.mlp.down_proj.weight", "codes", out.data(), out.size()}}, o);
      ADD_FAILURE() << "no error for chunk " << k;
    } catch (const FormatError& x) {
      EXPECT_ERROR_HAS(std::string(x.what()), name);
    }
  }
}

TEST_F(GoldenErrors, OffsetsOutOfRange) {
  auto f = good_;
  DirWalker w(f);
  const std::size_t raw_pos = w.first_section_raw_size_pos();
  const std::size_t chunk0 = raw_pos + 8 + 4;  // after raw size and chunk count
  store_le64(f.data() + chunk0 + 1, f.size() + 100);  // offset past the end
  rehash(f);
  EXPECT_ERROR_HAS(error_of(f), "chunk 0: offset");
  EXPECT_ERROR_HAS(error_of(f), "out of range of the data region");
  // Directory offset past the file.
  f = good_;
  store_le64(f.data() + 24, f.size() + 1);
  rehash(f);
  EXPECT_ERROR_HAS(error_of(f), "directory offset");
}

TEST_F(GoldenErrors, SizesThatWouldOverflow) {
  auto f = good_;
  DirWalker w(f);
  const std::size_t raw_pos = w.first_section_raw_size_pos();
  const std::size_t chunk0 = raw_pos + 8 + 4;
  store_le64(f.data() + chunk0 + 1, 1000);
  store_le64(f.data() + chunk0 + 9, ~uint64_t(0) - 500);  // offset + size wraps around
  rehash(f);
  EXPECT_ERROR_HAS(error_of(f), "offset + size overflows");
  // Directory offset + size wraps.
  f = good_;
  store_le64(f.data() + 32, ~uint64_t(0) - 10);
  rehash(f);
  EXPECT_ERROR_HAS(error_of(f), "directory offset + size overflows");
  // Section raw size disagreeing with its chunks.
  f = good_;
  store_le64(f.data() + raw_pos, ~uint64_t(0));
  rehash(f);
  EXPECT_ERROR_HAS(error_of(f), "does not match its chunks");
}

TEST_F(GoldenErrors, HugeCountsDoNotAllocate) {
  auto f = good_;
  DirWalker w(f);
  const std::size_t raw_pos = w.first_section_raw_size_pos();
  store_le32(f.data() + raw_pos + 8, 0xFFFFFFFFu);  // chunk count
  rehash(f);
  EXPECT_ERROR_HAS(error_of(f), "count of chunks");
  f = good_;
  store_le32(f.data() + std::size_t(load_le64(f.data() + 24)), 0xFFFFFFFFu);  // metadata count
  rehash(f);
  EXPECT_ERROR_HAS(error_of(f), "count of metadata entries");
  // A chunk claiming a 4 GiB raw size is refused before any buffer exists.
  f = good_;
  store_le32(f.data() + raw_pos + 8 + 4 + 17, 0xFFFFFFFFu);
  rehash(f);
  EXPECT_ERROR_HAS(error_of(f), "raw size 4294967295 out of range");
}

TEST_F(GoldenErrors, EveryTruncationAndByteFlipIsAnErrorNotACrash) {
  // Sweep a small file exhaustively over truncation points; flip bytes at a stride.
  TempDir d;
  const fs::path p = d.path() / "small.qins";
  {
    ContainerWriter w(p.string());
    w.put_metadata("config.json", "{\"a\": 1}");
    const auto codes = qins_like_codes(3000, 9);
    EncodeOptions eo;
    eo.chunk_size = 1024;
    w.add_tensor({"t", {3000}, "qins8", "", {}}, {{"codes", codes.data(), codes.size()}}, eo);
    w.commit();
  }
  const auto small = read_all(p);
  for (std::size_t n = 0; n < small.size(); n += 7) {
    std::vector<uint8_t> t(small.begin(), small.begin() + std::ptrdiff_t(n));
    EXPECT_THROW(ContainerReader::from_memory(t.data(), t.size()).verify(), FormatError) << n;
  }
  // Every byte the header, directory and chunk checksums cover is caught; only alignment
  // padding between chunks (covered by nothing, read by nothing) may be flipped unnoticed.
  std::size_t trials = 0, rejected = 0;
  for (std::size_t i = 0; i < small.size(); i += 3) {
    auto b = small;
    b[i] ^= 0x5A;
    ++trials;
    try {
      ContainerReader::from_memory(b.data(), b.size()).verify();
    } catch (const FormatError&) {
      ++rejected;
    }
  }
  EXPECT_GE(rejected * 10, trials * 9) << rejected << " of " << trials << " flipped files rejected";
}

// Committed tiny golden bad files (tests/data/bad_qins/*.qins), each with the substring of the
// error it must produce in <name>.expected, written by write_bad_qins (see write_bad_qins.cpp).
TEST(GoldenFiles, CommittedBadFilesGiveTheirErrors) {
  const fs::path dir = QINS_BAD_QINS_DIR;
  std::size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".qins") continue;
    fs::path exp = e.path();
    exp.replace_extension(".expected");
    std::ifstream f(exp);
    std::string needle;
    std::getline(f, needle);
    ASSERT_FALSE(needle.empty()) << exp;
    const std::string err = open_error(e.path());
    EXPECT_ERROR_HAS(err, needle);
    ++n;
  }
  EXPECT_GE(n, 5u);
}


// The writer keeps an entropy codec only where it saves >= min_saving_percent; raw chunks of a
// page or more start on a page; a section of raw chunks back to back is used in place from the
// file mapping, and a section mixing raw and coded chunks is decoded as before.
TEST(Container, RawAndCodedChunksMixedRoundTripAndRawSectionsAreUsedInPlace) {
  TempDir d;
  const fs::path p = d.path() / "mixed.qins";
  const auto noise = random_bytes(200000, 11);           // incompressible: raw
  const auto skewed = qins_like_codes(150000, 12, 1.5);  // saves far more than 10 %: huffman
  std::vector<uint8_t> mixed = noise;                    // raw chunks, then coded ones
  mixed.insert(mixed.end(), skewed.begin(), skewed.end());
  const auto small = random_bytes(100, 13);
  {
    ContainerWriter w(p.string());
    EncodeOptions eo;
    eo.chunk_size = 64 * 1024;
    eo.threads = 2;
    w.add_tensor({"small", {100}, "raw", "", {}}, {{"data", small.data(), small.size()}}, eo);
    w.add_tensor({"noise", {200000}, "raw", "", {}}, {{"data", noise.data(), noise.size()}}, eo);
    w.add_tensor({"mixed", {mixed.size()}, "raw", "", {}}, {{"data", mixed.data(), mixed.size()}}, eo);
    w.commit();
  }
  ContainerReader r = ContainerReader::open(p.string());
  const TensorInfo* tn = r.find_tensor("noise");
  const TensorInfo* tm = r.find_tensor("mixed");
  const TensorInfo* ts = r.find_tensor("small");
  ASSERT_TRUE(tn && tm && ts);
  for (const auto& c : tn->sections[0].chunks) {
    EXPECT_EQ(c.codec, Codec::raw);
    EXPECT_EQ(c.offset % kRawChunkAlignment, 0u) << "raw chunks of a page or more start on a page";
  }
  EXPECT_EQ(ts->sections[0].chunks[0].offset % kDataAlignment, 0u);
  const SectionStats ms = section_stats(tm->sections[0]);
  EXPECT_GT(ms.chunks[unsigned(Codec::raw)], 0u);
  EXPECT_GT(ms.chunks[unsigned(Codec::huffman)], 0u);

  // In place: the very bytes, no copy, and only for all-raw back-to-back sections.
  const uint8_t* at = r.mapped_section(*tn, "data");
  ASSERT_NE(at, nullptr);
  EXPECT_EQ(std::vector<uint8_t>(at, at + noise.size()), noise);
  EXPECT_EQ(r.mapped_section(*tm, "data"), nullptr);
  EXPECT_EQ(r.mapped_section(*tn, "nope"), nullptr);

  std::vector<uint8_t> got_mixed(mixed.size()), got_small(small.size());
  DecodeJob in_place{"noise", "data", nullptr, noise.size()};
  in_place.in_place = true;
  r.decode_parallel({in_place, {"mixed", "data", got_mixed.data(), got_mixed.size()},
                     {"small", "data", got_small.data(), got_small.size()}});
  EXPECT_EQ(got_mixed, mixed);
  EXPECT_EQ(got_small, small);
  DecodeJob not_mappable{"mixed", "data", nullptr, mixed.size()};
  not_mappable.in_place = true;
  EXPECT_THROW(r.decode_parallel({not_mappable}), std::invalid_argument);

  // A reader over memory has no mapping to lend.
  const auto bytes = read_all(p);
  ContainerReader m = ContainerReader::from_memory(bytes.data(), bytes.size(), "mem");
  EXPECT_EQ(m.mapped_section(*m.find_tensor("noise"), "data"), nullptr);
  EXPECT_EQ(m.mapping(), nullptr);
}

TEST(Container, MinSavingPercentDecidesBetweenCodedAndRaw) {
  // ~7.6 bits of entropy per byte: Huffman saves a few percent, below the default 10 %.
  const auto codes = qins_like_codes(1 << 16, 21, 40.0);
  CodecOptions keep_any;
  keep_any.min_saving_percent = 0;
  keep_any.allow_zstd = false;
  const EncodedChunk any = encode_best(codes.data(), codes.size(), keep_any);
  ASSERT_EQ(any.codec, Codec::huffman);
  const double saving = 1.0 - double(any.data.size()) / double(codes.size());
  ASSERT_GT(saving, 0.0);
  ASSERT_LT(saving, 0.10) << "the test data should save less than the default threshold";
  CodecOptions dflt;
  dflt.allow_zstd = false;
  EXPECT_EQ(encode_best(codes.data(), codes.size(), dflt).codec, Codec::raw);
  CodecOptions all_but;
  all_but.allow_zstd = false;
  all_but.min_saving_percent = unsigned(saving * 100);  // just below what it saves: coded
  EXPECT_EQ(encode_best(codes.data(), codes.size(), all_but).codec, Codec::huffman);
  all_but.min_saving_percent = unsigned(saving * 100) + 1;  // just above: raw
  EXPECT_EQ(encode_best(codes.data(), codes.size(), all_but).codec, Codec::raw);
}

// A damaged byte in a chunk used in place is found by the checksum pass of the load and named.
TEST(Container, CorruptChunkUsedInPlaceIsACleanErrorNamingTheFile) {
  TempDir d;
  const fs::path p = d.path() / "mapped.qins";
  const auto noise = random_bytes(200000, 31);
  {
    ContainerWriter w(p.string());
    EncodeOptions eo;
    eo.chunk_size = 64 * 1024;
    w.add_tensor({"noise", {200000}, "raw", "", {}}, {{"data", noise.data(), noise.size()}}, eo);
    w.commit();
  }
  std::size_t at = 0;
  {
    ContainerReader r = ContainerReader::open(p.string());
    at = std::size_t(r.find_tensor("noise")->sections[0].chunks[2].offset) + 77;
  }
  auto f = read_all(p);
  f[at] ^= 0x20;
  write_all(p, f);
  ContainerReader r = ContainerReader::open(p.string());
  DecodeJob j{"noise", "data", nullptr, noise.size()};
  j.in_place = true;
  try {
    r.decode_parallel({j});
    FAIL() << "expected a checksum error";
  } catch (const FormatError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(p.string()), std::string::npos) << m;
    EXPECT_NE(m.find("bad checksum in tensor 'noise' section 'data' chunk 2"), std::string::npos) << m;
  }
  DecodeOptions no_verify;
  no_verify.verify = false;
  EXPECT_NO_THROW(r.decode_parallel({j}, no_verify));  // what --no-verify trades away
}

// The writer gives the Huffman chunks of a section one code (CodecOptions::share_huffman_code):
// every chunk's payload starts with the same table bytes, the file round-trips (paired decode
// with one set of tables), and it costs little size. Without the option each chunk has its own.
TEST(Container, ChunksOfASectionShareOneHuffmanCode) {
  TempDir d;
  const std::size_t chunk = 64 * 1024;
  const auto codes = qins_like_codes(8 * chunk, 21);  // (a short last chunk may keep its own code)
  auto write = [&](const fs::path& p, bool share) {
    ContainerWriter w(p.string());
    EncodeOptions eo;
    eo.chunk_size = chunk;
    eo.threads = 2;
    eo.codecs.allow_zstd = false;
    eo.codecs.share_huffman_code = share;
    w.add_tensor({"w", {codes.size()}, "qins8", "", {}}, {{"codes", codes.data(), codes.size()}}, eo);
    w.commit();
  };
  auto tables = [&](const fs::path& p) {
    const auto bytes = read_all(p);
    ContainerReader r = ContainerReader::open(p.string());
    std::vector<std::vector<uint8_t>> out;
    for (const auto& c : r.find_tensor("w")->sections[0].chunks) {
      EXPECT_EQ(c.codec, Codec::huffman);
      huf::CodeLengths len;
      const std::size_t ts = huf::read_table(bytes.data() + c.offset, std::size_t(c.stored_size), len);
      out.emplace_back(bytes.begin() + std::ptrdiff_t(c.offset), bytes.begin() + std::ptrdiff_t(c.offset + ts));
    }
    std::vector<uint8_t> got(codes.size()), got2(codes.size());
    r.decode_parallel({{"w", "codes", got.data(), got.size()}});
    EXPECT_EQ(got, codes);
    r.decode_section("w", "codes", got2.data(), got2.size());
    EXPECT_EQ(got2, codes);
    return out;
  };
  const fs::path shared = d.path() / "shared.qins", own = d.path() / "own.qins";
  write(shared, true);
  write(own, false);
  const auto ts = tables(shared), to = tables(own);
  ASSERT_EQ(ts.size(), 8u);
  for (std::size_t i = 1; i < ts.size(); ++i) EXPECT_EQ(ts[i], ts[0]) << "chunk " << i;
  bool differ = false;
  for (std::size_t i = 1; i < to.size(); ++i) differ |= to[i] != to[0];
  EXPECT_TRUE(differ) << "per-chunk codes of random draws should not all be equal";
  const auto ss = fs::file_size(shared), so = fs::file_size(own);
  EXPECT_GE(ss + 8 * 4, so);     // a shared code cannot beat each chunk's optimal one (padding aside)
  EXPECT_LE(ss, so + so / 100);  // and costs well under 1 % here
}
