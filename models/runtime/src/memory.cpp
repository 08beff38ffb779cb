// Process and machine memory as the OS reports it.
#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>

#include "qins/runtime/engine.h"

#if defined(__APPLE__)
#include <mach/mach.h>
#include <sys/sysctl.h>
#include <sys/resource.h>
#endif

namespace qins {

#if defined(__linux__)
namespace {
// Value in kB of `key:` in a /proc file, as bytes; -1 if absent.
int64_t proc_kb(const char* path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, key.size(), key) == 0 && line.size() > key.size() && line[key.size()] == ':') {
      std::istringstream fields(line.substr(key.size() + 1));
      int64_t kb = 0;
      fields >> kb;
      return kb * 1024;
    }
  }
  return -1;
}
}  // namespace

MemoryReading read_memory() {
  MemoryReading r;
  r.resident_bytes = proc_kb("/proc/self/status", "VmRSS");
  r.peak_resident_bytes = proc_kb("/proc/self/status", "VmHWM");
  r.total_bytes = proc_kb("/proc/meminfo", "MemTotal");
  r.available_bytes = proc_kb("/proc/meminfo", "MemAvailable");
  // Anonymous huge pages (decoded weights moved onto them) plus file pages mapped 2 MiB at a time
  // (raw weights used in place from the .qins mapping).
  r.huge_page_bytes = std::max<int64_t>(0, proc_kb("/proc/self/smaps_rollup", "AnonHugePages")) +
                      std::max<int64_t>(0, proc_kb("/proc/self/smaps_rollup", "FilePmdMapped"));
  return r;
}
#elif defined(__APPLE__)
MemoryReading read_memory() {
  MemoryReading r;
  mach_task_basic_info_data_t info{};
  mach_msg_type_number_t count = MACH_TASK_BASIC_INFO_COUNT;
  if (task_info(mach_task_self(), MACH_TASK_BASIC_INFO, reinterpret_cast<task_info_t>(&info), &count) ==
      KERN_SUCCESS) {
    r.resident_bytes = static_cast<int64_t>(info.resident_size);
    r.peak_resident_bytes = static_cast<int64_t>(info.resident_size_max);
  }
  int64_t mem = 0;
  size_t len = sizeof(mem);
  if (sysctlbyname("hw.memsize", &mem, &len, nullptr, 0) == 0) r.total_bytes = mem;
  vm_statistics64_data_t vm{};
  mach_msg_type_number_t vm_count = HOST_VM_INFO64_COUNT;
  if (host_statistics64(mach_host_self(), HOST_VM_INFO64, reinterpret_cast<host_info64_t>(&vm), &vm_count) ==
      KERN_SUCCESS) {
    r.available_bytes = static_cast<int64_t>(vm.free_count + vm.inactive_count) * static_cast<int64_t>(vm_page_size);
  }
  return r;
}
#else
MemoryReading read_memory() { return {}; }
#endif

}  // namespace qins
