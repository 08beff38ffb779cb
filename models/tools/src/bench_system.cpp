// The bench's view of the machine: CPU, page faults, peak RSS, the page cache.
#include "bench_system.h"

#include "qins/util/timing.h"
#include "qins/tools/bench.h"

#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "qins/core/qins.h"
#include "qins/core/qins4.h"
#include "qins/runtime/engine.h"
#include "qins/runtime/internal.h"
#include "qins/tools/fixture.h"
#include "qins/graph/linear.h"
#include "qins/graph/phi3_model.h"
#include "qins/runtime/sampler.h"

#if defined(__linux__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace qins {

std::string gb(int64_t b) {
  char s[32];
  std::snprintf(s, sizeof s, "%.2f GB", static_cast<double>(b) / 1e9);
  return s;
}

// ---- OS helpers -----------------------------------------------------------------------------

std::string read_text(const char* path) {
  std::ifstream in(path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string cpuinfo_field(const std::string& key) {
  std::istringstream in(read_text("/proc/cpuinfo"));
  std::string line;
  while (std::getline(in, line))
    if (line.compare(0, key.size(), key) == 0) {
      auto c = line.find(':');
      return c == std::string::npos ? "" : line.substr(c + 2);
    }
  return "";
}

long minor_faults() {
#if defined(__linux__) || defined(__APPLE__)
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
#else
  return -1;
#endif
}

std::string kernel_paths() {
  return std::string(core::kernel_isa()) + "; QINS-4 " + core::kernel4_isa() + ", prefill " + core::prefill4_path();
}

std::string relevant_flags() {
  std::istringstream flags(cpuinfo_field("flags"));
  std::string f, out;
  for (; flags >> f;)
    for (const char* want : {"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_bf16"})
      if (f == want) out += (out.empty() ? "" : " ") + f;
  return out;
}

// Resets VmHWM to the current RSS (Linux >= 4.0): the load's peak is then the load's own.
bool reset_peak_rss() {
#if defined(__linux__)
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
#else
  return false;
#endif
}

// Share of `path`'s pages in the page cache (mincore), or -1.
double page_cache_fraction(const std::string& path) {
#if defined(__linux__)
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return -1;
  const off_t size = ::lseek(fd, 0, SEEK_END);
  double frac = -1;
  if (size > 0) {
    void* m = ::mmap(nullptr, static_cast<size_t>(size), PROT_READ, MAP_SHARED, fd, 0);
    if (m != MAP_FAILED) {
      const long page = ::sysconf(_SC_PAGESIZE);
      std::vector<unsigned char> vec(static_cast<size_t>((size + page - 1) / page));
      if (::mincore(m, static_cast<size_t>(size), vec.data()) == 0) {
        size_t in = 0;
        for (unsigned char v : vec) in += v & 1;
        frac = static_cast<double>(in) / static_cast<double>(vec.size());
      }
      ::munmap(m, static_cast<size_t>(size));
    }
  }
  ::close(fd);
  return frac;
#else
  (void)path;
  return -1;
#endif
}

// Drops the model file from the page cache. Returns how (or "" when it could not).
std::string drop_page_cache(const std::string& path) {
#if defined(__linux__)
  ::sync();
  {
    std::ofstream dc("/proc/sys/vm/drop_caches");
    if (dc) {
      dc << "1";
      dc.flush();
      if (dc) return "drop_caches";
    }
  }
  // Without the global switch: evict this file's clean pages only (enough for a cold load of it).
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return "";
  const int rc = ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
  return rc == 0 ? "posix_fadvise(DONTNEED) on the file" : "";
#else
  (void)path;
  return "";
#endif
}

}  // namespace qins
