// The run-level gate (compare_run_sets): several runs per side, the run is
// the unit of the test, so drift of the machine between runs is measured as
// noise instead of being mistaken for a change. Simulated runs: every run of
// a system draws a drift factor exp(N(0, sigma)) that slows all its requests.
#include <cmath>
#include <random>

#include <catch2/catch.hpp>

#include "prism/results/compare.h"
#include "synthetic.h"

using namespace prism::results;
using prism::test::synthetic_run;
using prism::test::synthetic_samples;
using prism::test::SyntheticOptions;

namespace {

// What results/README.md recommends for the run-level gate: 10 interleaved
// pairs of runs of 400 measured requests each.
constexpr std::size_t kRecommendedPairs = 10;
constexpr std::size_t kRecommendedRequests = 400;
// Run-to-run spread of a whole run's speed. 0.01 is about what the reference
// engine showed on the quiet machine (e2e p50 pair sd 0.009 in ln units).
constexpr double kQuietDrift = 0.01;

RunSamples drifted_run(std::size_t requests, double slowdown, double drift, std::mt19937_64& gen) {
  std::normal_distribution<double> noise(0.0, drift);
  return synthetic_samples(requests, slowdown * std::exp(noise(gen)), gen());
}

std::vector<RunSamples> run_set(std::size_t runs, std::size_t requests, double slowdown,
                                double drift, std::mt19937_64& gen) {
  std::vector<RunSamples> out;
  for (std::size_t i = 0; i < runs; ++i) out.push_back(drifted_run(requests, slowdown, drift, gen));
  return out;
}

// A run whose every measured request has the same TTFT, TPOT and E2E: its
// per-run percentiles are exactly `value`.
RunSamples constant_run(double value) {
  RunSamples s;
  for (int i = 0; i < 5; ++i) {
    s.ttft_s.push_back(value);
    s.tpot_s.push_back(value);
    s.e2e_s.push_back(value);
  }
  s.requests = s.succeeded = 5;
  return s;
}

}  // namespace

TEST_CASE("run-level A/A: under run-to-run drift the same system fails in at most 5% of 200") {
  std::mt19937_64 gen(2026);
  int false_regressions = 0;
  constexpr int kRepeats = 200;
  for (int i = 0; i < kRepeats; ++i) {
    const auto a = run_set(kRecommendedPairs, kRecommendedRequests, 1.0, kQuietDrift, gen);
    const auto b = run_set(kRecommendedPairs, kRecommendedRequests, 1.0, kQuietDrift, gen);
    if (compare_run_sets(a, b, {}).regression) ++false_regressions;
  }
  INFO("false regressions: " << false_regressions << " of " << kRepeats);
  CHECK(false_regressions <= kRepeats * 5 / 100);
}

TEST_CASE(
    "run-level A/B: a 5% slowdown is caught with power of at least 0.9 at the recommended "
    "size") {
  std::mt19937_64 gen(7);
  int caught = 0;
  constexpr int kRepeats = 100;
  for (int i = 0; i < kRepeats; ++i) {
    const auto base = run_set(kRecommendedPairs, kRecommendedRequests, 1.0, kQuietDrift, gen);
    const auto slow = run_set(kRecommendedPairs, kRecommendedRequests, 1.05, kQuietDrift, gen);
    if (compare_run_sets(base, slow, {}).regression) ++caught;
  }
  INFO("caught " << caught << " of " << kRepeats);
  CHECK(caught >= kRepeats * 90 / 100);
}

TEST_CASE("drift between runs fools the per-request test but not the run-level test") {
  // 3% run-to-run drift, as on a machine with other work on it.
  constexpr double kDrift = 0.03;
  std::mt19937_64 gen(11);
  CompareOptions options;
  options.resamples = 500;
  int per_request_false = 0, per_run_false = 0;
  constexpr int kRepeats = 100;
  for (int i = 0; i < kRepeats; ++i) {
    const auto a = run_set(kRecommendedPairs, kRecommendedRequests, 1.0, kDrift, gen);
    const auto b = run_set(kRecommendedPairs, kRecommendedRequests, 1.0, kDrift, gen);
    options.seed = 100 + i;
    // The per-request test sees one large run per side: 4,000 requests each.
    const auto big_a = drifted_run(4000, 1.0, kDrift, gen);
    const auto big_b = drifted_run(4000, 1.0, kDrift, gen);
    if (compare_samples(big_a, big_b, options).regression) ++per_request_false;
    if (compare_run_sets(a, b, options).regression) ++per_run_false;
  }
  INFO("per-request false regressions " << per_request_false << ", run-level " << per_run_false);
  CHECK(per_request_false > kRepeats * 20 / 100);  // far above alpha: drift reads as change
  CHECK(per_run_false <= kRepeats * 5 / 100);
}

TEST_CASE("the paired run-level test matches a hand-computed t-test") {
  // Pairs (100, 105), (110, 116), (120, 125): d = ln(1.05), ln(116/110), ln(125/120).
  const std::vector<RunSamples> base{constant_run(100), constant_run(110), constant_run(120)};
  const std::vector<RunSamples> cand{constant_run(105), constant_run(116), constant_run(125)};
  CompareOptions options;
  options.metrics = {"e2e.p50"};
  options.alpha = 0.05;
  const auto report = compare_run_sets(base, cand, options);
  REQUIRE(report.metrics.size() == 1);
  const auto& m = report.metrics[0];
  const std::vector<double> d{std::log(1.05), std::log(116.0 / 110.0), std::log(125.0 / 120.0)};
  const double mean_d = (d[0] + d[1] + d[2]) / 3.0;
  double ss = 0.0;
  for (double x : d) ss += (x - mean_d) * (x - mean_d);
  const double se = std::sqrt(ss / 2.0) / std::sqrt(3.0);
  const double t = mean_d / se;
  // df = 2: F(t) = 1/2 + t / (2 sqrt(2 + t^2)), so p = 1 - t / sqrt(2 + t^2).
  CHECK(m.p_value == Approx(1.0 - t / std::sqrt(2.0 + t * t)).epsilon(1e-9));
  CHECK(m.change == Approx(std::exp(mean_d) - 1.0).epsilon(1e-12));
  // 95% interval: t_{0.975, 2} = 4.302653.
  CHECK(m.change_ci.low == Approx(std::exp(mean_d - 4.302653 * se) - 1.0).epsilon(1e-6));
  CHECK(m.change_ci.high == Approx(std::exp(mean_d + 4.302653 * se) - 1.0).epsilon(1e-6));
  CHECK(m.base == Approx(std::cbrt(100.0 * 110.0 * 120.0)));  // geometric mean
  CHECK(m.base_n == 3);
  CHECK(report.unit == TestUnit::kRun);
  CHECK(report.paired);
  CHECK(m.test.find("paired t-test") == 0);
  // t = 9.1 on 2 df: p = 0.012 < 0.05 and the interval excludes 0: slower.
  CHECK(m.verdict == Verdict::kSlower);
  CHECK(report.regression);
}

TEST_CASE("run sets of different sizes, or --unpaired, use Welch's t-test") {
  std::mt19937_64 gen(3);
  const auto a = run_set(4, 300, 1.0, 0.01, gen);
  const auto b = run_set(6, 300, 1.0, 0.01, gen);
  auto report = compare_run_sets(a, b, {});
  CHECK_FALSE(report.paired);
  CHECK(report.metrics[0].test.find("Welch") == 0);
  CHECK(report.base_runs == 4);
  CHECK(report.candidate_runs == 6);
  CHECK(report.base_requests == 1200);
  CompareOptions unpaired;
  unpaired.paired = false;
  report = compare_run_sets(a, run_set(4, 300, 1.0, 0.01, gen), unpaired);
  CHECK_FALSE(report.paired);
}

TEST_CASE("identical run sets compare as same with p = 1 and no change") {
  std::mt19937_64 gen(5);
  const auto a = run_set(6, 500, 1.0, 0.01, gen);
  const auto report = compare_run_sets(a, a, {});
  CHECK_FALSE(report.regression);
  for (const auto& m : report.metrics) {
    INFO(m.spec.name);
    CHECK(m.p_value == 1.0);
    CHECK(m.change == 0.0);
    CHECK(m.verdict == Verdict::kSame);
  }
}

TEST_CASE("the run-level test needs two runs a side and per-request latency metrics") {
  std::mt19937_64 gen(9);
  const auto two = run_set(2, 100, 1.0, 0.01, gen);
  const auto one = run_set(1, 100, 1.0, 0.01, gen);
  CHECK_THROWS_WITH(compare_run_sets(two, one, {}), Catch::Contains("at least two runs"));
  CompareOptions options;
  options.metrics = {"goodput"};
  CHECK_THROWS_AS(compare_run_sets(two, two, options), std::invalid_argument);
  // Two pairs work, with a warning that so few pairs only see large changes.
  const auto report = compare_run_sets(two, two, {});
  REQUIRE_FALSE(report.warnings.empty());
  CHECK(report.warnings.front().find("degrees of freedom") != std::string::npos);
}

TEST_CASE("a run without samples of a metric makes that metric unsure, not a verdict") {
  std::mt19937_64 gen(13);
  auto a = run_set(3, 100, 1.0, 0.01, gen);
  const auto b = run_set(3, 100, 1.0, 0.01, gen);
  a[1].tpot_s.clear();
  CompareOptions options;
  options.metrics = {"tpot.p50", "ttft.p50"};
  const auto report = compare_run_sets(a, b, options);
  CHECK(report.metrics[0].verdict == Verdict::kUnsure);
  CHECK(report.metrics[0].note.find("no samples") != std::string::npos);
  CHECK(report.metrics[1].note.find("no samples") == std::string::npos);  // ttft has them
  CHECK(std::isfinite(report.metrics[1].change));
}

TEST_CASE("run sets are refused when any run measured another workload, unless forced") {
  SyntheticOptions o;
  o.requests = 60;
  std::vector<Run> base, cand;
  for (std::uint64_t s = 1; s <= 3; ++s) {
    o.seed = s;
    base.push_back(synthetic_run(o));
    o.seed = s + 10;
    cand.push_back(synthetic_run(o));
  }
  o.workload = "rag";
  o.seed = 99;
  cand[2] = synthetic_run(o);
  std::vector<RunSamples> bs, cs;
  for (const auto& r : base) bs.push_back(collect_samples(r.observations));
  for (const auto& r : cand) cs.push_back(collect_samples(r.observations));
  try {
    compare_run_sets(base, bs, cand, cs, {});
    FAIL("expected WorkloadMismatch");
  } catch (const WorkloadMismatch& e) {
    const std::string what = e.what();
    CHECK(what.find(cand[2].run_id) != std::string::npos);
    CHECK(what.find("'rag'") != std::string::npos);
    CHECK(what.find("--force") != std::string::npos);
  }
  CompareOptions forced;
  forced.force = true;
  const auto report = compare_run_sets(base, bs, cand, cs, forced);
  CHECK(report.warnings.front().find("forced: " + cand[2].run_id) == 0);
  CHECK(report.base_id == base[0].run_id + "," + base[1].run_id + "," + base[2].run_id);
  const std::string md = compare_markdown(report);
  CHECK(md.find("Unit of the test: the run (3 base, 3 candidate, paired") != std::string::npos);
  CHECK(md.find("Samples: base 3 runs (180 requests)") != std::string::npos);
}

TEST_CASE("pairs that differ by exactly the same amount give no test, so the verdict is unsure") {
  // Zero spread between pairs (the same runs listed twice): a t-test has
  // nothing to measure the difference against.
  const std::vector<RunSamples> base{constant_run(100), constant_run(120)};
  const std::vector<RunSamples> cand{constant_run(110), constant_run(132)};
  CompareOptions options;
  options.metrics = {"e2e.p50"};
  const auto report = compare_run_sets(base, cand, options);
  const auto& m = report.metrics.at(0);
  CHECK(m.change == Approx(0.10));
  CHECK(m.verdict == Verdict::kUnsure);
  CHECK(std::isnan(m.p_value));
  CHECK(m.note.find("no spread between runs") != std::string::npos);
  CHECK_FALSE(report.regression);
}
