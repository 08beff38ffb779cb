// Masked next-token negative log-likelihood: the one cross-entropy the trainer's loss, its
// validation passes and eval's scores all reduce to.
#pragma once

#include <torch/torch.h>

#include "qins/graph/phi3_model.h"

namespace qins {

// Rows of tokens and which of them are targets: ids [B, T+1] int64, target [B, T+1] f32 (1 where
// position t is predicted from the tokens before it; target[:, 0] is never used).
struct MaskedNll {
  torch::Tensor sum;    // scalar f32: -sum log p(target) (carries grad when the weights do)
  torch::Tensor count;  // scalar f32: number of targets
};
MaskedNll masked_nll(Phi3Weights& w, const torch::Tensor& ids, const torch::Tensor& target);

// log_softmax of the logits at flat positions `rows` (b * T + t) of ids [B, T]: [N, V] f32, no grad.
torch::Tensor log_probs_at(Phi3Weights& w, const torch::Tensor& ids, const torch::Tensor& rows);

}  // namespace qins
