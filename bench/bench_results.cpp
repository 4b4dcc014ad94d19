// results/ speed targets (issue 8):
//   compare two runs of 100,000 requests            <= 1 s
//   store 1,000,000 observations, build a table     <= 200 ms (the table)
// Run: build/<dir>/bench/bench_results --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <random>

#include "prism/results/compare.h"
#include "prism/results/run_source.h"
#include "prism/results/store.h"
#include "prism/results/table.h"

namespace {

using namespace prism::results;

// A run whose latencies look like a real engine's: lognormal TTFT with a
// heavy straggler tail, lognormal TPOT, jittered token gaps.
Run make_run(const std::string& id, const std::string& target, std::size_t requests,
             std::size_t tokens, double slowdown, std::uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  std::lognormal_distribution<double> body(std::log(0.2), 0.5);
  std::lognormal_distribution<double> tail(std::log(0.8), 0.8);
  std::lognormal_distribution<double> tpot(std::log(0.025), 0.3);
  std::lognormal_distribution<double> jitter(0.0, 0.2);
  Run run;
  run.run_id = id;
  run.started_at = "2026-11-24T15:00:00.000Z";
  run.target = {{"name", target}};
  run.workload = {{"name", "chat"}, {"hash", "h"}};
  run.configuration = {{"slo", {{"ttft_ms", 500}, {"tpot_ms", 50}}}};
  run.environment = {{"cpu", {{"model", "bench"}}}};
  run.observations.reserve(requests);
  for (std::size_t i = 0; i < requests; ++i) {
    Observation o;
    o.request_id = i;
    o.scheduled_s = 0.01 * static_cast<double>(i);
    o.sent_s = o.scheduled_s;
    double t = o.scheduled_s + (coin(gen) < 0.95 ? body(gen) : tail(gen)) * slowdown;
    const double step = tpot(gen) * slowdown;
    o.token_times_s.reserve(tokens);
    for (std::size_t k = 0; k < tokens; ++k) {
      if (k > 0) t += step * jitter(gen);
      o.token_times_s.push_back(t);
    }
    o.completed_s = t;
    o.prompt_tokens = 512;
    o.completion_tokens = static_cast<std::uint32_t>(tokens);
    run.observations.push_back(std::move(o));
  }
  return run;
}

// prism compare's work for two in-memory runs of 100,000 requests: sample
// extraction from observations, six metrics, bootstrap CIs (2000 resamples),
// quantile permutation tests and Mann-Whitney U.
void BM_CompareTwoRuns100k(benchmark::State& state) {
  const Run base = make_run("base", "e", 100000, 32, 1.0, 1);
  const Run candidate = make_run("cand", "e", 100000, 32, 1.05, 2);
  CompareOptions options;
  bool regression = false;
  for (auto _ : state) {
    const auto report = compare_runs(base, collect_samples(base.observations), candidate,
                                     collect_samples(candidate.observations), options);
    regression = report.regression;
    benchmark::DoNotOptimize(regression);
  }
  state.counters["requests_per_run"] = 100000;
  state.SetLabel(regression ? "5% slowdown caught" : "5% slowdown missed");
}
BENCHMARK(BM_CompareTwoRuns100k)->Unit(benchmark::kMillisecond)->MinTime(2.0);

struct StoreFixture {
  std::string path;
  std::vector<std::string> ids;
  StoreFixture() {
    path = (std::filesystem::temp_directory_path() / "prism-bench-results.db").string();
    std::filesystem::remove(path);
  }
  ~StoreFixture() {
    if (!std::getenv("PRISM_BENCH_KEEP_DB")) std::filesystem::remove(path);
  }
};

StoreFixture& fixture() {
  static StoreFixture f;
  return f;
}

// Writing 1,000,000 observations (4 runs of 250,000, 8 tokens each) into the
// store, metrics precomputed on the way in.
void BM_StoreMillionObservations(benchmark::State& state) {
  auto& f = fixture();
  std::vector<Run> runs;
  for (int i = 0; i < 4; ++i)
    runs.push_back(make_run("run-" + std::to_string(i), i % 2 ? "engine-b" : "engine-a", 250000, 8,
                            1.0 + 0.05 * i, 10 + i));
  for (auto _ : state) {
    std::filesystem::remove(f.path);
    Store store(f.path);
    for (const auto& run : runs) store.put_run(run);
  }
  f.ids.clear();
  for (const auto& run : runs) f.ids.push_back(run.run_id);
  state.counters["observations"] = 1000000;
}
BENCHMARK(BM_StoreMillionObservations)->Unit(benchmark::kMillisecond)->Iterations(1);

// The table from the store: the default metrics were precomputed when the
// runs were stored (the path `prism table RUN...` takes).
void BM_TableFromStoredMetrics(benchmark::State& state) {
  auto& f = fixture();
  for (auto _ : state) {
    RunLoader loader(f.path);
    std::vector<TableRun> runs;
    for (const auto& id : f.ids)
      runs.push_back(loader.table_run(loader.resolve(id), default_table_metrics()));
    const std::string text = render_table(build_table(runs, {}), TableFormat::kMarkdown);
    benchmark::DoNotOptimize(text.data());
  }
  state.counters["observations"] = 1000000;
}
BENCHMARK(BM_TableFromStoredMetrics)->Unit(benchmark::kMillisecond);

// The table recomputed from the 1,000,000 stored observations (metrics the
// store did not precompute: reads every request's samples, sorts, bootstraps).
void BM_TableRecomputedFromObservations(benchmark::State& state) {
  auto& f = fixture();
  TableOptions options;
  options.metrics = {"ttft.p95", "tpot.p75", "e2e.p95", "goodput"};
  for (auto _ : state) {
    RunLoader loader(f.path);
    std::vector<TableRun> runs;
    for (const auto& id : f.ids)
      runs.push_back(loader.table_run(loader.resolve(id), options.metrics));
    const std::string text = render_table(build_table(runs, options), TableFormat::kMarkdown);
    benchmark::DoNotOptimize(text.data());
  }
  state.counters["observations"] = 1000000;
}
BENCHMARK(BM_TableRecomputedFromObservations)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
