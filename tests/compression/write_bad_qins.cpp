// Writes the golden bad .qins files of tests/data/bad_qins (each a small valid file damaged in one
// documented way, with the error it must give in <name>.expected). Usage: write_bad_qins DIR.
// The test golden_bad_qins_current runs it into a temp folder and compares with the committed
// files, so a format change that would alter them is noticed; to update them, run it on
// tests/data/bad_qins and commit the result.
#include <cstdio>
#include <exception>
#include <stdexcept>

#include "container_test_util.h"

namespace qins::comp::test {

void write_bad_qins_files(const fs::path& dir) {
  fs::create_directories(dir);
  TempDir d;
  const fs::path p = d.path() / "tiny.qins";
  {
    ContainerWriter w(p.string());
    w.put_metadata("config.json", "{}");
    const auto codes = qins_like_codes(400, 5, 1.5);
    const auto scales = random_bytes(32, 6);
    EncodeOptions eo;
    eo.codecs.allow_zstd = false;
    eo.codecs.allow_sparse = false;
    w.add_tensor({"t", {20, 20}, "qins8", "", {}},
                 {{"codes", codes.data(), codes.size()}, {"scales", scales.data(), scales.size()}}, eo);
    w.commit();
  }
  const auto good = read_all(p);
  ContainerReader r = ContainerReader::open(p.string());
  const auto& codes = r.find_tensor("t")->section("codes")->chunks[0];
  const auto& scales = r.find_tensor("t")->section("scales")->chunks[0];
  if (codes.codec != Codec::huffman || scales.codec != Codec::raw)
    throw std::runtime_error("the writer no longer picks huffman for codes and raw for scales: update the edits below");
  DirWalker w(good);
  const std::size_t raw_pos = w.first_section_raw_size_pos();
  const std::size_t chunk0 = raw_pos + 8 + 4;
  auto emit = [&](const std::string& name, const std::vector<uint8_t>& bytes, const std::string& needle) {
    write_all(dir / (name + ".qins"), bytes);
    std::ofstream(dir / (name + ".expected")) << needle << "\n";
  };
  emit("truncated_header", {good.begin(), good.begin() + 40}, "truncated: 40 bytes");
  emit("truncated_body", {good.begin(), good.end() - 9}, "truncated: header says");
  auto f = good;
  f[0] = 'P';
  emit("wrong_magic", f, "wrong magic");
  f = good;
  f[8] = 9;
  emit("wrong_version", f, "unsupported version 9.0");
  f = good;
  f[std::size_t(scales.offset) + 3] ^= 0x10;
  emit("bad_checksum", f, "bad checksum in tensor 't' section 'scales' chunk 0");
  f = good;
  f[std::size_t(codes.offset) + 1] = 0x11;
  emit("bad_huffman_table", f, "bad Huffman table");
  f = good;
  store_le64(f.data() + chunk0 + 1, good.size() * 2);
  rehash(f);
  emit("offset_out_of_range", f, "out of range of the data region");
  f = good;
  store_le64(f.data() + chunk0 + 9, ~uint64_t(0) - 7);
  rehash(f);
  emit("size_overflow", f, "offset + size overflows");
  f = good;
  store_le32(f.data() + raw_pos + 8, 0x7FFFFFFFu);
  rehash(f);
  emit("huge_chunk_count", f, "count of chunks");
  // Issue 16 item 5: a chunk pointing at another's stored bytes (every chunk of a small file
  // referencing one zstd frame decoded without bound in `inspect`).
  // The scales section record follows the codes' single chunk record (29 bytes): name (str8
  // "scales"), raw size u64, chunk count u32, then its chunk record; point it into the codes.
  if (r.find_tensor("t")->section("codes")->chunks.size() != 1 || codes.stored_size < scales.stored_size)
    throw std::runtime_error("codes are no longer one chunk larger than the scales: update overlapping_chunks");
  const std::size_t scales_chunk0 = chunk0 + 29 + 1 + 6 + 8 + 4;
  f = good;
  if (load_le64(f.data() + scales_chunk0 + 1) != scales.offset)
    throw std::runtime_error("the scales chunk record is not where overlapping_chunks expects it");
  store_le64(f.data() + scales_chunk0 + 1, codes.offset);
  rehash(f);
  emit("overlapping_chunks", f, "overlaps the stored bytes of");
}

}  // namespace qins::comp::test

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  try {
    qins::comp::test::write_bad_qins_files(argv[1]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "write_bad_qins: %s\n", e.what());
    return 1;
  }
  return 0;
}
