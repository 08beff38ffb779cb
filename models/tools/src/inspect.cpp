#include "qins/tools/inspect.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <sstream>

#include "qins/runtime/engine.h"
#include "qins/io/qins_file.h"
#include "qins/io/hf_folder.h"
#include "qins/graph/phi3_config.h"
#include "qins/graph/phi3_layout.h"
#include "qins/io/safetensors.h"

namespace fs = std::filesystem;

namespace qins {

namespace {

std::string human_bytes(double b) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000.0 && u < 4) {
    b /= 1000.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u ? "%.2f %s" : "%.0f %s", b, units[u]);
  return buf;
}


ModelReport inspect_hf(const std::string& dir) {
  const HfPaths paths = find_hf_files(dir);
  const Phi3Config c = read_phi3_config(paths.config);
  auto ckpt = st::Checkpoint::open_dir(dir);
  // The config against the tensors (a missing or misshapen tensor is an error), and a note for
  // tensors the config does not use.
  const std::vector<std::string> unused = check_checkpoint_tensors(*ckpt, c);
  nlohmann::json j;
  std::ostringstream t;
  t << "model folder: " << dir << "\n";
  t << "config: hidden " << c.hidden_size << ", intermediate " << c.intermediate_size << ", layers "
    << c.num_hidden_layers << ", heads " << c.num_attention_heads << " (kv " << c.num_key_value_heads << ", head_dim "
    << c.head_dim << "), vocab " << c.vocab_size << "\n";
  t << "rope: theta " << c.rope_theta << ", " << (c.has_longrope() ? c.rope_scaling_type : std::string("no scaling"))
    << ", original context " << c.original_max_position_embeddings << ", max " << c.max_position_embeddings
    << ", attention factor " << c.attention_factor << "\n";
  t << "sliding window: " << (c.sliding_window ? std::to_string(*c.sliding_window) : std::string("none"))
    << ", tied embeddings: " << (c.tie_word_embeddings ? "yes" : "no") << "\n\n";
  char line[256];
  std::snprintf(line, sizeof line, "%-52s %-6s %-16s %12s\n", "tensor", "dtype", "shape", "bytes");
  t << line;
  int64_t params = 0, bytes = 0, linear_params = 0;
  for (const auto& name : ckpt->names()) {
    const st::TensorView& v = *ckpt->find(name);
    std::snprintf(line, sizeof line, "%-52s %-6s %-16s %12zu\n", name.c_str(), st::dtype_name(v.dtype),
                  shape_str(v.shape).c_str(), v.nbytes);
    t << line;
    params += v.numel();
    bytes += static_cast<int64_t>(v.nbytes);
    if (v.shape.size() == 2) linear_params += v.numel();
    j["tensors"].push_back({{"name", name}, {"dtype", st::dtype_name(v.dtype)}, {"shape", v.shape}, {"bytes", v.nbytes}});
  }
  const int64_t norm_params = params - linear_params;
  const int64_t kv_per_pos = 2LL * c.num_hidden_layers * c.num_key_value_heads * c.head_dim;
  t << "\nparameters: " << params << " (" << human_bytes(static_cast<double>(bytes)) << " on disk)\n";
  t << "memory estimate for the weights: f32 " << human_bytes(4.0 * params) << ", bf16 " << human_bytes(2.0 * params)
    << ", QINS codes " << human_bytes(static_cast<double>(linear_params) + 4.0 * norm_params) << " (+ per-row scales)\n";
  t << "KV cache: " << human_bytes(2.0 * kv_per_pos) << " per position in bf16 ("
    << human_bytes(2.0 * kv_per_pos * 4096) << " at 4096 positions)\n";
  if (!unused.empty()) {
    t << "note: " << unused.size() << " tensor" << (unused.size() == 1 ? "" : "s")
      << " in the files not used by config.json (ignored when loading):";
    for (const auto& n : unused) t << " " << n;
    t << "\n";
  }
  j["unused_tensors"] = unused;
  j["path"] = dir;
  j["format"] = "hf";
  j["config"] = nlohmann::json::parse(c.source_json);
  j["parameters"] = params;
  j["file_bytes"] = bytes;
  j["memory_estimate"] = {{"f32", 4 * params}, {"bf16", 2 * params}, {"qins_codes", linear_params + 4 * norm_params},
                          {"kv_bytes_per_position_bf16", 2 * kv_per_pos}};
  return {t.str(), j.dump(2) + "\n", true};
}

}  // namespace

ModelReport inspect_model(const std::string& path, bool verify) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return inspect_hf(path);
  if (!fs::exists(path, ec)) throw Error(path + ": no such file or directory");
  if (is_qins_file(path)) return inspect_qins(path, verify);
  throw Error(path + ": not a .qins model file nor a Hugging Face model folder");
}

}  // namespace qins
