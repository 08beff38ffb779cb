// The .qins model file's meaning (the bytes are compression/'s container): which metadata blobs
// and tensors a model file holds, the writer, and the loader that decodes it in parallel straight
// into ProjectiveLinear code buffers.
//
// Metadata blobs: "qins.json" (format marker + converter info), "config.json",
// "generation_config.json" (optional), "tokenizer.model", "tokenizer_config.json".
// Tensors (Phi-3 names): projections and the embedding as encoding "qins8" with sections
// "codes" ([out, in] uint8), "scales" ([out] f32 LE), "lut" ([128] f32 LE), codebook name in the
// directory, extras {"pole"}; norms as encoding "f32" with one section "data". QINS-4 projections
// (issue 17) as encoding "qins4": sections "codes" ([out, in_pad / 2] nibble-packed uint8),
// "scales" ([out, in_pad / group] fp16 LE), "lut" ([16] int8), the table fit in the codebook field
// and extras {"group": "32" | "64"}; a file holding any is model version 2 (docs/file-format.md).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "qins/core/qins.h"
#include "qins/core/qins4.h"
#include "qins/io/loaded_model.h"
#include "qins/util/errors.h"
#include "qins/util/progress.h"
#include "qins/graph/phi3_config.h"

namespace qins::comp {
class ContainerWriter;
}

namespace qins {

constexpr const char* kQinsFormatName = "qins-phi3";
// The newest model version this build reads. Files without QINS-4 tensors are written as version 1
// (every earlier reader loads them); a file with QINS-4 tensors is version 2, so a reader from
// before QINS-4 refuses it with "model version 2 is newer than this build reads".
constexpr int kQinsModelVersion = 2;
constexpr int kQinsModelVersionQins8 = 1;

// Streams tensors into a .qins file: temp file, fsync, rename on commit(); nothing under the
// target name until then (and an existing file there stays untouched).
class QinsFileWriter {
 public:
  explicit QinsFileWriter(const std::string& path);
  ~QinsFileWriter();
  void put_metadata(const std::string& key, const std::string& bytes);
  void add_quantized(const std::string& name, const core::QuantizedTensor& q);
  void add_qins4(const std::string& name, const core::Quantized4Tensor& q);  // encoding "qins4"
  void add_f32(const std::string& name, const torch::Tensor& t);  // any float tensor, stored f32
  void commit();
  // Test hook: called before every write (offset, size); may throw to inject a failure.
  void set_write_hook(std::function<void(uint64_t, size_t)> hook);

 private:
  std::string path_;
  std::function<void(uint64_t, size_t)> hook_;
  std::unique_ptr<comp::ContainerWriter> w_;
  void open();
};

// Shared by convert, synth and the trainer: the metadata every .qins model carries.
struct QinsModelMeta {
  std::string config_json;
  std::string generation_config_json;  // may be empty
  std::string tokenizer_model;
  std::string tokenizer_config_json;
  std::string info_json;               // free-form converter info stored in qins.json
  bool has_qins4 = false;              // the file will hold QINS-4 tensors: model version 2
};
void put_model_metadata(QinsFileWriter& w, const QinsModelMeta& m);

namespace comp {
struct TensorInfo;
}
// The sections a model tensor of the .qins format must have, held to its shape before anything is
// decoded: qins8 = codes (one byte per element), scales (4 bytes per row), lut (128 floats); qins4 =
// extras "group" 32 or 64, codes (in_pad / 2 bytes per row), scales (2 bytes per group per row),
// lut (16 bytes), a known table name in the codebook field; f32 = data (4 bytes per element); the element count must fit 2^48. A section whose declared size
// differs (a decompression bomb: a few KB that decode to gigabytes) is refused. Returns the
// element count; throws qins::Error naming `path` and the tensor.
int64_t check_qins_tensor(const comp::TensorInfo& t, const std::string& path);

// True when the file starts with the container's magic bytes.
bool is_qins_file(const std::string& path);

// Decodes every chunk in parallel (threads 0 = all cores) straight into the graph's buffers,
// verifying checksums if asked; checks every tensor against the config. Throws qins::Error naming
// the file; progress returning false cancels (qins::Cancelled).
LoadedModel read_qins_model(const std::string& path, int threads, bool verify_checksums,
                            const ProgressFn& progress = {});

}  // namespace qins
