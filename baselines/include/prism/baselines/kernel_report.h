// `prism kernels`: runs the attention shapes a workload implies through dense
// attention and each sparse / quantized method, stage by stage, and reports
// time per stage, speedup over dense, % of roofline and accuracy against dense
// (relative L2 error of the output; recall of the keys that carry the top 90%
// of dense attention mass). Speed without accuracy is not a result.
//
// Inputs are synthetic but structured so that sparsity is real: per head, a
// RoPE-rotated shared component (local, "slash" attention), attention sinks on
// the first tokens, and a few heavy-hitter keys ("vertical" lines), on top of
// noise. Same seed, same numbers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "prism/baselines/roofline.h"

namespace prism::baselines {

struct KernelWorkloadShape {
  std::string workload;
  std::string description;
  int num_q_heads = 8;
  int num_kv_heads = 2;
  int head_dim = 128;
  int prefill_q_len = 0;  // one sequence; queries are its newest tokens
  int prefill_kv_len = 0;
  int decode_batch = 1;
  int decode_context = 0;  // tokens per sequence
  int block_size = 16;     // KV page size
};

// "long-context", "rag" or "multi-turn"; context > 0 overrides the context
// length (prefill keys and decode context). Throws std::invalid_argument.
KernelWorkloadShape kernel_workload_shape(const std::string& workload, int context = 0);

// Method names, in table order: dense, sink-window, quest, vertical-slash,
// block-topk, kivi-int8, kivi-int4.
const std::vector<std::string>& kernel_method_names();

struct KernelReportOptions {
  std::string workload = "long-context";
  std::vector<std::string> methods;  // empty: all; dense is always run (the baseline)
  std::string device = "cpu";        // cpu | cuda
  int context = 0;                   // overrides the workload's context length
  int repetitions = 3;               // timed runs per stage (median), after one warm-up
  bool measure_peaks = true;         // false: no roofline column (faster)
  std::uint32_t seed = 1;
};

struct StageTime {
  std::string name;
  double seconds = 0.0;
  bool once = false;  // amortised maintenance (page bounds, quantization): not in the total
};

struct MethodRow {
  std::string phase;  // prefill | decode
  std::string method;
  std::vector<StageTime> stages;
  double total_seconds = 0.0;      // per-step stages
  double speedup = 0.0;            // dense total / this total
  double attended_fraction = 1.0;  // of the (query, key) pairs dense computes
  double roofline_percent = 0.0;   // of the attend stage; 0 when peaks are not measured
  bool memory_bound = false;
  double relative_l2_error = 0.0;  // vs dense output
  double recall = 1.0;             // of top-90%-mass keys
};

struct KernelReport {
  KernelWorkloadShape shape;
  std::string device;
  std::string isa;
  int threads = 0;
  bool has_peaks = false;
  DevicePeaks peaks;
  std::vector<MethodRow> rows;
};

KernelReport run_kernel_report(const KernelReportOptions& options);

// The table as text (what `prism kernels` prints).
std::string format_kernel_report(const KernelReport& report);

// The same as JSON (one object; rows as an array), for results/ and scripts.
std::string kernel_report_json(const KernelReport& report);

}  // namespace prism::baselines
