// convert_model: the torch-free entry to the converter (engine.h), for the app.
#include <stdexcept>

#include "qins/core/qins.h"
#include "qins/io/converter.h"
#include "qins/runtime/engine.h"

namespace qins {

void convert_model(const std::string& hf_dir, const std::string& out_path, const std::string& codebook,
                   const ProgressFn& progress) {
  convert_model(hf_dir, out_path, codebook, ModelOrigin{}, progress);
}

void convert_model(const std::string& hf_dir, const std::string& out_path, const std::string& codebook,
                   const ModelOrigin& origin, const ProgressFn& progress) {
  ConvertOptions o;
  o.source_name = origin.name;
  o.origin_json = origin.origin_json;
  try {
    o.quant.codebook = core::codebook_from_name(codebook);
  } catch (const std::invalid_argument& e) {
    throw Error(e.what());
  }
  convert_to_qins(hf_dir, out_path, o, [&](double f, const std::string&) {
    return !progress || progress(f, "converting to .qins");
  });
}

}  // namespace qins
