// ContainerReader's parallel decoding: decode_parallel() and verify() split the work into chunk
// items that a thread pool decodes (Huffman chunks two at a time) straight into caller buffers,
// while the calling thread reports progress.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

#include "qins/compression/checksum.h"
#include "qins/compression/container.h"
#include "qins/compression/huffman.h"

namespace qins::comp {
namespace {

unsigned resolve_threads(unsigned t) {
  if (t == 0) t = std::max(1u, std::thread::hardware_concurrency());
  return t;
}

// Once a chunk is decoded its compressed bytes are not needed again (a second decode simply
// faults them back in from the file). Dropping the pages that lie wholly inside the chunk's byte
// range keeps RSS during a load near the decoded size instead of decoded + compressed.
// MADV_DONTNEED is safe here: the mapping is private and read-only, so nothing can be lost.
void release_source_pages(const uint8_t* p, uint64_t n) {
  static const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t a = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
  const uintptr_t b = (reinterpret_cast<uintptr_t>(p) + n) & ~(page - 1);
  if (b > a) (void)::madvise(reinterpret_cast<void*>(a), b - a, MADV_DONTNEED);
}

// Maps the destination pages of one chunk in a single call before the decoder writes them.
// Where time goes: a warm Phi-3.5-mini load writes ~930k fresh 4 KiB pages; as write faults
// (exception entry, VMA lookup, return, each interrupting the decoder) they were ~20 % of the
// load's CPU samples. MADV_POPULATE_WRITE (Linux >= 5.14) allocates the same pages in one
// kernel walk per chunk: measured ~10 % less CPU per load (the page allocation and zeroing
// remain). It only allocates (contents unchanged) and is skipped where the kernel or headers
// lack it.
// (Transparent huge pages were measured too and were slower: zeroing fresh 2 MiB pages in a VM
// whose free memory was handed back to the host cost more than the faults they save.)
void populate_destination(uint8_t* p, uint64_t n) {
#if defined(__linux__) && defined(MADV_POPULATE_WRITE)
  static std::atomic<bool> unsupported{false};
  if (unsupported.load(std::memory_order_relaxed)) return;
  static const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t a = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
  const uintptr_t b = (reinterpret_cast<uintptr_t>(p) + n + page - 1) & ~(page - 1);
  if (::madvise(reinterpret_cast<void*>(a), b - a, MADV_POPULATE_WRITE) != 0 && errno == EINVAL)
    unsupported.store(true, std::memory_order_relaxed);  // old kernel: plain faults it is
#else
  (void)p;
  (void)n;
#endif
}

// A chunk used in place without a checksum pass: ask the kernel to start reading it from disk
// now (cold start), so that the first forward pass finds it in the page cache.
void prefetch_source(const uint8_t* p, uint64_t n) {
  static const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t a = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
  const uintptr_t b = reinterpret_cast<uintptr_t>(p) + n;
  (void)::madvise(reinterpret_cast<void*>(a), b - a, MADV_WILLNEED);
}

}  // namespace

struct ContainerReader::WorkItem {
  const TensorInfo* tensor;   // nullptr for a metadata item
  const SectionInfo* section;
  std::size_t chunk;
  uint8_t* dst;               // nullptr: decode into per-thread scratch (verify)
  uint64_t weight;            // raw bytes, for progress
  bool in_place = false;      // a raw chunk used where it lies in the mapping: only verified
};

namespace {

// The state a decode pool shares: workers take items two at a time and add the bytes they
// decoded; the calling thread waits on it to report progress.
struct PoolState {
  std::atomic<std::size_t> next{0};
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::condition_variable cv;
  uint64_t done = 0;
  std::size_t finished_workers = 0;
  std::exception_ptr err;
};

// One worker: takes pairs of items until none are left or the pool stops. decode(i, n, weight)
// decodes items [i, i + n) and adds their weights; its exception stops the pool.
void pool_worker(PoolState& st, std::size_t n_items, const std::function<void(std::size_t, std::size_t, uint64_t&)>& decode) {
  for (;;) {
    if (st.stop.load(std::memory_order_relaxed)) break;
    const std::size_t i = st.next.fetch_add(2);
    if (i >= n_items) break;
    uint64_t weight = 0;
    try {
      decode(i, std::min<std::size_t>(2, n_items - i), weight);
    } catch (...) {
      std::lock_guard<std::mutex> lk(st.mu);
      if (!st.err) st.err = std::current_exception();
      st.stop = true;
    }
    {
      std::lock_guard<std::mutex> lk(st.mu);
      st.done += weight;
    }
    st.cv.notify_one();
  }
  {
    std::lock_guard<std::mutex> lk(st.mu);
    ++st.finished_workers;
  }
  st.cv.notify_one();
}

// Runs `nt` workers while the calling thread reports progress; joins them all. Returns false
// when progress cancelled; rethrows a worker's first exception.
bool run_pool(PoolState& st, unsigned nt, uint64_t total, const std::function<void()>& work, const ProgressFn& progress) {
  std::vector<std::thread> pool;
  pool.reserve(nt);
  try {
    for (unsigned t = 0; t < nt; ++t) pool.emplace_back(work);
  } catch (...) {
    st.stop = true;
    for (auto& th : pool) th.join();
    throw;
  }
  bool cancelled = false;
  {
    std::unique_lock<std::mutex> lk(st.mu);
    double last = -1;
    for (;;) {
      st.cv.wait(lk, [&] { return st.finished_workers == nt || (total && double(st.done) / double(total) > last); });
      const double f = total ? double(st.done) / double(total) : 1.0;
      if (progress && !cancelled && !st.err && f > last) {
        last = f;
        lk.unlock();
        const bool go = progress(f);
        lk.lock();
        if (!go) {
          cancelled = true;
          st.stop = true;
        }
      }
      last = std::max(last, f);
      if (st.finished_workers == nt) break;
    }
  }
  for (auto& th : pool) th.join();
  if (st.err) std::rethrow_exception(st.err);
  return !cancelled;
}

}  // namespace

void ContainerReader::run_items(const std::vector<WorkItem>& items, const DecodeOptions& opt,
                                const ProgressFn& progress) const {
  uint64_t total = 0;
  for (const auto& it : items) total += it.weight;
  const unsigned nt = unsigned(std::min<std::size_t>(resolve_threads(opt.threads), std::max<std::size_t>((items.size() + 1) / 2, 1)));

  // After an item is decoded into dst: checks its checksum (if asked) and drops its source pages.
  auto finish_item = [&](const WorkItem& it, uint8_t* dst) {
    const ChunkInfo& c = it.section->chunks[it.chunk];
    if (opt.verify && checksum64(dst, c.raw_size) != c.checksum)
      fail("bad checksum in tensor '" + it.tensor->name + "' section '" + it.section->name +
           "' chunk " + std::to_string(it.chunk) + (it.in_place ? " (used in place from the file mapping)" : ""));
    if (keep_ && !it.in_place) release_source_pages(base_ + c.offset, c.stored_size);  // a file mapping
  };
  auto is_huffman = [](const WorkItem& it) {
    return it.tensor && it.section->chunks[it.chunk].codec == Codec::huffman;
  };
  // Items are taken two at a time: two Huffman chunks decode together through
  // huf::huffman_decode2 (8 independent bit streams per loop instead of 4, ~1.4x faster).
  auto decode = [&](std::vector<uint8_t> (&scratch)[2], std::size_t i, std::size_t n, uint64_t& weight) {
    uint8_t* dst[2] = {nullptr, nullptr};
    for (std::size_t k = 0; k < n; ++k) {
      const WorkItem& it = items[i + k];
      weight += it.weight;
      if (!it.tensor) continue;
      const uint64_t raw = it.section->chunks[it.chunk].raw_size;
      if (it.in_place) {
        dst[k] = const_cast<uint8_t*>(base_ + it.section->chunks[it.chunk].offset);  // only read
        if (!opt.verify) prefetch_source(dst[k], raw);
      } else if (it.dst) {
        dst[k] = it.dst;
        populate_destination(dst[k], raw);
      } else {
        scratch[k].resize(raw);
        dst[k] = scratch[k].data();
      }
    }
    bool paired = false;
    if (n == 2 && is_huffman(items[i]) && is_huffman(items[i + 1])) {
      const ChunkInfo& a = items[i].section->chunks[items[i].chunk];
      const ChunkInfo& b = items[i + 1].section->chunks[items[i + 1].chunk];
      try {
        huf::huffman_decode2(base_ + a.offset, std::size_t(a.stored_size), dst[0], a.raw_size,
                             base_ + b.offset, std::size_t(b.stored_size), dst[1], b.raw_size);
        paired = true;
      } catch (const CodecError&) {
        // One of the two is corrupt: decode them one by one below, which names it.
      }
    }
    for (std::size_t k = 0; k < n; ++k) {
      const WorkItem& it = items[i + k];
      if (!it.tensor) {
        (void)metadata(meta_[it.chunk].key);
      } else {
        if (!paired && !it.in_place) decode_chunk_into(*it.tensor, *it.section, it.chunk, dst[k], false);
        finish_item(it, dst[k]);
      }
    }
  };

  PoolState st;
  auto work = [&] {
    std::vector<uint8_t> scratch[2];
    pool_worker(st, items.size(), [&](std::size_t i, std::size_t n, uint64_t& weight) { decode(scratch, i, n, weight); });
  };
  if (!run_pool(st, nt, total, work, progress)) throw Cancelled(name_ + ": decoding cancelled");
}

void ContainerReader::decode_parallel(const std::vector<DecodeJob>& jobs, const DecodeOptions& opt,
                                      const ProgressFn& progress) const {
  std::vector<WorkItem> items;
  for (const auto& j : jobs) {
    const TensorInfo* t = find_tensor(j.tensor);
    if (!t) throw std::invalid_argument(name_ + ": no tensor '" + j.tensor + "'");
    const SectionInfo* s = t->section(j.section);
    if (!s) throw std::invalid_argument(name_ + ": tensor '" + j.tensor + "' has no section '" + j.section + "'");
    if (j.dst_size != s->raw_size)
      throw std::invalid_argument(name_ + ": tensor '" + j.tensor + "' section '" + j.section +
                                  "' has " + std::to_string(s->raw_size) + " bytes, buffer has " +
                                  std::to_string(j.dst_size));
    if (j.in_place) {
      if (!mapped_section(*t, j.section))
        throw std::invalid_argument(name_ + ": tensor '" + j.tensor + "' section '" + j.section +
                                    "' cannot be used in place (not raw chunks back to back in a file mapping)");
      for (std::size_t i = 0; i < s->chunks.size(); ++i) items.push_back({t, s, i, nullptr, s->chunks[i].raw_size, true});
      continue;
    }
    uint8_t* o = static_cast<uint8_t*>(j.dst);
    for (std::size_t i = 0; i < s->chunks.size(); ++i) {
      items.push_back({t, s, i, o, s->chunks[i].raw_size});
      o += s->chunks[i].raw_size;
    }
  }
  run_items(items, opt, progress);
}

void ContainerReader::verify(const DecodeOptions& opt, const ProgressFn& progress) const {
  std::vector<WorkItem> items;
  for (std::size_t m = 0; m < meta_.size(); ++m) items.push_back({nullptr, nullptr, m, nullptr, meta_[m].raw_size});
  for (const auto& t : tensors_)
    for (const auto& s : t.sections)
      for (std::size_t i = 0; i < s.chunks.size(); ++i)
        items.push_back({&t, &s, i, nullptr, s.chunks[i].raw_size});
  DecodeOptions o = opt;
  o.verify = true;
  run_items(items, o, progress);
}

}  // namespace qins::comp
