// The BLAS library's own thread count, set once where the engine is built (not per call).
//
// OpenBLAS (what Debian's libblas.so.3 usually is) keeps its worker threads spinning with
// sched_yield for a long while after each multi-threaded call. A QINS graph does its heavy work on
// the OpenMP threads — the GEMV, and in prefill the expansion of each tile of codes — so a BLAS
// thread spinning beside them on a 2-core machine took a third of the prefill time (perf: with the
// bf16 kernels, one thread in OpenBLAS's yield loop during every QINS GEMM; with the exact fp32
// kernels, a third of a 32-token prefill's samples in the OpenBLAS and libgomp wait loops while
// one thread expanded a tile). So every QINS graph gives OpenBLAS one thread: the prefill then
// expands and multiplies tiles in parallel, one single-threaded GEMM per thread, and attention's
// small matmuls run in the graph's own parallel loop. A dense graph (baselines, training) leaves
// BLAS all the threads.
#pragma once

namespace qins::core {

// openblas_set_num_threads(n) where libtorch's BLAS is OpenBLAS (looked up at run time, Linux);
// a no-op elsewhere. Remembers what it set.
void set_blas_threads(int n);
// True after set_blas_threads(1) took effect: the graph then runs attention per kv head on its
// own threads (each task's matmuls on one BLAS thread) instead of batched BLAS matmuls.
bool blas_single_threaded();

}  // namespace qins::core
