// Issue 16 items 2, 6, 7: the checks every entry point (load a folder, convert, load a .qins) runs
// on config.json, generation_config.json and the tokenizer before anything is sized from them.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "fixture_dir.h"
#include "qins/io/converter.h"
#include "qins/io/hf_folder.h"
#include "qins/io/safetensors.h"
#include "qins/tools/inspect.h"

namespace qins {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

json read_json(const fs::path& p) {
  std::ifstream in(p);
  return json::parse(in);
}
void write_json(const fs::path& p, const json& j) { std::ofstream(p) << j.dump(2); }

// A copy of the fixture folder with `edit` applied to its files.
std::string variant(const std::string& name, const std::function<void(const fs::path&)>& edit) {
  const fs::path dir = test::temp_root() / ("checks_" + name);
  fs::remove_all(dir);
  fs::copy(test::fixture("mha", {}), dir, fs::copy_options::recursive);
  edit(dir);
  return dir.string();
}

void patch_config(const fs::path& dir, const char* file, const char* key, const json& value) {
  json j = fs::exists(dir / file) ? read_json(dir / file) : json::object();
  j[key] = value;
  write_json(dir / file, j);
}

// The error of loading the folder and of converting it (the same check, the same words).
std::pair<std::string, std::string> errors_of(const std::string& dir) {
  std::string load, conv;
  try {
    read_hf_model(dir, "f32");
  } catch (const Error& e) {
    load = e.what();
  }
  try {
    convert_to_qins(dir, dir + ".qins", ConvertOptions{});
  } catch (const Error& e) {
    conv = e.what();
  }
  return {load, conv};
}

void expect_both(const std::string& dir, const std::string& fragment) {
  const auto [load, conv] = errors_of(dir);
  EXPECT_NE(load.find(fragment), std::string::npos) << "load: " << load;
  EXPECT_NE(conv.find(fragment), std::string::npos) << "convert: " << conv;
  EXPECT_NE(load.find(dir), std::string::npos) << load;
  EXPECT_FALSE(fs::exists(dir + ".qins"));
}

TEST(ModelChecks, SpecialIdsOutsideTheVocabularyAreOneLineErrors) {
  const int vocab = read_json(fs::path(test::fixture("mha", {})) / "config.json")["vocab_size"];
  expect_both(variant("bos", [&](const fs::path& d) { patch_config(d, "config.json", "bos_token_id", vocab + 7); }),
              "config.json bos_token_id " + std::to_string(vocab + 7) + " is out of range");
  expect_both(variant("eos", [&](const fs::path& d) { patch_config(d, "config.json", "eos_token_id", json{2, vocab}); }),
              "config.json eos_token_id " + std::to_string(vocab) + " is out of range");
  expect_both(variant("pad", [&](const fs::path& d) { patch_config(d, "config.json", "pad_token_id", vocab + 1); }),
              "config.json pad_token_id");
  expect_both(variant("gen_eos",
                      [&](const fs::path& d) { patch_config(d, "generation_config.json", "eos_token_id", 1 << 20); }),
              "generation_config.json eos_token_id 1048576 is out of range");
}

TEST(ModelChecks, TokenizerLargerThanTheEmbeddingIsRefusedByConvertToo) {
  const int vocab = read_json(fs::path(test::fixture("mha", {})) / "config.json")["vocab_size"];
  const std::string dir = variant("tok_vocab", [&](const fs::path& d) {
    json t = read_json(d / "tokenizer_config.json");
    t["added_tokens_decoder"][std::to_string(vocab + 3)] = {{"content", "<|beyond|>"}, {"special", true}};
    write_json(d / "tokenizer_config.json", t);
  });
  expect_both(dir, "the tokenizer has " + std::to_string(vocab + 4) + " tokens but the model's vocabulary");
}

TEST(ModelChecks, ConfigLargerThanTheFilesIsRefusedBeforeAllocating) {
  const std::string dir = variant("layers", [&](const fs::path& d) { patch_config(d, "config.json", "num_hidden_layers", 1000); });
  expect_both(dir, "parameters but the weight files hold");
}

// Writes a NaN over the first value of `tensor` in the folder's model.safetensors (f32 fixture).
void poison(const fs::path& dir, const std::string& tensor) {
  const fs::path file = dir / "model.safetensors";
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  uint64_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  std::string header(n, ' ');
  f.read(header.data(), static_cast<std::streamsize>(n));
  const json h = json::parse(header);
  ASSERT_EQ(h[tensor]["dtype"], "F32");
  const uint64_t at = 8 + n + h[tensor]["data_offsets"][0].get<uint64_t>();
  const float nan = std::nanf("");
  f.seekp(static_cast<std::streamoff>(at));
  f.write(reinterpret_cast<const char*>(&nan), 4);
}

// Issue 16 item 1: a NaN in a weight is refused by loading and converting, naming the tensor
// (convert once said "quantize: weight contains NaN or Inf" and named nothing).
TEST(ModelChecks, NonFiniteWeightsAreRefusedNamingTheTensor) {
  for (const char* tensor : {"model.norm.weight", "model.layers.1.mlp.down_proj.weight"}) {
    const std::string dir = variant(std::string("nan_") + tensor, [&](const fs::path& d) { poison(d, tensor); });
    expect_both(dir, std::string("tensor '") + tensor + "' contains NaN or Inf");
    try {
      read_hf_model(dir, "inverse");  // quantizing at load: the same check, before quantize
      ADD_FAILURE();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(tensor), std::string::npos) << e.what();
    }
  }
}

// Issue 16 item 11: inspect on a folder checks config.json against the tensors (it listed them
// and said nothing), and notes tensors the config does not use.
TEST(ModelChecks, InspectFolderChecksTheConfigAndNotesExtraTensors) {
  const std::string extra = variant("extra_tensor", [&](const fs::path& d) {
    std::vector<st::TensorData> all;
    {
      auto ck = st::Checkpoint::open_dir(d.string());
      for (const auto& n : ck->names()) {
        const st::TensorView& v = ck->get(n);
        all.push_back({n, v.dtype, v.shape, std::vector<uint8_t>(v.data, v.data + v.nbytes)});
      }
    }
    all.push_back({"model.rotary_emb.inv_freq", st::DType::F32, {2}, std::vector<uint8_t>(8, 0)});
    st::write_file((d / "model.safetensors").string(), all);
  });
  const ModelReport r = inspect_model(extra, false);
  EXPECT_NE(r.text.find("note: 1 tensor in the files not used by config.json (ignored when loading): "
                        "model.rotary_emb.inv_freq"), std::string::npos) << r.text;
  const std::string wrong = variant("wrong_shape", [&](const fs::path& d) {
    patch_config(d, "config.json", "intermediate_size", 96);
  });
  try {
    inspect_model(wrong, false);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'model.layers.0.mlp.gate_up_proj.weight' has shape [256, 64], "
                                         "config.json implies [192, 64]"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace qins
