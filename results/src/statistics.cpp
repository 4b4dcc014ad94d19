#include "prism/results/statistics.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <stdexcept>

namespace prism::results {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::uint64_t splitmix64(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::uint64_t rotl(std::uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

// Position of a uniform draw in the empirical distribution of n sorted values.
std::size_t empirical_index(double u, std::size_t n) {
  const auto i = static_cast<std::size_t>(u * static_cast<double>(n));
  return std::min(i, n - 1);
}

double beta_draw(std::gamma_distribution<double>& ga, std::gamma_distribution<double>& gb,
                 Rng& rng) {
  const double x = ga(rng);
  const double y = gb(rng);
  return x / (x + y);
}

double log_choose(double n, double k) {
  return std::lgamma(n + 1) - std::lgamma(k + 1) - std::lgamma(n - k + 1);
}

}  // namespace

Rng::Rng(std::uint64_t seed) {
  for (auto& s : s_) s = splitmix64(seed);
}

Rng::result_type Rng::operator()() {
  const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const std::uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() {
  return static_cast<double>((*this)() >> 11) * 0x1.0p-53;
}

std::size_t Rng::below(std::size_t bound) {
  // Lemire's nearly divisionless method.
  std::uint64_t x = (*this)();
  __uint128_t m = static_cast<__uint128_t>(x) * bound;
  auto low = static_cast<std::uint64_t>(m);
  if (low < bound) {
    const std::uint64_t threshold = -static_cast<std::uint64_t>(bound) % bound;
    while (low < threshold) {
      x = (*this)();
      m = static_cast<__uint128_t>(x) * bound;
      low = static_cast<std::uint64_t>(m);
    }
  }
  return static_cast<std::size_t>(m >> 64);
}

double quantile_sorted(std::span<const double> sorted, double q) {
  if (sorted.empty()) return kNaN;
  if (!(q >= 0.0 && q <= 1.0)) throw std::invalid_argument("quantile must lie in [0, 1]");
  const double h = static_cast<double>(sorted.size() - 1) * q;
  const auto j = static_cast<std::size_t>(std::floor(h));
  if (j + 1 >= sorted.size()) return sorted.back();
  return sorted[j] + (h - static_cast<double>(j)) * (sorted[j + 1] - sorted[j]);
}

double percentile(std::span<const double> values, double p) {
  std::vector<double> copy(values.begin(), values.end());
  std::sort(copy.begin(), copy.end());
  return quantile_sorted(copy, p / 100.0);
}

double mean(std::span<const double> values) {
  if (values.empty()) return kNaN;
  return std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
}

double sample_stddev(std::span<const double> values) {
  if (values.size() < 2) return 0.0;
  const double m = mean(values);
  double sum = 0.0;
  for (double v : values) sum += (v - m) * (v - m);
  return std::sqrt(sum / static_cast<double>(values.size() - 1));
}

Interval percentile_interval(std::vector<double> replicates, double confidence) {
  std::erase_if(replicates, [](double v) { return std::isnan(v); });
  if (replicates.empty()) return {};
  std::sort(replicates.begin(), replicates.end());
  const double tail = (1.0 - confidence) / 2.0;
  return {quantile_sorted(replicates, tail), quantile_sorted(replicates, 1.0 - tail)};
}

Estimate bootstrap(std::span<const double> values,
                   const std::function<double(std::span<const double>)>& statistic,
                   const BootstrapOptions& options) {
  Estimate e;
  e.n = values.size();
  e.confidence = options.confidence;
  if (values.empty()) return e;
  e.value = statistic(values);
  Rng rng(options.seed);
  std::vector<double> resample(values.size());
  std::vector<double> replicates;
  replicates.reserve(options.resamples);
  for (std::size_t r = 0; r < options.resamples; ++r) {
    for (auto& v : resample) v = values[rng.below(values.size())];
    replicates.push_back(statistic(resample));
  }
  const Interval ci = percentile_interval(std::move(replicates), options.confidence);
  e.ci_low = ci.low;
  e.ci_high = ci.high;
  return e;
}

std::vector<double> bootstrap_quantile_replicates(std::span<const double> sorted, double q,
                                                  std::size_t resamples, Rng& rng) {
  std::vector<double> out;
  if (sorted.empty()) return out;
  out.reserve(resamples);
  const std::size_t n = sorted.size();
  if (n == 1) {
    out.assign(resamples, sorted[0]);
    return out;
  }
  const double h = static_cast<double>(n - 1) * q;
  const auto j = static_cast<std::size_t>(std::floor(h));  // 0-based rank of the lower neighbour
  const double frac = h - static_cast<double>(j);
  const double k = static_cast<double>(j + 1);  // 1-based order statistic
  std::gamma_distribution<double> ga(k, 1.0);
  std::gamma_distribution<double> gb(static_cast<double>(n) - k + 1.0, 1.0);
  const double rest = static_cast<double>(n) - k;  // values above the k-th
  for (std::size_t r = 0; r < resamples; ++r) {
    const double u_k = beta_draw(ga, gb, rng);
    const double lower = sorted[empirical_index(u_k, n)];
    if (frac == 0.0 || rest <= 0.0) {
      out.push_back(lower);
      continue;
    }
    // Minimum of the (n - k) uniforms above u_k: Beta(1, n - k) scaled into (u_k, 1).
    const double v = 1.0 - std::pow(1.0 - rng.uniform(), 1.0 / rest);
    const double u_next = u_k + (1.0 - u_k) * v;
    const double upper = sorted[empirical_index(u_next, n)];
    out.push_back(lower + frac * (upper - lower));
  }
  return out;
}

std::vector<double> bootstrap_mean_replicates(std::span<const double> values, std::size_t resamples,
                                              Rng& rng) {
  std::vector<double> out;
  if (values.empty()) return out;
  out.reserve(resamples);
  const std::size_t n = values.size();
  for (std::size_t r = 0; r < resamples; ++r) {
    double sum = 0.0;
    for (std::size_t i = 0; i < n; ++i) sum += values[rng.below(n)];
    out.push_back(sum / static_cast<double>(n));
  }
  return out;
}

Estimate quantile_with_ci(std::span<const double> sorted, double q,
                          const BootstrapOptions& options) {
  Estimate e;
  e.n = sorted.size();
  e.confidence = options.confidence;
  if (sorted.empty()) return e;
  e.value = quantile_sorted(sorted, q);
  Rng rng(options.seed);
  const Interval ci = percentile_interval(
      bootstrap_quantile_replicates(sorted, q, options.resamples, rng), options.confidence);
  e.ci_low = ci.low;
  e.ci_high = ci.high;
  return e;
}

Estimate mean_with_ci(std::span<const double> values, const BootstrapOptions& options) {
  Estimate e;
  e.n = values.size();
  e.confidence = options.confidence;
  if (values.empty()) return e;
  e.value = mean(values);
  Rng rng(options.seed);
  const Interval ci = percentile_interval(bootstrap_mean_replicates(values, options.resamples, rng),
                                          options.confidence);
  e.ci_low = ci.low;
  e.ci_high = ci.high;
  return e;
}

OrderStatisticRanks quantile_ci_ranks(std::size_t n, double q, double confidence) {
  if (n == 0) throw std::invalid_argument("quantile_ci_ranks: no samples");
  if (!(q >= 0.0 && q <= 1.0)) throw std::invalid_argument("quantile must lie in [0, 1]");
  if (!(confidence > 0.0 && confidence < 1.0))
    throw std::invalid_argument("confidence must lie in (0, 1)");
  const double tail = (1.0 - confidence) / 2.0;
  OrderStatisticRanks r;
  // B ~ Binomial(n, q) counts samples below the true quantile. Its weights,
  // relative to the mode, are summed outward until they vanish against the
  // total: the normalised sums are the exact CDF without factorials.
  const auto dn = static_cast<double>(n);
  std::size_t lo = 0, hi = n;  // support kept: [lo, hi]
  std::vector<double> weight;  // weight[k - lo]
  if (q == 0.0 || q == 1.0) {
    lo = hi = q == 0.0 ? 0 : n;
    weight.assign(1, 1.0);
  } else {
    const auto mode = static_cast<std::size_t>(std::min(dn, std::floor((dn + 1.0) * q)));
    const double odds = q / (1.0 - q);
    std::vector<double> down{1.0}, up;  // down[i]: k = mode - i; up[i]: k = mode + 1 + i
    double total = 1.0;
    constexpr double kNegligible = 1e-18;
    for (std::size_t k = mode; k > 0; --k) {
      // w(k - 1) = w(k) * k / (n - k + 1) / odds
      const double w =
          down.back() * static_cast<double>(k) / ((dn - static_cast<double>(k) + 1.0) * odds);
      if (w < kNegligible * total) break;
      down.push_back(w);
      total += w;
    }
    double w = 1.0;
    for (std::size_t k = mode; k < n; ++k) {
      // w(k + 1) = w(k) * (n - k) / (k + 1) * odds
      w = w * (dn - static_cast<double>(k)) / static_cast<double>(k + 1) * odds;
      if (w < kNegligible * total) break;
      up.push_back(w);
      total += w;
    }
    lo = mode - (down.size() - 1);
    hi = mode + up.size();
    weight.assign(down.rbegin(), down.rend());
    weight.insert(weight.end(), up.begin(), up.end());
    for (auto& v : weight) v /= total;
  }
  // below[k - lo] = P(B <= k); above[k - lo] = P(B >= k), each summed from its
  // own end so a small tail keeps its precision.
  std::vector<double> below(weight.size()), above(weight.size());
  double acc = 0.0;
  for (std::size_t i = 0; i < weight.size(); ++i) below[i] = acc += weight[i];
  acc = 0.0;
  for (std::size_t i = weight.size(); i-- > 0;) above[i] = acc += weight[i];
  auto cdf_at_most = [&](long long k) {  // P(B <= k)
    if (k < static_cast<long long>(lo)) return 0.0;
    if (k >= static_cast<long long>(hi)) return 1.0;
    return below[static_cast<std::size_t>(k) - lo];
  };
  auto tail_at_least = [&](long long k) {  // P(B >= k)
    if (k <= static_cast<long long>(lo)) return 1.0;
    if (k > static_cast<long long>(hi)) return 0.0;
    return above[static_cast<std::size_t>(k) - lo];
  };
  // Lower rank: the largest l in [1, n] with P(B <= l - 1) <= tail.
  long long l = 0;
  for (long long cand =
           std::min<long long>(static_cast<long long>(hi) + 1, static_cast<long long>(n));
       cand >= 1; --cand) {
    if (cdf_at_most(cand - 1) <= tail) {
      l = cand;
      break;
    }
  }
  // Upper rank: the smallest u in [1, n] with P(B >= u) <= tail.
  long long u = static_cast<long long>(n) + 1;
  for (long long cand = std::max<long long>(static_cast<long long>(lo), 1);
       cand <= static_cast<long long>(n); ++cand) {
    if (tail_at_least(cand) <= tail) {
      u = cand;
      break;
    }
  }
  r.lower_clamped = l == 0;
  r.upper_clamped = u == static_cast<long long>(n) + 1;
  if (r.lower_clamped) l = 1;
  if (r.upper_clamped) u = static_cast<long long>(n);
  if (u < l) u = l;  // only when q is 0 or 1: both ends on the same extreme
  r.lower = static_cast<std::size_t>(l);
  r.upper = static_cast<std::size_t>(u);
  r.coverage = std::max(0.0, 1.0 - cdf_at_most(l - 1) - tail_at_least(u));
  return r;
}

Estimate quantile_with_order_statistic_ci(std::size_t n,
                                          const std::function<double(std::size_t)>& at, double q,
                                          double confidence) {
  Estimate e;
  e.n = n;
  e.confidence = confidence;
  if (n == 0) return e;
  if (!(q >= 0.0 && q <= 1.0)) throw std::invalid_argument("quantile must lie in [0, 1]");
  // Type 7, as quantile_sorted, from the two neighbouring order statistics.
  const double h = static_cast<double>(n - 1) * q;
  const auto j = static_cast<std::size_t>(std::floor(h));
  const double x_j = at(j);
  e.value = j + 1 >= n ? x_j : x_j + (h - static_cast<double>(j)) * (at(j + 1) - x_j);
  const OrderStatisticRanks ranks = quantile_ci_ranks(n, q, confidence);
  // Too few samples for this quantile at this confidence (p99 needs 368, p99.9
  // 3,688): no interval rather than one whose coverage is below what it claims.
  if (ranks.lower_clamped || ranks.upper_clamped) return e;
  e.ci_low = at(ranks.lower - 1);
  e.ci_high = at(ranks.upper - 1);
  return e;
}

Estimate quantile_with_order_statistic_ci(std::span<const double> sorted, double q,
                                          double confidence) {
  return quantile_with_order_statistic_ci(
      sorted.size(), [&](std::size_t i) { return sorted[i]; }, q, confidence);
}

Estimate mean_with_normal_ci(std::size_t n, double mean_value, double stddev, double confidence) {
  Estimate e;
  e.n = n;
  e.confidence = confidence;
  if (n == 0) return e;
  e.value = mean_value;
  if (n >= 2) {
    const double z = normal_quantile(1.0 - (1.0 - confidence) / 2.0);
    const double half = z * stddev / std::sqrt(static_cast<double>(n));
    e.ci_low = mean_value - half;
    e.ci_high = mean_value + half;
  }
  return e;
}

namespace {

// Continued fraction of the regularized incomplete beta I_x(a, b) (modified
// Lentz), valid for x < (a + 1) / (a + b + 2).
double incomplete_beta_fraction(double a, double b, double x) {
  constexpr double kTiny = 1e-300;
  constexpr double kEpsilon = 1e-15;
  double c = 1.0;
  double d = 1.0 - (a + b) * x / (a + 1.0);
  if (std::abs(d) < kTiny) d = kTiny;
  d = 1.0 / d;
  double f = d;
  for (int m = 1; m <= 10000; ++m) {
    const double dm = static_cast<double>(m);
    // Even step: m (b - m) x / ((a + 2m - 1)(a + 2m)).
    double coefficient = dm * (b - dm) * x / ((a + 2 * dm - 1.0) * (a + 2 * dm));
    d = 1.0 + coefficient * d;
    if (std::abs(d) < kTiny) d = kTiny;
    c = 1.0 + coefficient / c;
    if (std::abs(c) < kTiny) c = kTiny;
    d = 1.0 / d;
    f *= d * c;
    // Odd step: -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1)).
    coefficient = -(a + dm) * (a + b + dm) * x / ((a + 2 * dm) * (a + 2 * dm + 1.0));
    d = 1.0 + coefficient * d;
    if (std::abs(d) < kTiny) d = kTiny;
    c = 1.0 + coefficient / c;
    if (std::abs(c) < kTiny) c = kTiny;
    d = 1.0 / d;
    const double delta = d * c;
    f *= delta;
    if (std::abs(delta - 1.0) < kEpsilon) break;
  }
  return f;
}

double regularized_incomplete_beta(double a, double b, double x) {
  if (x <= 0.0) return 0.0;
  if (x >= 1.0) return 1.0;
  const double log_front =
      std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x);
  if (x < (a + 1.0) / (a + b + 2.0))
    return std::exp(log_front) * incomplete_beta_fraction(a, b, x) / a;
  return 1.0 - std::exp(log_front) * incomplete_beta_fraction(b, a, 1.0 - x) / b;
}

}  // namespace

double student_t_cdf(double t, double df) {
  if (!(df > 0.0)) throw std::invalid_argument("student_t_cdf: degrees of freedom must be > 0");
  if (std::isnan(t)) return t;
  if (std::isinf(t)) return t > 0 ? 1.0 : 0.0;
  const double x = df / (df + t * t);
  const double half_tail = 0.5 * regularized_incomplete_beta(df / 2.0, 0.5, x);
  return t > 0 ? 1.0 - half_tail : half_tail;
}

double student_t_quantile(double p, double df) {
  if (!(p > 0.0 && p < 1.0))
    throw std::invalid_argument("student_t_quantile: p must lie in (0, 1)");
  if (p == 0.5) return 0.0;
  if (p < 0.5) return -student_t_quantile(1.0 - p, df);
  double low = 0.0, high = 1.0;
  while (student_t_cdf(high, df) < p) high *= 2.0;
  for (int i = 0; i < 200 && high - low > 1e-12 * std::max(1.0, high); ++i) {
    const double mid = 0.5 * (low + high);
    (student_t_cdf(mid, df) < p ? low : high) = mid;
  }
  return 0.5 * (low + high);
}

MannWhitneyResult mann_whitney_u(std::span<const double> a, std::span<const double> b) {
  MannWhitneyResult result;
  const std::size_t n1 = a.size();
  const std::size_t n2 = b.size();
  if (n1 == 0 || n2 == 0) return result;
  // Pool with a sample tag, sort, assign mid-ranks to ties.
  std::vector<std::pair<double, bool>> pooled;  // (value, from_a)
  pooled.reserve(n1 + n2);
  for (double v : a) pooled.emplace_back(v, true);
  for (double v : b) pooled.emplace_back(v, false);
  std::sort(pooled.begin(), pooled.end(),
            [](const auto& x, const auto& y) { return x.first < y.first; });
  const auto n = static_cast<double>(n1 + n2);
  double rank_sum_a = 0.0;
  double tie_term = 0.0;  // sum of (t^3 - t) over tie groups
  for (std::size_t i = 0; i < pooled.size();) {
    std::size_t j = i;
    while (j < pooled.size() && pooled[j].first == pooled[i].first) ++j;
    const double mid_rank = (static_cast<double>(i + 1) + static_cast<double>(j)) / 2.0;
    for (std::size_t k = i; k < j; ++k)
      if (pooled[k].second) rank_sum_a += mid_rank;
    const auto t = static_cast<double>(j - i);
    tie_term += t * t * t - t;
    i = j;
  }
  const auto dn1 = static_cast<double>(n1);
  const auto dn2 = static_cast<double>(n2);
  result.u = rank_sum_a - dn1 * (dn1 + 1.0) / 2.0;
  result.probability_a_greater = result.u / (dn1 * dn2);
  const double mu = dn1 * dn2 / 2.0;

  if (tie_term == 0.0 && n1 <= 50 && n2 <= 50) {
    // Exact null distribution of U: counts c[m][u] of arrangements, built up
    // one sample size at a time (f(m, n, u) = f(m-1, n, u-n) + f(m, n-1, u)).
    const std::size_t max_u = n1 * n2;
    // dp[i][u] for the current n (columns), over i = 0..n1.
    std::vector<std::vector<double>> dp(n1 + 1, std::vector<double>(max_u + 1, 0.0));
    for (std::size_t i = 0; i <= n1; ++i) dp[i][0] = 1.0;  // n = 0: only u = 0
    for (std::size_t m = 1; m <= n2; ++m) {
      std::vector<std::vector<double>> next(n1 + 1, std::vector<double>(max_u + 1, 0.0));
      next[0][0] = 1.0;
      for (std::size_t i = 1; i <= n1; ++i) {
        for (std::size_t u = 0; u <= i * m; ++u) {
          double value = dp[i][u];                  // largest element is from b
          if (u >= m) value += next[i - 1][u - m];  // largest element is from a
          next[i][u] = value;
        }
      }
      dp = std::move(next);
    }
    const std::vector<double>& counts = dp[n1];
    const double total = std::accumulate(counts.begin(), counts.end(), 0.0);
    const auto u_obs = static_cast<std::size_t>(std::llround(result.u));
    double lower = 0.0;
    double upper = 0.0;
    for (std::size_t u = 0; u <= max_u; ++u) {
      if (u <= u_obs) lower += counts[u];
      if (u >= u_obs) upper += counts[u];
    }
    result.exact = true;
    result.p_value = std::min(1.0, 2.0 * std::min(lower, upper) / total);
    return result;
  }

  const double variance = dn1 * dn2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
  if (variance <= 0.0) {
    result.p_value = 1.0;  // every value tied: no evidence either way
    return result;
  }
  const double deviation = std::max(0.0, std::abs(result.u - mu) - 0.5);  // continuity correction
  result.z = std::copysign(deviation / std::sqrt(variance), result.u - mu);
  result.p_value = std::min(1.0, 2.0 * (1.0 - normal_cdf(std::abs(result.z))));
  return result;
}

PermutationResult permutation_test(std::span<const double> a, std::span<const double> b,
                                   const std::function<double(std::span<const double>)>& statistic,
                                   std::size_t permutations, std::uint64_t seed) {
  PermutationResult result;
  result.permutations = permutations;
  if (a.empty() || b.empty()) return result;
  result.observed = statistic(b) - statistic(a);
  std::vector<double> pooled(a.begin(), a.end());
  pooled.insert(pooled.end(), b.begin(), b.end());
  Rng rng(seed);
  std::size_t extreme = 0;
  const double observed = std::abs(result.observed);
  for (std::size_t p = 0; p < permutations; ++p) {
    // Partial Fisher-Yates: only the first |a| positions need to be random.
    for (std::size_t i = 0; i < a.size(); ++i) {
      std::swap(pooled[i], pooled[i + rng.below(pooled.size() - i)]);
    }
    const std::span<const double> all(pooled);
    const double t = statistic(all.subspan(a.size())) - statistic(all.first(a.size()));
    // A relative tolerance keeps floating-point noise from splitting exact ties.
    if (std::abs(t) >= observed * (1.0 - 1e-12)) ++extreme;
  }
  result.p_value = static_cast<double>(1 + extreme) / static_cast<double>(1 + permutations);
  return result;
}

QuantileTestResult quantile_test(std::span<const double> sorted_a, std::span<const double> sorted_b,
                                 double q) {
  QuantileTestResult result;
  if (sorted_a.empty() || sorted_b.empty()) return result;
  std::vector<double> pooled;
  pooled.reserve(sorted_a.size() + sorted_b.size());
  std::merge(sorted_a.begin(), sorted_a.end(), sorted_b.begin(), sorted_b.end(),
             std::back_inserter(pooled));
  result.threshold = quantile_sorted(pooled, q);
  auto above = [&](std::span<const double> s) {
    return static_cast<std::size_t>(s.end() -
                                    std::upper_bound(s.begin(), s.end(), result.threshold));
  };
  result.a_above = above(sorted_a);
  result.b_above = above(sorted_b);
  // Hypergeometric: population N, K "above", draws n1 (sample a).
  const auto N = static_cast<double>(pooled.size());
  const auto K = static_cast<double>(result.a_above + result.b_above);
  const auto n1 = static_cast<double>(sorted_a.size());
  const double lo = std::max(0.0, n1 + K - N);
  const double hi = std::min(n1, K);
  const double log_total = log_choose(N, n1);
  auto pmf = [&](double x) {
    return std::exp(log_choose(K, x) + log_choose(N - K, n1 - x) - log_total);
  };
  const auto observed = static_cast<double>(result.a_above);
  double lower = 0.0;
  double upper = 0.0;
  for (double x = lo; x <= hi; x += 1.0) {
    const double p = pmf(x);
    if (x <= observed) lower += p;
    if (x >= observed) upper += p;
  }
  result.p_value = std::min(1.0, 2.0 * std::min(lower, upper));
  return result;
}

double normal_cdf(double z) {
  return 0.5 * std::erfc(-z / std::sqrt(2.0));
}

double normal_quantile(double p) {
  if (!(p > 0.0 && p < 1.0)) {
    if (p == 0.0) return -std::numeric_limits<double>::infinity();
    if (p == 1.0) return std::numeric_limits<double>::infinity();
    throw std::invalid_argument("normal_quantile: p must lie in [0, 1]");
  }
  static constexpr double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
                                 -2.759285104469687e+02, 1.383577518672690e+02,
                                 -3.066479806614716e+01, 2.506628277459239e+00};
  static constexpr double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
                                 -1.556989798598866e+02, 6.680131188771972e+01,
                                 -1.328068155288572e+01};
  static constexpr double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
                                 -2.400758277161838e+00, -2.549732539343734e+00,
                                 4.374664141464968e+00,  2.938163982698783e+00};
  static constexpr double d[] = {7.784695709041462e-03, 3.224671290700398e-01,
                                 2.445134137142996e+00, 3.754408661907416e+00};
  constexpr double p_low = 0.02425;
  double x;
  if (p < p_low) {
    const double q = std::sqrt(-2 * std::log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else if (p <= 1 - p_low) {
    const double q = p - 0.5;
    const double r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  } else {
    const double q = std::sqrt(-2 * std::log(1 - p));
    x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  // One Halley step against the exact CDF.
  const double e = normal_cdf(x) - p;
  const double u = e * std::sqrt(2 * M_PI) * std::exp(x * x / 2);
  return x - u / (1 + x * u / 2);
}

}  // namespace prism::results
