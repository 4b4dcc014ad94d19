// Run metrics from observations: TTFT, TPOT, ITL, E2E, normalized latency,
// lateness, throughput, goodput under SLOs, percentiles with bootstrap
// confidence intervals, breakdowns by context length and by turn, and error
// counts by class. Per-request quantities use the one definition in
// results/samples.h; percentiles and intervals come from results/statistics.h.
//
// Warm-up requests are excluded everywhere. The measurement window runs from
// the first measured request's scheduled time to the last one's completion.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "prism/results/observation.h"
#include "prism/results/statistics.h"

namespace prism::harness {

// Service-level objectives; a request meets them when every one set holds.
// TPOT is only checked for requests with two or more output tokens.
struct Slo {
  std::optional<double> ttft_s;
  std::optional<double> tpot_s;
  std::optional<double> e2e_s;
  bool empty() const { return !ttft_s && !tpot_s && !e2e_s; }
};

// "ttft=500ms,tpot=50ms,e2e=10s" (units us, ms, s; a bare number is ms).
// Throws std::invalid_argument naming the offending part.
Slo parse_slo(const std::string& text);
std::string to_string(const Slo& slo);

struct MetricsOptions {
  Slo slo;
  std::vector<double> percentiles = {50, 90, 95, 99, 99.9};
  results::BootstrapOptions bootstrap;
  // Upper edges of prompt-length buckets; the last bucket is open-ended.
  std::vector<std::uint32_t> context_bucket_edges = {1024, 4096, 16384, 32768, 65536, 131072};
};

struct PercentileValue {
  double percentile = 0;  // in [0, 100]
  results::Estimate estimate;
};

// A distribution of seconds.
struct Distribution {
  std::size_t count = 0;
  results::Estimate mean;
  double min = 0;
  double max = 0;
  std::vector<PercentileValue> percentiles;
  // The estimate of a requested percentile; NaN estimate when absent.
  results::Estimate at(double percentile) const;
};

Distribution summarize(std::span<const double> values, const MetricsOptions& options);

struct GroupMetrics {
  std::string label;         // "<=4096", "turn 2", ...
  std::size_t requests = 0;  // measured (ok, not warm-up)
  std::size_t errors = 0;
  Distribution ttft;
  Distribution tpot;
  Distribution e2e;
};

struct Metrics {
  std::size_t requests = 0;  // not warm-up
  std::size_t succeeded = 0;
  std::size_t failed = 0;
  std::size_t cancelled = 0;
  std::size_t warmup = 0;
  std::map<std::string, std::size_t> errors_by_class;
  double duration_s = 0;
  std::uint64_t input_tokens = 0;
  std::uint64_t output_tokens = 0;
  double request_throughput = 0;  // succeeded requests per second
  double input_token_throughput = 0;
  double output_token_throughput = 0;
  Slo slo;
  std::size_t slo_met = 0;
  double goodput = 0;  // requests per second meeting the SLOs (all succeeded ones without SLOs)
  Distribution ttft, tpot, itl, e2e, normalized_latency, lateness;
  std::vector<GroupMetrics> by_context;
  std::vector<GroupMetrics> by_turn;
};

Metrics compute_metrics(std::span<const results::Observation> observations,
                        const MetricsOptions& options = {});
nlohmann::json to_json(const Metrics& metrics);

// The end-of-run table: counts, throughput, goodput, then one row per
// quantity with mean and percentiles in milliseconds, and the p99's CI.
std::string format_summary(const Metrics& metrics);

}  // namespace prism::harness
