// Files read with a size cap and written atomically: the one place the project opens a file whole
// or replaces one. Torch-free, Qt-free; errors are qins::Error naming the path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace qins {

// Reads of whole files (config.json, tokenizer files, ...) are capped: a file larger than this (or
// a link to /dev/zero) is an error, not gigabytes of memory.
constexpr uint64_t kMaxReadBytes = uint64_t{1} << 30;
// Caps per kind of file: JSON configs (config.json, generation_config.json, special_tokens_map.json)
// are a few KB in every real model; tokenizer files (tokenizer.model, tokenizer.json,
// tokenizer_config.json) a few MB (Gemma's tokenizer.json, the largest known, is ~34 MB).
constexpr uint64_t kMaxConfigBytes = uint64_t{16} << 20;
constexpr uint64_t kMaxTokenizerBytes = uint64_t{64} << 20;

// The whole file as bytes. Refuses anything but a regular file (a FIFO would block, a device would
// never end) and files over max_bytes; throws qins::Error naming the path.
std::string read_file(const std::string& path, uint64_t max_bytes = kMaxReadBytes);

// A file written under a temporary name next to its target (`<path>.tmp-XXXXXX`, mode 0644) and
// renamed over the target by commit(), after an fsync; the directory is fsynced after the rename.
// A reader sees the old file or the whole new one. Destroyed without commit(), the temporary file
// is removed; so is it when the process gets SIGINT or SIGTERM (a handler is installed for signals
// still at their default action). A writer holds an exclusive flock on its temporary file, and
// creating an AtomicFile removes `<path>.tmp-XXXXXX` files no living writer holds (left by SIGKILL).
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, std::size_t n);                    // appends
  void write_at(uint64_t offset, const void* data, std::size_t n);  // e.g. a header written last
  void commit();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return tmp_; }
  uint64_t size() const { return size_; }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  uint64_t size_ = 0;
  bool committed_ = false;
  int slot_ = -1;  // in the table the signal handler cleans up
};

// Writes `bytes` to `path` through an AtomicFile.
void write_file_atomic(const std::string& path, std::string_view bytes);

}  // namespace qins
