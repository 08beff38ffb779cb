// `qins inspect`: a human table and a JSON document describing a model file or folder.
// Torch-free header.
#pragma once

#include <string>

namespace qins {

struct ModelReport {
  std::string text;  // human-readable
  std::string json;  // machine-readable
  bool ok = true;    // false when verification found a problem
};

ModelReport inspect_model(const std::string& path, bool verify);

// .qins files (defined with the container code).
ModelReport inspect_qins(const std::string& path, bool verify);

}  // namespace qins
