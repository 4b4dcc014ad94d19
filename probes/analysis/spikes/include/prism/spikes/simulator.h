// A deterministic stand-in for an engine: continuous batching with chunked
// prefill over a request stream with strong legitimate variation (bursts of
// long prompts, batch-size swings, long-context arrivals), per-stage latency
// from a known linear cost model plus multiplicative noise, and injected
// faults with ground-truth windows. Same seed, same run.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "prism/spikes/iteration.h"
#include "prism/spikes/scoring.h"

namespace prism::spikes {

// Stages of the simulated engine (the reference engine's leaf stages).
const std::vector<std::string>& simulator_stages();

struct SimulatorConfig {
  uint64_t seed = 1;
  uint64_t iterations = 20000;
  bool faults = true;                 // false: pure workload variation
  uint64_t fault_free_prefix = 1000;  // no fault before this iteration (warmup)
  double mean_fault_gap = 1500;       // iterations between faults (exponential)
  uint64_t min_fault_len = 20, max_fault_len = 150;
  // Fault strength: a slowdown factor m becomes 1 + fault_scale * (m - 1) and
  // injected delays are multiplied by it (1 = the documented fault set).
  double fault_scale = 1.0;
  double stage_noise = 0.03;      // lognormal sigma per stage
  double iteration_noise = 0.02;  // lognormal sigma shared by the stages of one iteration
  int token_budget = 512;         // chunked-prefill token budget per iteration
  int max_seqs = 64;
  double base_arrival_rate = 40;  // requests per second outside bursts
};

// The true cost of a stage: ns = c0 + c_prefill * prefill + c_decode * decode
// + c_context * context + c_batch * batch.
struct StageCost {
  double c0, prefill, decode, context, batch;
  double at(const IterationFeatures& f) const {
    return c0 + prefill * f.prefill_tokens + decode * f.decode_seqs + context * f.context_tokens +
           batch * f.batch_size;
  }
};
const std::vector<StageCost>& simulator_costs();  // simulator_stages() order

struct LabelledRun {
  IterationSeries series;
  std::vector<FaultWindow> faults;
  std::vector<uint8_t> labels;  // one per iteration
  std::string source;           // "simulator" or "engine"
  // Per iteration, the time from its end until the detector could have it
  // (engine runs: bookkeeping after the step). Empty: zero.
  std::vector<double> handover_delay_ns;
  // Per iteration, the time the engine thread was off CPU during the step
  // (measured runs only; empty: unknown). Outside fault windows this is
  // ambient interference from other processes, not workload variation.
  std::vector<double> off_cpu_ns;
  // Per iteration, the time the engine thread waited on a run queue during the
  // step (/proc/thread-self/schedstat; measured runs only, -1 unknown): other
  // runnable threads on its CPU. Reported as ambient interference.
  std::vector<double> run_delay_ns;
};

LabelledRun simulate(const SimulatorConfig& config);

}  // namespace prism::spikes
