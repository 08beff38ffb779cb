// Placeholder until the .qins container lands: recognises nothing.
#include <string>

#include "qins/models/engine_impl.h"

namespace qins {

bool is_qins_file(const std::string& path) { return path.size() > 5 && path.substr(path.size() - 5) == ".qins"; }

std::unique_ptr<Engine> load_qins_engine(const std::string& path, const LoadOptions&, const ProgressFn&) {
  throw Error(path + ": .qins files are not supported by this build yet");
}

}  // namespace qins

#include "qins/models/inspect.h"
namespace qins {
ModelReport inspect_qins(const std::string& path, bool) {
  throw Error(path + ": .qins files are not supported by this build yet");
}
}  // namespace qins
