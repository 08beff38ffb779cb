// Timing helpers shared by the benchmark programs that measure a previous kernel (bench/baseline)
// beside the current one: the machine is shared and noisy, so both run in the same interleaved
// rounds and the ratio of their medians is what to read.
#pragma once

#include <algorithm>
#include <chrono>
#include <utility>
#include <vector>

namespace qins::bench {

using Clock = std::chrono::steady_clock;
inline double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// run(cur) does one pass over `bytes` bytes with the current (cur) or the previous kernel. One
// warm-up round, then `rounds` rounds with the order alternating per round; returns the median
// GB/s of {previous, current}.
template <class Run>
std::pair<double, double> previous_vs_current(int rounds, double bytes, Run run) {
  std::vector<double> tp, tc;
  for (int r = 0; r < rounds + 1; ++r) {
    for (int k = 0; k < 2; ++k) {
      const bool cur = (k + r) % 2 == 1;
      const auto t = Clock::now();
      run(cur);
      if (r > 0) (cur ? tc : tp).push_back(bytes / since(t) / 1e9);
    }
  }
  return {median(tp), median(tc)};
}

}  // namespace qins::bench
