#include "qins/models/file_util.h"

#include <fstream>
#include <sstream>

#include "qins/models/engine.h"

namespace qins {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open for reading");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(path + ": read failed");
  return ss.str();
}

}  // namespace qins
