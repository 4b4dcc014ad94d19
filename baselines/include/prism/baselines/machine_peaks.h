// Measured peaks of the host: what the roofline model and `prism doctor`
// compare every kernel against. Measured, not looked up: a VM's share of a
// socket is rarely what the datasheet says.
#pragma once

#include <cstddef>

namespace prism::baselines {

struct BandwidthMeasurement {
  double best_gb_per_s = 0.0;    // best repetition (STREAM convention)
  double median_gb_per_s = 0.0;  // median repetition
  std::size_t array_bytes = 0;   // bytes per array; three arrays are touched
  int threads = 0;
  int repetitions = 0;
};

struct FlopMeasurement {
  double best_gflop_per_s = 0.0;
  double median_gflop_per_s = 0.0;
  int matrix_size = 0;  // square n x n x n sgemm
  int repetitions = 0;
};

// STREAM triad a[i] = b[i] + s * c[i] over three arrays of `array_bytes` each,
// spread across `threads` threads (0 = all hardware threads). Bytes counted
// per element: 3 x sizeof(double), as STREAM does (no write-allocate traffic).
BandwidthMeasurement measure_memory_bandwidth(std::size_t array_bytes = std::size_t{128} << 20,
                                              int threads = 0, int repetitions = 7);

// Peak FP32 rate of OpenBLAS sgemm on square n x n matrices: 2 n^3 flops per call.
FlopMeasurement measure_sgemm_peak(int n = 2048, int repetitions = 5);

}  // namespace prism::baselines
