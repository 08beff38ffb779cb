#include "qins/models/linear.h"

namespace qins {

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
