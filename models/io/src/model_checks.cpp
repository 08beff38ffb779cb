#include "qins/io/model_checks.h"

#include "qins/graph/phi3_layout.h"
#include "qins/util/errors.h"

namespace qins {

void validate_token_ids(const Phi3Config& c, const GenerationConfig& g, const tok::Tokenizer& t,
                        const std::string& origin) {
  const std::string rows = " but the model's vocabulary (config.json vocab_size) has " +
                           std::to_string(c.vocab_size) + " rows";
  if (t.vocab_size() > c.vocab_size)
    throw Error(origin + ": the tokenizer has " + std::to_string(t.vocab_size()) + " tokens" + rows);
  const auto check = [&](int id, const std::string& what) {
    if (id < 0 || id >= c.vocab_size) throw Error(origin + ": " + what + " " + std::to_string(id) + " is out of range," + rows);
  };
  check(c.bos_token_id, "config.json bos_token_id");
  for (int id : c.eos_token_ids) check(id, "config.json eos_token_id");
  if (c.pad_token_id) check(*c.pad_token_id, "config.json pad_token_id");
  for (int id : g.eos_token_ids) check(id, "generation_config.json eos_token_id");
  if (t.bos_id() >= 0) check(t.bos_id(), "the tokenizer's bos token id");
}

void check_config_against_files(const Phi3Config& c, int64_t file_bytes, const std::string& origin) {
  // parse_phi3_config has bounded every size, so the tensor list is small and the sum cannot overflow.
  const int64_t params = phi3_numel(phi3_tensors(c));
  if (params > file_bytes)
    throw Error(origin + ": config.json describes " + std::to_string(params) + " parameters but the weight files hold " +
                std::to_string(file_bytes) + " bytes (at least one byte per parameter is needed)");
}

}  // namespace qins
