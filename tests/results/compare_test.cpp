#include <catch2/catch.hpp>

#include "prism/results/compare.h"
#include "synthetic.h"

using namespace prism::results;
using prism::test::synthetic_run;
using prism::test::synthetic_samples;
using prism::test::SyntheticOptions;

namespace {
// The per-request gate's sample size (one run a side, no drift between the
// runs) for catching a 5% slowdown: requests per run, after warmup. With drift
// between runs results/README.md recommends the run-level gate instead
// (tests/results/run_gate_test.cpp).
constexpr std::size_t kRecommendedRequests = 5000;
}  // namespace

TEST_CASE("A/A: the same system twice fails the gate in at most 5% of 200 repeats at alpha 0.05") {
  CompareOptions options;
  options.alpha = 0.05;
  options.resamples = 1000;
  int false_regressions = 0;
  int any_slower = 0;
  constexpr int kRepeats = 200;
  for (int i = 0; i < kRepeats; ++i) {
    const auto a = synthetic_samples(2000, 1.0, 1000 + 2 * i);
    const auto b = synthetic_samples(2000, 1.0, 1001 + 2 * i);
    options.seed = 77 + i;
    const auto report = compare_samples(a, b, options);
    if (report.regression) ++false_regressions;
    for (const auto& m : report.metrics)
      if (m.verdict == Verdict::kSlower) {
        ++any_slower;
        break;
      }
  }
  INFO("false regressions: " << false_regressions << " of " << kRepeats);
  CHECK(false_regressions <= kRepeats * 5 / 100);
  CHECK(any_slower <= kRepeats * 5 / 100);
}

TEST_CASE("A/B: a real 5% slowdown is caught with power of at least 0.9 at the recommended size") {
  CompareOptions options;
  options.resamples = 1000;
  int caught = 0;
  constexpr int kRepeats = 100;
  for (int i = 0; i < kRepeats; ++i) {
    const auto base = synthetic_samples(kRecommendedRequests, 1.0, 5000 + 2 * i);
    const auto slow = synthetic_samples(kRecommendedRequests, 1.05, 5001 + 2 * i);
    options.seed = 99 + i;
    if (compare_samples(base, slow, options).regression) ++caught;
  }
  INFO("caught " << caught << " of " << kRepeats);
  CHECK(caught >= kRepeats * 90 / 100);
}

TEST_CASE("A/B: a 5% speed-up is reported as faster and passes the gate") {
  const auto base = synthetic_samples(20000, 1.0, 1);
  const auto fast = synthetic_samples(20000, 1.0 / 1.05, 2);
  const auto report = compare_samples(base, fast, {});
  CHECK_FALSE(report.regression);
  for (const auto& m : report.metrics) {
    INFO(m.spec.name);
    CHECK(m.verdict != Verdict::kSlower);
  }
  CHECK(report.metrics[0].verdict == Verdict::kFaster);  // ttft.p50
  CHECK(report.metrics[0].change == Approx(-0.048).margin(0.02));
}

TEST_CASE("a slowdown below --max-regression is slower but does not fail the gate") {
  const auto base = synthetic_samples(20000, 1.0, 3);
  const auto slow = synthetic_samples(20000, 1.03, 4);
  CompareOptions options;
  options.metrics = {"ttft.p50"};
  options.max_regression = 0.10;
  auto report = compare_samples(base, slow, options);
  REQUIRE(report.metrics.size() == 1);
  CHECK(report.metrics[0].verdict == Verdict::kSlower);
  CHECK_FALSE(report.regression);
  options.max_regression = 0.0;
  CHECK(compare_samples(base, slow, options).regression);
}

TEST_CASE("too few samples to rule out a change give an unsure verdict, not same") {
  const auto base = synthetic_samples(20, 1.0, 5);
  const auto other = synthetic_samples(20, 1.0, 6);
  const auto report = compare_samples(base, other, {});
  CHECK_FALSE(report.regression);
  REQUIRE(report.metrics[1].spec.name == "ttft.p99");
  CHECK(report.metrics[1].verdict == Verdict::kUnsure);
  CHECK(report.metrics[1].change_ci.high - report.metrics[1].change_ci.low > 0.5);
  const auto tiny = synthetic_samples(1, 1.0, 7);
  const auto none = compare_samples(base, tiny, {});
  CHECK(none.metrics[0].verdict == Verdict::kUnsure);
  CHECK(none.metrics[0].note == "too few samples");
}

TEST_CASE("the same samples compare as same with p = 1 and a CI around zero") {
  const auto a = synthetic_samples(5000, 1.0, 8);
  const auto report = compare_samples(a, a, {});
  CHECK_FALSE(report.regression);
  CHECK(report.metrics[0].verdict == Verdict::kSame);
  CHECK(report.metrics[0].p_value == Approx(1.0));
  CHECK(report.metrics[0].change == 0.0);
  CHECK(report.metrics[0].change_ci.low < 0.0);
  CHECK(report.metrics[0].change_ci.high > 0.0);
}

TEST_CASE("compare refuses runs of different workloads unless forced, and says why") {
  SyntheticOptions o;
  o.requests = 50;
  const Run base = synthetic_run(o);
  o.workload = "rag";
  o.seed = 2;
  const Run other = synthetic_run(o);
  const auto bs = collect_samples(base.observations);
  const auto os = collect_samples(other.observations);
  try {
    compare_runs(base, bs, other, os, {});
    FAIL("expected WorkloadMismatch");
  } catch (const WorkloadMismatch& e) {
    const std::string what = e.what();
    CHECK(what.find("workloads differ") != std::string::npos);
    CHECK(what.find("'chat'") != std::string::npos);
    CHECK(what.find("'rag'") != std::string::npos);
    CHECK(what.find("--force") != std::string::npos);
  }
  CompareOptions forced;
  forced.force = true;
  const auto report = compare_runs(base, bs, other, os, forced);
  REQUIRE_FALSE(report.warnings.empty());
  CHECK(report.warnings.front().find("forced") == 0);
}

TEST_CASE("compare rejects metrics that are not per-request latencies") {
  const auto a = synthetic_samples(100, 1.0, 1);
  CompareOptions options;
  options.metrics = {"throughput.rps"};
  CHECK_THROWS_AS(compare_samples(a, a, options), std::invalid_argument);
  options.metrics = {"ttft.p1000"};
  CHECK_THROWS_AS(compare_samples(a, a, options), std::invalid_argument);
}

TEST_CASE("the Markdown summary and JUnit XML name the failing metric") {
  const auto base = synthetic_samples(20000, 1.0, 11);
  const auto slow = synthetic_samples(20000, 1.2, 12);
  CompareOptions options;
  options.metrics = {"ttft.p50", "tpot.p50"};
  auto report = compare_samples(base, slow, options);
  report.base_id = "base-run";
  report.candidate_id = "cand<run>";
  REQUIRE(report.regression);
  const std::string md = compare_markdown(report);
  CHECK(md.find("**Result: REGRESSION**") != std::string::npos);
  CHECK(md.find("| ttft.p50 |") != std::string::npos);
  CHECK(md.find("**slower**") != std::string::npos);
  const std::string xml = compare_junit(report);
  CHECK(xml.find("<testsuites name=\"prism compare\" tests=\"2\" failures=\"2\">") !=
        std::string::npos);
  CHECK(xml.find("<testcase classname=\"prism.compare\" name=\"ttft.p50\">") != std::string::npos);
  CHECK(xml.find("<failure message=\"ttft.p50 slower by +") != std::string::npos);
  CHECK(xml.find("cand&lt;run&gt;") != std::string::npos);
}

TEST_CASE("percentages parse with or without the percent sign") {
  CHECK(parse_percentage("5%") == Approx(0.05));
  CHECK(parse_percentage("2.5") == Approx(0.025));
  CHECK(parse_percentage("0%") == 0.0);
  CHECK_THROWS_AS(parse_percentage("five"), std::invalid_argument);
  CHECK_THROWS_AS(parse_percentage("-3%"), std::invalid_argument);
  CHECK_THROWS_AS(parse_percentage("%"), std::invalid_argument);
}
