// The roofline model: what each kernel must compute (FLOPs) and move (bytes),
// the peaks of the machine it runs on, and hence the best time it could take
// and the fraction of that bound a measurement reached.
//
// FLOPs count multiply and add separately (an FMA is 2). Bytes are the
// compulsory traffic: every input read once, every output written once, no
// cache effects. Attention FLOPs count QK^T and PV over the (query, key) pairs
// actually visible (causal, masked or selected); the softmax is not counted.
#pragma once

#include <string>

#include "prism/baselines/gpu_datasheet.h"

namespace prism::baselines {

struct KernelCost {
  double flops = 0.0;
  double bytes = 0.0;
  double intensity() const { return bytes > 0 ? flops / bytes : 0.0; }
};

// Causal (query, key) pairs of a sequence whose q_len queries are its newest
// tokens among kv_len keys.
double causal_pairs(double q_len, double kv_len);

// Dense causal prefill, one sequence. element_bytes: 4 for fp32, 2 for bf16/fp16.
// density scales the pairs (sparse methods: BlockSparsePattern::density).
KernelCost prefill_attention_cost(int q_len, int kv_len, int num_q_heads, int num_kv_heads,
                                  int head_dim, double element_bytes, double density = 1.0);
// Decode: batch sequences of `context` tokens each; kv_bytes_per_token_head is
// 2 * head_dim * element_bytes for fp32/bf16 K+V, less for a quantized cache.
// attended_fraction < 1 for methods that read a subset of the cache.
KernelCost decode_attention_cost(int batch, int context, int num_q_heads, int num_kv_heads,
                                 int head_dim, double kv_bytes_per_token_head,
                                 double attended_fraction = 1.0);
KernelCost gemm_cost(int m, int n, int k, double element_bytes);
KernelCost rms_norm_cost(int rows, int dim, double element_bytes);
KernelCost rope_cost(int tokens, int heads, int head_dim, double element_bytes);
KernelCost swiglu_cost(int rows, int dim, double element_bytes);

// Peaks of one device, and where they came from ("measured: ..." or "datasheet: ...").
struct DevicePeaks {
  std::string device;
  double flops_per_s = 0.0;  // the precision the kernels run in
  double bytes_per_s = 0.0;
  std::string source;
};

// This host, measured: OpenBLAS sgemm rate and STREAM-triad bandwidth (both
// with every hardware thread). Takes about a second with the defaults.
DevicePeaks measure_cpu_peaks(int sgemm_n = 1536, std::size_t stream_bytes = std::size_t{64} << 20);

// A GPU from the datasheet table, at BF16 dense tensor-core rate.
DevicePeaks gpu_peaks(const GpuDatasheet& gpu);

struct RooflineResult {
  double bound_seconds = 0.0;        // max(flops / peak, bytes / bandwidth)
  double percent_of_roofline = 0.0;  // 100 * bound_seconds / measured
  bool memory_bound = false;         // bytes / bandwidth dominates
  double achieved_flops_per_s = 0.0;
  double achieved_bytes_per_s = 0.0;
};

RooflineResult roofline(const KernelCost& cost, const DevicePeaks& peaks, double measured_seconds);

}  // namespace prism::baselines
