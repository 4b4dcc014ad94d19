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
  const LabelledRun run = series_from_breakdown(b);
  if (!detector_) {
    // The stages are fixed by the first breakdown with iterations.
    stages_ = run.series.stages;
    DetectorConfig c = config_;
    c.stages = stages_;
    detector_.emplace(c);
  }
  // Map this breakdown's stages onto the detector's by name.
  std::vector<int> slot(run.series.stages.size(), -1);
  for (size_t i = 0; i < run.series.stages.size(); ++i) {
    const auto at = std::find(stages_.begin(), stages_.end(), run.series.stages[i]);
    if (at != stages_.end()) slot[i] = static_cast<int>(at - stages_.begin());
  }
  uint64_t emitted = 0;
  for (const IterationRecord& in : run.series.iterations) {
    // Past the horizon: fed long ago (and forgotten), or too late to be worth an alert.
    if (iterations_ > 0 && in.end_ns + kHorizonNs <= newest_end_ns_) continue;
    if (!seen_.insert({in.end_ns, in.start_ns}).second) continue;
    IterationRecord r = in;
    r.stage_ns.fill(0);
    for (size_t i = 0; i < slot.size(); ++i)
      if (slot[i] >= 0) r.stage_ns[static_cast<size_t>(slot[i])] = in.stage_ns[i];
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
  if (!detector_) return 0;
  detector_->flush();
  return drain(now_ns);
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
