#include "prism/spikes/trace_spikes.h"

#include <algorithm>

#include "prism/spikes/eval.h"

namespace prism::spikes {

namespace {

// Indices (into breakdown.stages) of the stages a detector watches.
std::vector<size_t> watched_stages(const analysis::Breakdown& b) {
  std::vector<double> totals(b.stages.size(), 0.0);
  for (size_t i = 0; i < b.totals.size() && i < totals.size(); ++i)
    totals[i] = static_cast<double>(b.totals[i].host_ns);
  return pick_stages(totals);
}

IterationRecord record_of(const analysis::Iteration& it, const std::vector<size_t>& stages) {
  IterationRecord r;
  r.index = it.index;
  r.start_ns = it.start_ns;
  r.end_ns = it.end_ns;
  for (size_t s = 0; s < stages.size(); ++s)
    if (stages[s] < it.stage_ns.size()) r.stage_ns[s] = static_cast<double>(it.stage_ns[stages[s]]);
  return r;
}

}  // namespace

LabelledRun series_from_breakdown(const analysis::Breakdown& b) {
  LabelledRun run;
  run.source = "trace";
  run.series.has_features = false;
  const std::vector<size_t> stages = watched_stages(b);
  for (size_t s : stages) run.series.stages.push_back(b.stages[s]);
  std::vector<const analysis::Iteration*> order;
  // An iteration cut short by the end of the capture (or of a live snapshot) is not a
  // measurement of anything: left out (a later snapshot has it whole).
  for (const analysis::Iteration& it : b.iterations)
    if (!it.open) order.push_back(&it);
  // The detector takes iterations in end order (threads may interleave).
  std::stable_sort(order.begin(), order.end(),
                   [](const auto* x, const auto* y) { return x->end_ns < y->end_ns; });
  for (const analysis::Iteration* it : order)
    run.series.iterations.push_back(record_of(*it, stages));
  run.labels.assign(run.series.iterations.size(), 0);
  return run;
}

SpikeWatcher::SpikeWatcher(DetectorConfig config, AlertSink& sink, bool include_window)
    : config_(std::move(config)), sink_(sink), include_window_(include_window) {}

uint64_t SpikeWatcher::feed(const analysis::Breakdown& b, uint64_t now_ns) {
  if (b.iterations.empty()) return 0;
  if (detector_) return feed_iterations(b, now_ns);
  // The stages are fixed once enough iterations have been seen to tell which cost the most
  // (a live batch may hold one iteration); until then breakdowns wait here.
  for (size_t i = 0; i < b.stages.size() && i < b.totals.size(); ++i)
    stage_totals_[b.stages[i]] += static_cast<double>(b.totals[i].host_ns);
  for (const analysis::Iteration& it : b.iterations) waiting_iterations_ += it.open ? 0 : 1;
  waiting_.push_back(b);
  if (waiting_iterations_ < kStageSampleIterations) return 0;
  return start_detector(now_ns);
}

uint64_t SpikeWatcher::start_detector(uint64_t now_ns) {
  std::vector<std::string> names;
  std::vector<double> totals;
  for (const analysis::Breakdown& b : waiting_) {
    for (const std::string& stage : b.stages) {
      if (std::find(names.begin(), names.end(), stage) != names.end()) continue;
      names.push_back(stage);
      totals.push_back(stage_totals_[stage]);
    }
  }
  stages_.clear();
  for (size_t s : pick_stages(totals)) stages_.push_back(names[s]);
  DetectorConfig c = config_;
  c.stages = stages_;
  detector_.emplace(c);
  std::vector<analysis::Breakdown> waiting = std::move(waiting_);
  waiting_.clear();
  stage_totals_.clear();
  uint64_t emitted = 0;
  for (const analysis::Breakdown& b : waiting) emitted += feed_iterations(b, now_ns);
  return emitted;
}

uint64_t SpikeWatcher::feed_iterations(const analysis::Breakdown& b, uint64_t now_ns) {
  // The detector's stages, found in this breakdown by name.
  std::vector<int> column(stages_.size(), -1);
  for (size_t s = 0; s < stages_.size(); ++s) {
    const auto at = std::find(b.stages.begin(), b.stages.end(), stages_[s]);
    if (at != b.stages.end()) column[s] = static_cast<int>(at - b.stages.begin());
  }
  // An iteration cut short by the end of the capture (or of a live snapshot) is not a
  // measurement of anything: left out (a later snapshot has it whole). The detector takes
  // iterations in end order (threads may interleave).
  std::vector<const analysis::Iteration*> order;
  for (const analysis::Iteration& it : b.iterations)
    if (!it.open) order.push_back(&it);
  std::stable_sort(order.begin(), order.end(),
                   [](const auto* x, const auto* y) { return x->end_ns < y->end_ns; });
  uint64_t emitted = 0;
  for (const analysis::Iteration* it : order) {
    // Past the horizon: fed long ago (and forgotten), or too late to be worth an alert.
    if (iterations_ > 0 && it->end_ns + kHorizonNs <= newest_end_ns_) continue;
    if (!seen_.insert({it->end_ns, it->start_ns}).second) continue;
    IterationRecord r;
    r.index = it->index;
    r.start_ns = it->start_ns;
    r.end_ns = it->end_ns;
    for (size_t s = 0; s < stages_.size(); ++s) {
      const int c = column[s];
      if (c >= 0 && static_cast<size_t>(c) < it->stage_ns.size())
        r.stage_ns[s] = static_cast<double>(it->stage_ns[static_cast<size_t>(c)]);
    }
    anomalous_ += detector_->observe(r).anomalous ? 1 : 0;
    ++iterations_;
    newest_end_ns_ = std::max(newest_end_ns_, r.end_ns);
    emitted += drain(now_ns);
  }
  const uint64_t forget_before = newest_end_ns_ > kHorizonNs ? newest_end_ns_ - kHorizonNs : 0;
  seen_.erase(seen_.begin(), seen_.lower_bound({forget_before, 0}));
  return emitted;
}

uint64_t SpikeWatcher::finish(uint64_t now_ns) {
  uint64_t emitted = 0;
  if (!detector_ && waiting_iterations_ > 0) emitted += start_detector(now_ns);
  if (!detector_) return emitted;
  detector_->flush();
  return emitted + drain(now_ns);
}

uint64_t SpikeWatcher::drain(uint64_t now_ns) {
  uint64_t n = 0;
  while (detector_->has_alert()) {
    const SpikeAlert a = detector_->take_alert();
    if (a.phase == AlertPhase::kOpen) ++episodes_;
    sink_.emit(spike_alert_json(a, now_ns, include_window_));
    ++n;
  }
  return n;
}

}  // namespace prism::spikes
