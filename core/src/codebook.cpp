#include <stdexcept>

#include "qins/core/qins.h"

namespace qins::core {

const char* codebook_name(Codebook cb) {
  switch (cb) {
    case Codebook::Inverse: return "inverse";
    case Codebook::Projective: return "projective";
    case Codebook::Uniform: return "uniform";
  }
  return "unknown";
}

Codebook codebook_from_name(const std::string& name) {
  if (name == "inverse") return Codebook::Inverse;
  if (name == "projective") return Codebook::Projective;
  if (name == "uniform") return Codebook::Uniform;
  throw std::invalid_argument("unknown codebook '" + name + "' (expected inverse, projective or uniform)");
}

}  // namespace qins::core
