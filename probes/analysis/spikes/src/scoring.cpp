#include "prism/spikes/scoring.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace prism::spikes {

double precision_of(uint64_t tp, uint64_t fp) {
  return tp + fp == 0 ? 1.0 : static_cast<double>(tp) / static_cast<double>(tp + fp);
}

double recall_of(uint64_t tp, uint64_t fn) {
  return tp + fn == 0 ? 1.0 : static_cast<double>(tp) / static_cast<double>(tp + fn);
}

double f1_of(double precision, double recall) {
  return precision + recall <= 0 ? 0.0 : 2.0 * precision * recall / (precision + recall);
}

std::vector<uint8_t> labels_from_windows(const std::vector<FaultWindow>& windows, uint64_t n) {
  std::vector<uint8_t> labels(n, 0);
  for (const FaultWindow& w : windows) {
    if (w.last < w.first) throw std::invalid_argument("fault window ends before it starts");
    for (uint64_t i = w.first; i <= w.last && i < n; ++i) labels[i] = 1;
  }
  return labels;
}

std::vector<uint8_t> ambient_mask(const std::vector<double>& off_cpu_ns,
                                  const std::vector<double>& duration_ns,
                                  const ScoringOptions& options) {
  std::vector<uint8_t> mask(duration_ns.size(), 0);
  for (size_t i = 0; i < off_cpu_ns.size() && i < duration_ns.size(); ++i) {
    const double off = off_cpu_ns[i];
    const double on = std::max(0.0, duration_ns[i] - off);
    mask[i] = off > options.ambient_min_off_cpu_ns && off > options.ambient_min_off_cpu_share * on;
  }
  return mask;
}

void Score::finish() {
  raw_precision = precision_of(tp, raw_fp);
  raw_f1 = f1_of(raw_precision, recall_of(tp, fn));
  raw_false_alarms_per_10k =
      raw_clean_iterations == 0
          ? 0.0
          : 1e4 * static_cast<double>(raw_false_alarms) / static_cast<double>(raw_clean_iterations);
  precision = precision_of(tp, fp);
  recall = recall_of(tp, fn);
  f1 = f1_of(precision, recall);
  false_alarms_per_10k = clean_iterations == 0 ? 0.0
                                               : 1e4 * static_cast<double>(false_alarms) /
                                                     static_cast<double>(clean_iterations);
  flagged_clean_per_10k =
      clean_iterations == 0 ? 0.0
                            : 1e4 * static_cast<double>(fp) / static_cast<double>(clean_iterations);
  onset_delay_mean =
      windows_detected == 0 ? 0.0 : onset_delay_sum_ / static_cast<double>(windows_detected);
  if (latencies_ns_.empty()) {
    latency_mean_ns = latency_p99_ns = latency_max_ns = 0;
  } else {
    std::vector<double> sorted = latencies_ns_;
    std::sort(sorted.begin(), sorted.end());
    latency_mean_ns = latency_sum_ns_ / static_cast<double>(sorted.size());
    latency_max_ns = sorted.back();
    const size_t k = static_cast<size_t>(std::ceil(0.99 * static_cast<double>(sorted.size()))) - 1;
    latency_p99_ns = sorted[std::min(k, sorted.size() - 1)];
  }
}

void Score::merge(const Score& o) {
  iterations += o.iterations;
  tp += o.tp;
  fp += o.fp;
  fn += o.fn;
  tn += o.tn;
  windows += o.windows;
  windows_detected += o.windows_detected;
  alerts += o.alerts;
  false_alarms += o.false_alarms;
  clean_iterations += o.clean_iterations;
  ambient_iterations += o.ambient_iterations;
  ambient_alerts += o.ambient_alerts;
  raw_fp += o.raw_fp;
  raw_false_alarms += o.raw_false_alarms;
  raw_clean_iterations += o.raw_clean_iterations;
  onset_delay_sum_ += o.onset_delay_sum_;
  onset_delay_max = std::max(onset_delay_max, o.onset_delay_max);
  latency_sum_ns_ += o.latency_sum_ns_;
  latencies_ns_.insert(latencies_ns_.end(), o.latencies_ns_.begin(), o.latencies_ns_.end());
  finish();
}

nlohmann::json Score::to_json() const {
  return {{"iterations", iterations},
          {"tp", tp},
          {"fp", fp},
          {"fn", fn},
          {"tn", tn},
          {"precision", precision},
          {"recall", recall},
          {"f1", f1},
          {"windows", windows},
          {"windows_detected", windows_detected},
          {"alerts", alerts},
          {"false_alarms", false_alarms},
          {"clean_iterations", clean_iterations},
          {"false_alarms_per_10k", false_alarms_per_10k},
          {"flagged_clean_per_10k", flagged_clean_per_10k},
          {"onset_delay_iterations_mean", onset_delay_mean},
          {"onset_delay_iterations_max", onset_delay_max},
          {"alert_latency_ns_mean", latency_mean_ns},
          {"alert_latency_ns_p99", latency_p99_ns},
          {"alert_latency_ns_max", latency_max_ns},
          {"ambient_iterations", ambient_iterations},
          {"ambient_alerts", ambient_alerts},
          {"raw",
           {{"fp", raw_fp},
            {"precision", raw_precision},
            {"f1", raw_f1},
            {"false_alarms", raw_false_alarms},
            {"clean_iterations", raw_clean_iterations},
            {"false_alarms_per_10k", raw_false_alarms_per_10k}}}};
}

Score score(const std::vector<uint8_t>& labels, const std::vector<uint8_t>& flagged,
            const std::vector<FaultWindow>& windows, const std::vector<AlertEpisode>& episodes,
            const ScoringOptions& options, const std::vector<uint8_t>& ambient) {
  if (labels.size() != flagged.size())
    throw std::invalid_argument("scoring: " + std::to_string(labels.size()) + " labels but " +
                                std::to_string(flagged.size()) + " verdicts");
  if (!ambient.empty() && ambient.size() != labels.size())
    throw std::invalid_argument("scoring: " + std::to_string(labels.size()) + " labels but " +
                                std::to_string(ambient.size()) + " ambient marks");
  const uint64_t n = labels.size();
  // Iterations just after a window: neither right nor wrong.
  std::vector<uint8_t> grace(n, 0);
  for (const FaultWindow& w : windows)
    for (uint64_t i = w.last + 1; i <= w.last + options.tolerance && i < n; ++i)
      if (!labels[i]) grace[i] = 1;
  // Ambient interference outside faults, and the tolerance after it; prefix
  // counts so an episode can ask whether it overlaps any.
  std::vector<uint8_t> excused(n, 0);
  for (uint64_t i = 0; i < ambient.size(); ++i)
    if (ambient[i] && !labels[i])
      for (uint64_t j = i; j <= i + options.tolerance && j < n && !labels[j]; ++j) excused[j] = 1;
  std::vector<uint64_t> excused_before(n + 1, 0);
  for (uint64_t i = 0; i < n; ++i) excused_before[i + 1] = excused_before[i] + excused[i];

  Score s;
  for (uint64_t i = options.scored_from; i < n; ++i) {
    if (grace[i]) continue;
    const bool truth = labels[i] != 0, said = flagged[i] != 0;
    if (!truth) {
      ++s.raw_clean_iterations;
      if (said) ++s.raw_fp;
    }
    if (excused[i]) {
      ++s.ambient_iterations;
      continue;
    }
    ++s.iterations;
    if (truth && said)
      ++s.tp;
    else if (truth)
      ++s.fn;
    else if (said)
      ++s.fp;
    else
      ++s.tn;
    if (!truth) ++s.clean_iterations;
  }

  auto overlaps = [&](const AlertEpisode& e, const FaultWindow& w) {
    return e.first <= w.last + options.tolerance && e.last >= w.first;
  };
  for (const FaultWindow& w : windows) {
    if (w.last < options.scored_from) continue;
    ++s.windows;
    for (const AlertEpisode& e : episodes) {
      if (!overlaps(e, w)) continue;
      ++s.windows_detected;
      const double delay = e.first > w.first ? static_cast<double>(e.first - w.first) : 0.0;
      s.onset_delay_sum_ += delay;
      s.onset_delay_max = std::max(s.onset_delay_max, delay);
      break;
    }
  }
  for (const AlertEpisode& e : episodes) {
    if (e.last < options.scored_from) continue;
    ++s.alerts;
    s.latencies_ns_.push_back(e.latency_ns);
    s.latency_sum_ns_ += e.latency_ns;
    const bool matched = std::any_of(windows.begin(), windows.end(),
                                     [&](const FaultWindow& w) { return overlaps(e, w); });
    if (matched) continue;
    ++s.raw_false_alarms;
    const uint64_t hi = std::min<uint64_t>(e.last + 1, n), lo = std::min<uint64_t>(e.first, hi);
    if (excused_before[hi] > excused_before[lo])
      ++s.ambient_alerts;
    else
      ++s.false_alarms;
  }
  s.finish();
  return s;
}

}  // namespace prism::spikes
