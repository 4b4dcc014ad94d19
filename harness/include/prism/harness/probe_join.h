// `prism run --probe`: wake the probe agent inside a local target while a run
// drives it, then join the target's per-iteration stage breakdown to the
// requests the harness observed.
//
// The engine's NVTX ranges do not name requests, so the join is by time, on
// the one clock both sides share (CLOCK_MONOTONIC): a request is in flight
// from its send to its completion, and every engine iteration that overlaps
// that window served it (continuous batching runs all in-flight requests in
// each step). Per request, per stage:
//   wall_ms   the stage time of the overlapping iterations, counted for the
//             part of each iteration inside the request's window;
//   share_ms  the same, divided among the requests in flight during each
//             iteration (what this request cost the engine, batch-shared).
// The agent keeps the last PRISM_PROBE_WINDOW_S seconds (30 by default) in its
// flight recorder; requests outside the captured window are counted as not
// covered, never guessed.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "prism/analysis/breakdown.h"
#include "prism/control/client.h"
#include "prism/harness/load_generator.h"
#include "prism/results/observation.h"

namespace prism::harness {

// The pid of the local process listening on TCP `port` (IPv4 or IPv6), from
// /proc/net/tcp{,6} and /proc/<pid>/fd. Throws std::runtime_error saying why
// when none is found (not listening, or owned by another user).
int find_listener_pid(int port);

// The pid behind an http://HOST:PORT URL whose host is local (localhost,
// 127.0.0.0/8, ::1). Throws std::runtime_error naming the URL otherwise.
int find_local_target_pid(const std::string& url);

struct ProbeOptions {
  int pid = 0;
  std::string rules = "prism";  // built-in rule set name or rules file
  bool gpu = true;              // ask for CUPTI activity as well
};

// One attachment for the length of a run: attach() wakes the agent, finish()
// stops it and reads back what it captured.
class ProbeAttachment {
 public:
  // Throws control::ProbeError (the message says how to start the target with
  // the agent) or analysis::TraceError (bad rules).
  static ProbeAttachment attach(const ProbeOptions& options);

  // Stops the capture, takes the snapshot and analyzes it. A target that went
  // away leaves an empty, incomplete breakdown with the reason.
  analysis::Breakdown finish();
  const std::string& raw_trace() const { return raw_; }  // the snapshot, after finish()
  int pid() const { return pid_; }
  // What the capture covers on CLOCK_MONOTONIC, after finish(): from the start (or, when the
  // flight recorder overwrote the oldest events, from the first event kept) to the stop.
  std::int64_t covered_begin_ns() const { return covered_begin_ns_; }
  std::int64_t covered_end_ns() const { return covered_end_ns_; }

 private:
  ProbeAttachment(control::ProbeClient client, analysis::StageRules rules, int pid)
      : client_(std::move(client)), rules_(std::move(rules)), pid_(pid) {}
  control::ProbeClient client_;
  analysis::StageRules rules_;
  int pid_;
  std::string raw_;
  std::int64_t started_ns_ = 0;
  std::int64_t covered_begin_ns_ = 0;
  std::int64_t covered_end_ns_ = 0;
};

// Learns the run's t = 0 (the load generator's origin on CLOCK_MONOTONIC) from
// its progress callbacks: elapsed_s is measured from that origin.
class RunOriginTracker {
 public:
  void observe(double elapsed_s);  // call from LoadOptions::on_progress
  std::optional<std::int64_t> origin_ns() const { return origin_ns_; }

 private:
  std::optional<std::int64_t> origin_ns_;
};

struct CaptureWindow {
  std::int64_t begin_ns = 0;
  std::int64_t end_ns = 0;
};

struct RequestStages {
  std::uint64_t request_id = 0;
  bool covered = false;          // the captured window holds the whole request
  std::uint64_t iterations = 0;  // iterations overlapping the request
  std::vector<double> wall_ms;   // per stage (Breakdown::stages order)
  std::vector<double> share_ms;
};

struct ProbeJoin {
  std::vector<std::string> stages;
  std::vector<RequestStages> requests;  // one per observation, in the same order
  std::uint64_t covered = 0;            // requests wholly inside the captured window
};

// Joins by time. origin_ns is the monotonic time of t = 0 in the observations. A request is
// covered when `window` (default: the breakdown's first to last event) holds it whole.
ProbeJoin join_requests(const analysis::Breakdown& breakdown,
                        const std::vector<results::Observation>& observations,
                        std::int64_t origin_ns, std::optional<CaptureWindow> window = std::nullopt);

// What goes into Run::stages: the whole-run totals (stage, count, host_ns,
// gpu_ns, max_ns), iteration statistics, capture facts (complete, dropped,
// window) and the per-request join.
nlohmann::json probe_stages_json(const analysis::Breakdown& breakdown, const ProbeJoin& join,
                                 int pid);

// What `prism run --probe[=PID]` does, in three calls. `probe` is "auto" (the
// process listening on the target URL's local port, or this process for the
// in-process engine) or a pid; target_url is empty for the in-process engine.
class RunProbe {
 public:
  // Resolves the pid and wakes its agent. Throws std::runtime_error (no local
  // process), control::ProbeError (no agent: the message says how to start it
  // with one) or analysis::TraceError (bad rules).
  static std::unique_ptr<RunProbe> start(const std::string& probe, const std::string& target_url,
                                         const std::string& rules = "prism");
  ~RunProbe();  // stops a capture that finish() did not end (the run failed)
  RunProbe(const RunProbe&) = delete;
  RunProbe& operator=(const RunProbe&) = delete;

  // Chains load.on_progress so the run's origin is learned.
  void watch(LoadOptions& load);
  // Stops the capture and joins it to the observations: the value for Run::stages.
  nlohmann::json finish(const std::vector<results::Observation>& observations);
  // One paragraph for the terminal: what was captured and joined, stage totals.
  const std::string& summary() const { return summary_; }
  int pid() const { return attachment_.pid(); }

 private:
  explicit RunProbe(ProbeAttachment attachment) : attachment_(std::move(attachment)) {}
  ProbeAttachment attachment_;
  std::shared_ptr<RunOriginTracker> origin_ = std::make_shared<RunOriginTracker>();
  bool finished_ = false;
  std::string summary_;
};

}  // namespace prism::harness
