// The decode loop makes no heap allocation per token after warm-up: every malloc-family call of
// the process (ours, libtorch's, libgomp's, libstdc++'s) is counted while decode_step and the
// sampler run. A binary of its own, because it replaces malloc for the whole process (glibc only;
// sanitizer builds bring their own allocator and skip it, see CMakeLists.txt).
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <vector>

#include "fixture_dir.h"
#include "qins/io/hf_folder.h"
#include "qins/graph/phi3_model.h"
#include "qins/io/safetensors.h"
#include "qins/runtime/sampler.h"

#if defined(__GLIBC__)
extern "C" {
void* __libc_malloc(size_t);
void __libc_free(void*);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
void* __libc_valloc(size_t);
void* __libc_pvalloc(size_t);
}

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_calls{0};
inline void note() {
  if (g_counting.load(std::memory_order_relaxed)) g_calls.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

extern "C" {
void* malloc(size_t n) {
  note();
  return __libc_malloc(n);
}
void free(void* p) { __libc_free(p); }
void* calloc(size_t n, size_t s) {
  note();
  return __libc_calloc(n, s);
}
void* realloc(void* p, size_t n) {
  note();
  return __libc_realloc(p, n);
}
void* memalign(size_t a, size_t n) {
  note();
  return __libc_memalign(a, n);
}
void* aligned_alloc(size_t a, size_t n) {
  note();
  return __libc_memalign(a, n);
}
void* valloc(size_t n) {
  note();
  return __libc_valloc(n);
}
void* pvalloc(size_t n) {
  note();
  return __libc_pvalloc(n);
}
int posix_memalign(void** out, size_t a, size_t n) {
  note();
  void* p = __libc_memalign(a, n);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}
}

namespace qins {
namespace {

// Calls of the malloc family while f runs (all threads).
template <typename F>
long allocations_during(F&& f) {
  g_calls = 0;
  g_counting = true;
  f();
  g_counting = false;
  return g_calls.load();
}

TEST(DecodeAllocations, NoneAfterWarmUp) {
  FixtureOptions o;
  o.hidden_size = 192;  // head size 96 (the vectorised attention), grouped-query
  o.num_heads = 2;
  o.num_kv_heads = 1;
  auto w = test::load_qins_weights(test::fixture("alloc_hd96", o));
  torch::NoGradGuard ng;
  KvCache cache = make_kv_cache(w.config, 64, torch::kBFloat16);
  forward(w, torch::tensor({{1, 2, 3}}, torch::kInt64), &cache);  // the prompt, through forward()

  SamplingParams sp;  // the chat defaults: temperature, top-p, plus a repetition penalty
  sp.random_seed = false;
  sp.seed = 7;
  sp.repetition_penalty = 1.1f;
  Sampler sampler(sp);
  const int vocab = static_cast<int>(w.config.vocab_size);
  std::vector<float> logits(static_cast<size_t>(vocab)), row(logits.size());
  std::vector<int> history{1, 2, 3};
  history.reserve(64);
  int id = 3;
  auto one_token = [&] {
    ASSERT_TRUE(decode_step(w, id, cache, logits.data()));
    std::memcpy(row.data(), logits.data(), row.size() * sizeof(float));
    id = sampler.sample(row.data(), vocab, history);
    history.push_back(id);
  };
  for (int i = 0; i < 3; ++i) one_token();  // warm-up: scratch, thread-local buffers, thread team

  EXPECT_EQ(allocations_during([&] {
              for (int i = 0; i < 20; ++i) one_token();
            }),
            0);
  EXPECT_EQ(cache.n_past, 3 + 3 + 20);

  // The counter sees allocations where there are some: the tensor graph makes them per token.
  EXPECT_GT(allocations_during([&] { forward(w, torch::tensor({{int64_t{id}}}, torch::kInt64), &cache); }), 10);
}

}  // namespace
}  // namespace qins

#else
TEST(DecodeAllocations, NoneAfterWarmUp) { GTEST_SKIP() << "counts malloc calls through glibc's __libc_malloc"; }
#endif
