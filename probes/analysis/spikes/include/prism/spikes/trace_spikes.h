// Spike detection over the probes' stage breakdowns: what `prism analyze
// --spikes TRACE` and `prism attach PID --spikes` run. Lives in its own
// library (prism_spikes_trace) so prism_spikes stays free of the trace code.
//
// A trace carries stage times but no batch features (prefill tokens, decode
// sequences, context, batch size), so the model here is a robust running
// baseline per stage: it catches faults, but a legitimate burst of long
// prompts may alert too. Series with feature columns (`prism spikes detect`)
// do not have that limit.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "prism/analysis/breakdown.h"
#include "prism/spikes/alerts.h"
#include "prism/spikes/detector.h"
#include "prism/spikes/simulator.h"

namespace prism::spikes {

// The breakdown's iterations as a series: host time per stage, the (at most
// kMaxStages) stages with the most total time, in the breakdown's order.
// Iterations cut short by the end of the capture (Iteration::open) are left out.
LabelledRun series_from_breakdown(const analysis::Breakdown& breakdown);

// Feeds iterations to a detector as breakdowns arrive: snapshots of a growing
// capture, or the live path's batches of newly completed iterations
// (analysis::LiveBreakdown). Each may repeat iterations already fed (skipped:
// remembered by start and end for kHorizonNs before the newest end) and may
// add one that ended before the newest already fed (a thread's buffer drained
// late): it is fed then. The detector's stages (the kMaxStages costliest) are
// chosen once kStageSampleIterations iterations have arrived; until then the
// breakdowns wait (the detector's warm-up is longer, so no alert is delayed).
// Alerts go to the sink as JSON lines, with the time they were raised when a
// clock reading is given.
class SpikeWatcher {
 public:
  SpikeWatcher(DetectorConfig config, AlertSink& sink, bool include_window = true);
  // Returns the number of alerts emitted by this call.
  uint64_t feed(const analysis::Breakdown& breakdown, uint64_t now_ns = 0);
  // End of the capture: closes an open episode.
  uint64_t finish(uint64_t now_ns = 0);

  uint64_t iterations() const { return iterations_; }
  uint64_t anomalous() const { return anomalous_; }
  uint64_t episodes() const { return episodes_; }
  const std::vector<std::string>& stages() const { return stages_; }

  static constexpr uint64_t kStageSampleIterations = 64;

 private:
  uint64_t start_detector(uint64_t now_ns);
  uint64_t feed_iterations(const analysis::Breakdown& b, uint64_t now_ns);
  uint64_t drain(uint64_t now_ns);

  DetectorConfig config_;
  AlertSink& sink_;
  bool include_window_;
  std::optional<Detector> detector_;
  std::vector<analysis::Breakdown> waiting_;  // before the stages are chosen
  uint64_t waiting_iterations_ = 0;
  std::map<std::string, double> stage_totals_;
  std::vector<std::string> stages_;
  static constexpr uint64_t kHorizonNs = 10'000'000'000;
  std::set<std::pair<uint64_t, uint64_t>> seen_;  // (end, start) of iterations fed
  uint64_t newest_end_ns_ = 0;
  uint64_t iterations_ = 0, anomalous_ = 0, episodes_ = 0;
};

}  // namespace prism::spikes
