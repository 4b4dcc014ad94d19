// Seeded synthetic runs with realistic latency shapes, for statistics,
// store, table and gate tests: TTFT is lognormal with a heavy straggler tail
// (a mixture: 95% lognormal around 200 ms, 5% four times slower with more
// spread), TPOT lognormal around 25 ms, token gaps jittered around the TPOT.
// `slowdown` multiplies every latency (1.05 = the engine with a 5% delay).
#pragma once

#include <cmath>
#include <random>
#include <string>

#include "prism/results/run_file.h"
#include "prism/results/samples.h"

namespace prism::test {

struct SyntheticOptions {
  std::size_t requests = 1000;
  std::size_t tokens = 16;  // output tokens per request
  double slowdown = 1.0;
  std::uint64_t seed = 1;
  std::string target = "engine-a";
  std::string workload = "chat";
};

inline double synthetic_ttft(std::mt19937_64& gen) {
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  std::lognormal_distribution<double> body(std::log(0.2), 0.5);
  std::lognormal_distribution<double> tail(std::log(0.8), 0.8);
  return coin(gen) < 0.95 ? body(gen) : tail(gen);
}

inline results::Run synthetic_run(const SyntheticOptions& o) {
  std::mt19937_64 gen(o.seed);
  std::lognormal_distribution<double> tpot(std::log(0.025), 0.3);
  std::lognormal_distribution<double> jitter(0.0, 0.2);
  results::Run run;
  run.run_id = "run-" + o.target + "-" + o.workload + "-" + std::to_string(o.seed);
  run.started_at = "2026-11-24T15:00:00.000Z";
  run.finished_at = "2026-11-24T15:10:00.000Z";
  run.prism_version = "0.1.0";
  run.prism_git_sha = "abc123";
  run.environment = {{"cpu", {{"model", "Test CPU"}, {"logical_cores", 8}}},
                     {"cuda",
                      {{"gpus", nlohmann::json::array({{{"name", "H100"}}})},
                       {"driver_version", "580.1"},
                       {"toolkit_version", "13.0"}}}};
  run.configuration = {{"rate", 10.0}, {"slo", {{"ttft_ms", 500}, {"tpot_ms", 50}}}};
  run.target = {{"name", o.target}, {"kind", "http"}};
  run.workload = {
      {"name", o.workload}, {"kind", "multi-turn"}, {"seed", 7}, {"hash", o.workload + "-hash"}};
  for (std::size_t i = 0; i < o.requests; ++i) {
    results::Observation obs;
    obs.request_id = i;
    obs.session = i / 4;
    obs.turn = static_cast<std::uint32_t>(i % 4);
    obs.scheduled_s = 0.1 * static_cast<double>(i);
    obs.sent_s = obs.scheduled_s + 0.0005;
    double t = obs.scheduled_s + synthetic_ttft(gen) * o.slowdown;
    const double step = tpot(gen) * o.slowdown;
    for (std::size_t k = 0; k < o.tokens; ++k) {
      if (k > 0) t += step * jitter(gen);
      obs.token_times_s.push_back(t);
    }
    obs.completed_s = t + 0.001;
    obs.prompt_tokens = static_cast<std::uint32_t>(256 + 128 * (i % 8));
    obs.completion_tokens = static_cast<std::uint32_t>(o.tokens);
    run.observations.push_back(std::move(obs));
  }
  return run;
}

// Just the samples, for the many-repeat A/A and A/B simulations.
inline results::RunSamples synthetic_samples(std::size_t n, double slowdown, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::lognormal_distribution<double> tpot(std::log(0.025), 0.3);
  std::uniform_int_distribution<int> tokens(32, 256);
  results::RunSamples s;
  for (std::size_t i = 0; i < n; ++i) {
    const double ttft = synthetic_ttft(gen) * slowdown;
    const double step = tpot(gen) * slowdown;
    const int count = tokens(gen);
    s.ttft_s.push_back(ttft);
    s.tpot_s.push_back(step);
    s.e2e_s.push_back(ttft + step * (count - 1));
  }
  s.requests = s.succeeded = n;
  return s;
}

}  // namespace prism::test
