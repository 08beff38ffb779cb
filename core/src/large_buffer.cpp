// Large weight buffers on transparent huge pages.
//
// Why: decoding streams every code byte of the model once per token. With 4 KiB pages the
// hardware prefetchers stop at every page boundary and the TLB misses every 4 KiB; on this
// machine's Zen 5 a 1 GB stream read by both cores measured ~26-29 GB/s on 4 KiB pages and
// ~44-50 GB/s on 2 MiB pages (same kernel, same run). Debian's default THP mode is "madvise", so
// the memory must ask for it: mmap with room to align to 2 MiB, trim, madvise(MADV_HUGEPAGE).
// The mapping ends at the 4 KiB-rounded size, so the last partial 2 MiB stays on small pages
// and nothing is wasted. Elsewhere (macOS, small buffers) this is plain torch::empty.
#include "qins/core/qins.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace qins::core {

namespace {
// QINS_HUGEPAGES=0 turns the huge-page mapping off (for comparisons, or a kernel that misbehaves).
bool huge_pages_wanted() {
  static const bool on = [] {
    const char* v = std::getenv("QINS_HUGEPAGES");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  return on;
}
}  // namespace

torch::Tensor empty_large(at::IntArrayRef shape, torch::ScalarType dtype) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  const int64_t bytes = numel * static_cast<int64_t>(c10::elementSize(dtype));
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr int64_t kHuge = int64_t{2} << 20;
  if (bytes >= 2 * kHuge && huge_pages_wanted()) {
    const int64_t page = static_cast<int64_t>(sysconf(_SC_PAGESIZE));
    const int64_t len = (bytes + page - 1) / page * page;
    void* raw = mmap(nullptr, static_cast<size_t>(len + kHuge), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw != MAP_FAILED) {
      const auto base = reinterpret_cast<uintptr_t>(raw);
      const uintptr_t aligned = (base + kHuge - 1) & ~static_cast<uintptr_t>(kHuge - 1);
      if (aligned > base) munmap(raw, aligned - base);
      const uintptr_t end = aligned + static_cast<uintptr_t>(len), raw_end = base + static_cast<uintptr_t>(len + kHuge);
      if (raw_end > end) munmap(reinterpret_cast<void*>(end), raw_end - end);
      void* p = reinterpret_cast<void*>(aligned);
      madvise(p, static_cast<size_t>(len), MADV_HUGEPAGE);  // a hint: failure leaves small pages
      return torch::from_blob(
          p, shape, [len](void* q) { munmap(q, static_cast<size_t>(len)); }, torch::TensorOptions().dtype(dtype));
    }
  }
#endif
  return torch::empty(shape, torch::TensorOptions().dtype(dtype));
}

}  // namespace qins::core
