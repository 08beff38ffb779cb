// Mapping a buffer's pages into the process ahead of its first use (core/src/large_buffer.cpp).
#pragma once

#include <torch/torch.h>

#include <atomic>
#include <cstdint>

namespace qins::core {

// Maps every page of the tensor's memory into the process now (Linux MADV_POPULATE_READ, in 32
// MiB pieces, stopping early when *cancel turns true): for codes used in place from a file
// mapping, so that the first reply does not take their page faults. Returns the bytes done (0
// where unsupported, or with QINS_PREFAULT=0).
int64_t prefault_pages(const torch::Tensor& t, const std::atomic<bool>* cancel = nullptr);
bool prefault_enabled();  // false when QINS_PREFAULT=0

// Maps the pages of [p, p + bytes) into the process for writing now, zero-filled where new (Linux
// MADV_POPULATE_WRITE, 5.14+): one system call for the range instead of a page fault per 4 KiB
// at its first write. For memory about to be written (the KV cache's next positions). Measured by
// bench/first_touch on a Phi-3.5 cache's first 62 positions (2048 rows of 12 KiB): cold writes
// 69-92 ms, the call plus the writes after it 41-52 ms on this project's development VM
// (docs/benchmarks.md). Returns false where unsupported (other systems, kernels before 5.14,
// QINS_PREFAULT=0): the pages then come in at their first write as before.
bool populate_for_write(void* p, int64_t bytes);

// Puts the calling thread at idle priority (Linux SCHED_IDLE: it runs only on a core nothing else
// wants), for the engine's background pass over the weights, so that pass never takes CPU time
// from a reply (a first reply's prefill uses every core). Returns false where unsupported, where
// the call fails, or with QINS_BACKGROUND_IDLE=0 (the thread keeps its normal priority).
bool run_at_idle_priority();

// Keeps freed large blocks in the process's heap for the next allocation instead of handing them
// back to the system (glibc: M_MMAP_THRESHOLD at its maximum, 32 MiB, and M_TRIM_THRESHOLD 1 GiB).
// Every projection of a prefill allocates its output afresh, 0.1-32 MiB each; by default glibc
// maps such blocks from the system and unmaps them on free, so each one came back as new zeroed
// pages, one page fault per 4 KiB: a 62-token first reply on the Phi-3.5-mini shapes prefilled at
// 47 tok/s instead of 61 (docs/benchmarks.md). Costs resident memory: the largest prompt's
// activations stay in the heap after it. Process-wide, once; returns whether it applied (false
// off glibc, or with QINS_KEEP_HEAP=0).
bool keep_freed_heap_memory();

}  // namespace qins::core
