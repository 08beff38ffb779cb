// safetensors: write/read round trips, dtype conversions, sharded checkpoints, and one test per
// rejection of PHI3.md §6 (each asserting the message names the file and the problem).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <random>

#include "qins/io/safetensors.h"
#include "test_util.h"

namespace st = qins::st;
using qins_test::error_of;
using qins_test::read_bytes;
using qins_test::TempDir;
using qins_test::write_text;

namespace {

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

template <typename T>
std::vector<uint8_t> as_bytes(const std::vector<T>& v) {
  std::vector<uint8_t> out(v.size() * sizeof(T));
  std::memcpy(out.data(), v.data(), out.size());  // test host is little-endian, like the format
  return out;
}

// A raw safetensors file: u64 LE header length, header text, data bytes.
std::string raw_file(const std::string& header, const std::string& data, uint64_t n_override = ~0ull) {
  const uint64_t n = n_override == ~0ull ? header.size() : n_override;
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

std::vector<float> to_floats(const st::TensorView& t) {
  std::vector<float> out(static_cast<std::size_t>(t.numel()));
  st::to_float32(t, out.data());
  return out;
}

// Error from opening `name` written with `bytes` inside `dir`.
std::string open_error(const TempDir& dir, const std::string& name, const std::string& bytes) {
  const std::string path = dir.file(name);
  write_text(path, bytes);
  return error_of([&] { st::File::open(path); });
}

}  // namespace

// ------------------------------------------------------------------------------------------
// Round trips

TEST(Safetensors, WriteReadRoundTripAllDtypes) {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  const std::vector<float> f32 = {1.5f, -2.25f, 0.0f, 3.0e38f, -1e-40f /*subnormal*/, 7.0f};
  const std::vector<uint16_t> bf16 = {0x3f80, 0xc020, 0x0001, 0x7f80};
  const std::vector<uint16_t> f16 = {0x3c00, 0x0001, 0xfbff};
  std::vector<st::TensorData> ts = {
      {"a.weight", st::DType::F32, {2, 3}, as_bytes(f32)},
      {"b", st::DType::BF16, {4}, as_bytes(bf16)},
      {"c", st::DType::F16, {1, 3}, as_bytes(f16)},
      {"scalar", st::DType::F32, {}, as_bytes(std::vector<float>{42.0f})},
      {"empty", st::DType::BF16, {0, 5}, {}},
  };
  st::write_file(path, ts, {{"format", "pt"}, {"note", "ünïcode"}});

  // Header length is a multiple of 8 so the data buffer starts 8-byte aligned.
  const std::string raw = read_bytes(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(raw[i]);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(raw.size(), 8 + n + 24 + 8 + 6 + 4 + 0);

  auto f = st::File::open(path);
  EXPECT_EQ(f->path(), path);
  EXPECT_EQ(f->file_size(), raw.size());
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_EQ(f->metadata().at("note"), "ünïcode");
  ASSERT_EQ(f->tensors().size(), 5u);
  for (const auto& t : ts) {
    const st::TensorView& v = f->tensors().at(t.name);
    EXPECT_EQ(v.name, t.name);
    EXPECT_EQ(v.dtype, t.dtype);
    EXPECT_EQ(v.shape, t.shape);
    EXPECT_EQ(v.file, path);
    ASSERT_EQ(v.nbytes, t.bytes.size());
    if (v.nbytes) {
      EXPECT_EQ(std::memcmp(v.data, t.bytes.data(), v.nbytes), 0) << t.name;
    }
  }
  EXPECT_EQ(f->tensors().at("empty").numel(), 0);
  EXPECT_EQ(f->tensors().at("scalar").numel(), 1);
  EXPECT_EQ(to_floats(f->tensors().at("scalar"))[0], 42.0f);

  // F32 converts bit-exactly.
  const auto a = to_floats(f->tensors().at("a.weight"));
  for (std::size_t i = 0; i < f32.size(); ++i) EXPECT_EQ(bits(a[i]), bits(f32[i])) << i;
  // BF16 -> float is a shift: exact.
  const auto b = to_floats(f->tensors().at("b"));
  EXPECT_EQ(b[0], 1.0f);
  EXPECT_EQ(b[1], -2.5f);
  EXPECT_EQ(b[2], std::ldexp(1.0f, -133));  // smallest bf16 subnormal
  EXPECT_TRUE(std::isinf(b[3]) && b[3] > 0);
  // F16 -> float exact, including the smallest subnormal and the largest finite negative.
  const auto c = to_floats(f->tensors().at("c"));
  EXPECT_EQ(c[0], 1.0f);
  EXPECT_EQ(c[1], std::ldexp(1.0f, -24));
  EXPECT_EQ(c[2], -65504.0f);

  // No temp file left behind.
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
}

TEST(Safetensors, OverwriteReplacesAtomically) {
  TempDir dir;
  const std::string path = dir.file("x.safetensors");
  st::write_file(path, {{"t", st::DType::F32, {1}, as_bytes(std::vector<float>{1.0f})}});
  st::write_file(path, {{"u", st::DType::F32, {2}, as_bytes(std::vector<float>{2.0f, 3.0f})}});
  auto f = st::File::open(path);
  EXPECT_EQ(f->tensors().count("t"), 0u);
  EXPECT_EQ(to_floats(f->tensors().at("u")), (std::vector<float>{2.0f, 3.0f}));
}

TEST(Safetensors, WriteFailureLeavesNoTempFile) {
  TempDir dir;
  // The target is a directory: rename fails after the temp file was written.
  const std::string path = dir.file("is_a_dir.safetensors");
  std::filesystem::create_directory(path);
  std::filesystem::create_directory(path + "/keep");  // non-empty: rename can never replace it
  const std::string msg = error_of([&] {
    st::write_file(path, {{"t", st::DType::F32, {1}, as_bytes(std::vector<float>{1.0f})}});
  });
  EXPECT_ERROR_NAMES(msg, path, "rename failed");
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);  // only the directory itself
}

TEST(Safetensors, WriteRejectsBadTensors) {
  TempDir dir;
  const std::string path = dir.file("w.safetensors");
  EXPECT_ERROR_NAMES(error_of([&] { st::write_file(path, {{"t", st::DType::F32, {3}, std::vector<uint8_t>(8)}}); }),
                     path, "tensor 't' has 8 bytes, but shape [3] of F32 needs 12");
  EXPECT_ERROR_NAMES(error_of([&] {
                       st::write_file(path, {{"t", st::DType::F16, {1}, std::vector<uint8_t>(2)},
                                             {"t", st::DType::F16, {1}, std::vector<uint8_t>(2)}});
                     }),
                     path, "duplicate tensor name 't'");
  EXPECT_ERROR_NAMES(error_of([&] { st::write_file(path, {{"t", st::DType::F32, {-1}, {}}}); }), path,
                     "negative dimension");
  EXPECT_ERROR_NAMES(error_of([&] { st::write_file(dir.file("no/such/dir/x.safetensors"), {}); }),
                     "no/such/dir/x.safetensors", "cannot create temporary file");
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(Safetensors, EmptyFileWithNoTensorsIsValid) {
  TempDir dir;
  const std::string path = dir.file("empty.safetensors");
  st::write_file(path, {});
  auto f = st::File::open(path);
  EXPECT_TRUE(f->tensors().empty());
}

TEST(Safetensors, UnalignedDataAndSpacePaddedHeader) {
  // Header of odd length (trailing spaces) puts the F32 data at an odd file offset.
  const std::string header = R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}})" + std::string(3, ' ');
  ASSERT_NE((8 + header.size()) % 4, 0u);
  const std::vector<float> vals = {1.25f, -0.5f, 1e-3f};
  std::string data(12, '\0');
  std::memcpy(data.data(), vals.data(), 12);
  const std::string bytes = raw_file(header, data);
  // Parse from memory at an odd address as well.
  std::vector<uint8_t> buf(bytes.size() + 1);
  std::memcpy(buf.data() + 1, bytes.data(), bytes.size());
  auto f = st::File::parse(buf.data() + 1, bytes.size(), "mem.safetensors");
  const st::TensorView& v = f->tensors().at("x");
  EXPECT_NE(reinterpret_cast<uintptr_t>(v.data) % 4, 0u);
  EXPECT_EQ(to_floats(v), vals);

  TempDir dir;
  write_text(dir.file("u.safetensors"), bytes);
  auto g = st::File::open(dir.file("u.safetensors"));
  EXPECT_EQ(to_floats(g->tensors().at("x")), vals);
}

// ------------------------------------------------------------------------------------------
// Conversions

TEST(Conversions, Bf16RoundsToNearestEven) {
  EXPECT_EQ(st::float_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(st::float_to_bf16(from_bits(0x3f808000)), 0x3f80);  // tie, even stays
  EXPECT_EQ(st::float_to_bf16(from_bits(0x3f818000)), 0x3f82);  // tie, odd rounds up
  EXPECT_EQ(st::float_to_bf16(from_bits(0x3f808001)), 0x3f81);  // above the tie
  EXPECT_EQ(st::float_to_bf16(from_bits(0x3f807fff)), 0x3f80);  // below the tie
  EXPECT_EQ(st::float_to_bf16(from_bits(0xbf818000)), 0xbf82);  // negative tie
  EXPECT_EQ(st::float_to_bf16(from_bits(0x3fffffff)), 0x4000);  // carry into the exponent
  EXPECT_EQ(st::float_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds to inf
  EXPECT_EQ(st::float_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(st::float_to_bf16(-std::numeric_limits<float>::infinity()), 0xff80);
  EXPECT_EQ(st::float_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(st::float_to_bf16(from_bits(0x00008000)), 0x0000);  // subnormal tie to even
  EXPECT_EQ(st::float_to_bf16(from_bits(0x00018000)), 0x0002);
}

TEST(Conversions, Bf16PreservesNaN) {
  // A NaN whose payload sits only in the low 16 bits must not become inf.
  for (uint32_t nan : {0x7f800001u, 0x7fc00000u, 0xff800001u, 0x7fffffffu}) {
    const uint16_t h = st::float_to_bf16(from_bits(nan));
    EXPECT_TRUE(std::isnan(st::bf16_to_float(h))) << std::hex << nan;
    EXPECT_EQ(h & 0x8000, (nan >> 16) & 0x8000);  // sign kept
  }
}

TEST(Conversions, Bf16AllValuesRoundTrip) {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    const float f = st::bf16_to_float(static_cast<uint16_t>(h));
    EXPECT_EQ(bits(f), h << 16);
    if (!std::isnan(f)) {
      ASSERT_EQ(st::float_to_bf16(f), h) << std::hex << h;
    }
  }
}

TEST(Conversions, F16SpecialValuesAndSubnormals) {
  EXPECT_EQ(st::float_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(st::float_to_f16(-2.0f), 0xc000);
  EXPECT_EQ(st::float_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(st::float_to_f16(65519.0f), 0x7bff);
  EXPECT_EQ(st::float_to_f16(65520.0f), 0x7c00);  // tie between 65504 and 65536 -> inf (even)
  EXPECT_EQ(st::float_to_f16(1e6f), 0x7c00);
  EXPECT_EQ(st::float_to_f16(-std::numeric_limits<float>::infinity()), 0xfc00);
  EXPECT_EQ(st::float_to_f16(std::ldexp(1.0f, -14)), 0x0400);  // smallest normal
  EXPECT_EQ(st::float_to_f16(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(st::float_to_f16(std::ldexp(1023.0f, -24)), 0x03ff);  // largest subnormal
  EXPECT_EQ(st::float_to_f16(std::ldexp(1.0f, -25)), 0x0000);  // tie -> even (0)
  EXPECT_EQ(st::float_to_f16(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(st::float_to_f16(std::ldexp(3.0f, -25)), 0x0002);  // 1.5 units: tie -> even (2)
  EXPECT_EQ(st::float_to_f16(std::ldexp(5.0f, -25)), 0x0002);  // 2.5 units: tie -> even (2)
  EXPECT_EQ(st::float_to_f16(std::ldexp(2047.0f, -25)), 0x0400);  // 1023.5 units -> carries to normal
  EXPECT_EQ(st::float_to_f16(std::ldexp(1.0f, -30)), 0x0000);
  EXPECT_EQ(st::float_to_f16(-std::ldexp(1.0f, -30)), 0x8000);
  EXPECT_EQ(st::float_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie -> even
  EXPECT_EQ(st::float_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie -> even
  EXPECT_EQ(st::f16_to_float(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(st::f16_to_float(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(st::f16_to_float(0x8001), -std::ldexp(1.0f, -24));
  EXPECT_EQ(bits(st::f16_to_float(0x8000)), 0x80000000u);
  EXPECT_TRUE(std::isinf(st::f16_to_float(0x7c00)));
  EXPECT_TRUE(std::isnan(st::f16_to_float(0x7e00)));
  EXPECT_TRUE(std::isnan(st::f16_to_float(0x7c01)));  // signalling NaN stays NaN
  for (uint32_t nan : {0x7f800001u, 0x7fc00000u, 0xffffffffu})
    EXPECT_TRUE(std::isnan(st::f16_to_float(st::float_to_f16(from_bits(nan))))) << std::hex << nan;
}

TEST(Conversions, F16AllValuesRoundTrip) {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    const float f = st::f16_to_float(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      ASSERT_EQ(h & 0x7c00, 0x7c00u);
      continue;
    }
    ASSERT_EQ(st::float_to_f16(f), h) << std::hex << h;
  }
}

// The fast to_float32 paths (memcpy loop, lookup table) against the scalar reference, over every
// 16-bit pattern, from an unaligned address.
TEST(Conversions, ToFloat32MatchesScalarReferenceForAllPatterns) {
  std::vector<uint8_t> buf(2 * 65536 + 1);
  for (uint32_t h = 0; h < 65536; ++h) {
    buf[1 + 2 * h] = static_cast<uint8_t>(h & 0xff);
    buf[2 + 2 * h] = static_cast<uint8_t>(h >> 8);
  }
  st::TensorView v;
  v.shape = {256, 256};
  v.data = buf.data() + 1;
  v.nbytes = 2 * 65536;
  std::vector<float> out(65536);
  v.dtype = st::DType::F16;
  st::to_float32(v, out.data());
  for (uint32_t h = 0; h < 65536; ++h)
    ASSERT_EQ(bits(out[h]), bits(st::f16_to_float(static_cast<uint16_t>(h)))) << std::hex << h;
  v.dtype = st::DType::BF16;
  st::to_float32(v, out.data());
  for (uint32_t h = 0; h < 65536; ++h) ASSERT_EQ(bits(out[h]), h << 16) << std::hex << h;
  v.dtype = st::DType::F32;
  v.shape = {32768};
  st::to_float32(v, out.data());
  for (uint32_t i = 0; i < 32768; ++i) {
    const uint32_t lo = 2 * i, hi = 2 * i + 1;
    ASSERT_EQ(bits(out[i]), lo | (hi << 16)) << i;
  }
}

// Against a slow twin: the result is the nearest half (ties to an even mantissa).
TEST(Conversions, F16IsNearestAgainstBruteForce) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> ex(-28, 17);
  std::uniform_real_distribution<float> m(1.0f, 2.0f);
  for (int i = 0; i < 20000; ++i) {
    const float f = std::ldexp(m(rng), ex(rng)) * (i % 2 ? -1.0f : 1.0f);
    const uint16_t h = st::float_to_f16(f);
    if (std::isinf(st::f16_to_float(h))) {
      ASSERT_GE(std::fabs(f), 65520.0f) << f;  // the first value that rounds past 65504
      continue;
    }
    const double err = std::fabs(static_cast<double>(st::f16_to_float(h)) - f);
    for (int d : {-1, 1}) {
      const uint16_t mag = h & 0x7fff;
      if ((d < 0 && mag == 0) || (d > 0 && mag >= 0x7c00)) continue;
      const uint16_t nb = static_cast<uint16_t>((h & 0x8000) | (mag + d));
      const double nerr = std::fabs(static_cast<double>(st::f16_to_float(nb)) - f);
      ASSERT_TRUE(err < nerr || (err == nerr && (h & 1) == 0)) << f << " -> " << std::hex << h;
    }
  }
}

// ------------------------------------------------------------------------------------------
// Sharded checkpoints

namespace {
void write_sharded(const TempDir& dir, const std::string& index_json) {
  st::write_file(dir.file("model-00001-of-00002.safetensors"),
                 {{"a", st::DType::F32, {2}, as_bytes(std::vector<float>{1, 2})},
                  {"b", st::DType::BF16, {1}, as_bytes(std::vector<uint16_t>{0x4000})}});
  st::write_file(dir.file("model-00002-of-00002.safetensors"),
                 {{"c", st::DType::F16, {2}, as_bytes(std::vector<uint16_t>{0x3c00, 0x4200})}});
  write_text(dir.file("model.safetensors.index.json"), index_json);
}
const char* kIndex = R"({"metadata": {"total_size": 14}, "weight_map": {
  "a": "model-00001-of-00002.safetensors",
  "b": "model-00001-of-00002.safetensors",
  "c": "model-00002-of-00002.safetensors"}})";
}  // namespace

TEST(Checkpoint, ShardedViaIndex) {
  TempDir dir;
  write_sharded(dir, kIndex);
  auto ck = st::Checkpoint::open_dir(dir.path());
  EXPECT_EQ(ck->names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(to_floats(ck->get("a")), (std::vector<float>{1, 2}));
  EXPECT_EQ(to_floats(ck->get("b")), (std::vector<float>{2}));
  EXPECT_EQ(to_floats(ck->get("c")), (std::vector<float>{1, 3}));
  EXPECT_EQ(ck->get("c").file, dir.file("model-00002-of-00002.safetensors"));
  EXPECT_EQ(ck->find("zzz"), nullptr);
  EXPECT_ERROR_NAMES(error_of([&] { ck->get("zzz"); }), dir.path(), "tensor 'zzz' not found");
  EXPECT_EQ(ck->total_bytes(),
            static_cast<int64_t>(std::filesystem::file_size(dir.file("model-00001-of-00002.safetensors")) +
                                 std::filesystem::file_size(dir.file("model-00002-of-00002.safetensors"))));
  EXPECT_EQ(ck->dir(), dir.path());
}

TEST(Checkpoint, SingleFile) {
  TempDir dir;
  st::write_file(dir.file("model.safetensors"), {{"w", st::DType::F32, {1}, as_bytes(std::vector<float>{5})}});
  auto ck = st::Checkpoint::open_dir(dir.path() + "/");
  EXPECT_EQ(ck->names(), (std::vector<std::string>{"w"}));
  EXPECT_EQ(to_floats(ck->get("w"))[0], 5.0f);
  EXPECT_EQ(ck->total_bytes(), static_cast<int64_t>(std::filesystem::file_size(dir.file("model.safetensors"))));
}

TEST(Checkpoint, RejectsMissingWeights) {
  TempDir dir;
  EXPECT_ERROR_NAMES(error_of([&] { st::Checkpoint::open_dir(dir.path()); }), dir.path(),
                     "no model.safetensors or model.safetensors.index.json");
}

TEST(Checkpoint, RejectsShardPathOutsideDir) {
  for (const char* shard : {"../evil.safetensors", "sub/x.safetensors", "..", ""}) {
    TempDir dir;
    write_sharded(dir, std::string(R"({"weight_map": {"a": ")") + shard + "\"}}");
    EXPECT_ERROR_NAMES(error_of([&] { st::Checkpoint::open_dir(dir.path()); }),
                       "model.safetensors.index.json", "outside the model directory");
  }
}

TEST(Checkpoint, RejectsEntryMissingFromShard) {
  TempDir dir;
  write_sharded(dir, R"({"weight_map": {"a": "model-00001-of-00002.safetensors",
    "b": "model-00001-of-00002.safetensors", "c": "model-00001-of-00002.safetensors"}})");
  const std::string msg = error_of([&] { st::Checkpoint::open_dir(dir.path()); });
  // 'c' lives in shard 2, which the index never references: c is missing from shard 1.
  EXPECT_ERROR_NAMES(msg, "model.safetensors.index.json", "tensor 'c' in");
  EXPECT_ERROR_NAMES(msg, "model-00001-of-00002.safetensors", "which does not contain it");
}

TEST(Checkpoint, RejectsDuplicateNamesAcrossShards) {
  TempDir dir;
  write_sharded(dir, kIndex);
  st::write_file(dir.file("model-00002-of-00002.safetensors"),
                 {{"a", st::DType::F32, {1}, as_bytes(std::vector<float>{9})},
                  {"c", st::DType::F16, {1}, as_bytes(std::vector<uint16_t>{0x3c00})}});
  EXPECT_ERROR_NAMES(error_of([&] { st::Checkpoint::open_dir(dir.path()); }), "model.safetensors.index.json",
                     "tensor 'a' appears in both");
}

TEST(Checkpoint, RejectsShardTensorNotInIndex) {
  TempDir dir;
  write_sharded(dir, R"({"weight_map": {"a": "model-00001-of-00002.safetensors",
    "c": "model-00002-of-00002.safetensors"}})");
  EXPECT_ERROR_NAMES(error_of([&] { st::Checkpoint::open_dir(dir.path()); }), "model.safetensors.index.json",
                     "tensor 'b' that the weight_map does not list");
}

TEST(Checkpoint, RejectsMissingShardFile) {
  TempDir dir;
  write_sharded(dir, R"({"weight_map": {"a": "model-00003-of-00002.safetensors"}})");
  EXPECT_ERROR_NAMES(error_of([&] { st::Checkpoint::open_dir(dir.path()); }),
                     "model-00003-of-00002.safetensors", "cannot open");
}

TEST(Checkpoint, RejectsBadIndexJson) {
  TempDir dir;
  write_sharded(dir, R"({"weight_map": {"a": "model-00001-of-00002.safetensors",)");
  EXPECT_ERROR_NAMES(error_of([&] { st::Checkpoint::open_dir(dir.path()); }), "model.safetensors.index.json",
                     "invalid index JSON");
  write_text(dir.file("model.safetensors.index.json"), R"({"metadata": {}})");
  EXPECT_ERROR_NAMES(error_of([&] { st::Checkpoint::open_dir(dir.path()); }), "model.safetensors.index.json",
                     "no \"weight_map\" object");
  write_text(dir.file("model.safetensors.index.json"),
             R"({"weight_map": {"a": "model-00001-of-00002.safetensors", "a": "model-00002-of-00002.safetensors"}})");
  EXPECT_ERROR_NAMES(error_of([&] { st::Checkpoint::open_dir(dir.path()); }), "model.safetensors.index.json",
                     "duplicate key 'a'");
}

// ------------------------------------------------------------------------------------------
// Rejections of a single file (PHI3.md §6), one per check

namespace {
const char* kGood = R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}})";
}

TEST(SafetensorsReject, FileShorterThan8Bytes) {
  TempDir dir;
  EXPECT_ERROR_NAMES(open_error(dir, "short.safetensors", "abcde"), "short.safetensors",
                     "5 bytes, too short for the 8-byte header length");
  EXPECT_ERROR_NAMES(open_error(dir, "zero.safetensors", ""), "zero.safetensors", "0 bytes, too short");
}

TEST(SafetensorsReject, HeaderLengthOverLimit) {
  TempDir dir;
  EXPECT_ERROR_NAMES(open_error(dir, "huge.safetensors", raw_file(kGood, std::string(12, '\0'), 100000001)),
                     "huge.safetensors", "header length 100000001 exceeds the 100000000-byte limit");
  EXPECT_ERROR_NAMES(open_error(dir, "huge2.safetensors", raw_file(kGood, "", ~0ull - 1)), "huge2.safetensors",
                     "exceeds the 100000000-byte limit");
}

TEST(SafetensorsReject, HeaderLengthPastFileEnd) {
  TempDir dir;
  const std::string h = kGood;
  EXPECT_ERROR_NAMES(open_error(dir, "past.safetensors", raw_file(h, "", h.size() + 1)), "past.safetensors",
                     "runs past the end of the file");
}

TEST(SafetensorsReject, InvalidUtf8) {
  TempDir dir;
  const std::string h = "{\"x\xff\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}";
  EXPECT_ERROR_NAMES(open_error(dir, "utf8.safetensors", raw_file(h, std::string(12, '\0'))),
                     "utf8.safetensors", "UTF-8");
  // An overlong encoding of '/' is invalid UTF-8 too.
  const std::string h2 = "{\"x\xc0\xaf\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}";
  EXPECT_ERROR_NAMES(open_error(dir, "utf8b.safetensors", raw_file(h2, std::string(12, '\0'))),
                     "utf8b.safetensors", "UTF-8");
}

TEST(SafetensorsReject, InvalidJson) {
  TempDir dir;
  EXPECT_ERROR_NAMES(open_error(dir, "json.safetensors", raw_file(R"({"x":{"dtype":"F32",)", "")),
                     "json.safetensors", "invalid header JSON");
  // NUL padding is not whitespace (and nlohmann would stop reading at it).
  EXPECT_ERROR_NAMES(open_error(dir, "nul.safetensors", raw_file(std::string(kGood) + std::string(2, '\0'),
                                                                 std::string(12, '\0'))),
                     "nul.safetensors", "invalid header JSON: contains a NUL byte");
  EXPECT_ERROR_NAMES(open_error(dir, "nul2.safetensors", raw_file(std::string(kGood) + '\0' + "garbage",
                                                                  std::string(12, '\0'))),
                     "nul2.safetensors", "contains a NUL byte");
}

TEST(SafetensorsReject, HeaderNotAnObject) {
  TempDir dir;
  EXPECT_ERROR_NAMES(open_error(dir, "arr.safetensors", raw_file("[1, 2]", "")), "arr.safetensors",
                     "header is not a JSON object");
  EXPECT_ERROR_NAMES(open_error(dir, "ent.safetensors", raw_file(R"({"x": 5})", "")), "ent.safetensors",
                     "tensor 'x' header entry is not a JSON object");
}

TEST(SafetensorsReject, NonStringMetadata) {
  TempDir dir;
  const std::string h = R"({"__metadata__":{"format":"pt","n":3},"x":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}})";
  EXPECT_ERROR_NAMES(open_error(dir, "meta.safetensors", raw_file(h, std::string(12, '\0'))), "meta.safetensors",
                     "__metadata__ value for 'n' is not a string");
  EXPECT_ERROR_NAMES(open_error(dir, "meta2.safetensors", raw_file(R"({"__metadata__":[]})", "")),
                     "meta2.safetensors", "__metadata__ is not a JSON object");
}

TEST(SafetensorsReject, OverlappingOffsets) {
  TempDir dir;
  const std::string h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
                            "b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  EXPECT_ERROR_NAMES(open_error(dir, "overlap.safetensors", raw_file(h, std::string(12, '\0'))),
                     "overlap.safetensors", "tensor 'b' data_offsets [4, 12] overlap the previous tensor");
}

TEST(SafetensorsReject, GapBetweenTensors) {
  TempDir dir;
  const std::string h = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},
                            "b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
  EXPECT_ERROR_NAMES(open_error(dir, "gap.safetensors", raw_file(h, std::string(12, '\0'))), "gap.safetensors",
                     "tensor 'b' data_offsets [8, 12] leave a gap after byte 4");
}

TEST(SafetensorsReject, OffsetsNotStartingAtZero) {
  TempDir dir;
  const std::string h = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  EXPECT_ERROR_NAMES(open_error(dir, "start.safetensors", raw_file(h, std::string(8, '\0'))),
                     "start.safetensors", "data must start at offset 0");
}

TEST(SafetensorsReject, OffsetsNotEndingAtFileEnd) {
  TempDir dir;
  EXPECT_ERROR_NAMES(open_error(dir, "trail.safetensors", raw_file(kGood, std::string(13, '\0'))),
                     "trail.safetensors", "ends at byte 12 of a 13-byte data buffer");
  // Truncated data: the offsets run past the file end.
  EXPECT_ERROR_NAMES(open_error(dir, "trunc.safetensors", raw_file(kGood, std::string(7, '\0'))),
                     "trunc.safetensors", "ends at byte 12 of a 7-byte data buffer");
}

TEST(SafetensorsReject, SizeDoesNotMatchShape) {
  TempDir dir;
  const std::string h = R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,10]}})";
  EXPECT_ERROR_NAMES(open_error(dir, "model.safetensors", raw_file(h, std::string(10, '\0'))),
                     "model.safetensors", "tensor 'x' data_offsets [0, 10] do not match shape [3] of F32 (12 bytes)");
  const std::string h2 = R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[12,0]}})";
  EXPECT_ERROR_NAMES(open_error(dir, "rev.safetensors", raw_file(h2, "")), "rev.safetensors",
                     "data_offsets [12, 0] end before they begin");
}

TEST(SafetensorsReject, ByteSizeOverflow) {
  TempDir dir;
  // 2^62 elements of F32 = 2^64 bytes: the product wraps to 0 without checked multiplication.
  const std::string h = R"({"x":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}})";
  EXPECT_ERROR_NAMES(open_error(dir, "ovf.safetensors", raw_file(h, "")), "ovf.safetensors",
                     "overflows 64-bit byte size");
  const std::string h2 = R"({"x":{"dtype":"BF16","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}})";
  EXPECT_ERROR_NAMES(open_error(dir, "ovf2.safetensors", raw_file(h2, "")), "ovf2.safetensors",
                     "overflows 64-bit byte size");
  const std::string h3 = R"({"x":{"dtype":"BF16","shape":[18446744073709551615],"data_offsets":[0,0]}})";
  EXPECT_ERROR_NAMES(open_error(dir, "ovf3.safetensors", raw_file(h3, "")), "ovf3.safetensors",
                     "tensor 'x' has a dimension too large");
}

TEST(SafetensorsReject, NegativeDimension) {
  TempDir dir;
  const std::string h = R"({"x":{"dtype":"F32","shape":[-1, -3],"data_offsets":[0,12]}})";
  EXPECT_ERROR_NAMES(open_error(dir, "neg.safetensors", raw_file(h, std::string(12, '\0'))), "neg.safetensors",
                     "tensor 'x' has a negative dimension -1");
  const std::string h2 = R"({"x":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})";
  EXPECT_ERROR_NAMES(open_error(dir, "flt.safetensors", raw_file(h2, std::string(4, '\0'))), "flt.safetensors",
                     "non-integer dimension");
}

TEST(SafetensorsReject, UnknownDtype) {
  TempDir dir;
  const std::string h = R"({"x":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})";
  EXPECT_ERROR_NAMES(open_error(dir, "i64.safetensors", raw_file(h, std::string(8, '\0'))), "i64.safetensors",
                     "tensor 'x' has unsupported dtype 'I64'");
  const std::string h2 = R"({"x":{"shape":[1],"data_offsets":[0,8]}})";
  EXPECT_ERROR_NAMES(open_error(dir, "nodt.safetensors", raw_file(h2, std::string(8, '\0'))), "nodt.safetensors",
                     "no string \"dtype\"");
}

TEST(SafetensorsReject, DuplicateNames) {
  TempDir dir;
  const std::string h = R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},
                            "x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  EXPECT_ERROR_NAMES(open_error(dir, "dup.safetensors", raw_file(h, std::string(8, '\0'))), "dup.safetensors",
                     "duplicate key 'x'");
}

TEST(SafetensorsReject, BadOffsetsField) {
  TempDir dir;
  for (const char* off : {"[0]", "[0,4,8]", "[-4,0]", "\"0,4\"", "[0.0,4.0]"}) {
    const std::string h = std::string(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":)") + off + "}}";
    EXPECT_ERROR_NAMES(open_error(dir, "off.safetensors", raw_file(h, std::string(4, '\0'))), "off.safetensors",
                       "needs \"data_offsets\" as two non-negative integers");
  }
}

TEST(SafetensorsReject, NotARegularFile) {
  TempDir dir;
  EXPECT_ERROR_NAMES(error_of([&] { st::File::open(dir.path()); }), dir.path(), "not a regular file");
  EXPECT_ERROR_NAMES(error_of([&] { st::File::open(dir.file("missing.safetensors")); }), "missing.safetensors",
                     "cannot open");
}

// A named pipe (or a link to a device) where a safetensors file or the index should be: a clear
// error at once, never an open() or read that blocks or never ends.
TEST(Safetensors, AFifoOrADeviceIsRefusedWithoutBlocking) {
  TempDir dir;
  ASSERT_EQ(::mkfifo(dir.file("model.safetensors").c_str(), 0600), 0);
  EXPECT_ERROR_NAMES(error_of([&] { st::Checkpoint::open_dir(dir.path()); }), dir.file("model.safetensors"),
                     "not a regular file");
  TempDir sharded;
  std::filesystem::create_symlink("/dev/zero", sharded.file("model.safetensors.index.json"));
  EXPECT_ERROR_NAMES(error_of([&] { st::Checkpoint::open_dir(sharded.path()); }),
                     sharded.file("model.safetensors.index.json"), "not a regular file");
}
