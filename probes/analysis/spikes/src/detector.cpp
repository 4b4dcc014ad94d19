#include "prism/spikes/detector.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace prism::spikes {

namespace {

constexpr const char* kUnattributed = "(unattributed)";
constexpr const char* kOffCpu = "(off-cpu)";

RlsOptions rls_options(const DetectorConfig& c) {
  RlsOptions o;
  o.forgetting = c.forgetting;
  return o;
}

}  // namespace

Detector::Detector(DetectorConfig config)
    : config_(std::move(config)),
      num_stages_(static_cast<int>(config_.stages.size())),
      total_(1 + kFeatureCount, rls_options(config_)),
      scale_(config_.initial_scale) {
  if (num_stages_ > kMaxStages)
    throw std::invalid_argument("spike detector: at most 8 stages (got " +
                                std::to_string(num_stages_) + ")");
  if (!(config_.threshold > 0))
    throw std::invalid_argument("spike detector: threshold must be > 0");
  if (config_.ring_capacity < 2) throw std::invalid_argument("spike detector: ring_capacity < 2");
  for (double s : config_.feature_scale)
    if (!(s > 0)) throw std::invalid_argument("spike detector: feature scales must be > 0");
  for (int s = 0; s < num_stages_; ++s)
    stage_models_[static_cast<size_t>(s)] = RobustRls(1 + kFeatureCount, rls_options(config_));
  stage_scale_.fill(config_.initial_scale);
  stage_dev_.fill(config_.initial_scale);
  ring_.resize(config_.ring_capacity);
}

void Detector::set_threshold(double threshold) {
  if (!(threshold > 0)) throw std::invalid_argument("spike detector: threshold must be > 0");
  config_.threshold = threshold;
}

void Detector::set_stage_threshold(double threshold) {
  if (!(threshold >= 0))
    throw std::invalid_argument("spike detector: stage threshold must be >= 0");
  config_.stage_threshold = threshold;
}

void Detector::set_sustained_threshold(double level) {
  if (!(level >= 0))
    throw std::invalid_argument("spike detector: sustained threshold must be >= 0");
  config_.sustained_threshold = level;
}

void Detector::set_min_excess_ns(double ns) {
  if (!(ns >= 0)) throw std::invalid_argument("spike detector: min_excess_ns must be >= 0");
  config_.min_excess_ns = ns;
}

int Detector::basis(const IterationFeatures& f, double* x) const {
  x[0] = 1.0;
  for (int i = 0; i < kFeatureCount; ++i)
    x[i + 1] = feature_value(f, i) / config_.feature_scale[static_cast<size_t>(i)];
  return 1 + kFeatureCount;
}

double Detector::predict_floor() const {
  return std::max(0.1 * mean_duration_, 1.0);
}

const IterationVerdict& Detector::observe(const IterationRecord& record) {
  double x[kMaxModelDim];
  basis(record.features, x);
  IterationVerdict& v = ring_[ring_next_];
  ring_next_ = (ring_next_ + 1) % ring_.size();
  ring_size_ = std::min(ring_size_ + 1, ring_.size());

  v.record = record;
  // The model predicts the time on CPU (the whole wall time when the source
  // cannot tell); the bound applies to the wall time, so time the thread spent
  // off CPU (preempted, asleep) always counts as excess and never widens the
  // model's scale.
  const double wall = static_cast<double>(record.duration_ns());
  const double y = record.on_cpu_ns();
  const double predicted = total_.predict(x);
  const double denom = std::max(predicted, predict_floor());
  v.predicted_ns = predicted;
  v.excess_ns = wall - predicted;
  const double rel = (y - predicted) / denom;
  v.score = v.excess_ns / denom / scale_;
  v.scored = observed_ >= config_.warmup;
  const double allowed = std::max({config_.threshold * scale_ * denom,
                                   config_.min_excess_ratio * denom, config_.min_excess_ns});
  v.bound_ns = predicted + allowed;
  v.anomalous = v.scored && wall > v.bound_ns;
  v.sustained = false;
  if (v.scored && config_.sustained_threshold > 0) {
    const double z = std::clamp(rel / scale_, -config_.sustained_clip, config_.sustained_clip);
    sustained_ += config_.sustained_alpha * (z - sustained_);
    if (sustained_ > config_.sustained_threshold && v.excess_ns > 0) {
      v.sustained = !v.anomalous;
      v.anomalous = true;
    }
  }
  for (int s = 0; s < num_stages_; ++s)
    v.stage_predicted_ns[static_cast<size_t>(s)] = stage_models_[static_cast<size_t>(s)].predict(x);
  // Per-stage bounds: a stage far outside its own usual accuracy (a stalled
  // detokenizer whose normal time is a few us) is anomalous even when the
  // iteration as a whole stays under its own bound.
  if (v.scored && config_.stage_threshold > 0) {
    const double stage_floor = config_.stage_min_excess_share * config_.min_excess_ns;
    for (int s = 0; s < num_stages_ && !v.anomalous; ++s) {
      const size_t i = static_cast<size_t>(s);
      const double ds = std::max(v.stage_predicted_ns[i], predict_floor() * 0.1);
      const double e = record.stage_ns[i] - v.stage_predicted_ns[i];
      if (e > config_.stage_threshold * stage_dev_[i] * ds && e > stage_floor && v.excess_ns > 0)
        v.anomalous = true;
    }
  }

  // Learn only from iterations we believe; outliers below the bound are down-weighted.
  const bool rebaseline = in_episode_ && episode_count_ >= config_.rebaseline_after;
  if (!v.anomalous || rebaseline) {
    const bool warm = v.scored;
    const double w = warm ? huber_weight(rel / scale_, config_.huber_c) : 1.0;
    total_.update(x, y, w);
    for (int s = 0; s < num_stages_; ++s) {
      const size_t i = static_cast<size_t>(s);
      const double ys = record.stage_ns[i];
      const double ds = std::max(v.stage_predicted_ns[i], predict_floor() * 0.1);
      const double us = (ys - v.stage_predicted_ns[i]) / ds / stage_scale_[i];
      stage_models_[i].update(x, ys, warm ? huber_weight(us, config_.huber_c) : 1.0);
      // The stage's own accuracy (EWMA of its absolute relative residual, clipped once warm).
      const double rs = std::fabs(ys - v.stage_predicted_ns[i]) / ds;
      const double alpha_s =
          warm ? config_.scale_alpha
               : std::max(config_.scale_alpha, 1.0 / static_cast<double>(observed_ + 1));
      stage_dev_[i] = std::max(
          config_.min_scale,
          stage_dev_[i] + alpha_s * (std::min(rs, warm ? config_.huber_c * stage_dev_[i] : 1.0) -
                                     stage_dev_[i]));
    }
    // Robust scale: EWMA of the absolute relative residual, clipped once warm.
    const double alpha =
        warm ? config_.scale_alpha
             : std::max(config_.scale_alpha, 1.0 / static_cast<double>(observed_ + 1));
    const double a =
        warm ? std::min(std::fabs(rel), config_.huber_c * scale_) : std::min(std::fabs(rel), 1.0);
    scale_ = std::max(config_.min_scale, scale_ + alpha * (a - scale_));
    mean_duration_ += (observed_ == 0 ? 1.0 : alpha) * (y - mean_duration_);
  }
  ++observed_;

  // Episodes.
  if (v.anomalous) {
    if (in_episode_ && closing_) close_episode();
    if (in_episode_) {
      // A watcher can feed an iteration that ended before ones already fed (drained late).
      episode_first_ = std::min(episode_first_, record.index);
      episode_last_ = std::max(episode_last_, record.index);
      ++episode_count_;
      after_remaining_ = 0;
      if (v.excess_ns > episode_worst_.excess_ns) episode_worst_ = v;
    } else {
      in_episode_ = true;
      closing_ = false;
      episode_first_ = episode_last_ = record.index;
      episode_count_ = 1;
      after_remaining_ = 0;
      episode_worst_ = v;
      current_alert_id_ = next_alert_id_++;
      pending_.push_back(build_alert(AlertPhase::kOpen));
    }
  } else if (in_episode_) {
    ++after_remaining_;  // normal iterations since the last anomalous one
    if (after_remaining_ > config_.episode_gap) closing_ = true;
    if (after_remaining_ >= std::max<uint64_t>(config_.episode_gap + 1, config_.window_after))
      close_episode();
  }
  return v;
}

void Detector::close_episode() {
  pending_.push_back(build_alert(AlertPhase::kClosed));
  in_episode_ = false;
  closing_ = false;
}

void Detector::flush() {
  if (in_episode_) close_episode();
}

void Detector::reset_episodes() {
  in_episode_ = false;
  sustained_ = 0;
  closing_ = false;
  pending_.clear();
  ring_size_ = 0;
  ring_next_ = 0;
}

SpikeAlert Detector::take_alert() {
  if (pending_.empty()) throw std::logic_error("spike detector: no alert waiting");
  SpikeAlert a = std::move(pending_.front());
  pending_.pop_front();
  return a;
}

SpikeAlert Detector::build_alert(AlertPhase phase) {
  SpikeAlert a;
  a.phase = phase;
  a.alert_id = current_alert_id_;
  a.first_iteration = episode_first_;
  a.last_iteration = phase == AlertPhase::kOpen ? episode_first_ : episode_last_;
  a.anomalous_iterations = episode_count_;
  a.stage_names = config_.stages;

  // Window from the ring, oldest first.
  const uint64_t lo =
      episode_first_ >= config_.window_before ? episode_first_ - config_.window_before : 0;
  const uint64_t hi =
      phase == AlertPhase::kOpen ? episode_first_ : episode_last_ + config_.window_after;
  const size_t oldest = (ring_next_ + ring_.size() - ring_size_) % ring_.size();
  bool have_lo = false;
  for (size_t k = 0; k < ring_size_; ++k) {
    const IterationVerdict& v = ring_[(oldest + k) % ring_.size()];
    if (v.record.index <= lo) have_lo = true;
    if (v.record.index >= lo && v.record.index <= hi) a.window.push_back(v);
  }
  a.window_truncated = !have_lo && lo > 0 && observed_ > ring_size_;
  a.trigger = phase == AlertPhase::kOpen ? a.window.back() : episode_worst_;

  // Attribution: stage excesses summed over the anomalous iterations considered.
  std::vector<double> excess(static_cast<size_t>(num_stages_) + 1, 0.0);
  std::vector<double> observed(excess.size(), 0.0), predicted(excess.size(), 0.0);
  double total_excess = 0;
  double off_cpu = 0;
  bool off_cpu_known = false;
  auto add = [&](const IterationVerdict& v) {
    if (v.record.off_cpu_ns >= 0) {
      off_cpu_known = true;
      off_cpu += v.record.off_cpu_ns;
    }
    double stage_obs = 0, stage_pred = 0;
    for (int s = 0; s < num_stages_; ++s) {
      const size_t i = static_cast<size_t>(s);
      observed[i] += v.record.stage_ns[i];
      predicted[i] += v.stage_predicted_ns[i];
      excess[i] += v.record.stage_ns[i] - v.stage_predicted_ns[i];
      stage_obs += v.record.stage_ns[i];
      stage_pred += v.stage_predicted_ns[i];
    }
    const size_t u = static_cast<size_t>(num_stages_);
    const double obs_rest = static_cast<double>(v.record.duration_ns()) - stage_obs;
    const double pred_rest = v.predicted_ns - stage_pred;
    observed[u] += obs_rest;
    predicted[u] += pred_rest;
    excess[u] += obs_rest - pred_rest;
    total_excess += v.excess_ns;
  };
  if (phase == AlertPhase::kOpen) {
    add(a.trigger);
  } else {
    for (const IterationVerdict& v : a.window)
      if (v.anomalous) add(v);
  }
  for (size_t i = 0; i < excess.size(); ++i) {
    StageExcess e;
    e.stage = i < static_cast<size_t>(num_stages_) ? config_.stages[i] : kUnattributed;
    e.observed_ns = observed[i];
    e.predicted_ns = predicted[i];
    e.excess_ns = excess[i];
    e.share = total_excess > 0 ? excess[i] / total_excess : 0.0;
    a.stages.push_back(std::move(e));
  }
  std::stable_sort(
      a.stages.begin(), a.stages.end(),
      [](const StageExcess& l, const StageExcess& r) { return l.excess_ns > r.excess_ns; });
  double positive = 0;
  for (const StageExcess& e : a.stages) positive += std::max(0.0, e.excess_ns);
  double covered = 0;
  for (const StageExcess& e : a.stages) {
    if (e.excess_ns <= 0 || covered >= config_.blame_share * positive) break;
    a.blamed.push_back(e.stage);
    covered += e.excess_ns;
  }
  // Time off CPU (preempted or asleep) shows inside whichever stage it hit;
  // when it explains the excess it is named first, the stages say where.
  if (off_cpu_known) {
    StageExcess e;
    e.stage = kOffCpu;
    e.observed_ns = off_cpu;
    e.excess_ns = off_cpu;
    e.share = total_excess > 0 ? off_cpu / total_excess : 0.0;
    if (total_excess > 0 && off_cpu >= config_.blame_share * total_excess)
      a.blamed.insert(a.blamed.begin(), kOffCpu);
    a.stages.push_back(std::move(e));
  }
  return a;
}

}  // namespace prism::spikes
