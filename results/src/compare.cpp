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
  return p < 1e-4 ? fmt::format("{:.1e}", p) : fmt::format("{:.4f}", p);
}

std::vector<double> replicates_for(const std::vector<double>& sorted, const MetricSpec& spec,
                                   std::size_t resamples, Rng& rng) {
  if (spec.quantile >= 0.0)
    return bootstrap_quantile_replicates(sorted, spec.quantile, resamples, rng);
  return bootstrap_mean_replicates(sorted, resamples, rng);
}

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

  const bool significant = m.p_value < alpha_per_metric;
  const bool worse = spec.better == Better::kLower ? m.change > 0 : m.change < 0;
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
  return m;
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
  out += fmt::format(
      "α = {:g} split over {} metrics (Bonferroni: {:.4g} each); change = candidate / base − 1 "
      "with its {:g}% bootstrap CI; workload: {}.\n\n",
      r.alpha, r.metrics.size(), r.alpha_per_metric, (1.0 - r.alpha_per_metric) * 100.0,
      r.base_workload == r.candidate_workload ? r.base_workload
                                              : r.base_workload + " vs " + r.candidate_workload);
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
  out += fmt::format("\nSamples: base {} requests, candidate {} requests.\n",
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
