// Number formatting shared by eval's log lines and reports (eval*.cpp only).
#pragma once

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

namespace qins {

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

inline std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

inline std::string pole_label(double pole) { return fmt("%g", pole); }

// "n/a" for NaN, "inf" / "-inf", else fmt(f, v).
inline std::string num(double v, const char* f) {
  if (std::isnan(v)) return "n/a";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return fmt(f, v);
}

// null for a value JSON cannot hold.
inline nlohmann::json jnum(double v) {
  if (std::isfinite(v)) return v;
  return nullptr;
}

}  // namespace qins
