// The one abstraction every projection of the Phi-3 graph goes through, so that a dense
// torch::linear weight and a ProjectiveLinear (QINS codes) are interchangeable (a module swap
// done at load time; the graph code never knows which it has).
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>

#include "qins/core/projective_linear.h"
#include "qins/core/qins4.h"

namespace qins {

class LinearOp {
 public:
  virtual ~LinearOp() = default;
  // x: [..., in] in the activation dtype -> [..., out] in the same dtype.
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;
  virtual int64_t weight_bytes() const = 0;   // bytes held in memory for the weight
  virtual std::string kind() const = 0;       // "f32", "bf16", "qins-projective", ...
  // One fp32 row with no allocation (the one-token decode step): y[out] = W x[in]. Ops without
  // such a path say false in has_row_path() and the graph takes forward() instead.
  virtual bool has_row_path() const { return false; }
  virtual void forward_row(const float* x, float* y);
  // n such rows at once (a batched decode step): row i of y is exactly forward_row(x + i * in).
  // The default runs forward_row per row; QINS ops read their codes once for all rows.
  virtual void forward_rows(const float* x, int64_t n, float* y);
  // True when the products run on core's QINS kernels (their own GEMM and GEMV on the OpenMP
  // threads) rather than on the BLAS: what the engine's BLAS thread policy asks.
  virtual bool uses_qins_kernels() const { return false; }
};

// torch::linear over a dense weight [out, in] (f32 or bf16). The weight may require grad (training).
class DenseLinear final : public LinearOp {
 public:
  explicit DenseLinear(torch::Tensor weight) : weight_(std::move(weight)) {}
  torch::Tensor forward(const torch::Tensor& x) override;
  int64_t in_features() const override { return weight_.size(1); }
  int64_t out_features() const override { return weight_.size(0); }
  int64_t weight_bytes() const override { return weight_.numel() * weight_.element_size(); }
  std::string kind() const override;
  torch::Tensor& weight() { return weight_; }   // [out, in]

 private:
  torch::Tensor weight_;  // [out, in], f32 or bf16
};

// QINS codes through the fused lookup-table kernels (core::ProjectiveLinear).
class QinsLinear final : public LinearOp {
 public:
  explicit QinsLinear(core::ProjectiveLinear m) : m_(std::move(m)) {}
  torch::Tensor forward(const torch::Tensor& x) override { return m_->forward(x); }
  int64_t in_features() const override { return m_->in_features(); }
  int64_t out_features() const override { return m_->out_features(); }
  int64_t weight_bytes() const override { return m_->weight_bytes(); }
  std::string kind() const override;
  bool has_row_path() const override { return true; }
  void forward_row(const float* x, float* y) override { m_->forward_row(x, y); }
  void forward_rows(const float* x, int64_t n, float* y) override { m_->forward_rows(x, n, y); }
  bool uses_qins_kernels() const override { return true; }
  core::ProjectiveLinear& module() { return m_; }

 private:
  core::ProjectiveLinear m_;
};

// QINS-4 codes (core::Qins4Linear): int8-activation lookup GEMV for one row and for the rows of a
// batched decode step (codes looked up once for several rows), tile expand + GEMM for a prompt.
class Qins4LinearOp final : public LinearOp {
 public:
  explicit Qins4LinearOp(core::Qins4Linear m) : m_(std::move(m)) {}
  torch::Tensor forward(const torch::Tensor& x) override { return m_->forward(x); }
  int64_t in_features() const override { return m_->in_features(); }
  int64_t out_features() const override { return m_->out_features(); }
  int64_t weight_bytes() const override { return m_->weight_bytes(); }
  std::string kind() const override { return "qins4"; }
  bool has_row_path() const override { return true; }
  void forward_row(const float* x, float* y) override { m_->forward_row(x, y); }
  void forward_rows(const float* x, int64_t n, float* y) override { m_->forward_rows(x, n, y); }
  bool uses_qins_kernels() const override { return true; }
  core::Qins4Linear& module() { return m_; }

 private:
  core::Qins4Linear m_;
};

// Naive baseline: expands the whole matrix from codes on every call, then torch::linear.
class NaiveQinsLinear final : public LinearOp {
 public:
  explicit NaiveQinsLinear(core::ProjectiveLinear m) : m_(std::move(m)) {}
  torch::Tensor forward(const torch::Tensor& x) override { return m_->forward_reference(x); }
  int64_t in_features() const override { return m_->in_features(); }
  int64_t out_features() const override { return m_->out_features(); }
  int64_t weight_bytes() const override { return m_->weight_bytes(); }
  std::string kind() const override { return "qins-naive"; }

 private:
  core::ProjectiveLinear m_;
};

// Token embedding table: dense [vocab, hidden] or QINS codes (a lookup expands only its rows).
class EmbeddingOp {
 public:
  virtual ~EmbeddingOp() = default;
  virtual torch::Tensor lookup(const torch::Tensor& ids) = 0;  // ids int64 [...] -> [..., hidden] f32
  virtual int64_t weight_bytes() const = 0;
  virtual int64_t num_embeddings() const = 0;
  virtual int64_t dim() const = 0;
  // Row `id` into out[dim] as fp32 with no allocation; throws std::out_of_range for a bad id.
  virtual void lookup_row(int64_t id, float* out) = 0;
};

class DenseEmbedding final : public EmbeddingOp {
 public:
  explicit DenseEmbedding(torch::Tensor table) : table_(std::move(table)) {}
  torch::Tensor lookup(const torch::Tensor& ids) override;
  int64_t weight_bytes() const override { return table_.numel() * table_.element_size(); }
  int64_t num_embeddings() const override { return table_.size(0); }
  int64_t dim() const override { return table_.size(1); }
  void lookup_row(int64_t id, float* out) override;
  torch::Tensor& table() { return table_; }   // [vocab, hidden]

 private:
  torch::Tensor table_;  // [vocab, hidden], f32 or bf16
};

class QinsEmbedding final : public EmbeddingOp {
 public:
  explicit QinsEmbedding(core::QuantizedTensor q) : q_(std::move(q)) {}
  torch::Tensor lookup(const torch::Tensor& ids) override;
  int64_t weight_bytes() const override;
  int64_t num_embeddings() const override { return q_.codes.size(0); }
  int64_t dim() const override { return q_.codes.size(1); }
  void lookup_row(int64_t id, float* out) override { core::dequantize_row_into(q_, id, out); }
  const core::QuantizedTensor& quantized() const { return q_; }

 private:
  core::QuantizedTensor q_;
};

}  // namespace qins
