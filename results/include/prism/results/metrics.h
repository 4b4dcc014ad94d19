// Named metrics computed from a run's per-request samples, with confidence
// intervals. Names are "<quantity>.<statistic>":
//   quantity: ttft, tpot, itl, e2e            statistic: p<N> (p50, p90, p99, p99.9), mean
//   throughput.rps | throughput.input_tps | throughput.output_tps
//   goodput (requests/s meeting the run's SLOs), goodput.ratio, errors.ratio
// Latencies are stored in seconds and displayed in milliseconds.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "prism/results/samples.h"
#include "prism/results/statistics.h"

namespace prism::results {

// Which way is better, for bold-the-best and for regressions.
enum class Better { kLower, kHigher };

struct MetricSpec {
  std::string name;
  std::optional<Quantity> quantity;  // set for latency metrics
  std::string statistic;             // "p99", "mean", "rps", ...
  double quantile = -1.0;            // in [0, 1] for p<N>, else -1
  Better better = Better::kLower;
  std::string display_unit;    // "ms", "req/s", "tok/s", "%"
  double display_scale = 1.0;  // stored value * scale = displayed value
  std::string label;           // "TTFT p99"
};

// Parses a metric name; throws std::invalid_argument naming it when unknown.
MetricSpec parse_metric(const std::string& name);

// Service-level objectives for goodput, from a run's configuration:
// configuration.slo.{ttft_ms|ttft_s, tpot_ms|tpot_s, e2e_ms|e2e_s}.
struct Slo {
  std::optional<double> ttft_s;
  std::optional<double> tpot_s;
  std::optional<double> e2e_s;
  bool empty() const { return !ttft_s && !tpot_s && !e2e_s; }
};
Slo slo_from_configuration(const nlohmann::json& configuration);

// Computes one metric. The Estimate's value and interval are in stored units
// (seconds, requests/s). Latency quantiles use the distribution-free
// order-statistic interval (quantile_with_order_statistic_ci: exact binomial
// ranks, no resampling); means use the normal-theory interval (mean +- z s / sqrt(n)),
// which matches the bootstrap for the sample sizes benchmarks produce;
// goodput and ratios use the Wilson score interval. An Estimate with n == 0
// means "not available" (no samples, or goodput without SLOs).
Estimate compute_metric(const RunSamples& samples, const MetricSpec& spec, const Slo& slo,
                        const BootstrapOptions& options = {});

// The metrics the store precomputes for every run and tables show by default.
const std::vector<std::string>& standard_metric_names();
const std::vector<std::string>& default_table_metrics();

}  // namespace prism::results
