// A fixture model written once per (options) into a temp folder for the test binary's lifetime.
#pragma once

#include <filesystem>
#include <cstdlib>
#include <map>
#include <unistd.h>
#include <string>

#include "qins/runtime/engine.h"
#include "qins/tools/fixture.h"
#include "qins/io/hf_folder.h"
#include "qins/io/safetensors.h"

namespace qins::test {

inline void remove_temp_root();

// A fresh temp folder per test process, removed at exit.
inline std::filesystem::path temp_root() {
  static const std::filesystem::path root = [] {
    auto p = std::filesystem::temp_directory_path() / ("qins-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(p);
    return p;
  }();
  static const bool registered = [] { return std::atexit(remove_temp_root) == 0; }();
  (void)registered;
  return root;
}

inline void remove_temp_root() {
  std::error_code ec;
  std::filesystem::remove_all(temp_root(), ec);
}

// Cached by name: tests asking for the same variant share one folder.
inline std::string fixture(const std::string& name, const FixtureOptions& o) {
  static std::map<std::string, std::string> made;
  auto it = made.find(name);
  if (it != made.end()) return it->second;
  const auto dir = (temp_root() / name).string();
  write_fixture_model(dir, o);
  made[name] = dir;
  return dir;
}

// Greedy decoding of at most n tokens with a fixed seed.
inline SamplingParams greedy(int n) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.random_seed = false;
  p.max_new_tokens = n;
  return p;
}

// The fixture's weights with every projection and the embedding as QINS codes (the graph the
// decode step's row paths serve).
inline Phi3Weights load_qins_weights(const std::string& dir) {
  auto ck = st::Checkpoint::open_dir(dir);
  WeightLoadOptions wo;
  wo.mode = WeightMode::Qins;
  return load_hf_weights(*ck, read_phi3_config(dir + "/config.json"), wo);
}

}  // namespace qins::test
