#include <catch2/catch.hpp>

#include <random>
#include <vector>

#include "prism/harness/metrics.h"

using prism::harness::compute_metrics;
using prism::harness::MetricsOptions;
using prism::harness::parse_slo;
using prism::results::ErrorClass;
using prism::results::Observation;
using prism::results::RequestStatus;

namespace {

Observation ok(double scheduled, double sent, std::vector<double> tokens, double completed,
               std::uint32_t prompt = 10, std::uint32_t turn = 0) {
  Observation o;
  o.scheduled_s = scheduled;
  o.sent_s = sent;
  o.token_times_s = std::move(tokens);
  o.completed_s = completed;
  o.completion_tokens = static_cast<std::uint32_t>(o.token_times_s.size());
  o.prompt_tokens = prompt;
  o.turn = turn;
  return o;
}

// A: four tokens; B: one token; C: zero tokens; D: a timeout; E: warm-up.
std::vector<Observation> hand_computed() {
  std::vector<Observation> v;
  v.push_back(ok(1.0, 1.1, {1.5, 1.7, 1.8, 2.1}, 2.1, 100, 0));
  v.push_back(ok(2.0, 2.0, {2.3}, 2.3, 2000, 1));
  v.push_back(ok(2.5, 2.5, {}, 2.6, 10, 0));
  Observation d = ok(3.0, 3.0, {}, 4.0);
  d.status = RequestStatus::kError;
  d.error = ErrorClass::kTimeout;
  v.push_back(d);
  Observation e = ok(0.0, 0.0, {0.1, 0.2}, 0.2);
  e.warmup = true;
  v.push_back(e);
  return v;
}

MetricsOptions fast_options() {
  MetricsOptions o;
  o.bootstrap.resamples = 500;
  return o;
}

}  // namespace

TEST_CASE("Metric math on hand-computed requests: TTFT, TPOT, ITL, E2E, normalized latency") {
  const auto obs = hand_computed();
  const auto m = compute_metrics(obs, fast_options());
  REQUIRE(m.requests == 4);
  REQUIRE(m.succeeded == 3);
  REQUIRE(m.failed == 1);
  REQUIRE(m.warmup == 1);
  // TTFT: A 0.5 s, B 0.3 s; C produced no token so it has none.
  REQUIRE(m.ttft.count == 2);
  REQUIRE(m.ttft.mean.value == Approx(0.4));
  REQUIRE(m.ttft.min == Approx(0.3));
  // TPOT = (E2E - TTFT) / (tokens - 1) = (1.1 - 0.5) / 3 for A only; one-token B has none.
  REQUIRE(m.tpot.count == 1);
  REQUIRE(m.tpot.mean.value == Approx(0.2));
  // ITL: A's gaps only.
  REQUIRE(m.itl.count == 3);
  REQUIRE(m.itl.min == Approx(0.1));
  REQUIRE(m.itl.max == Approx(0.3));
  // E2E of the three successes, the zero-token one included.
  REQUIRE(m.e2e.count == 3);
  REQUIRE(m.e2e.min == Approx(0.1));
  REQUIRE(m.e2e.max == Approx(1.1));
  // Normalized latency: E2E per output token, zero-token requests excluded.
  REQUIRE(m.normalized_latency.count == 2);
  REQUIRE(m.normalized_latency.min == Approx(0.275));
  REQUIRE(m.normalized_latency.max == Approx(0.3));
  // Lateness: A was sent 0.1 s after it was due.
  REQUIRE(m.lateness.max == Approx(0.1));
}

TEST_CASE("Throughput uses the measurement window from first schedule to last completion") {
  const auto m = compute_metrics(hand_computed(), fast_options());
  REQUIRE(m.duration_s == Approx(3.0));
  REQUIRE(m.request_throughput == Approx(1.0));
  REQUIRE(m.output_tokens == 5);
  REQUIRE(m.output_token_throughput == Approx(5.0 / 3.0));
  REQUIRE(m.input_tokens == 2110);
  REQUIRE(m.input_token_throughput == Approx(2110.0 / 3.0));
}

TEST_CASE("Errors are counted by class and warm-up requests are excluded everywhere") {
  const auto m = compute_metrics(hand_computed(), fast_options());
  REQUIRE(m.errors_by_class.size() == 1);
  REQUIRE(m.errors_by_class.at("timeout") == 1);
  const auto j = prism::harness::to_json(m);
  REQUIRE(j["requests"]["warmup_excluded"] == 1);
  REQUIRE(j["errors_by_class"]["timeout"] == 1);
}

TEST_CASE("Goodput counts requests meeting every SLO; TPOT is not required of one-token requests") {
  auto options = fast_options();
  options.slo = parse_slo("ttft=400ms");
  auto m = compute_metrics(hand_computed(), options);
  REQUIRE(m.slo_met == 1);  // B only: A's TTFT is 500 ms, C never produced a token
  REQUIRE(m.goodput == Approx(1.0 / 3.0));
  options.slo = parse_slo("tpot=150ms");
  m = compute_metrics(hand_computed(), options);
  REQUIRE(m.slo_met == 2);  // B and C have no TPOT; A's is 200 ms
  options.slo = parse_slo("e2e=1s,ttft=1s");
  m = compute_metrics(hand_computed(), options);
  REQUIRE(m.slo_met == 1);  // A's E2E is 1.1 s; C has no first token to meet a TTFT bound
}

TEST_CASE("SLO text is parsed with units and bad parts are named") {
  const auto slo = parse_slo("ttft=500ms,tpot=50ms,e2e=2s");
  REQUIRE(*slo.ttft_s == Approx(0.5));
  REQUIRE(*slo.tpot_s == Approx(0.05));
  REQUIRE(*slo.e2e_s == Approx(2.0));
  REQUIRE(*parse_slo("ttft=250us").ttft_s == Approx(250e-6));
  REQUIRE(*parse_slo("ttft=20").ttft_s == Approx(0.02));
  REQUIRE_THROWS_WITH(parse_slo("ttft"), Catch::Contains("NAME=DURATION"));
  REQUIRE_THROWS_WITH(parse_slo("ttft=abc"), Catch::Contains("ttft=abc"));
  REQUIRE_THROWS_WITH(parse_slo("itl=5ms"), Catch::Contains("unknown metric 'itl'"));
  REQUIRE_THROWS_WITH(parse_slo("ttft=-1ms"), Catch::Contains("positive"));
  REQUIRE_THROWS_WITH(parse_slo("ttft=5min"), Catch::Contains("unknown unit 'min'"));
  REQUIRE_THROWS(parse_slo(""));
}

TEST_CASE("Percentiles follow the type-7 definition on reference values") {
  std::vector<double> v;
  for (int i = 1; i <= 10; ++i) v.push_back(i);
  const auto d = prism::harness::summarize(v, fast_options());
  REQUIRE(d.at(50).value == Approx(5.5));
  REQUIRE(d.at(90).value == Approx(9.1));
  REQUIRE(d.at(95).value == Approx(9.55));
  REQUIRE(d.at(99).value == Approx(9.91));
  REQUIRE(d.at(99.9).value == Approx(9.991));
  REQUIRE(d.mean.value == Approx(5.5));
}

TEST_CASE("Bootstrap CI of the median matches the order-statistic interval and is reproducible") {
  std::vector<double> v;
  for (int i = 1; i <= 1000; ++i) v.push_back(i);
  const auto d = prism::harness::summarize(v, fast_options());
  const auto median = d.at(50);
  REQUIRE(median.value == Approx(500.5));
  // Reference: ranks n/2 -+ 1.96 sqrt(n/4) = 500.5 -+ 31.
  REQUIRE(median.ci_low > 455);
  REQUIRE(median.ci_low < 490);
  REQUIRE(median.ci_high > 511);
  REQUIRE(median.ci_high < 546);
  const auto again = prism::harness::summarize(v, fast_options());
  REQUIRE(again.at(50).ci_low == median.ci_low);
  REQUIRE(again.at(50).ci_high == median.ci_high);
}

TEST_CASE("No percentile interval where the sample cannot support one, as in the store") {
  std::vector<double> v;
  for (int i = 1; i <= 38; ++i) v.push_back(i);
  const auto small = prism::harness::summarize(v, fast_options());
  CHECK(small.at(50).has_ci());
  CHECK(small.at(99).value == Approx(37.63));  // type 7 still reported
  CHECK_FALSE(small.at(99).has_ci());          // 38 samples cannot bound p99 at 95 %
  CHECK_FALSE(small.at(99.9).has_ci());
  for (int i = 39; i <= 400; ++i) v.push_back(i);
  const auto large = prism::harness::summarize(v, fast_options());
  CHECK(large.at(99).has_ci());  // 400 >= 368: supported
  CHECK_FALSE(large.at(99.9).has_ci());
  const auto none = prism::harness::summarize(std::vector<double>{}, fast_options());
  CHECK(none.count == 0);
}

TEST_CASE("Bootstrap CI of the mean has the width the normal theory predicts") {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal(10.0, 2.0);
  std::vector<double> v;
  for (int i = 0; i < 400; ++i) v.push_back(normal(rng));
  const auto d = prism::harness::summarize(v, fast_options());
  REQUIRE(d.mean.ci_low < d.mean.value);
  REQUIRE(d.mean.value < d.mean.ci_high);
  // 2 * 1.96 * sigma / sqrt(n) = 0.392
  const double width = d.mean.ci_high - d.mean.ci_low;
  REQUIRE(width > 0.3);
  REQUIRE(width < 0.5);
  REQUIRE(d.mean.ci_low < 10.0);
  REQUIRE(d.mean.ci_high > 10.0);
}

TEST_CASE("An empty distribution has no values and serializes without numbers") {
  const auto d = prism::harness::summarize(std::vector<double>{}, fast_options());
  REQUIRE(d.count == 0);
  REQUIRE_FALSE(d.at(50).has_ci());
  const auto m = compute_metrics(std::vector<Observation>{}, fast_options());
  REQUIRE(m.requests == 0);
  REQUIRE(m.request_throughput == 0);
  const auto j = prism::harness::to_json(m);
  REQUIRE(j["ttft"]["p50"]["value"].is_null());
}

TEST_CASE("Breakdowns group requests by context-length bucket and by turn") {
  const auto m = compute_metrics(hand_computed(), fast_options());
  REQUIRE(m.by_context.size() == 2);
  REQUIRE(m.by_context[0].label == "<=1024");
  REQUIRE(m.by_context[0].requests == 2);  // A (100) and C (10); D failed
  REQUIRE(m.by_context[0].errors == 1);
  REQUIRE(m.by_context[1].label == "<=4096");
  REQUIRE(m.by_context[1].ttft.at(50).value == Approx(0.3));
  REQUIRE(m.by_turn.size() == 2);
  REQUIRE(m.by_turn[1].label == "turn 1");
  REQUIRE(m.by_turn[1].requests == 1);
  const auto summary = prism::harness::format_summary(m);
  REQUIRE_THAT(summary, Catch::Contains("TTFT") && Catch::Contains("timeout 1") &&
                            Catch::Contains("turn 1"));
}
