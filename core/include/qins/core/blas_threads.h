// The BLAS library's own thread count, set once where the engine is built (not per call).
//
// OpenBLAS (what Debian's libblas.so.3 usually is) keeps its worker threads spinning with
// sched_yield for a long while after each multi-threaded call. With QINS projections on a kernel
// with its own GEMM (kernel_uses_bf16) the heavy work runs on the OpenMP threads, and a spinning
// BLAS thread on a 2-core machine took a third of the prefill time (perf: one thread in OpenBLAS's
// yield loop during every QINS GEMM). So such a graph gives OpenBLAS one thread and runs
// attention's small matmuls in its own parallel loop; a dense graph (baselines, training) or an
// exact QINS kernel, whose prefill GEMMs are BLAS calls, leaves BLAS all the threads.
#pragma once

namespace qins::core {

// openblas_set_num_threads(n) where libtorch's BLAS is OpenBLAS (looked up at run time, Linux);
// a no-op elsewhere. Remembers what it set.
void set_blas_threads(int n);
// True after set_blas_threads(1) took effect: the graph then runs attention per kv head on its
// own threads (each task's matmuls on one BLAS thread) instead of batched BLAS matmuls.
bool blas_single_threaded();

}  // namespace qins::core
