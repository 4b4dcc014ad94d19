// One engine iteration (one batch) as the spike detector sees it: the
// workload features that legitimately drive its latency, and the time spent
// in each stage. Fixed-size arrays so the hot path never allocates.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace prism::spikes {

inline constexpr int kMaxStages = 8;

// What the probe or the engine knows about the batch of one iteration.
struct IterationFeatures {
  double prefill_tokens = 0;  // prompt tokens computed in the iteration
  double decode_seqs = 0;     // sequences that decoded one token
  double context_tokens = 0;  // KV tokens read (total context of the batch)
  double batch_size = 0;      // sequences in the batch
};

inline constexpr int kFeatureCount = 4;
// Column / JSON names of the features, in IterationFeatures order.
const std::array<const char*, kFeatureCount>& feature_names();
double feature_value(const IterationFeatures& f, int i);
void set_feature_value(IterationFeatures& f, int i, double value);

struct IterationRecord {
  uint64_t index = 0;
  uint64_t start_ns = 0;
  uint64_t end_ns = 0;
  IterationFeatures features;
  std::array<double, kMaxStages> stage_ns{};  // in the detector's stage order
  // Time the iteration's thread was off CPU during it (wall minus thread CPU
  // time); negative when the source cannot tell (probe traces). When known,
  // the detector models the on-CPU time, so time off CPU is never mistaken for
  // workload-driven cost and always counts as excess.
  double off_cpu_ns = -1;
  uint64_t duration_ns() const { return end_ns - start_ns; }
  double on_cpu_ns() const {
    const double wall = static_cast<double>(duration_ns());
    return off_cpu_ns > 0 ? (off_cpu_ns < wall ? wall - off_cpu_ns : 0.0) : wall;
  }
};

// A run of iterations with the stage names that index stage_ns.
struct IterationSeries {
  std::vector<std::string> stages;
  std::vector<IterationRecord> iterations;
  bool has_features = true;  // false: the source had no feature columns
};

}  // namespace prism::spikes
