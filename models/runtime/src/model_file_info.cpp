// read_model_file_info: what a .qins file says about itself, from its directory and its small
// metadata blobs only (no tensor is decoded), for the app's list of local models.
#include <nlohmann/json.hpp>

#include "qins/compression/container.h"
#include "qins/compression/errors.h"
#include "qins/runtime/engine.h"

namespace qins {

ModelFileInfo read_model_file_info(const std::string& path) {
  ModelFileInfo info;
  try {
    const comp::ContainerReader r = comp::ContainerReader::open(path);
    info.file_bytes = static_cast<int64_t>(r.file_size());
    info.codebook = "none";
    bool qins4 = false;
    for (const auto& t : r.tensors()) {
      qins4 |= t.encoding == "qins4";
      int64_t n = 1;
      for (const auto d : t.shape) n *= static_cast<int64_t>(d);
      info.n_params += n;
      if (!t.codebook.empty()) info.codebook = t.codebook;
    }
    if (qins4) info.codebook = "qins4";  // the layer projections' code names the model (as the loader)
    if (r.has_metadata("qins.json")) {
      const auto j = nlohmann::json::parse(r.metadata("qins.json"), nullptr, /*allow_exceptions=*/false);
      if (j.is_object() && j.contains("converter") && j["converter"].is_object()) {
        const auto& c = j["converter"];
        if (c.contains("source") && c["source"].is_string()) info.name = c["source"].get<std::string>();
        if (c.contains("origin") && c["origin"].is_object()) {
          const auto& o = c["origin"];
          info.origin_json = o.dump();
          if (o.contains("repo") && o["repo"].is_string()) info.origin_repo = o["repo"].get<std::string>();
          if (o.contains("commit") && o["commit"].is_string()) info.origin_commit = o["commit"].get<std::string>();
        }
      }
    }
  } catch (const comp::FormatError& e) {
    throw Error(e.what());
  }
  return info;
}

}  // namespace qins
