// The kernels' thread pool: a small persistent pool (no OpenMP) that every CPU
// kernel shares. The calling thread takes part in the work, so a pool of N
// threads has N - 1 workers.
#pragma once

#include <cstdint>
#include <functional>

namespace prism::kernels {

// Threads the kernels use. Defaults to PRISM_KERNEL_THREADS when set, else the
// hardware thread count.
int kernel_threads();

// Resizes the pool (n >= 1). Not to be called while kernels run.
void set_kernel_threads(int n);

// Runs body(i) for i in [0, n) across the pool; returns when all are done.
// Items are handed out dynamically (an atomic counter), so uneven items balance.
// The first exception thrown by a body is rethrown here. Nested calls run
// serially on the calling thread.
void parallel_for(std::int64_t n, const std::function<void(std::int64_t)>& body);

// Which SIMD path the CPU kernels dispatch to: "avx512", "avx2" or "generic".
// PRISM_KERNEL_ISA=avx2|generic forces a narrower one (for comparisons).
const char* kernel_isa();

}  // namespace prism::kernels
