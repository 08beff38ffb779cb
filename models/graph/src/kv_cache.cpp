// The KV cache's storage: one large mapping each for K and V, movable onto huge pages.
#include "qins/core/qins.h"
#include "qins/graph/phi3_model.h"

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

}  // namespace qins
