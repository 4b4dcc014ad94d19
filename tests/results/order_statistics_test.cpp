// The distribution-free percentile interval (order statistics + exact
// binomial ranks) against hand-computed ranks, against the bootstrap on
// reference data, and its coverage; Student's t against reference values.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include <catch2/catch.hpp>

#include "prism/results/statistics.h"

using namespace prism::results;
using Catch::Detail::Approx;

namespace {

std::vector<double> one_to(std::size_t n) {
  std::vector<double> v(n);
  std::iota(v.begin(), v.end(), 1.0);
  return v;
}

}  // namespace

// Reference ranks: l is the largest with P(B <= l-1) <= 2.5%, u the smallest
// with P(B >= u) <= 2.5%, B ~ Binomial(n, q), computed with exact rational
// arithmetic (Python fractions + math.comb). The median of 100 is the
// textbook case: x(40)..x(61), coverage 1 - 2 * 0.0176 = 0.9648.
TEST_CASE("order-statistic ranks match hand-computed binomial ranks and coverage") {
  struct Case {
    std::size_t n;
    double q, confidence;
    std::size_t lower, upper;
    double coverage;
  };
  const std::vector<Case> cases{
      {100, 0.5, 0.95, 40, 61, 0.9647997997822951},
      {20, 0.5, 0.95, 6, 15, 0.9586105346679688},
      {100, 0.9, 0.95, 84, 96, 0.955690107191223},
      {1000, 0.99, 0.95, 983, 997, 0.9760947634979771},
      {30, 0.25, 0.90, 4, 13, 0.9409570333963436},
  };
  for (const auto& c : cases) {
    INFO("n = " << c.n << ", q = " << c.q);
    const auto r = quantile_ci_ranks(c.n, c.q, c.confidence);
    CHECK(r.lower == c.lower);
    CHECK(r.upper == c.upper);
    CHECK(r.coverage == Approx(c.coverage).epsilon(1e-9));
    CHECK_FALSE(r.lower_clamped);
    CHECK_FALSE(r.upper_clamped);
  }
}

TEST_CASE("order-statistic ranks say when a tail cannot be met and report the real coverage") {
  // p99 of 10 values: the true p99 lies above the maximum with probability
  // 0.99^10 = 0.904, so [x(9), x(10)] covers it only 9.1% of the time.
  auto r = quantile_ci_ranks(10, 0.99, 0.95);
  CHECK(r.lower == 9);
  CHECK(r.upper == 10);
  CHECK(r.upper_clamped);
  CHECK_FALSE(r.lower_clamped);
  CHECK(r.coverage == Approx(0.09135172474836409).epsilon(1e-9));
  // The median of 5 cannot reach 95% on either side: [min, max], 93.75%.
  r = quantile_ci_ranks(5, 0.5, 0.95);
  CHECK(r.lower == 1);
  CHECK(r.upper == 5);
  CHECK(r.lower_clamped);
  CHECK(r.upper_clamped);
  CHECK(r.coverage == Approx(0.9375));
  r = quantile_ci_ranks(1, 0.5, 0.95);
  CHECK(r.lower == 1);
  CHECK(r.upper == 1);
  CHECK_THROWS_AS(quantile_ci_ranks(0, 0.5, 0.95), std::invalid_argument);
  CHECK_THROWS_AS(quantile_ci_ranks(10, 1.5, 0.95), std::invalid_argument);
  CHECK_THROWS_AS(quantile_ci_ranks(10, 0.5, 1.0), std::invalid_argument);
}

TEST_CASE("order-statistic ranks stay exact for millions of samples and extreme quantiles") {
  // Normal approximation as a cross-check at n = 10^7: the ranks sit about
  // z sqrt(n q (1 - q)) from n q.
  const std::size_t n = 10'000'000;
  for (double q : {0.5, 0.99, 0.999}) {
    const auto r = quantile_ci_ranks(n, q, 0.95);
    const double centre = static_cast<double>(n) * q;
    const double spread = 1.959964 * std::sqrt(static_cast<double>(n) * q * (1 - q));
    CHECK(static_cast<double>(r.lower) == Approx(centre - spread).margin(3.0));
    CHECK(static_cast<double>(r.upper) == Approx(centre + spread + 1.0).margin(3.0));
    CHECK(r.coverage >= 0.95);
    CHECK(r.coverage < 0.9503);  // discreteness: each tail overshoots by under one pmf term
  }
  const auto top = quantile_ci_ranks(n, 1.0, 0.95);
  CHECK(top.lower == n);
  CHECK(top.upper == n);
}

TEST_CASE("the percentile interval is the hand-picked order statistics of the sorted values") {
  const auto v = one_to(100);
  const auto e = quantile_with_order_statistic_ci(v, 0.5, 0.95);
  CHECK(e.value == Approx(50.5));  // type 7
  CHECK(e.ci_low == 40.0);         // x(40)
  CHECK(e.ci_high == 61.0);        // x(61)
  CHECK(e.n == 100);
  CHECK(e.confidence == 0.95);
  const auto p90 = quantile_with_order_statistic_ci(v, 0.9, 0.95);
  CHECK(p90.value == Approx(90.1));
  CHECK(p90.ci_low == 84.0);
  CHECK(p90.ci_high == 96.0);
  CHECK(std::isnan(quantile_with_order_statistic_ci(std::vector<double>{}, 0.5).value));
}

TEST_CASE("a percentile with too few samples for its interval gets none, not a narrow one") {
  // p99 needs n >= 368 for the upper tail (0.99^n <= 2.5%); p50 of 5 values
  // cannot reach 95% either. The point estimate stays.
  const auto small = one_to(367);
  auto e = quantile_with_order_statistic_ci(small, 0.99, 0.95);
  CHECK(e.value == Approx(quantile_sorted(small, 0.99)));
  CHECK_FALSE(e.has_ci());
  const auto enough = one_to(368);
  e = quantile_with_order_statistic_ci(enough, 0.99, 0.95);
  CHECK(e.has_ci());
  CHECK(e.ci_high == 368.0);
  CHECK_FALSE(quantile_with_order_statistic_ci(one_to(5), 0.5, 0.95).has_ci());
  CHECK(quantile_with_order_statistic_ci(one_to(6), 0.5, 0.95).has_ci());  // x(1)..x(6): 96.9%
}

TEST_CASE("the percentile interval needs only four values, read through an accessor") {
  const auto v = one_to(100000);
  std::size_t reads = 0;
  const auto e = quantile_with_order_statistic_ci(
      v.size(),
      [&](std::size_t i) {
        ++reads;
        return v.at(i);
      },
      0.999, 0.95);
  CHECK(reads <= 4);
  const auto direct = quantile_with_order_statistic_ci(v, 0.999, 0.95);
  CHECK(e.value == direct.value);
  CHECK(e.ci_low == direct.ci_low);
  CHECK(e.ci_high == direct.ci_high);
}

TEST_CASE("the order-statistic interval agrees with the bootstrap on reference data") {
  std::mt19937_64 gen(2026);
  std::lognormal_distribution<double> dist(std::log(0.2), 0.6);
  std::vector<double> v(20000);
  for (auto& x : v) x = dist(gen);
  std::sort(v.begin(), v.end());
  BootstrapOptions options;
  options.resamples = 20000;
  options.seed = 5;
  for (double q : {0.5, 0.9, 0.99}) {
    INFO("q = " << q);
    const auto exact = quantile_with_order_statistic_ci(v, q, 0.95);
    const auto boot = quantile_with_ci(v, q, options);
    CHECK(exact.value == boot.value);
    // Both estimate the same sampling spread: widths within 10%, ends within
    // a fifth of the width.
    const double width = exact.ci_high - exact.ci_low;
    CHECK(width == Approx(boot.ci_high - boot.ci_low).epsilon(0.10));
    CHECK(exact.ci_low == Approx(boot.ci_low).margin(0.2 * width));
    CHECK(exact.ci_high == Approx(boot.ci_high).margin(0.2 * width));
  }
}

TEST_CASE("the order-statistic interval covers the true quantile at least as often as promised") {
  // Exponential(1): the true p90 is ln 10. 2,000 samples of 50 values.
  std::mt19937_64 gen(99);
  std::exponential_distribution<double> dist(1.0);
  const double truth = std::log(10.0);
  int covered = 0;
  const int trials = 2000;
  std::vector<double> v(50);
  for (int t = 0; t < trials; ++t) {
    for (auto& x : v) x = dist(gen);
    std::sort(v.begin(), v.end());
    const auto e = quantile_with_order_statistic_ci(v, 0.9, 0.95);
    if (e.ci_low <= truth && truth <= e.ci_high) ++covered;
  }
  const double expected = quantile_ci_ranks(50, 0.9, 0.95).coverage;  // exact, >= 0.95
  CHECK(expected >= 0.95);
  // Binomial(2000, 0.95) has a standard deviation of 0.5%: allow four.
  CHECK(static_cast<double>(covered) / trials >= expected - 0.02);
}

TEST_CASE("Student's t CDF and quantiles match closed forms and reference tables") {
  // df = 1 is Cauchy: F(t) = 1/2 + atan(t) / pi. df = 2: F(t) = 1/2 + t / (2 sqrt(2 + t^2)).
  for (double t : {-3.0, -0.5, 0.0, 1.0, 7.0}) {
    CHECK(student_t_cdf(t, 1.0) == Approx(0.5 + std::atan(t) / M_PI).epsilon(1e-10));
    CHECK(student_t_cdf(t, 2.0) == Approx(0.5 + t / (2 * std::sqrt(2 + t * t))).epsilon(1e-10));
  }
  // Two-sided critical values from the standard t table.
  CHECK(student_t_quantile(0.975, 1) == Approx(12.7062047).epsilon(1e-7));
  CHECK(student_t_quantile(0.975, 9) == Approx(2.2621572).epsilon(1e-7));
  CHECK(student_t_quantile(0.995, 4) == Approx(4.6040949).epsilon(1e-7));
  CHECK(student_t_quantile(0.95, 30) == Approx(1.6972609).epsilon(1e-7));
  CHECK(student_t_quantile(0.025, 9) == Approx(-2.2621572).epsilon(1e-7));
  // Large df tends to the normal.
  CHECK(student_t_quantile(0.975, 1e6) == Approx(1.959964).epsilon(1e-5));
  CHECK_THROWS_AS(student_t_quantile(1.0, 3), std::invalid_argument);
  CHECK_THROWS_AS(student_t_cdf(1.0, 0.0), std::invalid_argument);
}
