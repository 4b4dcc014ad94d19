#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include <catch2/catch.hpp>

#include "prism/results/samples.h"
#include "prism/results/statistics.h"

using namespace prism::results;
using Catch::Detail::Approx;

namespace {
std::vector<double> one_to_ten() {
  std::vector<double> v(10);
  std::iota(v.begin(), v.end(), 1.0);
  return v;
}
}  // namespace

TEST_CASE("percentiles of 1..10 follow linear interpolation between closest ranks (type 7)") {
  const auto v = one_to_ten();
  CHECK(percentile(v, 0) == 1.0);
  CHECK(percentile(v, 25) == Approx(3.25));
  CHECK(percentile(v, 50) == Approx(5.5));
  CHECK(percentile(v, 90) == Approx(9.1));
  CHECK(percentile(v, 99) == Approx(9.91));
  CHECK(percentile(v, 100) == 10.0);
}

TEST_CASE("percentile ignores input order and handles one value and no values") {
  std::vector<double> shuffled{7, 3, 10, 1, 5, 9, 2, 8, 4, 6};
  CHECK(percentile(shuffled, 50) == Approx(5.5));
  CHECK(percentile(std::vector<double>{42.0}, 99) == 42.0);
  CHECK(std::isnan(percentile(std::vector<double>{}, 50)));
  CHECK_THROWS_AS(quantile_sorted(one_to_ten(), 1.5), std::invalid_argument);
}

TEST_CASE("mean and sample standard deviation match hand-computed values") {
  const std::vector<double> v{2, 4, 4, 4, 5, 5, 7, 9};
  CHECK(mean(v) == Approx(5.0));
  CHECK(sample_stddev(v) == Approx(std::sqrt(32.0 / 7.0)));
}

TEST_CASE("Mann-Whitney U on small samples gives the exact reference p-values") {
  // Complete separation of 3 vs 3: U = 0, P(U <= 0) = 1 / C(6,3) = 1/20, two-sided 0.1.
  const std::vector<double> a{1, 2, 3};
  const std::vector<double> b{4, 5, 6};
  auto r = mann_whitney_u(a, b);
  CHECK(r.exact);
  CHECK(r.u == 0.0);
  CHECK(r.p_value == Approx(0.1));
  CHECK(mann_whitney_u(b, a).u == 9.0);
  // a = {1, 5}, b = {2, 3, 4}: pairs a > b are (5,2) (5,3) (5,4): U = 3.
  // U over C(5,2) = 10 arrangements: counts 1,1,2,2,2,1,1 for u = 0..6;
  // P(U <= 3) = 6/10, P(U >= 3) = 6/10, two-sided p = 1.
  r = mann_whitney_u(std::vector<double>{1, 5}, std::vector<double>{2, 3, 4});
  CHECK(r.u == 3.0);
  CHECK(r.p_value == Approx(1.0));
  // a = {1, 2}, b = {3, 4, 5}: U = 0, p = 2 * 1/10 = 0.2.
  CHECK(mann_whitney_u(std::vector<double>{1, 2}, std::vector<double>{3, 4, 5}).p_value ==
        Approx(0.2));
}

TEST_CASE("Mann-Whitney U with ties uses mid-ranks and the tie-corrected normal approximation") {
  // x = {1,2,2,3}, y = {2,3,3,4}: U_x = 3 (hand count: 1 beats nothing, each 2 ties one 2,
  // 3 beats the 2 and ties two 3s: 0 + 0.5 + 0.5 + (1 + 0.5 + 0.5) = 3).
  const std::vector<double> x{1, 2, 2, 3};
  const std::vector<double> y{2, 3, 3, 4};
  const auto r = mann_whitney_u(x, y);
  CHECK_FALSE(r.exact);
  CHECK(r.u == Approx(3.0));
  // Two tie groups of 3: sum(t^3 - t) = 48.
  // sigma^2 = n1 n2 / 12 * ((n+1) - sum(t^3-t)/(n(n-1))) = 16/12 * (9 - 48/56)
  const double sigma = std::sqrt(16.0 / 12.0 * (9.0 - 48.0 / 56.0));
  const double z = (std::abs(3.0 - 8.0) - 0.5) / sigma;
  CHECK(r.p_value == Approx(2.0 * (1.0 - normal_cdf(z))).epsilon(1e-9));
}

TEST_CASE("normal quantile inverts the normal CDF") {
  CHECK(normal_quantile(0.975) == Approx(1.959963984540054).epsilon(1e-10));
  CHECK(normal_quantile(0.5) == Approx(0.0).margin(1e-12));
  CHECK(normal_cdf(normal_quantile(0.001)) == Approx(0.001).epsilon(1e-9));
}

TEST_CASE("bootstrap intervals are reproducible for a seed and cover the estimate") {
  std::mt19937_64 gen(7);
  std::lognormal_distribution<double> dist(0.0, 0.5);
  std::vector<double> v(2000);
  for (auto& x : v) x = dist(gen);
  std::sort(v.begin(), v.end());
  BootstrapOptions options;
  options.seed = 11;
  const auto a = quantile_with_ci(v, 0.5, options);
  const auto b = quantile_with_ci(v, 0.5, options);
  CHECK(a.value == b.value);
  CHECK(a.ci_low == b.ci_low);
  CHECK(a.ci_high == b.ci_high);
  CHECK(a.ci_low < a.value);
  CHECK(a.value < a.ci_high);
  // Order-statistic theory: the median's standard error is about 1 / (2 f(m) sqrt(n)).
  const double density_at_median = 1.0 / (0.5 * std::sqrt(2 * M_PI));  // lognormal(0, .5) at 1
  const double se = 1.0 / (2.0 * density_at_median * std::sqrt(2000.0));
  CHECK((a.ci_high - a.ci_low) == Approx(2 * 1.96 * se).epsilon(0.25));
}

TEST_CASE("the exact quantile bootstrap agrees with the naive resample bootstrap") {
  std::mt19937_64 gen(3);
  std::lognormal_distribution<double> dist(0.0, 1.0);
  std::vector<double> v(500);
  for (auto& x : v) x = dist(gen);
  std::sort(v.begin(), v.end());
  BootstrapOptions options;
  options.resamples = 4000;
  const auto fast = quantile_with_ci(v, 0.9, options);
  const auto naive = bootstrap(
      v,
      [](std::span<const double> s) {
        std::vector<double> c(s.begin(), s.end());
        std::sort(c.begin(), c.end());
        return quantile_sorted(c, 0.9);
      },
      options);
  CHECK(fast.value == naive.value);
  CHECK(fast.ci_low == Approx(naive.ci_low).epsilon(0.05));
  CHECK(fast.ci_high == Approx(naive.ci_high).epsilon(0.05));
}

TEST_CASE("permutation test finds a clear shift and not an absent one") {
  std::vector<double> a{1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<double> b{11, 12, 13, 14, 15, 16, 17, 18};
  auto stat = [](std::span<const double> s) { return mean(s); };
  const auto shifted = permutation_test(a, b, stat, 2000, 5);
  CHECK(shifted.observed == Approx(10.0));
  // Only 2 of C(16,8) = 12870 arrangements are as extreme: p is at its floor 1/2001.
  CHECK(shifted.p_value == Approx(1.0 / 2001.0));
  const auto same = permutation_test(a, a, stat, 2000, 5);
  CHECK(same.p_value == 1.0);
}

TEST_CASE("quantile test is exact: equal samples give p = 1, separated tails give tiny p") {
  std::vector<double> a(200), b(200);
  std::iota(a.begin(), a.end(), 0.0);
  std::iota(b.begin(), b.end(), 0.0);
  CHECK(quantile_test(a, b, 0.9).p_value == Approx(1.0));
  for (auto& x : b) x += 1000.0;
  const auto r = quantile_test(a, b, 0.5);
  CHECK(r.a_above == 0);
  CHECK(r.b_above == 200);
  CHECK(r.p_value < 1e-50);
}

TEST_CASE("per-request samples measure from the scheduled time, not the send time") {
  Observation o;
  o.scheduled_s = 1.0;
  o.sent_s = 1.5;  // late by 0.5 s: the lateness counts
  o.token_times_s = {2.0, 2.1, 2.3, 2.6};
  o.completed_s = 2.7;
  const auto s = per_request_samples(o);
  REQUIRE(s.ttft_s);
  CHECK(*s.ttft_s == Approx(1.0));
  CHECK(*s.e2e_s == Approx(1.7));
  CHECK(*s.tpot_s == Approx(0.2));
  REQUIRE(s.itl_s.size() == 3);
  CHECK(s.itl_s[2] == Approx(0.3));
  o.warmup = true;
  CHECK_FALSE(per_request_samples(o).e2e_s);
  o.warmup = false;
  o.status = RequestStatus::kError;
  CHECK_FALSE(per_request_samples(o).ttft_s);
}
