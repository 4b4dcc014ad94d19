// Statistics primitives shared by metrics, tables and the compare gate.
//
// Percentile definition (used everywhere in Prism): Hyndman & Fan type 7,
// linear interpolation between the closest ranks (R's default, NumPy's
// "linear"). For sorted x[0..n-1] and q in [0, 1]:
//   h = (n - 1) * q,  j = floor(h),  Q(q) = x[j] + (h - j) * (x[j+1] - x[j])
// so the p50 of 1..10 is 5.5, the p90 is 9.1 and the p99 is 9.91.
//
// Every random procedure takes an explicit seed: the same input and seed give
// the same interval, so a table or a gate verdict is reproducible.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <vector>

namespace prism::results {

// A small, fast, seedable generator (xoshiro256**, seeded through splitmix64).
// Satisfies UniformRandomBitGenerator so it works with <random> distributions.
class Rng {
 public:
  using result_type = std::uint64_t;
  explicit Rng(std::uint64_t seed);
  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return std::numeric_limits<result_type>::max(); }
  result_type operator()();
  double uniform();                      // [0, 1)
  std::size_t below(std::size_t bound);  // [0, bound), bound > 0, unbiased

 private:
  std::uint64_t s_[4];
};

// Type-7 quantile of already sorted values, q in [0, 1]. NaN for an empty input.
double quantile_sorted(std::span<const double> sorted, double q);
// Type-7 percentile, p in [0, 100], of unsorted values (copies, then sorts).
double percentile(std::span<const double> values, double p);
double mean(std::span<const double> values);           // NaN when empty
double sample_stddev(std::span<const double> values);  // n - 1 denominator; 0 for n < 2

// A point estimate with a two-sided confidence interval.
struct Estimate {
  double value = std::numeric_limits<double>::quiet_NaN();
  double ci_low = std::numeric_limits<double>::quiet_NaN();
  double ci_high = std::numeric_limits<double>::quiet_NaN();
  double confidence = 0.95;
  std::size_t n = 0;
  bool has_ci() const { return ci_low == ci_low && ci_high == ci_high; }  // not NaN
};

struct BootstrapOptions {
  std::size_t resamples = 2000;
  double confidence = 0.95;
  std::uint64_t seed = 0x9e3779b97f4a7c15ULL;
};

// Percentile-method bootstrap CI of an arbitrary statistic: `resamples`
// resamples of size n with replacement. Cost O(n * resamples).
Estimate bootstrap(std::span<const double> values,
                   const std::function<double(std::span<const double>)>& statistic,
                   const BootstrapOptions& options = {});

// Bootstrap replicates of the type-7 quantile q of `sorted`, drawn exactly and
// in O(1) each: the k-th order statistic of a size-n resample is
// sorted[floor(n * U)] with U ~ Beta(k, n - k + 1), and the (k+1)-th follows
// from U + (1 - U) * Beta(1, n - k). This is the same distribution the naive
// resample-and-sort bootstrap samples from, without touching the n values.
std::vector<double> bootstrap_quantile_replicates(std::span<const double> sorted, double q,
                                                  std::size_t resamples, Rng& rng);
// Bootstrap replicates of the mean (naive resampling, O(n) each).
std::vector<double> bootstrap_mean_replicates(std::span<const double> values, std::size_t resamples,
                                              Rng& rng);

// Quantile of sorted values with a percentile-bootstrap CI (uses the exact
// order-statistic replicates above, so it is cheap even for millions of values).
Estimate quantile_with_ci(std::span<const double> sorted, double q,
                          const BootstrapOptions& options = {});
Estimate mean_with_ci(std::span<const double> values, const BootstrapOptions& options = {});

// Percentile-method interval of replicates (sorts a copy).
struct Interval {
  double low = std::numeric_limits<double>::quiet_NaN();
  double high = std::numeric_limits<double>::quiet_NaN();
};

// Distribution-free confidence interval for the q-quantile from order
// statistics. With B ~ Binomial(n, q) the number of samples below the true
// quantile xi_q, P(x_(l) <= xi_q <= x_(u)) = 1 - P(B <= l - 1) - P(B >= u)
// for any continuous distribution (x_(r) is the r-th smallest, 1-based). The
// ranks are the tightest with each tail at most (1 - confidence) / 2, computed
// from the exact binomial distribution (summed outward from its mode: about
// 80 sqrt(n q (1 - q)) terms, no resampling, no access to the data). When a
// tail cannot be met with the n samples (small n, extreme q), that side is
// clamped to the sample minimum or maximum and `coverage` says what the
// interval really has.
struct OrderStatisticRanks {
  std::size_t lower = 0;  // 1-based ranks into the sorted sample
  std::size_t upper = 0;
  double coverage = 0.0;       // exact coverage for continuous data
  bool lower_clamped = false;  // the lower tail exceeds (1 - confidence) / 2 even at rank 1
  bool upper_clamped = false;
};
OrderStatisticRanks quantile_ci_ranks(std::size_t n, double q, double confidence);

// Type-7 quantile with the order-statistic interval above. `at(i)` returns the
// i-th smallest value (0-based) of n: only four values are read, so a caller
// can serve them from storage without loading the sample. When n is too small
// for a tail (either side clamped) the interval is left out (NaN bounds): the
// sample cannot support the claimed confidence for that quantile.
Estimate quantile_with_order_statistic_ci(std::size_t n,
                                          const std::function<double(std::size_t)>& at, double q,
                                          double confidence = 0.95);
Estimate quantile_with_order_statistic_ci(std::span<const double> sorted, double q,
                                          double confidence = 0.95);

// Normal-theory interval of a mean, mean +- z s / sqrt(n) (none for n < 2).
Estimate mean_with_normal_ci(std::size_t n, double mean, double stddev, double confidence = 0.95);

// Student's t distribution: CDF and quantile for df > 0 degrees of freedom
// (regularized incomplete beta by continued fraction; quantile by bisection
// on the CDF, |error| < 1e-10).
double student_t_cdf(double t, double df);
double student_t_quantile(double p, double df);
Interval percentile_interval(std::vector<double> replicates, double confidence);

// Mann-Whitney U test, two-sided. u is the statistic of `a`: the number of
// pairs (a_i, b_j) with a_i > b_j plus half the ties (SciPy's U1). Exact null
// distribution when both samples have at most 50 values and there are no
// ties; otherwise the normal approximation with tie and continuity correction.
struct MannWhitneyResult {
  double u = 0.0;
  double z = 0.0;  // 0 for the exact method
  double p_value = 1.0;
  double probability_a_greater = 0.5;  // u / (n_a * n_b): common-language effect size
  bool exact = false;
};
MannWhitneyResult mann_whitney_u(std::span<const double> a, std::span<const double> b);

// Two-sided Monte Carlo permutation test of statistic(b) - statistic(a).
// p = (1 + #{|T*| >= |T|}) / (1 + permutations), never 0.
struct PermutationResult {
  double observed = 0.0;
  double p_value = 1.0;
  std::size_t permutations = 0;
};
PermutationResult permutation_test(std::span<const double> a, std::span<const double> b,
                                   const std::function<double(std::span<const double>)>& statistic,
                                   std::size_t permutations, std::uint64_t seed);

// Exact permutation test for a difference in the q-quantile (Mood's quantile
// test): count how many of each sample lie above the pooled type-7 quantile;
// under exchangeability that count is hypergeometric given the total, so the
// p-value is the exact permutation p-value of the statistic, in O(n).
// Two-sided: twice the smaller tail, capped at 1. Inputs must be sorted.
struct QuantileTestResult {
  double threshold = 0.0;   // the pooled quantile
  std::size_t a_above = 0;  // values of a strictly above it
  std::size_t b_above = 0;
  double p_value = 1.0;
};
QuantileTestResult quantile_test(std::span<const double> sorted_a, std::span<const double> sorted_b,
                                 double q);

// Standard normal CDF and its inverse (Acklam's rational approximation,
// refined by one Halley step; |error| < 1e-12).
double normal_cdf(double z);
double normal_quantile(double p);

}  // namespace prism::results
