#include "prism/results/metrics.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <fmt/core.h>

namespace prism::results {
namespace {

std::optional<Quantity> quantity_from(const std::string& text) {
  if (text == "ttft") return Quantity::kTtft;
  if (text == "tpot") return Quantity::kTpot;
  if (text == "itl") return Quantity::kItl;
  if (text == "e2e") return Quantity::kE2e;
  return std::nullopt;
}

std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// Wilson score interval for a binomial proportion.
Interval wilson(double successes, double n, double confidence) {
  if (n <= 0) return {};
  const double z = normal_quantile(1.0 - (1.0 - confidence) / 2.0);
  const double p = successes / n;
  const double denominator = 1.0 + z * z / n;
  const double centre = (p + z * z / (2 * n)) / denominator;
  const double half = z * std::sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator;
  return {std::max(0.0, centre - half), std::min(1.0, centre + half)};
}

double read_seconds(const nlohmann::json& slo, const char* ms_key, const char* s_key, bool& found) {
  if (auto it = slo.find(ms_key); it != slo.end() && it->is_number()) {
    found = true;
    return it->get<double>() / 1000.0;
  }
  if (auto it = slo.find(s_key); it != slo.end() && it->is_number()) {
    found = true;
    return it->get<double>();
  }
  found = false;
  return 0.0;
}

}  // namespace

MetricSpec parse_metric(const std::string& name) {
  MetricSpec spec;
  spec.name = name;
  const auto dot = name.find('.');
  const std::string head = name.substr(0, dot);
  const std::string tail = dot == std::string::npos ? "" : name.substr(dot + 1);
  auto unknown = [&] {
    return std::invalid_argument(fmt::format(
        "unknown metric '{}' (expected ttft|tpot|itl|e2e.p<N>|mean, throughput.rps|input_tps|"
        "output_tps, goodput, goodput.ratio, errors.ratio)",
        name));
  };
  if (auto q = quantity_from(head)) {
    spec.quantity = q;
    spec.statistic = tail;
    spec.display_unit = "ms";
    spec.display_scale = 1000.0;
    spec.better = Better::kLower;
    if (tail == "mean") {
      spec.label = upper(head) + " mean";
      return spec;
    }
    if (tail.size() >= 2 && tail[0] == 'p') {
      std::size_t used = 0;
      double p = 0.0;
      try {
        p = std::stod(tail.substr(1), &used);
      } catch (const std::exception&) {
        throw unknown();
      }
      if (used != tail.size() - 1 || !(p >= 0.0 && p <= 100.0)) throw unknown();
      spec.quantile = p / 100.0;
      spec.label = upper(head) + " " + tail;
      return spec;
    }
    throw unknown();
  }
  spec.statistic = tail;
  if (head == "throughput") {
    spec.better = Better::kHigher;
    if (tail == "rps") {
      spec.display_unit = "req/s";
      spec.label = "Throughput";
    } else if (tail == "input_tps" || tail == "output_tps") {
      spec.display_unit = "tok/s";
      spec.label = tail == "input_tps" ? "Input tok/s" : "Output tok/s";
    } else {
      throw unknown();
    }
    return spec;
  }
  if (head == "goodput" && (tail.empty() || tail == "ratio")) {
    spec.better = Better::kHigher;
    spec.statistic = tail.empty() ? "rps" : "ratio";
    spec.display_unit = tail.empty() ? "req/s" : "%";
    spec.display_scale = tail.empty() ? 1.0 : 100.0;
    spec.label = tail.empty() ? "Goodput" : "Goodput ratio";
    return spec;
  }
  if (head == "errors" && tail == "ratio") {
    spec.better = Better::kLower;
    spec.display_unit = "%";
    spec.display_scale = 100.0;
    spec.label = "Errors";
    return spec;
  }
  throw unknown();
}

Slo slo_from_configuration(const nlohmann::json& configuration) {
  Slo slo;
  if (!configuration.is_object()) return slo;
  auto it = configuration.find("slo");
  if (it == configuration.end() || !it->is_object()) return slo;
  bool found = false;
  double v = read_seconds(*it, "ttft_ms", "ttft_s", found);
  if (found) slo.ttft_s = v;
  v = read_seconds(*it, "tpot_ms", "tpot_s", found);
  if (found) slo.tpot_s = v;
  v = read_seconds(*it, "e2e_ms", "e2e_s", found);
  if (found) slo.e2e_s = v;
  return slo;
}

Estimate compute_metric(const RunSamples& samples, const MetricSpec& spec, const Slo& slo,
                        const BootstrapOptions& options) {
  Estimate e;
  e.confidence = options.confidence;
  if (spec.quantity) {
    const auto& values = samples_of(samples, *spec.quantity);
    if (values.empty()) return e;
    if (spec.quantile >= 0.0) {
      if (samples.sorted)
        return quantile_with_order_statistic_ci(values, spec.quantile, options.confidence);
      std::vector<double> sorted(values);
      std::sort(sorted.begin(), sorted.end());
      return quantile_with_order_statistic_ci(sorted, spec.quantile, options.confidence);
    }
    return mean_with_normal_ci(values.size(), mean(values), sample_stddev(values),
                               options.confidence);
  }
  const double duration = samples.duration_s();
  if (spec.statistic == "rps" && spec.name.starts_with("throughput")) {
    if (duration <= 0 || samples.requests == 0) return e;
    e.n = samples.requests;
    e.value = static_cast<double>(samples.succeeded) / duration;
    return e;
  }
  if (spec.statistic == "input_tps" || spec.statistic == "output_tps") {
    if (duration <= 0 || samples.requests == 0) return e;
    e.n = samples.requests;
    e.value = static_cast<double>(spec.statistic == "input_tps" ? samples.input_tokens
                                                                : samples.output_tokens) /
              duration;
    return e;
  }
  if (spec.name == "errors.ratio") {
    if (samples.requests == 0) return e;
    e.n = samples.requests;
    const auto n = static_cast<double>(samples.requests);
    e.value = static_cast<double>(samples.failed) / n;
    const Interval ci = wilson(static_cast<double>(samples.failed), n, options.confidence);
    e.ci_low = ci.low;
    e.ci_high = ci.high;
    return e;
  }
  // Goodput: requests that succeeded and met every SLO the run declared.
  if (slo.empty() || samples.requests == 0 || duration <= 0) return e;
  std::size_t good = 0;
  for (std::size_t i = 0; i < samples.prompt_tokens.size(); ++i) {
    const double ttft = samples.ttft_by_request[i];
    const double tpot = samples.tpot_by_request[i];
    const double e2e = samples.e2e_by_request[i];
    bool ok = true;
    if (slo.ttft_s) ok = ok && !std::isnan(ttft) && ttft <= *slo.ttft_s;
    if (slo.tpot_s) ok = ok && (std::isnan(tpot) || tpot <= *slo.tpot_s);
    if (slo.e2e_s) ok = ok && e2e <= *slo.e2e_s;
    if (ok) ++good;
  }
  const auto n = static_cast<double>(samples.requests);
  const Interval ci = wilson(static_cast<double>(good), n, options.confidence);
  e.n = samples.requests;
  const double scale = spec.statistic == "ratio" ? 1.0 : n / duration;
  e.value = static_cast<double>(good) / n * scale;
  e.ci_low = ci.low * scale;
  e.ci_high = ci.high * scale;
  return e;
}

const std::vector<std::string>& standard_metric_names() {
  static const std::vector<std::string> names{"ttft.p50",
                                              "ttft.p90",
                                              "ttft.p99",
                                              "ttft.mean",
                                              "tpot.p50",
                                              "tpot.p90",
                                              "tpot.p99",
                                              "tpot.mean",
                                              "itl.p50",
                                              "itl.p99",
                                              "e2e.p50",
                                              "e2e.p90",
                                              "e2e.p99",
                                              "e2e.mean",
                                              "throughput.rps",
                                              "throughput.input_tps",
                                              "throughput.output_tps",
                                              "goodput",
                                              "goodput.ratio",
                                              "errors.ratio"};
  return names;
}

const std::vector<std::string>& default_table_metrics() {
  static const std::vector<std::string> names{"ttft.p50", "ttft.p99", "tpot.p50", "goodput"};
  return names;
}

}  // namespace prism::results
