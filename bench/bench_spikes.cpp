// Spike detection cost (issue 7 target: <= 1 us per iteration). The detector
// sees a pre-generated simulated run (pure workload variation, or with faults
// so alerts with flight-recorder windows are built and serialised too), one
// iteration per benchmark iteration, as it would inside a live watcher.
#include <benchmark/benchmark.h>

#include "prism/spikes/alerts.h"
#include "prism/spikes/detector.h"
#include "prism/spikes/simulator.h"
#include "prism/spikes/slo_burn.h"

namespace {

using namespace prism::spikes;

const LabelledRun& simulated_run(bool faults) {
  static const LabelledRun clean = [] {
    SimulatorConfig c;
    c.seed = 21;
    c.iterations = 50000;
    c.faults = false;
    return simulate(c);
  }();
  static const LabelledRun with_faults = [] {
    SimulatorConfig c;
    c.seed = 21;
    c.iterations = 50000;
    return simulate(c);
  }();
  return faults ? with_faults : clean;
}

// Detector::observe per iteration; range(0) = stages watched (1..8: the
// model count is stages + 1), pure workload variation.
void BM_DetectorObserve(benchmark::State& state) {
  const LabelledRun& run = simulated_run(false);
  const int stages = static_cast<int>(state.range(0));
  DetectorConfig c;
  for (int s = 0; s < stages; ++s)
    c.stages.push_back(s < static_cast<int>(run.series.stages.size())
                           ? run.series.stages[static_cast<size_t>(s)]
                           : "extra" + std::to_string(s));
  Detector d(c);
  std::vector<IterationRecord> its = run.series.iterations;
  for (IterationRecord& r : its)  // stages beyond the simulator's mirror its first ones
    for (int s = static_cast<int>(run.series.stages.size()); s < stages; ++s)
      r.stage_ns[static_cast<size_t>(s)] = r.stage_ns[static_cast<size_t>(s % 6)];
  // Warm, as in a service that has been watched for a while.
  for (size_t i = 0; i < 5000; ++i) d.observe(its[i]);
  size_t i = 5000;
  uint64_t anomalous = 0;
  for (auto _ : state) {
    const IterationVerdict& v = d.observe(its[i]);
    anomalous += v.anomalous ? 1 : 0;
    while (d.has_alert()) benchmark::DoNotOptimize(d.take_alert());
    if (++i == its.size()) i = 5000;
  }
  state.counters["ns_per_iteration"] =
      benchmark::Counter(static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["anomalous"] = static_cast<double>(anomalous);
}
BENCHMARK(BM_DetectorObserve)->Arg(1)->Arg(6)->Arg(8);

// With faults: the cost per iteration including alerts (open and closed, each
// with its flight-recorder window) serialised to a JSON line.
void BM_DetectorObserveWithAlerts(benchmark::State& state) {
  const LabelledRun& run = simulated_run(true);
  DetectorConfig c;
  c.stages = run.series.stages;
  Detector d(c);
  const auto& its = run.series.iterations;
  for (size_t i = 0; i < 1000; ++i) d.observe(its[i]);
  size_t i = 1000;
  uint64_t alerts = 0;
  for (auto _ : state) {
    d.observe(its[i]);
    while (d.has_alert()) {
      const std::string line = spike_alert_json(d.take_alert(), 1).dump();
      benchmark::DoNotOptimize(line.data());
      ++alerts;
    }
    if (++i == its.size()) {
      i = 1000;
      d.reset_episodes();  // the index starts over: no episode spans the wrap
    }
  }
  state.counters["ns_per_iteration"] =
      benchmark::Counter(static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["alerts"] = static_cast<double>(alerts);
}
BENCHMARK(BM_DetectorObserveWithAlerts);

// SLO burn: one finished request into a 60 s window at 200 requests/s.
void BM_SloBurnAdd(benchmark::State& state) {
  SloConfig c;
  c.ttft_slo_ns = 200e6;
  c.tpot_slo_ns = 50e6;
  SloBurnMonitor m(c);
  uint64_t t = 0;
  uint64_t n = 0;
  for (auto _ : state) {
    t += 5'000'000;
    ++n;
    benchmark::DoNotOptimize(m.add(RequestTiming{t, (n % 13 == 0) ? 300e6 : 80e6, 20e6}));
  }
}
BENCHMARK(BM_SloBurnAdd);

}  // namespace

BENCHMARK_MAIN();
