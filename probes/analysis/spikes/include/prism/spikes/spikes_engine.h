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
//   context_tokens  KV tokens resident before or after the step, the larger
//                   (blocks used x block size)
//   batch_size      running sequences
// The stepping thread is pinned to one CPU for the run. Faults, each for a
// window of iterations; ground truth per iteration is what the fault did to it
// where it is injected (see README "Ground truth"):
//   cpu_hog       a thread spinning on the engine's CPU; faulty: the iterations
//                 it preempted (engine thread off CPU > 20 us and > 5 %)
//   membw_hog     threads on the other CPUs streaming through 2 x 64 MiB
//                 buffers (the LLC is evicted, DRAM bandwidth shared); faulty:
//                 every iteration of the window
//   stage_delay   detokenize stalls: a busy wait of 0.3-1.5 ms in the first
//                 token of each step; faulty: the iterations that detokenized
//   deschedule    the step's output callback sleeps (the thread is off CPU);
//                 faulty: the iterations whose callback slept
#pragma once

#include <array>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

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
  // CPU the stepping thread is pinned to during a run (-1: the last CPU this
  // thread may use); cpu_hog threads are pinned there too, membw_hog threads
  // to the other CPUs. pin=false leaves the scheduler free (faults bite less).
  int engine_cpu = -1;
  bool pin = true;
  int cpu_hog_threads = 1;
  // Ground truth of a cpu_hog window: an iteration is faulty when the hog
  // preempted it, i.e. the engine thread was off CPU for more than both of
  // these (the same test as ambient interference in ScoringOptions).
  double min_affected_off_cpu_ns = 20'000;
  double min_affected_off_cpu_share = 0.05;  // of the step's CPU time
  // Hand the detector each step's off-CPU time (wall - thread CPU time), so
  // it models time on CPU and counts time off CPU as excess.
  bool detector_sees_cpu_time = true;
  // Fault kinds to inject (names above); empty: all four.
  std::vector<std::string> fault_kinds;
  std::ostream* progress = nullptr;  // one line per run when set
};

// Engine stage names as the source reports them.
const std::vector<std::string>& engine_stages();
std::array<double, kFeatureCount> engine_feature_scale();

LabelledRun run_engine(const EngineEvalConfig& config, uint64_t seed, bool faults);
RunSource engine_source(EngineEvalConfig config);

}  // namespace prism::spikes
