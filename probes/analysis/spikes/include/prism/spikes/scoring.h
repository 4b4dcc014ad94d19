// Scoring a detector against ground truth: per-iteration labels (is this
// iteration inside an injected fault?), per-iteration verdicts, fault windows
// and alert episodes. Iteration-level precision / recall / F1 (LatencyPrism's
// batch-level F1), event-level detection of fault windows, false alarms per
// 10,000 iterations outside faults, and alert latency.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace prism::spikes {

// Injected fault: iterations [first, last] (inclusive) carry its effect.
struct FaultWindow {
  uint64_t first = 0;
  uint64_t last = 0;
  std::string kind;   // cpu_hog, membw_hog, stage_delay, deschedule, freq_cap
  std::string stage;  // the stage it targets, when it targets one
};

// An alert episode the detector raised: iterations [first, last]; latency_ns
// is the time from the end of the first anomalous iteration to the alert.
struct AlertEpisode {
  uint64_t first = 0;
  uint64_t last = 0;
  double latency_ns = 0;
};

struct ScoringOptions {
  uint64_t scored_from = 0;  // iterations before this (warmup) are not scored
  // Verdicts up to this many iterations after a window ends are neither true
  // nor false positives (an effect that outlives its injection, e.g. a cache
  // refill), and alerts that start there still match the window.
  uint64_t tolerance = 2;
  // Ambient interference (measured runs): an iteration whose thread was off
  // CPU for more than both of these was slowed by something outside the
  // experiment (another process on a shared machine). Outside fault windows
  // such iterations (and the tolerance after them) are not scored, and an
  // alert they explain is an "ambient alert", not a false alarm.
  double ambient_min_off_cpu_ns = 20'000;
  double ambient_min_off_cpu_share = 0.05;  // of the iteration's on-CPU time
};

// 1 for each iteration that ambient interference slowed (see ScoringOptions);
// all 0 when off_cpu_ns is empty.
std::vector<uint8_t> ambient_mask(const std::vector<double>& off_cpu_ns,
                                  const std::vector<double>& duration_ns,
                                  const ScoringOptions& options);

struct Score {
  // Iteration level.
  uint64_t iterations = 0;  // scored
  uint64_t tp = 0, fp = 0, fn = 0, tn = 0;
  double precision = 1, recall = 1, f1 = 1;
  // Event level.
  uint64_t windows = 0;
  uint64_t windows_detected = 0;
  uint64_t alerts = 0;
  uint64_t false_alarms = 0;         // alert episodes that match no window
  uint64_t clean_iterations = 0;     // scored iterations outside windows (and tolerance)
  double false_alarms_per_10k = 0;   // false alarm episodes per 10,000 clean iterations
  double flagged_clean_per_10k = 0;  // flagged iterations per 10,000 clean iterations
  // Delay from the start of a detected window to its first alert, in iterations.
  double onset_delay_mean = 0, onset_delay_max = 0;
  // Ambient interference outside faults: iterations left unscored, alerts it explains.
  uint64_t ambient_iterations = 0;
  uint64_t ambient_alerts = 0;
  // As if no interference were excused: every flag outside fault windows is
  // wrong and every unmatched alert a false alarm.
  uint64_t raw_fp = 0, raw_false_alarms = 0, raw_clean_iterations = 0;
  double raw_false_alarms_per_10k = 0;
  double raw_precision = 1, raw_f1 = 1;
  // Alert latency after the anomalous iteration ended.
  double latency_mean_ns = 0, latency_p99_ns = 0, latency_max_ns = 0;

  // Adds another run's counts (ratios recomputed).
  void merge(const Score& other);
  nlohmann::json to_json() const;

 private:
  friend Score score(const std::vector<uint8_t>&, const std::vector<uint8_t>&,
                     const std::vector<FaultWindow>&, const std::vector<AlertEpisode>&,
                     const ScoringOptions&, const std::vector<uint8_t>&);
  void finish();
  double onset_delay_sum_ = 0;
  double latency_sum_ns_ = 0;
  std::vector<double> latencies_ns_;
};

// Labels from windows: 1 for each iteration inside one. n iterations.
std::vector<uint8_t> labels_from_windows(const std::vector<FaultWindow>& windows, uint64_t n);

// Precision, recall and F1 from counts; an empty denominator counts as 1 (nothing to get wrong).
double precision_of(uint64_t tp, uint64_t fp);
double recall_of(uint64_t tp, uint64_t fn);
double f1_of(double precision, double recall);

// labels and flagged (and ambient, when not empty) have one entry per
// iteration (same length; throws std::invalid_argument otherwise). windows and
// episodes in iteration order.
Score score(const std::vector<uint8_t>& labels, const std::vector<uint8_t>& flagged,
            const std::vector<FaultWindow>& windows, const std::vector<AlertEpisode>& episodes,
            const ScoringOptions& options = {}, const std::vector<uint8_t>& ambient = {});

}  // namespace prism::spikes
