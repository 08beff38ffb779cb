// Container-file helpers shared by test_container and the golden bad-file writer
// (write_bad_qins): whole-file read/write, a temp dir, checksum repair after deliberate edits,
// and a walker over the documented directory layout.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "qins/compression/bitstream.h"
#include "qins/compression/checksum.h"
#include "qins/compression/container.h"
#include "test_util.h"

namespace qins::comp::test {

namespace fs = std::filesystem;

inline std::vector<uint8_t> read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

inline void write_all(const fs::path& p, const std::vector<uint8_t>& b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("qins_comp_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }
  std::size_t file_count() const {
    std::size_t n = 0;
    for (auto& e : fs::directory_iterator(path_)) (void)e, ++n;
    return n;
  }

 private:
  fs::path path_;
  static inline int counter_ = 0;
};

// Recomputes the directory and header checksums after a test edits fields on purpose, so the
// reader gets past them to the check under test.
inline void rehash(std::vector<uint8_t>& f) {
  const uint64_t dir_off = load_le64(f.data() + 24), dir_size = load_le64(f.data() + 32);
  if (dir_off + dir_size <= f.size()) store_le64(f.data() + 40, checksum64(f.data() + dir_off, dir_size));
  store_le64(f.data() + 56, checksum64(f.data(), 56));
}

// The directory offset of the first chunk record of tensor 0 section 0 in the fixture file:
// walk the directory with the documented layout.
struct DirWalker {
  const std::vector<uint8_t>& f;
  std::size_t p;
  explicit DirWalker(const std::vector<uint8_t>& file) : f(file), p(std::size_t(load_le64(file.data() + 24))) {}
  uint64_t u(unsigned w) {
    uint64_t v = 0;
    for (unsigned i = 0; i < w; ++i) v |= uint64_t(f[p + i]) << (8 * i);
    p += w;
    return v;
  }
  void str(unsigned w) { p += std::size_t(u(w)); }
  // Positions the walker at tensor 0's first section record (after the name).
  std::size_t first_section_raw_size_pos() {
    const uint64_t n_meta = u(4);
    for (uint64_t i = 0; i < n_meta; ++i) str(2), p += 1 + 32;
    u(4);                      // tensor count
    str(2), str(1), str(2);    // name, encoding, codebook
    const uint64_t nd = u(1);
    p += std::size_t(8 * nd);
    const uint64_t ne = u(4);
    for (uint64_t i = 0; i < ne; ++i) str(2), str(4);
    u(2);                      // section count
    str(1);                    // section name
    return p;
  }
};


// Writes the committed golden bad files (tests/data/bad_qins/<name>.qins, each with the substring
// of the error it must produce in <name>.expected) into `dir`.
void write_bad_qins_files(const fs::path& dir);

}  // namespace qins::comp::test
