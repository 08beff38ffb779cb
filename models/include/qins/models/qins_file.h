// The .qins model file's meaning (the bytes are compression/'s container): which metadata blobs
// and tensors a model file holds, the converter that writes one from a Hugging Face folder, and
// the loader that decodes it in parallel straight into ProjectiveLinear code buffers.
//
// Metadata blobs: "qins.json" (format marker + converter info), "config.json",
// "generation_config.json" (optional), "tokenizer.model", "tokenizer_config.json".
// Tensors (Phi-3 names): projections and the embedding as encoding "qins8" with sections
// "codes" ([out, in] uint8), "scales" ([out] f32 LE), "lut" ([128] f32 LE), codebook name in the
// directory, extras {"pole"}; norms as encoding "f32" with one section "data".
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "qins/core/qins.h"
#include "qins/models/engine.h"
#include "qins/models/phi3_config.h"

namespace qins::comp {
class ContainerWriter;
}

namespace qins {

constexpr const char* kQinsFormatName = "qins-phi3";
constexpr int kQinsModelVersion = 1;

// Streams tensors into a .qins file: temp file, fsync, rename on commit(); nothing under the
// target name until then (and an existing file there stays untouched).
class QinsFileWriter {
 public:
  explicit QinsFileWriter(const std::string& path);
  ~QinsFileWriter();
  void put_metadata(const std::string& key, const std::string& bytes);
  void add_quantized(const std::string& name, const core::QuantizedTensor& q);
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

struct ConvertOptions {
  core::QuantizeOptions quant;   // codebook, pole, threads
  // Opt-in lossy pruning: codes whose magnitude index j is <= prune_index become exact zeros
  // (which the sparse codec then stores almost for free). 0 = off.
  int prune_index = 0;
};

struct ConvertedTensor {
  std::string name;
  std::vector<int64_t> shape;
  bool quantized = false;
  double sqnr_db = 0.0, rel_error = 0.0;  // quantized only
};

struct ConvertReport {
  std::vector<ConvertedTensor> tensors;
  int64_t params = 0;
  int64_t input_bytes = 0;
  int64_t output_bytes = 0;
  double seconds = 0.0;
};

// One tensor at a time from the mmapped safetensors: memory stays near one tensor in f32.
// progress(fraction, tensor name) returning false cancels (throws Cancelled, no file written).
ConvertReport convert_to_qins(const std::string& hf_dir, const std::string& out_path, const ConvertOptions& opts,
                              const std::function<bool(double, const std::string&)>& progress = {});

// Shared by convert, synth and the trainer: the metadata every .qins model carries.
struct QinsModelMeta {
  std::string config_json;
  std::string generation_config_json;  // may be empty
  std::string tokenizer_model;
  std::string tokenizer_config_json;
  std::string info_json;               // free-form converter info stored in qins.json
};
void put_model_metadata(QinsFileWriter& w, const QinsModelMeta& m);

// Applies the opt-in pruning to codes in place; returns how many codes became zero.
int64_t prune_codes(core::QuantizedTensor& q, int prune_index);

}  // namespace qins
