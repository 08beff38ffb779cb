// What the first write to fresh memory costs, laid out as a KV cache's first positions are written:
// `rows` rows (layers x KV heads x {K, V}) of `capacity` positions each, the first `positions`
// positions of every row written (row_bytes each: head_dim x 2 for bf16). Side by side in each
// round, on a fresh mapping each time:
//   cold write      the positions written as a prefill writes them (memset per row);
//   populate        madvise(MADV_POPULATE_WRITE) on the same ranges (Linux 5.14+), timed alone,
//   then write      and the same writes after it;
//   second write    the writes again on the now-mapped pages (the steady state: a later reply).
// Not a Google Benchmark program (each measurement needs a new mapping):
//   first_touch [--rows N] [--capacity N] [--row-bytes N] [--positions N] [--rounds N]
// Defaults: Phi-3.5-mini's cache (32 layers x 32 KV heads x 2 = 2048 rows, 4096 positions, 96 x
// bf16 = 192 bytes) and a 62-token first prompt. docs/benchmarks.md has its figures.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

long arg(int argc, char** argv, const char* name, long fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) {
      char* end = nullptr;
      const long v = std::strtol(argv[i + 1], &end, 10);
      if (end == argv[i + 1] || *end != '\0' || v <= 0) {
        std::fprintf(stderr, "first_touch: %s needs a positive integer, got '%s'\n", name, argv[i + 1]);
        std::exit(2);
      }
      return v;
    }
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
#if defined(__linux__)
  for (int i = 1; i < argc; i += 2) {
    const std::string a = argv[i];
    if (a != "--rows" && a != "--capacity" && a != "--row-bytes" && a != "--positions" && a != "--rounds") {
      std::fprintf(stderr,
                   "usage: first_touch [--rows N] [--capacity N] [--row-bytes N] [--positions N] [--rounds N]\n"
                   "unknown argument '%s'\n",
                   argv[i]);
      return 2;
    }
  }
  const long rows = arg(argc, argv, "--rows", 2048), cap = arg(argc, argv, "--capacity", 4096);
  const long row_bytes = arg(argc, argv, "--row-bytes", 192), rounds = arg(argc, argv, "--rounds", 3);
  const long positions = arg(argc, argv, "--positions", 62);
  if (positions > cap) {
    std::fprintf(stderr, "first_touch: --positions %ld is more than --capacity %ld\n", positions, cap);
    return 2;
  }
  const long page = sysconf(_SC_PAGESIZE);
  const size_t stride = static_cast<size_t>(cap * row_bytes), total = stride * static_cast<size_t>(rows);
  const size_t written = static_cast<size_t>(positions * row_bytes);
  const size_t populated = (written + static_cast<size_t>(page) - 1) / static_cast<size_t>(page) * static_cast<size_t>(page);
  std::printf("first_touch: %ld rows x %ld positions x %ld bytes (%.1f MB mapped), the first %ld positions of each "
              "written (%.1f MB, %ld pages of %ld bytes)\n",
              rows, cap, row_bytes, total / 1e6, positions, rows * written / 1e6,
              rows * static_cast<long>(populated / static_cast<size_t>(page)), page);
  std::printf("| round | cold write ms | populate ms | write after populate ms | second write ms |\n"
              "|---:|---:|---:|---:|---:|\n");
  for (long r = 1; r <= rounds; ++r) {
    double ms[4] = {0, 0, 0, 0};
    bool populate_ok = true;
    for (int mode = 0; mode < 2; ++mode) {
      void* m = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (m == MAP_FAILED) {
        std::perror("first_touch: mmap");
        return 1;
      }
      auto* base = static_cast<unsigned char*>(m);
      if (mode == 1) {
        const double t0 = now_s();
        for (long i = 0; i < rows; ++i)
          if (madvise(base + static_cast<size_t>(i) * stride, populated, 23 /* MADV_POPULATE_WRITE */) != 0)
            populate_ok = false;
        ms[1] = (now_s() - t0) * 1e3;
      }
      const double t0 = now_s();
      for (long i = 0; i < rows; ++i) std::memset(base + static_cast<size_t>(i) * stride, 1, written);
      ms[mode == 0 ? 0 : 2] = (now_s() - t0) * 1e3;
      if (mode == 0) {
        const double t1 = now_s();
        for (long i = 0; i < rows; ++i) std::memset(base + static_cast<size_t>(i) * stride, 2, written);
        ms[3] = (now_s() - t1) * 1e3;
      }
      munmap(m, total);
    }
    if (populate_ok)
      std::printf("| %ld | %.1f | %.1f | %.1f | %.2f |\n", r, ms[0], ms[1], ms[2], ms[3]);
    else
      std::printf("| %ld | %.1f | unsupported | %.1f | %.2f |\n", r, ms[0], ms[2], ms[3]);
  }
  return 0;
#else
  (void)argc;
  (void)argv;
  std::printf("first_touch: Linux only (madvise MADV_POPULATE_WRITE)\n");
  return 0;
#endif
}
