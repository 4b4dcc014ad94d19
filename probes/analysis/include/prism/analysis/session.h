// Tracing sessions, what `prism trace` and `prism attach` do: launch a command
// with the agent loaded, or wake the agent in a running process, then turn
// what it recorded into a trace directory (trace.json, iterations.csv,
// breakdown.json, report.txt, trace.praw).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "prism/analysis/breakdown.h"
#include "prism/control/client.h"

namespace prism::analysis {

// "10s", "250ms", "2m", "1h" or a plain number of seconds. Throws std::invalid_argument.
uint64_t parse_duration_ms(const std::string& text);

struct TraceCommandOptions {
  std::vector<std::string> command;  // argv of the program to trace
  std::string output_dir;            // empty: prism-trace-<time>
  std::string rules = "prism";       // built-in name or rules file
  bool preload = false;              // also set LD_PRELOAD (for programs that dlopen NVTX late)
  bool gpu = true;                   // ask for CUPTI activity when the program uses CUDA
};

struct TraceCommandResult {
  int exit_code = 0;  // the program's exit status, or 128 + signal
  bool signaled = false;
  std::string output_dir;
  std::string files;  // paths written, one per line
  Breakdown breakdown;
  std::vector<std::string> notes;  // other processes traced, partial traces, ...
};

// Runs the command to completion with the agent active from the start. Throws
// TraceError when the command cannot start or left no trace at all.
TraceCommandResult trace_command(const TraceCommandOptions& options);

struct AttachOptions {
  int pid = 0;
  uint64_t duration_ms = 10000;  // 0: until interrupted (see stop_requested)
  uint64_t interval_ms = 1000;   // live stats and snapshot period
  std::string rules = "prism";
  std::string output_dir;  // empty: prism-attach-<pid>-<time>
  bool gpu = true;
  std::function<void(const control::Stats&, double elapsed_s)> on_stats;  // called each interval
  std::function<bool()> stop_requested;                                   // polled; true ends early
  // Called with the breakdown of each live snapshot (the whole capture so far,
  // taken every interval) while capturing, for live consumers such as spike
  // alerts; not called for the final trace, which attach_and_capture returns.
  std::function<void(const Breakdown&, double elapsed_s)> on_snapshot;
  // The live path, for alerts within milliseconds: every live_poll_ms the events that arrived
  // since the last poll are fetched (protocol verb "events": O(new events) in the target and
  // here) and the iterations they complete (LiveBreakdown) are passed here, each once, with host
  // stage times. When set, no periodic snapshot is taken (on_snapshot is not called): a target
  // that dies mid-capture leaves the trace of the events received (its last window_s seconds).
  std::function<void(const Breakdown&, double elapsed_s)> on_iterations;
  uint64_t live_poll_ms = 2;
};

struct AttachResult {
  std::string output_dir;
  std::string files;
  Breakdown breakdown;
  bool partial = false;          // the target went away mid-capture
  double first_data_ms = -1;     // from connecting to the first event seen in live stats
  uint64_t live_errors = 0;      // on_snapshot calls that threw (the capture went on)
  std::string live_error;        // the first one's message
  uint64_t live_polls = 0;       // "events" requests made (on_iterations)
  uint64_t live_iterations = 0;  // iterations passed to on_iterations
  uint64_t live_lost = 0;        // events overwritten in the agent before they were fetched
};

// Throws control::ProbeError when no agent answers (the message says how to start one).
AttachResult attach_and_capture(const AttachOptions& options);

// The live, top-like table for --watch.
std::string format_stats_table(const control::Stats& stats, double elapsed_s);

}  // namespace prism::analysis
