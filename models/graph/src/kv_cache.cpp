// The KV cache's storage: one large mapping each for K and V, movable onto huge pages.
#include "qins/core/prefault.h"
#include "qins/core/qins.h"
#include "qins/graph/phi3_model.h"

#include <algorithm>

namespace qins {

KvCache make_kv_cache(const Phi3Config& c, int64_t capacity, torch::ScalarType dtype) {
  KvCache cache;
  const auto shape = std::vector<int64_t>{c.num_hidden_layers, c.num_key_value_heads, capacity, c.head_dim};
  // Each in its own 2 MiB-aligned mapping (large caches), so that promote_kv_cache can later move
  // it onto huge pages. Not written here: a fresh mapping is zero, and its pages are mapped as
  // positions fill them (zero_() on the 1.6 GB cache of a 4k-token Phi-3.5 context took every
  // page at once, and the first reply's prefill then ran beside the huge-page collapse of all of it).
  cache.k = core::zeros_large(shape, dtype);  // [n_layers, n_kv_head, capacity, head_dim]
  cache.v = core::zeros_large(shape, dtype);
  return cache;
}

KvCache make_kv_cache(const Phi3Weights& w, int64_t capacity, torch::ScalarType dtype) {
  if (w.device.is_cpu()) return make_kv_cache(w.config, capacity, dtype);
  const Phi3Config& c = w.config;
  const auto opts = torch::TensorOptions().device(w.device).dtype(dtype);
  KvCache cache;
  cache.k = torch::zeros({c.num_hidden_layers, c.num_key_value_heads, capacity, c.head_dim}, opts);
  cache.v = torch::zeros({c.num_hidden_layers, c.num_key_value_heads, capacity, c.head_dim}, opts);
  return cache;
}

int64_t promote_kv_cache(const KvCache& cache, const std::atomic<bool>* cancel) {
  if (!cache.k.defined() || !cache.k.device().is_cpu()) return 0;
  return core::promote_to_huge_pages(cache.k, cancel) + core::promote_to_huge_pages(cache.v, cancel);
}

void reserve_kv_positions(KvCache& cache, int64_t end) {
  if (!cache.k.defined() || !cache.v.defined() || !cache.k.device().is_cpu() || !cache.k.is_contiguous() ||
      !cache.v.is_contiguous() || cache.k.dim() != 4)
    return;
  const void* base = cache.k.data_ptr();
  if (cache.pages_base != base) {
    cache.pages_base = base;
    cache.pages_to = 0;
  }
  const int64_t cap = cache.capacity();
  end = std::min(end, cap);
  if (end <= cache.pages_to) return;
  const int64_t to = std::min(cap, (end + kKvPagesAhead - 1) / kKvPagesAhead * kKvPagesAhead + kKvPagesAhead);
  const int64_t rows = cache.k.size(0) * cache.k.size(1);
  const int64_t row_bytes = cache.k.size(3) * static_cast<int64_t>(cache.k.element_size());
  for (const torch::Tensor* t : {&cache.k, &cache.v}) {
    auto* p = static_cast<char*>(t->data_ptr());
    for (int64_t r = 0; r < rows; ++r)
      if (!core::populate_for_write(p + (r * cap + cache.pages_to) * row_bytes, (to - cache.pages_to) * row_bytes)) {
        cache.pages_to = cap;  // unsupported here: the pages come in at their first write from now on
        return;
      }
  }
  cache.pages_to = to;
}

}  // namespace qins
