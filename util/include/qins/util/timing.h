// Wall-clock timing for reports (load time, tokens/s): one steady clock for the whole project.
#pragma once

#include <chrono>

namespace qins {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace qins
