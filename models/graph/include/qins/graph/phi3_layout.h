// The Phi-3 tensor layout (PHI3.md §2): tensor names and the shapes a config implies.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "qins/graph/phi3_config.h"

namespace qins {

// Tensor names of the Phi-3 layout (PHI3.md §2).
std::string layer_tensor_name(int il, const char* suffix);  // "model.layers.{il}.{suffix}"

// The shape the config implies for a named tensor; throws qins::Error for an unknown name.
std::vector<int64_t> expected_shape(const Phi3Config& c, const std::string& name);

}  // namespace qins
