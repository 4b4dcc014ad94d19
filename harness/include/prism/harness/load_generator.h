// The scheduler: turns a workload into timed requests against a Target and
// records what happened as Observations.
//
// Modes (DESIGN.md, "Measuring honestly"):
// - Open loop: every session's first request is due at its arrival offset (or
//   at Poisson arrivals of --rate) and is sent then, whatever is in flight.
//   scheduled_s is when it was due, sent_s when it was handed to the
//   transport: lateness is recorded, never hidden.
// - Concurrency cap: at most `concurrency` requests in flight. A request that
//   is due waits for a slot, and the wait counts in its TTFT and E2E (both are
//   measured from scheduled_s). With a closed-loop workload and no rate, a
//   session starts when a slot frees (pure closed loop: nothing is due early).
// - Sessions: turn n+1 is due when turn n completes plus its think time
//   (Request::arrival_offset_s of turns > 0); its prompt carries the actual
//   replies of earlier turns. A failed turn ends its session.
// Warm-up requests (the first `warmup_requests` sent) are flagged and left
// out of metrics. A SIGINT/SIGTERM (through `interrupt`) cancels what is in
// flight, keeps everything measured so far and marks the result incomplete.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "prism/harness/target.h"
#include "prism/results/observation.h"
#include "prism/workloads/workload.h"

namespace prism::harness {

struct LoadProgress {
  double elapsed_s = 0;
  std::uint64_t planned = 0;  // requests in the workload (or the request limit)
  std::uint64_t sent = 0;
  std::uint64_t done = 0;
  std::uint64_t errors = 0;
  std::uint64_t in_flight = 0;
  std::uint64_t output_tokens = 0;
};

struct LoadOptions {
  std::optional<double> rate_per_s;          // Poisson session starts, overriding the workload's
  std::optional<std::uint32_t> concurrency;  // cap on requests in flight
  std::uint64_t warmup_requests = 0;
  std::optional<std::uint64_t> max_requests;  // measured requests to send (warm-up excluded)
  std::optional<double> max_duration_s;       // stop sending after this long
  double drain_timeout_s = 60.0;  // after a limit, how long in-flight requests may finish
  std::uint64_t seed = 0;         // for --rate arrivals
  const std::atomic<int>* interrupt = nullptr;           // non-zero (a signal number): stop now
  std::function<void(const LoadProgress&)> on_progress;  // called on the scheduler thread
  double progress_interval_s = 0.5;
};

struct LoadResult {
  std::vector<results::Observation> observations;  // ordered by scheduled time
  bool complete = true;
  std::string incomplete_reason;
  std::int64_t origin_ns = 0;  // monotonic time of t = 0 in the observations
  double elapsed_s = 0;
  std::uint64_t sessions_ended_by_error = 0;
};

// Runs the workload against a started target. Blocks until done, a limit or
// an interrupt. The target must not be shared with another run at the same time.
LoadResult run_load(const workloads::Workload& workload, Target& target,
                    const LoadOptions& options);

// The messages of turn `turn` of a session given the actual replies of the
// earlier turns (exposed for tests): leading system segments become a system
// message; segments of earlier turns (by content id) and history segments
// are replaced by the real conversation.
std::vector<Message> build_messages(const workloads::Session& session, std::size_t turn,
                                    const std::vector<std::string>& replies);

}  // namespace prism::harness
