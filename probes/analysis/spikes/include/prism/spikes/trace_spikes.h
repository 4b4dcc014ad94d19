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
#include <optional>
#include <string>
#include <vector>

#include "prism/analysis/breakdown.h"
#include "prism/spikes/alerts.h"
#include "prism/spikes/detector.h"
#include "prism/spikes/simulator.h"

namespace prism::spikes {

// The breakdown's iterations as a series: host time per stage, the (at most
// kMaxStages) stages with the most total time, in the breakdown's order.
LabelledRun series_from_breakdown(const analysis::Breakdown& breakdown);

// Feeds iterations to a detector as breakdowns of a growing capture arrive
// (each may repeat iterations already seen: only those that end later than
// the last one fed are new). Alerts go to the sink as JSON lines, with the
// time they were raised when a clock reading is given.
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

 private:
  uint64_t drain(uint64_t now_ns);

  DetectorConfig config_;
  AlertSink& sink_;
  bool include_window_;
  std::optional<Detector> detector_;
  std::vector<std::string> stages_;
  uint64_t last_end_ns_ = 0;
  uint64_t iterations_ = 0, anomalous_ = 0, episodes_ = 0;
};

}  // namespace prism::spikes
