// What a workload contains, as numbers: what `prism workload inspect` prints
// and what tests compare against the construction.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "prism/workloads/workload.h"

namespace prism::workloads {

// Power-of-two buckets: bucket i counts values in [2^i, 2^(i+1)) (bucket 0 also holds 0).
struct Histogram {
  std::vector<std::uint64_t> counts;
  void add(std::uint64_t value);
  static std::uint64_t lower_bound(std::size_t bucket) { return bucket == 0 ? 0 : 1ull << bucket; }
};

struct LengthSummary {
  std::uint64_t count = 0, min = 0, max = 0, total = 0;
  double mean = 0, p50 = 0, p90 = 0, p99 = 0;
  Histogram histogram;
};

struct WorkloadStats {
  std::size_t sessions = 0;
  std::size_t requests = 0;
  std::size_t distinct_segments = 0;  // distinct content ids
  std::uint64_t prompt_tokens = 0;    // sum over requests
  std::uint64_t output_tokens = 0;
  std::uint64_t distinct_prompt_tokens = 0;  // tokens of distinct content ids
  std::uint64_t reused_prompt_tokens = 0;    // tokens in segments whose id was seen earlier
  // reused_prompt_tokens / prompt_tokens: the share of prompt tokens a perfect
  // KV cache (prefix or not) could serve. Non-prefix reuse is its own figure.
  double reuse_ratio = 0;
  std::uint64_t reused_prefix_tokens =
      0;  // reused tokens in the request's leading run of reused segments
  double prefix_reuse_ratio = 0;
  LengthSummary prompt_lengths, output_lengths, session_depth;
  std::map<std::string, std::uint64_t> tokens_by_provenance;
  double first_arrival_span_s = 0;  // last first-turn arrival offset
};

// Reuse is counted in workload order (sessions, then turns); since every
// repeat of an id counts once it has been seen, the total does not depend on
// that order.
WorkloadStats compute_stats(const Workload& workload);

// Human-readable report (the `inspect` output).
std::string format_stats(const Workload& workload, const WorkloadStats& stats);

}  // namespace prism::workloads
