// The CI gate: compare a candidate run against a baseline on per-request
// samples and decide, per metric, whether it got slower.
//
// For each metric (a latency statistic such as ttft.p99):
//   effect   relative change of the statistic, candidate / base - 1, with a
//            percentile-bootstrap CI (both runs resampled independently);
//   test     exact permutation test for a quantile (quantile_test) for p<N>
//            metrics, Monte Carlo permutation test for means; Mann-Whitney U
//            on the whole distribution is reported alongside;
//   level    alpha is split across the metrics compared (Bonferroni), so the
//            chance that an unchanged system fails the gate is at most alpha;
//   verdict  slower / faster when the test is significant and the CI agrees
//            on the sign; same when not significant and the CI lies within
//            +-same_within; unsure otherwise (too few samples to tell);
//   gate     fails (exit 1) when a metric is "slower" by more than max_regression.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "prism/results/metrics.h"
#include "prism/results/run_file.h"
#include "prism/results/samples.h"
#include "prism/results/statistics.h"

namespace prism::results {

enum class Verdict { kSame, kFaster, kSlower, kUnsure };
std::string to_string(Verdict verdict);

struct CompareOptions {
  std::vector<std::string> metrics;  // empty: default_compare_metrics()
  double max_regression = 0.0;       // fraction: 0.05 fails only on slowdowns beyond 5%
  double same_within = 0.05;         // "same" needs the CI inside +-5%
  double alpha = 0.05;
  std::size_t resamples = 2000;     // bootstrap resamples
  std::size_t permutations = 1000;  // for mean metrics
  std::uint64_t seed = 1;
  bool force = false;  // compare runs of different workloads anyway
};

const std::vector<std::string>& default_compare_metrics();

struct MetricComparison {
  MetricSpec spec;
  double base = 0.0;  // statistic, stored units
  double candidate = 0.0;
  std::size_t base_n = 0;
  std::size_t candidate_n = 0;
  double change = 0.0;  // candidate / base - 1
  Interval change_ci;
  double confidence = 0.95;  // of change_ci, after the multiple-comparison split
  std::string test;
  double p_value = 1.0;
  double mann_whitney_p = 1.0;
  double probability_candidate_greater = 0.5;
  Verdict verdict = Verdict::kUnsure;
  bool regression = false;  // fails the gate
  std::string note;
};

struct CompareReport {
  std::string base_id;
  std::string candidate_id;
  std::string base_workload;
  std::string candidate_workload;
  double alpha = 0.05;
  double alpha_per_metric = 0.05;
  double max_regression = 0.0;
  std::vector<MetricComparison> metrics;
  std::vector<std::string> warnings;
  bool regression = false;  // any metric failed the gate
};

// Thrown when the runs measured different workloads and --force was not given.
class WorkloadMismatch : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Empty when the runs are comparable; otherwise the reason they are not.
std::string workload_mismatch_reason(const Run& base, const Run& candidate);

CompareReport compare_samples(const RunSamples& base, const RunSamples& candidate,
                              const CompareOptions& options);
// Checks the workloads (throws WorkloadMismatch unless options.force) and
// compares the runs' observations.
CompareReport compare_runs(const Run& base, const RunSamples& base_samples, const Run& candidate,
                           const RunSamples& candidate_samples, const CompareOptions& options);

std::string compare_markdown(const CompareReport& report);
std::string compare_junit(const CompareReport& report);

// Parses "5%", "5", "0.05%" ... into a fraction (5% -> 0.05). A bare number is
// taken as percent. Throws std::invalid_argument.
double parse_percentage(const std::string& text);

}  // namespace prism::results
