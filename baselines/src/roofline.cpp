#include "prism/baselines/roofline.h"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

#include "prism/baselines/machine_peaks.h"

namespace prism::baselines {

double causal_pairs(double q_len, double kv_len) {
  const double offset = kv_len - q_len;
  return q_len * offset + q_len * (q_len + 1) / 2.0;
}

KernelCost prefill_attention_cost(int q_len, int kv_len, int hq, int hkv, int d, double eb,
                                  double density) {
  const double pairs = causal_pairs(q_len, kv_len) * density;
  KernelCost c;
  c.flops = 4.0 * pairs * d * hq;
  c.bytes = eb * (2.0 * q_len * hq * d + 2.0 * kv_len * hkv * d);
  return c;
}

KernelCost decode_attention_cost(int batch, int context, int hq, int hkv, int d,
                                 double kv_bytes_per_token_head, double attended_fraction) {
  const double tokens = static_cast<double>(batch) * context * attended_fraction;
  KernelCost c;
  c.flops = 4.0 * tokens * d * hq;
  c.bytes = tokens * hkv * kv_bytes_per_token_head + 2.0 * 4.0 * batch * hq * d;
  return c;
}

KernelCost gemm_cost(int m, int n, int k, double eb) {
  return {2.0 * m * n * k, eb * (static_cast<double>(m) * k + static_cast<double>(n) * k +
                                 static_cast<double>(m) * n)};
}

KernelCost rms_norm_cost(int rows, int dim, double eb) {
  return {4.0 * rows * dim, eb * (2.0 * rows * dim + dim)};
}

KernelCost rope_cost(int tokens, int heads, int d, double eb) {
  return {3.0 * tokens * heads * d, eb * 2.0 * tokens * heads * d};
}

KernelCost swiglu_cost(int rows, int dim, double eb) {
  return {5.0 * rows * dim, eb * 3.0 * rows * dim};
}

DevicePeaks measure_cpu_peaks(int sgemm_n, std::size_t stream_bytes) {
  const FlopMeasurement f = measure_sgemm_peak(sgemm_n, 3);
  const BandwidthMeasurement b = measure_memory_bandwidth(stream_bytes, 0, 5);
  DevicePeaks p;
  p.device = "cpu";
  p.flops_per_s = f.best_gflop_per_s * 1e9;
  p.bytes_per_s = b.best_gb_per_s * 1e9;
  p.source = fmt::format(
      "measured: OpenBLAS sgemm n={} {:.1f} GFLOP/s, STREAM triad {} threads {:.1f} GB/s",
      f.matrix_size, f.best_gflop_per_s, b.threads, b.best_gb_per_s);
  return p;
}

DevicePeaks gpu_peaks(const GpuDatasheet& gpu) {
  DevicePeaks p;
  p.device = gpu.name;
  p.flops_per_s = gpu.bf16_dense_tflops * 1e12;
  p.bytes_per_s = gpu.memory_bandwidth_tb_per_s * 1e12;
  p.source = fmt::format("datasheet: {} {:.0f} TFLOP/s BF16 dense, {:.2f} TB/s", gpu.name,
                         gpu.bf16_dense_tflops, gpu.memory_bandwidth_tb_per_s);
  return p;
}

RooflineResult roofline(const KernelCost& cost, const DevicePeaks& peaks, double measured) {
  if (peaks.flops_per_s <= 0 || peaks.bytes_per_s <= 0)
    throw std::invalid_argument("roofline: peaks must be positive");
  RooflineResult r;
  const double compute = cost.flops / peaks.flops_per_s;
  const double memory = cost.bytes / peaks.bytes_per_s;
  r.bound_seconds = std::max(compute, memory);
  r.memory_bound = memory > compute;
  if (measured > 0) {
    r.percent_of_roofline = 100.0 * r.bound_seconds / measured;
    r.achieved_flops_per_s = cost.flops / measured;
    r.achieved_bytes_per_s = cost.bytes / measured;
  }
  return r;
}

}  // namespace prism::baselines
