#include "prism/harness/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include <fmt/core.h>

#include "prism/results/run_file.h"
#include "prism/results/samples.h"

namespace prism::harness {

using results::Estimate;
using results::Observation;
using results::RequestStatus;

namespace {

double parse_duration_s(const std::string& text, const std::string& part) {
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    throw std::invalid_argument(
        fmt::format("SLO '{}': '{}' is not a duration like 500ms", part, text));
  }
  const std::string unit = text.substr(used);
  double scale;
  if (unit.empty() || unit == "ms") {
    scale = 1e-3;
  } else if (unit == "us") {
    scale = 1e-6;
  } else if (unit == "s") {
    scale = 1.0;
  } else {
    throw std::invalid_argument(fmt::format("SLO '{}': unknown unit '{}' (us, ms, s)", part, unit));
  }
  if (!(value > 0) || !std::isfinite(value)) {
    throw std::invalid_argument(fmt::format("SLO '{}': the bound must be positive", part));
  }
  return value * scale;
}

nlohmann::json number_or_null(double x) {
  return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json();
}

nlohmann::json estimate_json(const Estimate& e) {
  nlohmann::json j = {{"value", number_or_null(e.value)}};
  if (e.has_ci()) {
    j["ci_low"] = e.ci_low;
    j["ci_high"] = e.ci_high;
    j["confidence"] = e.confidence;
  }
  return j;
}

std::string percentile_key(double p) {
  std::string s = fmt::format("p{}", p);
  std::replace(s.begin(), s.end(), '.', '_');
  return s;  // p50, p99_9
}

nlohmann::json distribution_json(const Distribution& d) {
  nlohmann::json j = {{"unit", "s"}, {"count", d.count}, {"mean", estimate_json(d.mean)}};
  if (d.count > 0) {
    j["min"] = d.min;
    j["max"] = d.max;
  }
  for (const auto& p : d.percentiles) j[percentile_key(p.percentile)] = estimate_json(p.estimate);
  return j;
}

bool meets(const results::RequestSamples& s, const Slo& slo) {
  if (slo.ttft_s && (!s.ttft_s || *s.ttft_s > *slo.ttft_s)) return false;
  if (slo.tpot_s && s.tpot_s && *s.tpot_s > *slo.tpot_s) return false;
  if (slo.e2e_s && (!s.e2e_s || *s.e2e_s > *slo.e2e_s)) return false;
  return true;
}

GroupMetrics group(const std::string& label, const std::vector<const Observation*>& members,
                   const MetricsOptions& options) {
  GroupMetrics g;
  g.label = label;
  std::vector<double> ttft, tpot, e2e;
  for (const Observation* o : members) {
    if (o->status == RequestStatus::kError) ++g.errors;
    if (!results::counts_as_measured(*o)) continue;
    ++g.requests;
    const auto s = results::per_request_samples(*o);
    if (s.ttft_s) ttft.push_back(*s.ttft_s);
    if (s.tpot_s) tpot.push_back(*s.tpot_s);
    if (s.e2e_s) e2e.push_back(*s.e2e_s);
  }
  g.ttft = summarize(ttft, options);
  g.tpot = summarize(tpot, options);
  g.e2e = summarize(e2e, options);
  return g;
}

nlohmann::json group_json(const GroupMetrics& g) {
  return {{"label", g.label},
          {"requests", g.requests},
          {"errors", g.errors},
          {"ttft", distribution_json(g.ttft)},
          {"tpot", distribution_json(g.tpot)},
          {"e2e", distribution_json(g.e2e)}};
}

}  // namespace

Slo parse_slo(const std::string& text) {
  Slo slo;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    const std::string part = text.substr(start, end - start);
    start = end + 1;
    if (part.empty()) {
      if (end == text.size()) break;
      continue;
    }
    const std::size_t eq = part.find('=');
    if (eq == std::string::npos) {
      throw std::invalid_argument(
          fmt::format("SLO '{}': expected NAME=DURATION, e.g. ttft=500ms", part));
    }
    const std::string name = part.substr(0, eq);
    const double bound = parse_duration_s(part.substr(eq + 1), part);
    if (name == "ttft") {
      slo.ttft_s = bound;
    } else if (name == "tpot") {
      slo.tpot_s = bound;
    } else if (name == "e2e") {
      slo.e2e_s = bound;
    } else {
      throw std::invalid_argument(
          fmt::format("SLO '{}': unknown metric '{}' (ttft, tpot, e2e)", part, name));
    }
  }
  if (slo.empty()) throw std::invalid_argument(fmt::format("SLO '{}': no objective given", text));
  return slo;
}

std::string to_string(const Slo& slo) {
  std::string s;
  auto add = [&](const char* name, const std::optional<double>& v) {
    if (!v) return;
    if (!s.empty()) s += ",";
    s += fmt::format("{}={}ms", name, *v * 1e3);
  };
  add("ttft", slo.ttft_s);
  add("tpot", slo.tpot_s);
  add("e2e", slo.e2e_s);
  return s;
}

Estimate Distribution::at(double percentile) const {
  for (const auto& p : percentiles) {
    if (p.percentile == percentile) return p.estimate;
  }
  return {};
}

Distribution summarize(std::span<const double> values, const MetricsOptions& options) {
  Distribution d;
  d.count = values.size();
  std::vector<double> sorted(values.begin(), values.end());
  std::sort(sorted.begin(), sorted.end());
  if (!sorted.empty()) {
    d.min = sorted.front();
    d.max = sorted.back();
  }
  // The naive bootstrap of the mean costs n x resamples; past 2e7 the normal
  // approximation (CLT) is both accurate and affordable.
  if (sorted.size() * options.bootstrap.resamples <= 20'000'000) {
    d.mean = results::mean_with_ci(sorted, options.bootstrap);
  } else {
    d.mean.value = results::mean(sorted);
    d.mean.n = sorted.size();
    d.mean.confidence = options.bootstrap.confidence;
    const double half = results::normal_quantile(0.5 + options.bootstrap.confidence / 2) *
                        results::sample_stddev(sorted) /
                        std::sqrt(static_cast<double>(sorted.size()));
    d.mean.ci_low = d.mean.value - half;
    d.mean.ci_high = d.mean.value + half;
  }
  const double confidence = options.bootstrap.confidence;
  for (double p : options.percentiles) {
    // Where the order statistics cannot reach the confidence at all (p99 below 368 samples at
    // 95 %), the bootstrap's percentile interval would still give two numbers, but they cover
    // far less than claimed: the value alone then, as the store and reports show it.
    const bool supported = sorted.empty() || !(confidence > 0.0 && confidence < 1.0) || [&] {
      const auto ranks = results::quantile_ci_ranks(sorted.size(), p / 100.0, confidence);
      return !ranks.lower_clamped && !ranks.upper_clamped;
    }();
    Estimate e;
    if (supported) {
      e = results::quantile_with_ci(sorted, p / 100.0, options.bootstrap);
    } else {
      e.value = results::quantile_sorted(sorted, p / 100.0);
      e.n = sorted.size();
      e.confidence = confidence;
    }
    d.percentiles.push_back({p, e});
  }
  return d;
}

Metrics compute_metrics(std::span<const Observation> observations, const MetricsOptions& options) {
  Metrics m;
  m.slo = options.slo;
  const results::RunSamples samples = results::collect_samples(observations);
  std::vector<double> normalized, lateness;
  std::vector<const Observation*> measured_all;
  for (const auto& o : observations) {
    if (o.warmup) {
      ++m.warmup;
      continue;
    }
    measured_all.push_back(&o);
    ++m.requests;
    lateness.push_back(std::max(0.0, o.sent_s - o.scheduled_s));
    if (o.status == RequestStatus::kCancelled) {
      ++m.cancelled;
      continue;
    }
    if (o.status == RequestStatus::kError) {
      ++m.failed;
      ++m.errors_by_class[results::to_string(o.error)];
      continue;
    }
    ++m.succeeded;
    const auto s = results::per_request_samples(o);
    const std::uint64_t out =
        o.completion_tokens != 0 ? o.completion_tokens : o.token_times_s.size();
    m.output_tokens += out;
    m.input_tokens += o.prompt_tokens;
    if (s.e2e_s && out > 0) normalized.push_back(*s.e2e_s / static_cast<double>(out));
    if (meets(s, options.slo)) ++m.slo_met;
  }
  m.duration_s = m.requests > 0 ? samples.duration_s() : 0.0;
  if (m.duration_s > 0) {
    m.request_throughput = static_cast<double>(m.succeeded) / m.duration_s;
    m.input_token_throughput = static_cast<double>(m.input_tokens) / m.duration_s;
    m.output_token_throughput = static_cast<double>(m.output_tokens) / m.duration_s;
    m.goodput = static_cast<double>(m.slo_met) / m.duration_s;
  }
  m.ttft = summarize(samples.ttft_s, options);
  m.tpot = summarize(samples.tpot_s, options);
  m.itl = summarize(samples.itl_s, options);
  m.e2e = summarize(samples.e2e_s, options);
  m.normalized_latency = summarize(normalized, options);
  m.lateness = summarize(lateness, options);

  // Breakdowns: by prompt length bucket and by turn index.
  std::vector<std::vector<const Observation*>> buckets(options.context_bucket_edges.size() + 1);
  std::map<std::uint32_t, std::vector<const Observation*>> turns;
  for (const Observation* o : measured_all) {
    if (o->status == RequestStatus::kCancelled) continue;
    std::size_t b = 0;
    while (b < options.context_bucket_edges.size() &&
           o->prompt_tokens > options.context_bucket_edges[b])
      ++b;
    buckets[b].push_back(o);
    turns[o->turn].push_back(o);
  }
  for (std::size_t b = 0; b < buckets.size(); ++b) {
    if (buckets[b].empty()) continue;
    const std::string label = b < options.context_bucket_edges.size()
                                  ? fmt::format("<={}", options.context_bucket_edges[b])
                                  : fmt::format(">{}", options.context_bucket_edges.back());
    m.by_context.push_back(group(label, buckets[b], options));
  }
  for (const auto& [turn, members] : turns) {
    m.by_turn.push_back(group(fmt::format("turn {}", turn), members, options));
  }
  return m;
}

nlohmann::json to_json(const Metrics& m) {
  nlohmann::json j;
  j["requests"] = {{"measured", m.requests},
                   {"succeeded", m.succeeded},
                   {"failed", m.failed},
                   {"cancelled", m.cancelled},
                   {"warmup_excluded", m.warmup}};
  j["errors_by_class"] = m.errors_by_class;
  j["duration_s"] = m.duration_s;
  j["tokens"] = {{"input", m.input_tokens}, {"output", m.output_tokens}};
  j["throughput"] = {{"requests_per_s", m.request_throughput},
                     {"input_tokens_per_s", m.input_token_throughput},
                     {"output_tokens_per_s", m.output_token_throughput}};
  j["goodput"] = {
      {"slo", to_string(m.slo)},
      {"requests_meeting_slo", m.slo_met},
      {"requests_per_s", m.goodput},
      {"fraction", m.succeeded > 0 ? static_cast<double>(m.slo_met) / m.requests : 0.0}};
  j["ttft"] = distribution_json(m.ttft);
  j["tpot"] = distribution_json(m.tpot);
  j["itl"] = distribution_json(m.itl);
  j["e2e"] = distribution_json(m.e2e);
  j["normalized_latency"] = distribution_json(m.normalized_latency);
  j["normalized_latency"]["unit"] = "s/token";
  j["lateness"] = distribution_json(m.lateness);
  j["by_context_length"] = nlohmann::json::array();
  for (const auto& g : m.by_context) j["by_context_length"].push_back(group_json(g));
  j["by_turn"] = nlohmann::json::array();
  for (const auto& g : m.by_turn) j["by_turn"].push_back(group_json(g));
  return j;
}

std::string format_summary(const Metrics& m) {
  std::string out;
  std::string errors;
  for (const auto& [name, count] : m.errors_by_class) {
    errors += fmt::format("{}{} {}", errors.empty() ? "" : ", ", name, count);
  }
  out += fmt::format("Requests   {} ok, {} failed{}, {} cancelled ({} warm-up excluded)\n",
                     m.succeeded, m.failed, errors.empty() ? "" : " (" + errors + ")", m.cancelled,
                     m.warmup);
  out += fmt::format("Duration   {:.2f} s\n", m.duration_s);
  out += fmt::format("Throughput {:.2f} req/s, input {:.1f} tok/s, output {:.1f} tok/s\n",
                     m.request_throughput, m.input_token_throughput, m.output_token_throughput);
  if (!m.slo.empty()) {
    out += fmt::format("Goodput    {:.2f} req/s meeting {} ({:.1f}% of requests)\n", m.goodput,
                       to_string(m.slo),
                       m.requests > 0 ? 100.0 * static_cast<double>(m.slo_met) / m.requests : 0.0);
  }
  out += "\n";
  // Every column starts with a space so wide values never run together.
  std::string header = fmt::format("{:<14}{:>8} {:>10}", "metric (ms)", "n", "mean");
  const Distribution* any = &m.ttft;
  for (const auto& p : any->percentiles)
    header += fmt::format(" {:>10}", percentile_key(p.percentile));
  header += fmt::format("  {:>22}\n", "p99 95% CI");
  out += header;
  auto row = [&](const char* name, const Distribution& d, double scale) {
    std::string line = fmt::format("{:<14}{:>8}", name, d.count);
    auto cell = [&](double v) {
      return std::isfinite(v) ? fmt::format(" {:>10.3f}", v * scale) : fmt::format(" {:>10}", "-");
    };
    line += cell(d.mean.value);
    for (const auto& p : d.percentiles) line += cell(p.estimate.value);
    const Estimate p99 = d.at(99);
    line += p99.has_ci()
                ? fmt::format("  {:>22}", fmt::format("[{:.3f}, {:.3f}]", p99.ci_low * scale,
                                                      p99.ci_high * scale))
                : fmt::format("  {:>22}", "-");
    out += line + "\n";
  };
  row("TTFT", m.ttft, 1e3);
  row("TPOT", m.tpot, 1e3);
  row("ITL", m.itl, 1e3);
  row("E2E", m.e2e, 1e3);
  row("E2E/token", m.normalized_latency, 1e3);
  row("lateness", m.lateness, 1e3);
  if (m.by_context.size() > 1 || m.by_turn.size() > 1) {
    out += fmt::format("\n{:<14}{:>8}{:>8}{:>12}{:>12}{:>12}{:>12}\n", "group", "n", "errors",
                       "TTFT p50", "TTFT p99", "TPOT p50", "E2E p50");
    auto group_row = [&](const GroupMetrics& g) {
      auto ms = [](double v) {
        return std::isfinite(v) ? fmt::format("{:>12.3f}", v * 1e3) : fmt::format("{:>12}", "-");
      };
      out += fmt::format("{:<14}{:>8}{:>8}", g.label, g.requests, g.errors) +
             ms(g.ttft.at(50).value) + ms(g.ttft.at(99).value) + ms(g.tpot.at(50).value) +
             ms(g.e2e.at(50).value) + "\n";
    };
    if (m.by_context.size() > 1) {
      for (const auto& g : m.by_context) group_row(g);
    }
    if (m.by_turn.size() > 1) {
      for (const auto& g : m.by_turn) group_row(g);
    }
  }
  return out;
}

}  // namespace prism::harness
