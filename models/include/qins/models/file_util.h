// Small file helpers shared by the loaders, converter, synth and trainer. Torch-free.
#pragma once

#include <string>

namespace qins {

// The whole file as bytes; throws qins::Error naming the path when it cannot be read.
std::string read_file(const std::string& path);

}  // namespace qins
