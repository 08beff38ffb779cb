#include "qins/tools/nll.h"

namespace qins {

MaskedNll masked_nll(Phi3Weights& w, const torch::Tensor& ids, const torch::Tensor& target) {
  const int64_t T = ids.size(1) - 1;
  auto logits = forward(w, ids.narrow(1, 0, T), nullptr);  // [B, T, V] f32
  const int64_t V = logits.size(-1);
  auto ce = torch::nn::functional::cross_entropy(
      logits.reshape({-1, V}), ids.narrow(1, 1, T).reshape({-1}),
      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));  // [B*T]
  auto m = target.narrow(1, 1, T).reshape({-1});                                   // [B*T] f32
  return {(ce * m).sum(), m.sum()};
}

torch::Tensor log_probs_at(Phi3Weights& w, const torch::Tensor& ids, const torch::Tensor& rows) {
  torch::NoGradGuard ng;
  const torch::Tensor logits = forward(w, ids, nullptr);  // [B, T, V] f32
  const int64_t V = logits.size(2);
  return torch::log_softmax(logits.reshape({-1, V}).index_select(0, rows).to(torch::kFloat32), -1);
}

}  // namespace qins
