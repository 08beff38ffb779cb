// A one-line progress bar on stderr (only when stderr is a terminal, or when forced).
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

namespace qins::cli {

class ProgressBar {
 public:
  ProgressBar(std::string label, bool enabled)
      : label_(std::move(label)), enabled_(enabled && isatty(STDERR_FILENO)), t0_(std::chrono::steady_clock::now()) {}

  void update(double fraction, const std::string& what) {
    if (!enabled_) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_ < std::chrono::milliseconds(100) && fraction < 1.0) return;
    last_ = now;
    const double elapsed = std::chrono::duration<double>(now - t0_).count();
    const double eta = fraction > 0.01 ? elapsed * (1.0 - fraction) / fraction : 0.0;
    const int width = 30, filled = static_cast<int>(fraction * width + 0.5);
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "\r%s [%s] %5.1f%%  %.0f s, ETA %.0f s  %-40.40s", label_.c_str(), bar.c_str(),
                 100.0 * fraction, elapsed, eta, what.c_str());
    std::fflush(stderr);
  }
  void finish() {
    if (enabled_) std::fprintf(stderr, "\n");
  }

 private:
  std::string label_;
  bool enabled_;
  std::chrono::steady_clock::time_point t0_, last_{};
};

}  // namespace qins::cli
