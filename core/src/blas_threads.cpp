#include "qins/core/blas_threads.h"

#include <atomic>

#if defined(__linux__)
#include <dlfcn.h>
#endif

namespace qins::core {

namespace {
std::atomic<int> g_blas_threads{-1};  // what set_blas_threads last set; -1: untouched or no OpenBLAS
}  // namespace

void set_blas_threads(int n) {
#if defined(__linux__)
  using SetFn = void (*)(int);
  static const SetFn fn = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (fn && n != g_blas_threads.load()) {
    fn(n);
    g_blas_threads = n;
  }
#else
  (void)n;
#endif
}

bool blas_single_threaded() { return g_blas_threads.load() == 1; }

}  // namespace qins::core
