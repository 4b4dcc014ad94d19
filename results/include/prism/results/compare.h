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
//
// Two units of test:
//   request  one run per side (compare_samples, compare_runs): the tests above
//            treat requests as independent draws. Valid only when the runs
//            differ by nothing but the change: no drift of the machine between
//            them. On a shared or busy machine run-to-run drift is larger than
//            a 5% change and this test flags it as a change.
//   run      several runs per side (compare_run_sets), best interleaved
//            (base, candidate, candidate, base, ...): each run reduces to its
//            metric value, and the test is on runs, so drift between runs is
//            part of the noise it measures. Paired when both sides have the
//            same number of runs (pair i = base[i], candidate[i], run next to
//            each other): one-sample t-test on d_i = ln(candidate_i / base_i);
//            unpaired otherwise (Welch's t-test on ln values). Effect:
//            exp(mean d) - 1 with its t interval. Needs >= 2 runs per side.
#pragma once

#include <span>
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
  bool paired = true;  // run sets of equal size: pair base[i] with candidate[i]
};

enum class TestUnit { kRequest, kRun };
std::string to_string(TestUnit unit);

const std::vector<std::string>& default_compare_metrics();

struct MetricComparison {
  MetricSpec spec;
  double base = 0.0;  // statistic, stored units
  double candidate = 0.0;
  std::size_t base_n = 0;  // samples (request unit) or runs (run unit)
  std::size_t candidate_n = 0;
  double change = 0.0;  // candidate / base - 1
  Interval change_ci;
  double confidence = 0.95;  // of change_ci, after the multiple-comparison split
  std::string test;
  double p_value = 1.0;
  double mann_whitney_p = 1.0;  // NaN for the run-level test (not computed)
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
  TestUnit unit = TestUnit::kRequest;
  bool paired = false;        // run unit: paired t-test (else Welch)
  std::size_t base_runs = 1;  // runs on each side
  std::size_t candidate_runs = 1;
  std::size_t base_requests = 0;  // measured requests, all runs of a side
  std::size_t candidate_requests = 0;
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

// The run-level gate: several runs per side, the run is the unit of the test
// (see the top of this file). Throws std::invalid_argument with fewer than two
// runs on a side.
CompareReport compare_run_sets(std::span<const RunSamples> base,
                               std::span<const RunSamples> candidate,
                               const CompareOptions& options);
// Checks that every run measured the base's workload (throws WorkloadMismatch
// unless options.force), then compare_run_sets. base_id / candidate_id list
// the run ids, comma-separated.
CompareReport compare_run_sets(std::span<const Run> base, std::span<const RunSamples> base_samples,
                               std::span<const Run> candidate,
                               std::span<const RunSamples> candidate_samples,
                               const CompareOptions& options);

std::string compare_markdown(const CompareReport& report);
std::string compare_junit(const CompareReport& report);

// Parses "5%", "5", "0.05%" ... into a fraction (5% -> 0.05). A bare number is
// taken as percent. Throws std::invalid_argument.
double parse_percentage(const std::string& text);

}  // namespace prism::results
