#include "prism/results/compare.h"

#include <algorithm>
#include <cmath>

#include <fmt/core.h>

#include "prism/results/store.h"
#include "prism/results/table.h"

namespace prism::results {
namespace {

std::string percent(double fraction) {
  if (std::isnan(fraction)) return "n/a";
  return fmt::format("{:+.2f}%", fraction * 100.0);
}

std::string p_text(double p) {
  if (std::isnan(p)) return "—";
  return p < 1e-4 ? fmt::format("{:.1e}", p) : fmt::format("{:.4f}", p);
}

std::vector<double> replicates_for(const std::vector<double>& sorted, const MetricSpec& spec,
                                   std::size_t resamples, Rng& rng) {
  if (spec.quantile >= 0.0)
    return bootstrap_quantile_replicates(sorted, spec.quantile, resamples, rng);
  return bootstrap_mean_replicates(sorted, resamples, rng);
}

void decide(MetricComparison& m, double alpha_per_metric, const CompareOptions& options);

MetricComparison compare_metric(const MetricSpec& spec, const RunSamples& base_samples,
                                const RunSamples& candidate_samples, double alpha_per_metric,
                                const CompareOptions& options, std::uint64_t seed) {
  MetricComparison m;
  m.spec = spec;
  m.confidence = 1.0 - alpha_per_metric;
  std::vector<double> a = samples_of(base_samples, *spec.quantity);
  std::vector<double> b = samples_of(candidate_samples, *spec.quantity);
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  m.base_n = a.size();
  m.candidate_n = b.size();
  if (a.size() < 2 || b.size() < 2) {
    m.verdict = Verdict::kUnsure;
    m.note = "too few samples";
    m.change = std::numeric_limits<double>::quiet_NaN();
    return m;
  }
  if (spec.quantile >= 0.0) {
    m.base = quantile_sorted(a, spec.quantile);
    m.candidate = quantile_sorted(b, spec.quantile);
    m.test = "quantile permutation test";
    m.p_value = quantile_test(a, b, spec.quantile).p_value;
  } else {
    m.base = mean(a);
    m.candidate = mean(b);
    m.test = "permutation test";
    m.p_value = permutation_test(
                    a, b, [](std::span<const double> s) { return mean(s); }, options.permutations,
                    seed ^ 0xabcdefULL)
                    .p_value;
  }
  const auto mw = mann_whitney_u(b, a);
  m.mann_whitney_p = mw.p_value;
  m.probability_candidate_greater = mw.probability_a_greater;
  m.change = m.base != 0.0 ? m.candidate / m.base - 1.0 : std::numeric_limits<double>::quiet_NaN();

  Rng rng(seed);
  const auto ra = replicates_for(a, spec, options.resamples, rng);
  const auto rb = replicates_for(b, spec, options.resamples, rng);
  std::vector<double> ratios(ra.size());
  for (std::size_t i = 0; i < ra.size(); ++i)
    ratios[i] = ra[i] != 0.0 ? rb[i] / ra[i] - 1.0 : std::numeric_limits<double>::quiet_NaN();
  m.change_ci = percentile_interval(std::move(ratios), m.confidence);

  decide(m, alpha_per_metric, options);
  return m;
}

// Shared by both units: the verdict from p, the change and its CI.
void decide(MetricComparison& m, double alpha_per_metric, const CompareOptions& options) {
  const bool significant = m.p_value < alpha_per_metric;
  const bool worse = m.spec.better == Better::kLower ? m.change > 0 : m.change < 0;
  const bool ci_excludes_zero = m.change_ci.low > 0.0 || m.change_ci.high < 0.0;
  if (significant && ci_excludes_zero) {
    m.verdict = worse ? Verdict::kSlower : Verdict::kFaster;
  } else if (!significant && m.change_ci.low >= -options.same_within &&
             m.change_ci.high <= options.same_within) {
    m.verdict = Verdict::kSame;
  } else {
    m.verdict = Verdict::kUnsure;
    m.note = significant ? "test significant but the CI includes no change"
                         : "CI wider than the same-within margin: more samples needed";
  }
  m.regression = m.verdict == Verdict::kSlower && std::abs(m.change) > options.max_regression;
}

// One run's value of a latency metric (type-7 quantile or mean); NaN when the
// run has no such samples.
double run_statistic(const RunSamples& samples, const MetricSpec& spec) {
  const auto& values = samples_of(samples, *spec.quantity);
  if (values.empty()) return std::numeric_limits<double>::quiet_NaN();
  if (spec.quantile < 0.0) return mean(values);
  if (samples.sorted) return quantile_sorted(values, spec.quantile);
  std::vector<double> sorted(values);
  std::sort(sorted.begin(), sorted.end());
  return quantile_sorted(sorted, spec.quantile);
}

double geometric_mean(std::span<const double> logs) {
  return std::exp(mean(logs));
}

// The run is the unit: each run's metric value on a log scale, a paired
// t-test on ln(candidate_i / base_i) (or Welch's on the two sets of logs), the
// change and its t interval back-transformed. Drift between runs is in the
// spread the test measures, so it is not mistaken for a change.
MetricComparison compare_metric_over_runs(const MetricSpec& spec, std::span<const RunSamples> base,
                                          std::span<const RunSamples> candidate, bool paired,
                                          double alpha_per_metric, const CompareOptions& options) {
  MetricComparison m;
  m.spec = spec;
  m.confidence = 1.0 - alpha_per_metric;
  m.mann_whitney_p = std::numeric_limits<double>::quiet_NaN();
  m.probability_candidate_greater = std::numeric_limits<double>::quiet_NaN();
  m.base_n = base.size();
  m.candidate_n = candidate.size();
  m.change = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> log_base, log_candidate;
  for (const auto& r : base) log_base.push_back(std::log(run_statistic(r, spec)));
  for (const auto& r : candidate) log_candidate.push_back(std::log(run_statistic(r, spec)));
  auto unusable = [](double v) { return !std::isfinite(v); };
  if (std::any_of(log_base.begin(), log_base.end(), unusable) ||
      std::any_of(log_candidate.begin(), log_candidate.end(), unusable)) {
    m.verdict = Verdict::kUnsure;
    m.note = "a run has no samples of this metric, or a value <= 0";
    return m;
  }
  m.base = geometric_mean(log_base);
  m.candidate = geometric_mean(log_candidate);
  double effect = 0.0, standard_error = 0.0, df = 0.0;
  if (paired) {
    std::vector<double> d(log_base.size());
    for (std::size_t i = 0; i < d.size(); ++i) d[i] = log_candidate[i] - log_base[i];
    effect = mean(d);
    standard_error = sample_stddev(d) / std::sqrt(static_cast<double>(d.size()));
    df = static_cast<double>(d.size()) - 1.0;
    m.test = fmt::format("paired t-test on ln per-run values ({} pairs)", d.size());
  } else {
    const double na = static_cast<double>(log_base.size());
    const double nb = static_cast<double>(log_candidate.size());
    const double va = std::pow(sample_stddev(log_base), 2) / na;
    const double vb = std::pow(sample_stddev(log_candidate), 2) / nb;
    effect = mean(log_candidate) - mean(log_base);
    standard_error = std::sqrt(va + vb);
    // Welch-Satterthwaite degrees of freedom.
    df = (va + vb) * (va + vb) / (va * va / (na - 1.0) + vb * vb / (nb - 1.0));
    m.test = fmt::format("Welch t-test on ln per-run values ({} vs {} runs)", log_base.size(),
                         log_candidate.size());
  }
  m.change = std::expm1(effect);
  if (!(standard_error > 0.0) || !std::isfinite(df) || df <= 0.0) {
    // No spread between runs at all (the same runs given twice): nothing to
    // measure a difference against. Equal sides are the same; otherwise unsure.
    m.change_ci = {m.change, m.change};
    if (effect != 0.0) {
      m.p_value = std::numeric_limits<double>::quiet_NaN();
      m.verdict = Verdict::kUnsure;
      m.note = "no spread between runs to test against (the same runs given twice?)";
      return m;
    }
    m.p_value = 1.0;
  } else {
    const double t = effect / standard_error;
    m.p_value = std::min(1.0, 2.0 * (1.0 - student_t_cdf(std::abs(t), df)));
    const double half = student_t_quantile(1.0 - alpha_per_metric / 2.0, df) * standard_error;
    m.change_ci = {std::expm1(effect - half), std::expm1(effect + half)};
  }
  decide(m, alpha_per_metric, options);
  return m;
}

std::vector<MetricSpec> latency_specs(const CompareOptions& options) {
  const auto& names = options.metrics.empty() ? default_compare_metrics() : options.metrics;
  std::vector<MetricSpec> specs;
  for (const auto& name : names) {
    MetricSpec spec = parse_metric(name);
    if (!spec.quantity) {
      throw std::invalid_argument(fmt::format(
          "metric '{}' is not a per-request latency: compare works on ttft, tpot, itl and e2e",
          name));
    }
    specs.push_back(std::move(spec));
  }
  return specs;
}

std::string join_ids(std::span<const Run> runs) {
  std::string out;
  for (std::size_t i = 0; i < runs.size(); ++i) out += (i ? "," : "") + runs[i].run_id;
  return out;
}

std::string describe_workload(const Run& run) {
  const nlohmann::json& w = run.workload;
  std::string text = "'" + workload_display_name(w) + "'";
  if (w.is_object()) {
    if (auto h = w.find("hash"); h != w.end() && h->is_string())
      text += " (hash " + h->get<std::string>() + ")";
  }
  return text;
}

}  // namespace

std::string to_string(Verdict verdict) {
  switch (verdict) {
    case Verdict::kSame:
      return "same";
    case Verdict::kFaster:
      return "faster";
    case Verdict::kSlower:
      return "slower";
    case Verdict::kUnsure:
      break;
  }
  return "unsure";
}

const std::vector<std::string>& default_compare_metrics() {
  static const std::vector<std::string> names{"ttft.p50", "ttft.p99", "tpot.p50",
                                              "tpot.p99", "e2e.p50",  "e2e.p99"};
  return names;
}

double parse_percentage(const std::string& text) {
  std::string body = text;
  if (!body.empty() && body.back() == '%') body.pop_back();
  std::size_t used = 0;
  double value = 0.0;
  try {
    value = std::stod(body, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (body.empty() || used != body.size() || !std::isfinite(value) || value < 0) {
    throw std::invalid_argument(fmt::format("'{}' is not a percentage (e.g. 5%)", text));
  }
  return value / 100.0;
}

std::string workload_mismatch_reason(const Run& base, const Run& candidate) {
  const nlohmann::json& a = base.workload;
  const nlohmann::json& b = candidate.workload;
  if (a.is_null() && b.is_null()) return "";
  if (a.is_null() || b.is_null()) {
    return fmt::format("only one run records its workload (base {}, candidate {})",
                       a.is_null() ? "none" : describe_workload(base),
                       b.is_null() ? "none" : describe_workload(candidate));
  }
  auto field = [](const nlohmann::json& w, const char* key) {
    auto it = w.find(key);
    return it == w.end() ? nlohmann::json(nullptr) : *it;
  };
  const auto ha = field(a, "hash");
  const auto hb = field(b, "hash");
  if (!ha.is_null() && !hb.is_null()) {
    if (ha != hb)
      return fmt::format("workloads differ: base {} vs candidate {}", describe_workload(base),
                         describe_workload(candidate));
    return "";
  }
  for (const char* key : {"name", "kind", "seed"}) {
    if (field(a, key) != field(b, key))
      return fmt::format("workloads differ in '{}': base {} vs candidate {}", key,
                         field(a, key).dump(), field(b, key).dump());
  }
  return "";
}

CompareReport compare_samples(const RunSamples& base, const RunSamples& candidate,
                              const CompareOptions& options) {
  CompareReport report;
  report.alpha = options.alpha;
  report.max_regression = options.max_regression;
  const std::vector<MetricSpec> specs = latency_specs(options);
  report.unit = TestUnit::kRequest;
  report.base_requests = base.requests;
  report.candidate_requests = candidate.requests;
  report.alpha_per_metric = options.alpha / static_cast<double>(specs.size());
  std::uint64_t seed = options.seed;
  for (const auto& spec : specs) {
    report.metrics.push_back(
        compare_metric(spec, base, candidate, report.alpha_per_metric, options, seed));
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    if (report.metrics.back().regression) report.regression = true;
    if (spec.quantity == Quantity::kItl)
      report.warnings.push_back(
          "itl pools every token gap of every request; gaps within a batch are correlated, so "
          "its p-values are optimistic");
  }
  if (base.failed != candidate.failed) {
    report.warnings.push_back(
        fmt::format("failed requests: base {}, candidate {}", base.failed, candidate.failed));
  }
  return report;
}

CompareReport compare_runs(const Run& base, const RunSamples& base_samples, const Run& candidate,
                           const RunSamples& candidate_samples, const CompareOptions& options) {
  const std::string reason = workload_mismatch_reason(base, candidate);
  if (!reason.empty() && !options.force) {
    throw WorkloadMismatch(
        fmt::format("refusing to compare {} with {}: {} (use --force to compare anyway)",
                    base.run_id, candidate.run_id, reason));
  }
  CompareReport report = compare_samples(base_samples, candidate_samples, options);
  report.base_id = base.run_id;
  report.candidate_id = candidate.run_id;
  report.base_workload = workload_display_name(base.workload);
  report.candidate_workload = workload_display_name(candidate.workload);
  if (!reason.empty()) report.warnings.insert(report.warnings.begin(), "forced: " + reason);
  return report;
}

CompareReport compare_run_sets(std::span<const RunSamples> base,
                               std::span<const RunSamples> candidate,
                               const CompareOptions& options) {
  if (base.size() < 2 || candidate.size() < 2) {
    throw std::invalid_argument(fmt::format(
        "the run-level test needs at least two runs on each side (got {} base, {} candidate); "
        "with one run each, compare runs per request",
        base.size(), candidate.size()));
  }
  CompareReport report;
  report.alpha = options.alpha;
  report.max_regression = options.max_regression;
  report.unit = TestUnit::kRun;
  report.paired = options.paired && base.size() == candidate.size();
  report.base_runs = base.size();
  report.candidate_runs = candidate.size();
  for (const auto& r : base) report.base_requests += r.requests;
  for (const auto& r : candidate) report.candidate_requests += r.requests;
  const std::vector<MetricSpec> specs = latency_specs(options);
  report.alpha_per_metric = options.alpha / static_cast<double>(specs.size());
  for (const auto& spec : specs) {
    report.metrics.push_back(compare_metric_over_runs(spec, base, candidate, report.paired,
                                                      report.alpha_per_metric, options));
    if (report.metrics.back().regression) report.regression = true;
  }
  if (report.paired && base.size() < 6) {
    report.warnings.push_back(fmt::format(
        "{} pairs give the t-test {} degrees of freedom: only large changes can be significant",
        base.size(), base.size() - 1));
  }
  std::size_t base_failed = 0, candidate_failed = 0;
  for (const auto& r : base) base_failed += r.failed;
  for (const auto& r : candidate) candidate_failed += r.failed;
  if (base_failed != candidate_failed) {
    report.warnings.push_back(
        fmt::format("failed requests: base {}, candidate {}", base_failed, candidate_failed));
  }
  return report;
}

CompareReport compare_run_sets(std::span<const Run> base, std::span<const RunSamples> base_samples,
                               std::span<const Run> candidate,
                               std::span<const RunSamples> candidate_samples,
                               const CompareOptions& options) {
  if (base.size() != base_samples.size() || candidate.size() != candidate_samples.size())
    throw std::invalid_argument("compare_run_sets: one samples entry per run");
  if (base.empty() || candidate.empty())
    throw std::invalid_argument("compare_run_sets: no runs on one side");
  // Every run must have measured the first base run's workload.
  std::vector<std::string> reasons;
  auto check = [&](const Run& run) {
    const std::string reason = workload_mismatch_reason(base.front(), run);
    if (!reason.empty()) reasons.push_back(fmt::format("{}: {}", run.run_id, reason));
  };
  for (const auto& r : base.subspan(1)) check(r);
  for (const auto& r : candidate) check(r);
  if (!reasons.empty() && !options.force) {
    throw WorkloadMismatch(
        fmt::format("refusing to compare {} with {}: {} (use --force to compare anyway)",
                    join_ids(base), join_ids(candidate), reasons.front()));
  }
  CompareReport report = compare_run_sets(base_samples, candidate_samples, options);
  report.base_id = join_ids(base);
  report.candidate_id = join_ids(candidate);
  report.base_workload = workload_display_name(base.front().workload);
  report.candidate_workload = workload_display_name(candidate.front().workload);
  for (auto it = reasons.rbegin(); it != reasons.rend(); ++it)
    report.warnings.insert(report.warnings.begin(), "forced: " + *it);
  return report;
}

std::string to_string(TestUnit unit) {
  return unit == TestUnit::kRun ? "run" : "request";
}

std::string compare_markdown(const CompareReport& r) {
  std::string out = fmt::format("## Prism compare: `{}` → `{}`\n\n", r.base_id, r.candidate_id);
  std::vector<std::string> failing;
  for (const auto& m : r.metrics)
    if (m.regression) failing.push_back(fmt::format("{} {}", m.spec.name, percent(m.change)));
  if (r.regression) {
    std::string list;
    for (std::size_t i = 0; i < failing.size(); ++i) list += (i ? ", " : "") + failing[i];
    out += fmt::format("**Result: REGRESSION** — {}\n\n", list);
  } else {
    out += "**Result: pass** — no significant regression";
    out += r.max_regression > 0 ? fmt::format(" beyond {:g}%", r.max_regression * 100.0) : "";
    out += "\n\n";
  }
  const bool by_run = r.unit == TestUnit::kRun;
  out += fmt::format(
      "α = {:g} split over {} metrics (Bonferroni: {:.4g} each); change = candidate / base − 1 "
      "with its {:g}% {} CI; workload: {}.\n\n",
      r.alpha, r.metrics.size(), r.alpha_per_metric, (1.0 - r.alpha_per_metric) * 100.0,
      by_run ? "t" : "bootstrap",
      r.base_workload == r.candidate_workload ? r.base_workload
                                              : r.base_workload + " vs " + r.candidate_workload);
  if (by_run) {
    out += fmt::format(
        "Unit of the test: the run ({} base, {} candidate{}); base and candidate are geometric "
        "means of the per-run values.\n\n",
        r.base_runs, r.candidate_runs, r.paired ? ", paired in the order given" : ", unpaired");
  } else {
    out +=
        "Unit of the test: the request (one run per side; valid only without drift between "
        "the runs: give several interleaved runs per side to test per run).\n\n";
  }
  out += "| metric | base | candidate | change | CI | p | test | Mann–Whitney p | verdict |\n";
  out += "|:---|---:|---:|---:|:---:|---:|:---|---:|:---|\n";
  for (const auto& m : r.metrics) {
    const std::string unit = m.spec.display_unit;
    out += fmt::format("| {} | {} {} | {} {} | {} | [{}, {}] | {} | {} | {} | {}{} |\n",
                       m.spec.name, format_value(m.base * m.spec.display_scale), unit,
                       format_value(m.candidate * m.spec.display_scale), unit, percent(m.change),
                       percent(m.change_ci.low), percent(m.change_ci.high), p_text(m.p_value),
                       m.test, p_text(m.mann_whitney_p),
                       m.regression ? "**" + to_string(m.verdict) + "**" : to_string(m.verdict),
                       m.note.empty() ? "" : " (" + m.note + ")");
  }
  out += by_run ? fmt::format(
                      "\nSamples: base {} runs ({} requests), candidate {} runs ({} "
                      "requests).\n",
                      r.base_runs, r.base_requests, r.candidate_runs, r.candidate_requests)
                : fmt::format("\nSamples: base {} requests, candidate {} requests.\n",
                              r.metrics.empty() ? 0 : r.metrics.front().base_n,
                              r.metrics.empty() ? 0 : r.metrics.front().candidate_n);
  for (const auto& w : r.warnings) out += "\n> Note: " + w + "\n";
  return out;
}

std::string compare_junit(const CompareReport& r) {
  std::size_t failures = 0;
  for (const auto& m : r.metrics)
    if (m.regression) ++failures;
  std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  out += fmt::format("<testsuites name=\"prism compare\" tests=\"{}\" failures=\"{}\">\n",
                     r.metrics.size(), failures);
  out += fmt::format(
      "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"0\">\n",
      escape_markup("prism compare " + r.base_id + " -> " + r.candidate_id, true), r.metrics.size(),
      failures);
  for (const auto& m : r.metrics) {
    const std::string summary =
        fmt::format("{}: base {} {}, candidate {} {}, change {} (CI {} .. {}), p = {}, verdict {}",
                    m.spec.name, format_value(m.base * m.spec.display_scale), m.spec.display_unit,
                    format_value(m.candidate * m.spec.display_scale), m.spec.display_unit,
                    percent(m.change), percent(m.change_ci.low), percent(m.change_ci.high),
                    p_text(m.p_value), to_string(m.verdict));
    out += fmt::format("    <testcase classname=\"prism.compare\" name=\"{}\">\n",
                       escape_markup(m.spec.name, true));
    if (m.regression) {
      out += fmt::format(
          "      <failure message=\"{}\" type=\"regression\">{}</failure>\n",
          escape_markup(fmt::format("{} slower by {}", m.spec.name, percent(m.change)), true),
          escape_markup(summary, true));
    }
    out += fmt::format("      <system-out>{}</system-out>\n", escape_markup(summary, true));
    out += "    </testcase>\n";
  }
  out += "  </testsuite>\n</testsuites>\n";
  return out;
}

}  // namespace prism::results
