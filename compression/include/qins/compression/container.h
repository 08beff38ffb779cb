// The .qins container: bytes only (the models layer gives them meaning). Layout in
// docs/file-format.md. One file = header, chunk data (metadata blobs and tensor section chunks,
// each 64-byte aligned), directory at the end.
//
//   ContainerWriter w(path);
//   w.put_metadata("config.json", json_text);
//   w.add_tensor({name, shape, "qins8", "cb0", {{"pole", "..."}}},
//                {{"codes", codes_ptr, codes_bytes}, {"scales", scales_ptr, scales_bytes}});
//   w.commit();    // temp file -> fsync -> rename; no commit: temp file removed
//
//   ContainerReader r = ContainerReader::open(path);   // mmap + full directory validation
//   r.decode_parallel({{"model.layers.0.mlp.down_proj.weight", "codes", dst, dst_bytes}, ...},
//                     {}, [](double f) { return !cancelled; });
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "qins/compression/codec.h"
#include "qins/compression/errors.h"

namespace qins {
class AtomicFile;  // util/files.h
}

namespace qins::comp {

constexpr uint16_t kFormatMajor = 1;
constexpr uint16_t kFormatMinor = 0;
constexpr std::size_t kHeaderSize = 64;
constexpr std::size_t kDataAlignment = 64;
// Writers start every raw tensor chunk of at least this many bytes at a multiple of it (a page),
// so a loader can use raw sections in place from a file mapping; consecutive raw chunks of 1 MiB
// stay back to back. Readers do not depend on it (older files have 64-byte aligned raw chunks,
// which are still used in place).
constexpr std::size_t kRawChunkAlignment = 4096;
// Reader caps (a hostile file cannot make the reader allocate more than these).
constexpr uint64_t kMaxChunkRaw = uint64_t(64) << 20;        // one chunk's decoded size
constexpr uint64_t kMaxMetadataRaw = uint64_t(256) << 20;    // one metadata blob's decoded size
constexpr uint64_t kMaxDirectorySize = uint64_t(256) << 20;  // the directory's size
constexpr unsigned kMaxDims = 16;

struct ChunkInfo {
  Codec codec = Codec::raw;
  uint64_t offset = 0;       // absolute file offset of the payload
  uint64_t stored_size = 0;  // payload bytes
  uint32_t raw_size = 0;     // decoded bytes
  uint64_t checksum = 0;     // XXH64 (seed 0) of the decoded bytes
};

struct SectionInfo {
  std::string name;    // e.g. "codes", "scales", "lut", "data"
  uint64_t raw_size = 0;  // = sum of the chunks' raw sizes
  uint64_t raw_offset_of_chunk(std::size_t i) const;  // decoded offset of chunk i in the section
  std::vector<ChunkInfo> chunks;
};

// What the caller describes; the directory adds the sections.
struct TensorRecord {
  std::string name;
  std::vector<uint64_t> shape;
  std::string encoding;  // "qins8", "f32", "bf16", "f16", ...
  std::string codebook;  // codebook id ("" when none)
  std::map<std::string, std::string> extras;  // small per-tensor values (e.g. "pole")
};

struct TensorInfo : TensorRecord {
  std::vector<SectionInfo> sections;
  const SectionInfo* section(const std::string& name) const;  // nullptr when absent
};

// A section to write: bytes are read during add_tensor only.
struct SectionData {
  std::string name;
  const void* data = nullptr;
  std::size_t size = 0;
};

struct EncodeOptions {
  CodecOptions codecs;
  std::size_t chunk_size = std::size_t(1) << 20;  // raw bytes per chunk (<= kMaxChunkRaw)
  unsigned threads = 0;                          // 0 = std::thread::hardware_concurrency()
};

struct WriterOptions {
  int metadata_zstd_level = 19;
  // Test hook: called before every write with (file offset, byte count); may throw to inject a
  // failure. Leave empty in production.
  std::function<void(uint64_t offset, std::size_t size)> before_write;
};

class ContainerWriter {
 public:
  // Creates "<path>.tmp-XXXXXX" in the target's directory. Throws std::runtime_error on failure.
  explicit ContainerWriter(std::string path, WriterOptions opt = {});
  ~ContainerWriter();  // without a successful commit(): removes the temp file
  ContainerWriter(const ContainerWriter&) = delete;
  ContainerWriter& operator=(const ContainerWriter&) = delete;

  void put_metadata(const std::string& key, const void* data, std::size_t size);
  void put_metadata(const std::string& key, const std::string& bytes) {
    put_metadata(key, bytes.data(), bytes.size());
  }
  // Encodes each section in chunks (in parallel) and appends them. Names must be unique.
  void add_tensor(const TensorRecord& tensor, const std::vector<SectionData>& sections,
                  const EncodeOptions& opt = {});
  // Writes directory + header, fsyncs, renames onto the target. After a throw the writer is
  // unusable and the destructor removes the temp file.
  void commit();

  const std::string& temp_path() const;
  uint64_t bytes_written() const { return offset_; }

 private:
  struct MetaEntry {
    std::string key;
    Codec codec;
    uint64_t offset, stored_size, raw_size, checksum;
  };
  void write_at(uint64_t offset, const void* data, std::size_t size);
  void append(const void* data, std::size_t size);
  void align(std::size_t to = kDataAlignment);
  void check_open() const;

  std::string path_;
  WriterOptions opt_;
  std::unique_ptr<AtomicFile> file_;  // <path>.tmp-XXXXXX until commit()
  bool committed_ = false;
  bool failed_ = false;
  uint64_t offset_ = 0;
  std::vector<MetaEntry> meta_;
  std::vector<TensorInfo> tensors_;
};

struct DecodeJob {
  std::string tensor;
  std::string section;
  void* dst = nullptr;
  std::size_t dst_size = 0;  // must equal the section's raw size
  // The section is used in place in the file mapping (ContainerReader::mapped_section must be
  // non-null; dst is ignored): nothing is decoded or copied, only its chunks' checksums are
  // checked (when DecodeOptions::verify), reading the bytes through the mapping.
  bool in_place = false;
};

struct DecodeOptions {
  unsigned threads = 0;  // 0 = std::thread::hardware_concurrency()
  bool verify = true;    // check each chunk's XXH64 after decoding
};

// Called on the calling thread with the decoded fraction (0..1, non-decreasing); return false
// to cancel (decode_parallel then throws Cancelled after the workers stop).
using ProgressFn = std::function<bool(double)>;

class ContainerReader {
 public:
  // mmaps the file and validates header + directory. Throws FormatError naming path + problem.
  static ContainerReader open(const std::string& path);
  // Parses a buffer the caller keeps alive (fuzzing, tests); `name` is used in messages.
  static ContainerReader from_memory(const void* data, std::size_t size,
                                     const std::string& name = "<memory>");

  const std::string& path() const { return name_; }
  uint16_t version_major() const { return major_; }
  uint16_t version_minor() const { return minor_; }
  uint64_t file_size() const { return size_; }

  std::vector<std::string> metadata_keys() const;
  bool has_metadata(const std::string& key) const;
  // Decoded (and checksum-verified) blob; throws FormatError if missing or corrupt.
  std::string metadata(const std::string& key) const;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(const std::string& name) const;  // nullptr when absent

  // Decodes one section on the calling thread. dst_size must equal the raw size
  // (std::invalid_argument otherwise, or when the tensor/section does not exist).
  void decode_section(const TensorInfo& tensor, const std::string& section, void* dst,
                      std::size_t dst_size, bool verify = true) const;
  void decode_section(const std::string& tensor, const std::string& section, void* dst,
                      std::size_t dst_size, bool verify = true) const;

  // Decodes many sections on a thread pool, one work item per chunk, straight into the
  // caller's buffers. Throws FormatError (first failure), Cancelled, or std::invalid_argument.
  void decode_parallel(const std::vector<DecodeJob>& jobs, const DecodeOptions& opt = {},
                       const ProgressFn& progress = {}) const;

  // The section's bytes inside the file mapping, when they can be used in place: the reader
  // was opened from a file (not from_memory), every chunk is raw, the chunks lie back to back
  // in the file and the first starts at a multiple of 64. nullptr otherwise (decode it). The
  // bytes are read-only and not yet checksum-verified (decode_parallel with in_place does it).
  const uint8_t* mapped_section(const TensorInfo& tensor, const std::string& section) const;
  // Keeps the file mapping alive (a tensor pointing into it holds this). The mapping keeps the
  // file it was opened from even when another file is renamed over its path. nullptr for
  // from_memory readers.
  std::shared_ptr<const void> mapping() const { return keep_; }

  // Decodes every chunk and metadata blob into scratch memory and checks every checksum.
  void verify(const DecodeOptions& opt = {}, const ProgressFn& progress = {}) const;

 private:
  struct MetaEntry {
    std::string key;
    Codec codec;
    uint64_t offset, stored_size, raw_size, checksum;
  };
  struct WorkItem;
  void check_no_overlap() const;  // throws FormatError when two payloads share stored bytes
  ContainerReader() = default;
  void parse();
  [[noreturn]] void fail(const std::string& what) const;
  void decode_chunk_into(const TensorInfo& t, const SectionInfo& s, std::size_t i, uint8_t* dst,
                         bool verify) const;
  void run_items(const std::vector<WorkItem>& items, const DecodeOptions& opt,
                 const ProgressFn& progress) const;

  std::shared_ptr<const void> keep_;  // the mapping (or nothing for from_memory)
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  std::string name_;
  uint16_t major_ = 0, minor_ = 0;
  std::vector<MetaEntry> meta_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::size_t> tensor_index_;
};

// Statistics for `qins inspect`.
struct SectionStats {
  uint64_t raw_bytes = 0;
  uint64_t stored_bytes = 0;
  std::array<uint64_t, kNumCodecs> chunks{};     // chunk count per codec id
  std::array<uint64_t, kNumCodecs> raw_by_codec{};  // raw bytes per codec id
  SectionStats& operator+=(const SectionStats& o);
};
SectionStats section_stats(const SectionInfo& s);
SectionStats tensor_stats(const TensorInfo& t);  // all sections together

// Empirical order-0 entropy in bits per byte (0 for an empty buffer).
double entropy_bits_per_byte(const void* data, std::size_t size);

}  // namespace qins::comp
