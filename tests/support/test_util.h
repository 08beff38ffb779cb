// Helpers shared by the model library tests: a temp dir per test, file writing, error capture.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "qins/util/errors.h"

namespace qins_test {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/qins_models_io_XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline void write_text(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The qins::Error message `f` throws; a test failure (and "") if it throws nothing.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const qins::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a qins::Error, got none";
  return "";
}

}  // namespace qins_test

// The message names both the file and the problem.
#define EXPECT_ERROR_NAMES(msg, file, problem)                                          \
  do {                                                                                  \
    const std::string m_ = (msg);                                                       \
    EXPECT_NE(m_.find(file), std::string::npos) << "file not named in: " << m_;         \
    EXPECT_NE(m_.find(problem), std::string::npos) << "problem not named in: " << m_;   \
  } while (0)
