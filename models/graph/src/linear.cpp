#include "qins/graph/linear.h"

#include <algorithm>
#include <stdexcept>

namespace qins {

void LinearOp::forward_row(const float*, float*) {
  throw std::logic_error("LinearOp::forward_row: " + kind() + " has no row path (check has_row_path())");
}

void LinearOp::forward_rows(const float* x, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) forward_row(x + i * in_features(), y + i * out_features());
}

torch::Tensor DenseLinear::forward(const torch::Tensor& x) {
  if (x.scalar_type() == weight_.scalar_type()) return torch::linear(x, weight_);
  return torch::linear(x.to(weight_.scalar_type()), weight_).to(x.scalar_type());
}

std::string DenseLinear::kind() const { return weight_.scalar_type() == torch::kBFloat16 ? "bf16" : "f32"; }

std::string QinsLinear::kind() const {
  return std::string("qins-") + core::codebook_name(m_->quantized().codebook);
}

torch::Tensor DenseEmbedding::lookup(const torch::Tensor& ids) {
  return table_.index_select(0, ids.reshape({-1})).to(torch::kFloat32).reshape(
      [&] {
        auto s = ids.sizes().vec();
        s.push_back(table_.size(1));
        return s;
      }());
}

void DenseEmbedding::lookup_row(int64_t id, float* out) {
  if (id < 0 || id >= table_.size(0))
    throw std::out_of_range("embedding: token id " + std::to_string(id) + " outside [0, " + std::to_string(table_.size(0)) + ")");
  TORCH_CHECK(table_.device().is_cpu() && table_.is_contiguous(), "embedding: the table must be a contiguous CPU tensor");
  const int64_t n = table_.size(1);
  if (table_.scalar_type() == torch::kFloat32) {
    const float* src = table_.data_ptr<float>() + id * n;
    std::copy(src, src + n, out);
  } else {
    TORCH_CHECK(table_.scalar_type() == torch::kBFloat16, "embedding: table must be f32 or bf16");
    const c10::BFloat16* src = table_.data_ptr<c10::BFloat16>() + id * n;
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(src[i]);
  }
}

torch::Tensor QinsEmbedding::lookup(const torch::Tensor& ids) {
  auto rows = core::dequantize_rows(q_, ids.reshape({-1}));  // [n, hidden] f32
  auto s = ids.sizes().vec();
  s.push_back(q_.codes.size(1));
  return rows.reshape(s);
}

int64_t QinsEmbedding::weight_bytes() const {
  return q_.codes.numel() + q_.scales.numel() * 4 + q_.lut.numel() * 4;
}

}  // namespace qins
