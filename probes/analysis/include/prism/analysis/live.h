// The live path of `prism attach`: the agent's "events" replies (protocol.h)
// turned into completed iterations as they happen, at a cost that follows the
// new events, not the size of the capture.
//
// A snapshot hands over the whole capture, and analysing it again every tick
// costs O(capture) in the target (serialising) and in prism (reading and
// analysing); its period was the alert latency. Here each poll brings only
// what is new, LiveBreakdown keeps just the events of iterations not yet
// complete, and each completed iteration is handed on once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "prism/agent/raw_format.h"
#include "prism/analysis/breakdown.h"
#include "prism/analysis/trace.h"

namespace prism::analysis {

// One "events" reply, read: new strings and thread names, and the events in ring order.
struct RawBatch {
  uint32_t pid = 0;
  uint64_t start_ns = 0;                                    // the capture's start (header)
  std::vector<std::pair<uint32_t, std::string>> strings;    // id, text
  std::vector<std::pair<uint32_t, uint32_t>> thread_names;  // tid, string id
  std::vector<agent::prism_raw_event> events;
};

// Reads a batch in the raw format (a header, then STRING / THREAD_NAME / EVENTS records; INFO
// and END are skipped). Throws TraceError naming the record on anything malformed.
RawBatch read_raw_batch(const std::string& bytes, const std::string& origin);

// Which events began and ended a range of a trace built by trace_from_raw_events.
struct RangeEvents {
  static constexpr size_t kNoEvent = static_cast<size_t>(-1);
  size_t begin = kNoEvent;
  size_t end = kNoEvent;  // kNoEvent: still open
};

// The trace these events make (push/pop, start/end matched as read_raw_trace does; ranges
// still open are closed at the last timestamp and marked open). With range_events, also which
// events made each range (same index as trace.ranges).
Trace trace_from_raw_events(const std::vector<agent::prism_raw_event>& events,
                            const std::vector<std::string>& strings, uint32_t pid,
                            std::vector<RangeEvents>* range_events = nullptr);

// Completed iterations of a live capture, each handed out once.
//
// An iteration is complete when its range has ended and no iteration or stage range that
// began before its end is still open (so every stage range inside it has closed). After
// handing iterations out, the events of ranges that ended before the oldest iteration still
// pending are forgotten: what is kept is the unfinished tail (plus ranges that span it, such as
// a request range open across many steps). Host ranges only: GPU activity arrives late and out
// of order, and the offline breakdown at the end of the capture has it.
class LiveBreakdown {
 public:
  explicit LiveBreakdown(StageRules rules);

  void add(const RawBatch& batch);
  // The iterations completed since the last call, as a breakdown of those iterations alone:
  // stages as the rules name them, totals summed over these iterations, iterations in start
  // order, indexed from 0 over the whole capture. Empty when none completed.
  Breakdown take();

  size_t pending_events() const { return pending_.size(); }
  uint64_t iterations_taken() const { return taken_count_; }
  // Events given up because no iteration structure let them be forgotten (kMaxPending).
  uint64_t dropped_events() const { return dropped_; }
  // The iteration name found by detection (no iteration rule matched), once fixed.
  const std::string& detected_iteration() const { return detected_; }

  static constexpr size_t kMaxPending = 1u << 20;

 private:
  bool relevant(uint32_t name);  // an iteration or stage range (its being open blocks others)
  void fix_detected_iteration(const std::string& name);

  StageRules rules_;
  std::string detected_;
  uint32_t pid_ = 0;
  std::vector<std::string> strings_{""};
  std::vector<agent::prism_raw_event> pending_;
  std::vector<int8_t> relevant_;                              // per string id: -1 unknown, 0, 1
  std::set<std::tuple<uint64_t, uint64_t, uint32_t>> taken_;  // (end, start, thread) handed out
  uint64_t taken_count_ = 0;
  uint64_t dropped_ = 0;
};

}  // namespace prism::analysis
