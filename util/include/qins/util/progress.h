// Progress reporting for long operations (loading, converting, downloading, training): a callback
// the caller passes down; returning false cancels (the operation throws qins::Cancelled).
#pragma once

#include <functional>
#include <string_view>

namespace qins {

// fraction in [0, 1]; stage names what is being done ("decompressing", a tensor's name, ...).
using ProgressFn = std::function<bool(double fraction, std::string_view stage)>;

}  // namespace qins
