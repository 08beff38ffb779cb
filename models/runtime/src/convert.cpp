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
    // "qins4": the layer projections 4-bit (lloyd table, group 16 with 8-bit log scales: the default
    // of `qins convert --codebook qins4`, the lowest output error at 4.5 bits per weight), embedding
    // and lm_head 8-bit projective (the converter's mixed precision policy).
    o.qins4 = codebook == "qins4";
    o.quant4.group = 16;
    o.quant.codebook = o.qins4 ? core::Codebook::Projective : core::codebook_from_name(codebook);
    if (o.qins4) o.quant.pole = 0.0;  // fitted per tensor, as `qins convert --codebook qins4`
  } catch (const std::invalid_argument& e) {
    throw Error(e.what());
  }
  convert_to_qins(hf_dir, out_path, o, [&](double f, const std::string&) {
    return !progress || progress(f, "converting to .qins");
  });
}

}  // namespace qins
