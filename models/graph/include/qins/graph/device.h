// The generic device path: the whole Phi-3 graph through torch ops only, so the same code serves
// CUDA, MPS and (the `cpu-generic` device, which the tests run on every commit) CPU tensors.
// QINS codes (uint8), scales and a 256-entry signed table live on the device; each projection is
// expanded through the table (one int32-indexed gather, core/device_expand.h) into a scratch
// buffer shared by every layer (sized for the largest projection), then torch::linear in the
// compute dtype. Resident mode keeps every projection expanded instead (2 bytes per weight).
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>

#include "qins/graph/linear.h"
#include "qins/graph/phi3_model.h"

namespace qins {

// Buffers one device graph's projections share: the expanded weight [largest out * in] in the
// compute dtype, and the int32 codes of one block of rows.
struct DeviceScratch {
  torch::Tensor weight;  // flat, compute dtype
  torch::Tensor index;   // flat, int32
};

// A QINS projection on a device. Activations come in and go out in their own dtype (f32 on the
// device graph: the residual stream stays f32); the product runs in the compute dtype.
class DeviceQinsLinear final : public LinearOp {
 public:
  // q, bias on any device (read once). `scratch` may be shared by many ops: it grows to the
  // largest projection at construction. resident: expand once now and keep it (no codes kept).
  DeviceQinsLinear(const core::QuantizedTensor& q, const torch::Tensor& bias, const torch::Device& device,
                   torch::ScalarType compute, std::shared_ptr<DeviceScratch> scratch, bool resident);
  torch::Tensor forward(const torch::Tensor& x) override;
  int64_t in_features() const override { return in_; }
  int64_t out_features() const override { return out_; }
  int64_t weight_bytes() const override;
  std::string kind() const override { return resident_ ? "qins-device-resident" : "qins-device"; }
  bool resident() const { return resident_; }
  // The [out, in] weight this op multiplies by, in the compute dtype (expanded now unless resident).
  torch::Tensor expanded_weight();

 private:
  int64_t out_ = 0, in_ = 0;
  torch::ScalarType compute_;
  bool resident_ = false;
  torch::Tensor codes_;   // [out, in] uint8 on the device (undefined when resident)
  torch::Tensor scales_;  // [out] compute dtype
  torch::Tensor table_;   // [256] compute dtype, signed
  torch::Tensor bias_;    // [out] compute dtype or undefined
  torch::Tensor weight_;  // resident: [out, in] compute dtype
  std::shared_ptr<DeviceScratch> scratch_;
};

// Token embedding on a device: QINS codes (rows expanded through the signed table, f32) or a
// dense table. ids may live anywhere; they go to the device as int32.
class DeviceEmbedding final : public EmbeddingOp {
 public:
  DeviceEmbedding(const core::QuantizedTensor& q, const torch::Device& device);
  DeviceEmbedding(const torch::Tensor& dense_table, const torch::Device& device);
  torch::Tensor lookup(const torch::Tensor& ids) override;  // -> [..., hidden] f32 on the device
  int64_t weight_bytes() const override;
  int64_t num_embeddings() const override { return rows_; }
  int64_t dim() const override { return dim_; }
  void lookup_row(int64_t id, float* out) override;  // copies one row back to the CPU

 private:
  int64_t rows_ = 0, dim_ = 0;
  torch::Device device_;
  torch::Tensor codes_, scales_, table_;  // QINS: [rows, dim] uint8, [rows] f32, [256] f32
  torch::Tensor dense_;                   // dense: [rows, dim]
};

struct DeviceOptions {
  torch::Device device = torch::kCPU;
  torch::ScalarType compute = torch::kFloat32;  // the products' dtype: f16, bf16 or f32
  bool resident = false;                        // keep the projections expanded
};

struct DeviceReport {
  int64_t device_bytes = 0;       // weights + scratch on the device
  int64_t scratch_bytes = 0;      // the shared expansion buffers
  int projections = 0;            // LinearOps converted
  int qins_projections = 0;       // of those, QINS codes (the rest dense weights moved as they are)
  int resident_projections = 0;   // of those, kept expanded (resident mode; fewer when memory ran out)
  std::string note;               // e.g. why resident mode stopped early
};

// The compute dtype the device path uses on `device`: f16 on MPS, bf16 on CUDA when a bf16
// product runs there (else f16), f32 on the CPU (cpu-generic: tight agreement with the fused path).
torch::ScalarType default_compute_dtype(const torch::Device& device);

// A copy of `w` on the device path: every projection a DeviceQinsLinear (dense ones: the weight
// moved in the compute dtype), the embedding a DeviceEmbedding, the norms f32 on the device;
// w.generic and w.device set. A tied lm_head shares the embedding's codes on the device. Throws
// (c10::Error or std::exception) on failure, leaving `w` untouched. NaiveQinsLinear is refused.
Phi3Weights to_device_graph(const Phi3Weights& w, const DeviceOptions& options, DeviceReport* report = nullptr);

}  // namespace qins
