// Online spike detector. Per iteration it predicts the latency of the whole
// iteration and of each stage from the workload features (one robust RLS
// model each), scales the residual by an adaptive robust scale, and calls the
// iteration anomalous when the excess is above the bound. Consecutive
// anomalous iterations form an episode; an episode opens an alert at once
// (naming the stages that explain the excess, with the flight-recorder window
// before it) and closes one with the window around the whole episode.
//
// Cost: observe() is O(stages * d^2) with no allocation unless an alert is
// built; see bench/bench_spikes.cpp.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "prism/spikes/iteration.h"
#include "prism/spikes/robust_rls.h"

namespace prism::spikes {

struct DetectorConfig {
  std::vector<std::string> stages;  // names of IterationRecord::stage_ns entries (<= kMaxStages)
  // Feature scaling: the model sees [1, prefill/s0, decode/s1, context/s2, batch/s3].
  std::array<double, kFeatureCount> feature_scale{512.0, 32.0, 65536.0, 32.0};
  double threshold = 8.0;          // anomalous when relative excess > threshold * robust scale
  double min_excess_ratio = 0.05;  // ... and the excess is at least this share of the prediction
  double min_excess_ns = 0.0;      // ... and at least this many ns
  double huber_c = 2.5;            // residuals beyond huber_c scales get down-weighted
  double scale_alpha = 0.01;    // EWMA rate of the robust scale (mean absolute relative residual)
  double initial_scale = 0.10;  // relative scale before any data
  double min_scale = 0.005;     // scale floor (0.5 %): a perfectly quiet system still has a bound
  double forgetting = 0.999;    // RLS forgetting factor
  uint64_t warmup = 200;        // iterations fitted before any verdict
  uint64_t episode_gap = 2;     // normal iterations tolerated inside one episode
  size_t window_before = 32;    // flight-recorder iterations before the episode
  size_t window_after = 8;      // ... and after it (in the closing alert)
  size_t ring_capacity = 512;   // flight-recorder capacity (bounds the closing alert's window)
  double blame_share = 0.6;
  // Sustained slowdowns (memory-bandwidth contention, a throttled core) may
  // be too small per iteration to pass the bound yet last for many
  // iterations: an EWMA of the clipped on-CPU scores (rate sustained_alpha)
  // above sustained_threshold flags every iteration above its prediction
  // while it lasts, with no smallest-excess floor. 0 turns it off.
  double sustained_threshold = 0.0;
  double sustained_alpha = 0.1;
  double sustained_clip = 3.0;
  // Per-stage bounds: a stage whose excess is over stage_threshold times its
  // own robust scale (and over stage_min_excess_share x min_excess_ns) makes
  // the iteration anomalous. 0 turns it off.
  double stage_threshold = 0.0;
  double stage_min_excess_share = 0.25;
  // An episode this long is a new normal, not a spike: the models learn from
  // its iterations again (the alert stays one episode).
  uint64_t rebaseline_after =
      2000;  // blamed stages together explain at least this share of the excess
};

// Why one stage is blamed.
struct StageExcess {
  std::string stage;
  double observed_ns = 0;
  double predicted_ns = 0;
  double excess_ns = 0;
  double share = 0;  // of the iteration's excess
};

// The detector's reading of one iteration, kept in the flight recorder.
struct IterationVerdict {
  IterationRecord record;
  double predicted_ns = 0;
  double bound_ns = 0;   // predicted + allowed excess
  double excess_ns = 0;  // observed - predicted
  double score = 0;      // relative excess / robust scale
  bool anomalous = false;
  bool sustained = false;  // flagged by the sustained-slowdown EWMA
  bool scored = false;     // false during warmup
  std::array<double, kMaxStages> stage_predicted_ns{};
};

enum class AlertPhase { kOpen, kClosed };

struct SpikeAlert {
  AlertPhase phase = AlertPhase::kOpen;
  uint64_t alert_id = 0;
  uint64_t first_iteration = 0;  // of the episode
  uint64_t last_iteration = 0;   // == first for an open alert
  uint64_t anomalous_iterations = 0;
  IterationVerdict trigger;         // the first anomalous iteration (open) / the worst (closed)
  std::vector<StageExcess> stages;  // all stages, largest excess first
  std::vector<std::string> blamed;  // the stages that explain the excess
  std::vector<IterationVerdict> window;  // flight recorder, oldest first
  bool window_truncated = false;
  std::vector<std::string> stage_names;
};

class Detector {
 public:
  explicit Detector(DetectorConfig config);

  const DetectorConfig& config() const { return config_; }
  // Threshold is the one knob calibration moves on a trained detector.
  void set_threshold(double threshold);
  // ... and the smallest absolute excess that alerts (ns, >= 0).
  void set_min_excess_ns(double ns);
  // ... and the per-stage bound (0: off).
  void set_stage_threshold(double threshold);
  // ... and the sustained-slowdown level (0: off).
  void set_sustained_threshold(double level);
  // Hot path: one iteration in end order. Returns the verdict; an alert may be
  // waiting afterwards (take_alert).
  const IterationVerdict& observe(const IterationRecord& record);
  // Closes an open episode now (end of input): its alert becomes available.
  void flush();
  bool has_alert() const { return !pending_.empty(); }
  SpikeAlert take_alert();

  uint64_t observed() const { return observed_; }
  double relative_scale() const { return scale_; }
  const RobustRls& total_model() const { return total_; }
  const RobustRls& stage_model(int stage) const {
    return stage_models_[static_cast<size_t>(stage)];
  }
  // Clears episode and alert state but keeps the fitted models and scales
  // (a detector trained on one run, carried to the next).
  void reset_episodes();
  // Feature vector the models see.
  int basis(const IterationFeatures& f, double* x) const;

 private:
  double predict_floor() const;
  SpikeAlert build_alert(AlertPhase phase);
  void close_episode();

  DetectorConfig config_;
  int num_stages_ = 0;
  RobustRls total_;
  std::array<RobustRls, kMaxStages> stage_models_;
  double scale_;
  double sustained_ = 0;  // EWMA of clipped on-CPU scores
  std::array<double, kMaxStages> stage_scale_{};
  std::array<double, kMaxStages> stage_dev_{};  // per-stage robust scale (per-stage bounds)
  double mean_duration_ = 0;
  uint64_t observed_ = 0;

  // Flight recorder: a ring of the last ring_capacity verdicts.
  std::vector<IterationVerdict> ring_;
  size_t ring_next_ = 0;
  size_t ring_size_ = 0;

  // Episode state.
  bool in_episode_ = false;
  uint64_t episode_first_ = 0;
  uint64_t episode_last_ = 0;
  uint64_t episode_count_ = 0;
  uint64_t after_remaining_ = 0;
  bool closing_ = false;
  IterationVerdict episode_worst_;
  uint64_t next_alert_id_ = 1;
  uint64_t current_alert_id_ = 0;
  std::deque<SpikeAlert> pending_;
};

}  // namespace prism::spikes
