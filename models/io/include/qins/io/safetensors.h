// safetensors reading (mmap; single file or sharded via model.safetensors.index.json) and writing.
// Torch-free: tensors are views into the mapped file. Every check of PHI3.md §6 is applied;
// failures throw qins::Error naming the file and the problem.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "qins/util/errors.h"

namespace qins::st {

enum class DType : uint8_t { F32, BF16, F16 };
const char* dtype_name(DType d);      // "F32" | "BF16" | "F16"
std::size_t dtype_size(DType d);

// A read-only view of one tensor inside a mapped file. Data may be unaligned.
struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // valid while the owning File/Checkpoint lives
  std::size_t nbytes = 0;
  std::string file;               // path of the file that holds it (for error messages)
  int64_t numel() const;
};

// One mmapped .safetensors file.
class File {
 public:
  static std::unique_ptr<File> open(const std::string& path);  // throws qins::Error
  ~File();
  const std::string& path() const { return path_; }
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::size_t file_size() const { return size_; }
  // Parse from memory (fuzzing, tests). `data` must outlive the result's views.
  static std::unique_ptr<File> parse(const uint8_t* data, std::size_t size, const std::string& name);

 private:
  File() = default;
  std::string path_;
  void* map_ = nullptr;
  std::size_t size_ = 0;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A model directory's weights: model.safetensors, or the shards named by
// model.safetensors.index.json (weight_map: name -> shard). Names must be unique across shards.
class Checkpoint {
 public:
  static std::unique_ptr<Checkpoint> open_dir(const std::string& dir);  // throws qins::Error
  const TensorView* find(const std::string& name) const;              // nullptr if absent
  const TensorView& get(const std::string& name) const;               // throws, naming dir + tensor
  std::vector<std::string> names() const;
  int64_t total_bytes() const;   // sum of shard file sizes
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::vector<std::unique_ptr<File>> files_;
  std::map<std::string, const TensorView*> index_;
};

// Convert a view's elements to float32 (out must hold numel floats).
void to_float32(const TensorView& t, float* out);

// Writing: tensors given as raw little-endian bytes. Atomic (temp file, fsync, rename).
struct TensorData {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};
void write_file(const std::string& path, const std::vector<TensorData>& tensors,
                const std::map<std::string, std::string>& metadata = {});

// float32 -> bfloat16 with round-to-nearest-even; and back.
uint16_t float_to_bf16(float f);
float bf16_to_float(uint16_t h);
uint16_t float_to_f16(float f);
float f16_to_float(uint16_t h);

}  // namespace qins::st
