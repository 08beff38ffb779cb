// The Phi-3 tensor layout (PHI3.md §2), described once: the tensors a config implies (name,
// shape, what they are, where they go) and one way to assemble Phi3Weights from them. Loaders,
// the converter, the quantizer, the trainer and the fixture/synthetic writers all go through it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "qins/graph/linear.h"
#include "qins/graph/phi3_config.h"

namespace qins {

struct Phi3Weights;

enum class TensorKind { Embedding, Norm, Projection, LmHead };
// Where a tensor goes in Phi3Weights: a field of Phi3Layer, or a global one.
enum class LayerSlot { Embed, InputNorm, Qkv, O, PostNorm, GateUp, Down, FinalNorm, LmHead };

struct TensorSpec {
  std::string name;            // "model.layers.3.self_attn.qkv_proj.weight"
  std::vector<int64_t> shape;  // [out, in] for matrices, [hidden] for norms
  TensorKind kind;
  int layer;                   // il, or -1 for a global tensor
  LayerSlot slot;
  int64_t numel() const;
  bool is_matrix() const { return shape.size() == 2; }  // the embedding, projections, lm_head
};

// Every tensor of the config, in file order: the embedding, each layer (input norm, qkv, o,
// post-attention norm, gate_up, down), the final norm, and the lm_head unless it is tied.
std::vector<TensorSpec> phi3_tensors(const Phi3Config& c);
int64_t phi3_numel(const std::vector<TensorSpec>& specs);  // sum of numel()

std::string layer_tensor_name(int il, const char* suffix);  // "model.layers.{il}.{suffix}"

// The shape the config implies for a named tensor; throws qins::Error for an unknown name.
std::vector<int64_t> expected_shape(const Phi3Config& c, const std::string& name);

// "[3072, 8192]", or with compact "3072x8192" (report tables).
std::string shape_str(const std::vector<int64_t>& shape, bool compact = false);

// What assemble_weights asks for: one call per tensor of phi3_tensors(c), in that order.
struct WeightMakers {
  std::function<std::unique_ptr<EmbeddingOp>(const TensorSpec&)> embedding;
  std::function<torch::Tensor(const TensorSpec&)> norm;                  // [hidden] f32
  std::function<std::unique_ptr<LinearOp>(const TensorSpec&)> linear;    // projections, untied lm_head
  // The lm_head of a tied config, from the embedding just made. Unset: a QinsEmbedding's codes
  // become a QinsLinear, a DenseEmbedding's table a DenseLinear (the same memory either way).
  std::function<std::unique_ptr<LinearOp>(EmbeddingOp&)> tied_head;
  // Called after each tensor (index into phi3_tensors(c)); throw to stop (e.g. Cancelled).
  std::function<void(size_t index, const std::vector<TensorSpec>& specs)> after;
};

// Phi3Weights for c, every field made by `make` from its TensorSpec.
Phi3Weights assemble_weights(const Phi3Config& c, const WeightMakers& make);

// The tensors of assembled weights by layout name, in phi3_tensors order (a tied lm_head is not
// listed: it is the embedding). Projections and the embedding as their ops, norms as tensors.
struct WeightRef {
  const TensorSpec* spec;
  EmbeddingOp* embedding = nullptr;  // kind Embedding
  LinearOp* linear = nullptr;        // kind Projection / LmHead
  torch::Tensor* norm = nullptr;     // kind Norm
};
std::vector<WeightRef> weight_refs(Phi3Weights& w, const std::vector<TensorSpec>& specs);

}  // namespace qins
