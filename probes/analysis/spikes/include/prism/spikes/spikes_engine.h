// The evaluation kit's real source: the reference engine (prism_engine), run
// in process by the caller's thread with a workload of strong legitimate
// variation and injected faults. Lives in its own library,
// prism_spikes_engine, so prism_spikes itself needs nothing but the standard
// library, nlohmann_json and fmt.
//
// Iterations are timed around Engine::step() (CLOCK_MONOTONIC), stage times
// come from the engine's stage clock, features from its counters:
//   prefill_tokens  prompt tokens computed in the step
//   decode_seqs     tokens sampled in the step
//   context_tokens  KV tokens resident after the step (blocks used x block size)
//   batch_size      running sequences
// Faults (each for a window of iterations; ground truth = those iterations):
//   cpu_hog       threads spinning on every core
//   membw_hog     threads streaming through a buffer far larger than the caches
//   stage_delay   detokenize slowed: each token's bytes take an extra busy wait
//   deschedule    the step's output callback sleeps (the thread is off CPU)
//   freq_cap      a duty-cycled spinner per core: the engine gets a share of a slower CPU
#pragma once

#include <array>
#include <cstdint>
#include <ostream>
#include <string>

#include "prism/spikes/eval.h"

namespace prism::spikes {

struct EngineEvalConfig {
  std::string model = "tiny";  // built-in name, config file or model directory
  uint64_t iterations = 20000;
  double fault_scale = 1.0;
  uint64_t fault_free_prefix = 1000;
  double mean_fault_gap = 1500;
  uint64_t min_fault_len = 20, max_fault_len = 150;
  int token_budget = 256;
  int max_seqs = 32;
  // Threads for the kernels (and OpenBLAS) during the run; 1 keeps the whole
  // step on the calling thread, so its CPU time tells when the step was
  // descheduled by something outside the experiment. 0: leave as configured.
  int kernel_threads = 1;
  std::ostream* progress = nullptr;  // one line per run when set
};

// Engine stage names as the source reports them.
const std::vector<std::string>& engine_stages();
std::array<double, kFeatureCount> engine_feature_scale();

LabelledRun run_engine(const EngineEvalConfig& config, uint64_t seed, bool faults);
RunSource engine_source(EngineEvalConfig config);

}  // namespace prism::spikes
