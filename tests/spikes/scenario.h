// A short deterministic scenario for the spike detector tests: an engine with
// three stages whose latency follows a known linear cost model of the batch,
// strong legitimate variation (bursts of long prompts, batch-size swings) and
// faults injected at known iterations.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "prism/spikes/iteration.h"
#include "prism/spikes/scoring.h"
#include "prism/spikes/simulator.h"

namespace prism::spikes::test {

struct ScenarioFault {
  uint64_t first, last;
  std::string kind;  // "stage_delay" (sample + 1 ms) or "cpu_hog" (every stage x 2)
};

struct ScenarioOptions {
  uint64_t iterations = 4000;
  uint64_t seed = 42;
  double noise = 0.02;  // lognormal sigma per stage
  std::vector<std::pair<uint64_t, uint64_t>> long_prompt_bursts{{1200, 1300}, {3400, 3460}};
  std::vector<std::pair<uint64_t, uint64_t>> batch_swings{{2500, 2700}};
  std::vector<ScenarioFault> faults{{2000, 2029, "stage_delay"}, {3000, 3039, "cpu_hog"}};
  double step_change_from = -1;  // >= 0: every stage x step_change_factor from this iteration on
  double step_change_factor = 1.0;
};

inline const std::vector<std::string>& scenario_stages() {
  static const std::vector<std::string> s{"schedule", "forward", "sample"};
  return s;
}

inline LabelledRun make_scenario(const ScenarioOptions& o = {}) {
  std::mt19937_64 rng(o.seed);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::normal_distribution<double> gauss(0.0, 1.0);
  auto in = [](uint64_t i, const std::vector<std::pair<uint64_t, uint64_t>>& spans) {
    for (const auto& [a, b] : spans)
      if (i >= a && i <= b) return true;
    return false;
  };
  LabelledRun run;
  run.source = "scenario";
  run.series.stages = scenario_stages();
  uint64_t now = 1'000'000;
  for (uint64_t i = 0; i < o.iterations; ++i) {
    IterationFeatures f;
    if (in(i, o.long_prompt_bursts)) {
      f.prefill_tokens = 512;  // the whole token budget goes to long prompts
      f.decode_seqs = 2 + std::floor(4 * unit(rng));
    } else if (in(i, o.batch_swings)) {
      f.prefill_tokens = unit(rng) < 0.2 ? std::floor(64 * unit(rng)) : 0;
      f.decode_seqs = 48 + std::floor(16 * unit(rng));  // the batch quadruples
    } else {
      f.prefill_tokens = unit(rng) < 0.3 ? std::floor(160 * unit(rng)) : 0;
      f.decode_seqs = 4 + std::floor(13 * unit(rng));
    }
    f.batch_size = f.decode_seqs + (f.prefill_tokens > 0 ? 1 : 0);
    f.context_tokens = f.decode_seqs * (400 + 800 * unit(rng)) + f.prefill_tokens;
    IterationRecord r;
    r.index = i;
    r.features = f;
    // The truth: ns per stage, linear in the features.
    const double base[3] = {
        20'000 + 500 * f.batch_size,
        50'000 + 2'000 * f.prefill_tokens + 3'000 * f.decode_seqs + 10 * f.context_tokens,
        10'000 + 1'000 * f.decode_seqs};
    for (size_t s = 0; s < 3; ++s) r.stage_ns[s] = base[s] * std::exp(o.noise * gauss(rng));
    for (const ScenarioFault& fault : o.faults) {
      if (i < fault.first || i > fault.last) continue;
      if (fault.kind == "stage_delay")
        r.stage_ns[2] += 1'000'000;
      else
        for (size_t s = 0; s < 3; ++s) r.stage_ns[s] *= 2.0;
    }
    if (o.step_change_from >= 0 && static_cast<double>(i) >= o.step_change_from)
      for (size_t s = 0; s < 3; ++s) r.stage_ns[s] *= o.step_change_factor;
    const double total = r.stage_ns[0] + r.stage_ns[1] + r.stage_ns[2];
    r.start_ns = now;
    r.end_ns = now + static_cast<uint64_t>(std::llround(total));
    now = r.end_ns + 15'000;
    run.series.iterations.push_back(r);
  }
  for (const ScenarioFault& fault : o.faults)
    run.faults.push_back(FaultWindow{fault.first, fault.last, fault.kind,
                                     fault.kind == "stage_delay" ? "sample" : ""});
  run.labels = labels_from_windows(run.faults, o.iterations);
  return run;
}

}  // namespace prism::spikes::test
