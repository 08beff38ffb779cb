// The bench's view of the machine (bench*.cpp only): CPU, page faults, peak RSS, the page cache.
#pragma once

#include <cstdint>
#include <string>

namespace qins {

std::string gb(int64_t bytes);                      // "1.23 GB"
std::string read_text(const char* path);            // "" when unreadable
std::string cpuinfo_field(const std::string& key);  // /proc/cpuinfo's first `key`, or ""
long minor_faults();                                // of this process so far, or -1
std::string relevant_flags();                       // the CPU flags the kernels care about
// The kernel paths in use: "avx512bf16; QINS-4 avx512, prefill bf16" (8-bit, then QINS-4's).
std::string kernel_paths();
// Resets VmHWM to the current RSS (Linux >= 4.0): the load's peak is then the load's own.
bool reset_peak_rss();
// Share of `path`'s pages in the page cache (mincore), or -1.
double page_cache_fraction(const std::string& path);
// Drops the model file from the page cache. Returns how (or "" when it could not).
std::string drop_page_cache(const std::string& path);

}  // namespace qins
