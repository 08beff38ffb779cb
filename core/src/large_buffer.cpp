// Large weight buffers, and moving them onto transparent huge pages after they are filled.
//
// Why huge pages: decoding streams every code byte of the model once per token. On this machine
// (a Zen 5 VM) the bf16 GEMV kernel streaming 1.2 GB with both cores measured ~21-26 GB/s on
// 4 KiB pages and ~34-50 GB/s on 2 MiB pages in the same runs (each 4 KiB page costs a nested
// page walk and restarts the hardware prefetchers).
// Why not at allocation: first-touching fresh 2 MiB pages is slow in this VM (the host backs
// them lazily): a 1 GB fill took 2.2 s on huge pages vs 0.4 s on small pages, and a model load
// on huge pages spent 3-4x the kernel time. So buffers are filled on small pages (fast load) and
// then collapsed in place with MADV_COLLAPSE (Linux 6.1+) by a background thread
// (promote_to_huge_pages), in pieces, while the model is already usable.
#include "qins/core/prefault.h"
#include "qins/core/qins.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif
#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace qins::core {

namespace {
constexpr int64_t kHuge = int64_t{2} << 20;

// QINS_HUGEPAGES=0 turns the huge-page promotion off (for comparisons, or a kernel that misbehaves).
bool huge_pages_wanted() {
  static const bool on = [] {
    const char* v = std::getenv("QINS_HUGEPAGES");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  return on;
}

#if defined(__linux__)
// madvise(advice) over [a, b) in 32 MiB pieces, checking `cancel` between them; returns the bytes
// advised. `after` (when >= 0) is advised on each piece where `advice` succeeded. EINVAL ends the
// walk when `stop_on_error` (this kernel does not know the advice), else that piece is skipped, as
// is a piece with any other failure; `*einval_only` (when given) tells whether every piece failed
// with EINVAL.
int64_t advise_in_pieces(uintptr_t a, uintptr_t b, int advice, int after, bool stop_on_error,
                         const std::atomic<bool>* cancel, bool* einval_only = nullptr) {
  constexpr uintptr_t kPiece = uintptr_t{32} << 20;
  int64_t done = 0;
  bool all_einval = true;
  for (uintptr_t p = a; p < b; p += kPiece) {
    if (cancel && cancel->load(std::memory_order_relaxed)) break;
    const uintptr_t n = std::min(kPiece, b - p);
    if (madvise(reinterpret_cast<void*>(p), n, advice) == 0) {
      done += static_cast<int64_t>(n);
      all_einval = false;
      if (after >= 0) madvise(reinterpret_cast<void*>(p), n, after);
    } else {
      if (errno != EINVAL) all_einval = false;
      if (stop_on_error) break;
    }
  }
  if (einval_only) *einval_only = all_einval && done == 0;
  return done;
}
#endif
}  // namespace

bool huge_pages_enabled() { return huge_pages_wanted(); }

bool prefault_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("QINS_PREFAULT");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  return on;
}

bool keep_freed_heap_memory() {
  static const bool applied = [] {
    const char* v = std::getenv("QINS_KEEP_HEAP");
    if (v && std::strcmp(v, "0") == 0) return false;
#if defined(__GLIBC__)
    // 32 MiB is the largest threshold glibc accepts on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX);
    // setting it also stops glibc from moving the threshold itself.
    const bool mmap_ok = mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024) == 1;
    const bool trim_ok = mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024) == 1;
    return mmap_ok && trim_ok;
#else
    return false;
#endif
  }();
  return applied;
}

bool run_at_idle_priority() {
  const char* v = std::getenv("QINS_BACKGROUND_IDLE");
  if (v && std::strcmp(v, "0") == 0) return false;
#if defined(__linux__)
  sched_param sp{};
  sp.sched_priority = 0;
  return pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp) == 0;
#else
  return false;
#endif
}

// Codes used in place from the file mapping are page-cache pages the process has not mapped yet:
// the first pass over them (the first reply's prefill) would take a page fault every few pages.
// MADV_POPULATE_READ (Linux 5.14) maps them in advance, in 32 MiB pieces so that a cancel is
// quick; on anonymous memory already written it finds every page present and returns at once.
int64_t prefault_pages(const torch::Tensor& t, const std::atomic<bool>* cancel) {
#if defined(__linux__)
  if (!prefault_enabled() || !t.defined() || !t.device().is_cpu() || t.numel() == 0) return 0;
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(t.data_ptr()) & ~(page - 1);
  const auto stop = reinterpret_cast<uintptr_t>(t.data_ptr()) + static_cast<uintptr_t>(t.numel() * t.element_size());
  constexpr int kPopulateRead = 22;  // MADV_POPULATE_READ; older headers lack the name
  return advise_in_pieces(begin, stop, kPopulateRead, -1, /*stop_on_error=*/true, cancel);
#else
  (void)t;
  (void)cancel;
  return 0;
#endif
}

bool populate_for_write(void* p, int64_t bytes) {
#if defined(__linux__)
  if (!prefault_enabled() || p == nullptr || bytes <= 0) return false;
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
  const auto stop = (reinterpret_cast<uintptr_t>(p) + static_cast<uintptr_t>(bytes) + page - 1) & ~(page - 1);
  constexpr int kPopulateWrite = 23;  // MADV_POPULATE_WRITE (Linux 5.14); older headers lack the name
  return madvise(reinterpret_cast<void*>(begin), stop - begin, kPopulateWrite) == 0;
#else
  (void)p;
  (void)bytes;
  return false;
#endif
}

namespace {
// A 2 MiB-aligned anonymous mapping of the tensor's size (zero-filled by the kernel), or an
// undefined tensor where there is none (small buffers, other systems, mmap failure).
torch::Tensor mapped_large(at::IntArrayRef shape, torch::ScalarType dtype) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  const int64_t bytes = numel * static_cast<int64_t>(c10::elementSize(dtype));
#if defined(__linux__)
  if (bytes >= 2 * kHuge) {
    // 2 MiB-aligned start, so that every whole 2 MiB of the buffer can later become one huge
    // page; the mapping ends at the 4 KiB-rounded size (nothing wasted past the end).
    const int64_t page = static_cast<int64_t>(sysconf(_SC_PAGESIZE));
    const int64_t len = (bytes + page - 1) / page * page;
    void* raw = mmap(nullptr, static_cast<size_t>(len + kHuge), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw != MAP_FAILED) {
      const auto base = reinterpret_cast<uintptr_t>(raw);
      const uintptr_t aligned = (base + kHuge - 1) & ~static_cast<uintptr_t>(kHuge - 1);
      if (aligned > base) munmap(raw, aligned - base);
      const uintptr_t end = aligned + static_cast<uintptr_t>(len), raw_end = base + static_cast<uintptr_t>(len + kHuge);
      if (raw_end > end) munmap(reinterpret_cast<void*>(end), raw_end - end);
      return torch::from_blob(
          reinterpret_cast<void*>(aligned), shape, [len](void* q) { munmap(q, static_cast<size_t>(len)); },
          torch::TensorOptions().dtype(dtype));
    }
  }
#else
  (void)bytes;
#endif
  return torch::Tensor();
}
}  // namespace

torch::Tensor empty_large(at::IntArrayRef shape, torch::ScalarType dtype) {
  torch::Tensor t = mapped_large(shape, dtype);
  return t.defined() ? t : torch::empty(shape, torch::TensorOptions().dtype(dtype));
}

torch::Tensor zeros_large(at::IntArrayRef shape, torch::ScalarType dtype) {
  torch::Tensor t = mapped_large(shape, dtype);
  return t.defined() ? t : torch::zeros(shape, torch::TensorOptions().dtype(dtype));
}

int64_t promote_to_huge_pages(const torch::Tensor& t, const std::atomic<bool>* cancel) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (!huge_pages_wanted() || !t.defined() || !t.device().is_cpu()) return 0;
  const auto begin = reinterpret_cast<uintptr_t>(t.data_ptr());
  const auto stop = begin + static_cast<uintptr_t>(t.numel() * static_cast<int64_t>(t.element_size()));
  const uintptr_t a = (begin + kHuge - 1) & ~static_cast<uintptr_t>(kHuge - 1);
  const uintptr_t b = stop & ~static_cast<uintptr_t>(kHuge - 1);
  if (b <= a) return 0;
  constexpr int kCollapse = 25;  // MADV_COLLAPSE (Linux 6.1); older headers lack the name
  // Collapsed piece by piece; MADV_HUGEPAGE goes only on what was collapsed: flagged at once,
  // the buffer's pages not yet mapped would come in as 2 MiB pages zeroed in whichever thread
  // first touches them (a fresh KV cache, touched all over by the first prefill, was zeroed that
  // way in the prefill). A 2 MiB range with no page mapped yet cannot be collapsed (EINVAL) and is
  // skipped; EAGAIN / ENOMEM (no huge page free right now) leave a piece on small pages. When
  // every piece fails with EINVAL on memory that is mapped, the kernel has no MADV_COLLAPSE
  // (before Linux 6.1): the whole buffer is flagged MADV_HUGEPAGE for khugepaged instead.
  bool einval_only = false;
  const int64_t done = advise_in_pieces(a, b, kCollapse, MADV_HUGEPAGE, /*stop_on_error=*/false, cancel, &einval_only);
  unsigned char resident = 0;
  if (einval_only && mincore(reinterpret_cast<void*>(a), 1, &resident) == 0 && (resident & 1))
    madvise(reinterpret_cast<void*>(a), b - a, MADV_HUGEPAGE);
  return done;
#else
  (void)t;
  (void)cancel;
  return 0;
#endif
}

}  // namespace qins::core
