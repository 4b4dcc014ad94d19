// results/ speed targets (issue 8):
//   compare two runs of 100,000 requests            <= 1 s
//   store 1,000,000 observations, build a table     <= 200 ms (the table)
// Run: build/<dir>/bench/bench_results --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <random>

#include <fmt/core.h>

#include "prism/engine/engine.h"
#include "prism/kernels/threading.h"

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
    // Read after the loop, so it cannot be optimised away. (Not through
    // DoNotOptimize: GCC with benchmark 1.7's "+m,r" constraint lost the store.)
    regression = report.regression;
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

// The table with metrics the store did not precompute (ttft.p95, tpot.p75,
// e2e.p95, itl.p99.9 over the 1,000,000 stored observations and their 7,000,000
// token gaps): each percentile and its order-statistic interval are read from
// the run's sorted sample columns (four values each), not from the rows.
void BM_TableRecomputedFromObservations(benchmark::State& state) {
  auto& f = fixture();
  TableOptions options;
  options.metrics = {"ttft.p95", "tpot.p75", "e2e.p95", "itl.p99.9", "goodput"};
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

// ---------------------------------------------------------------------------
// The gate on the real reference engine (issue 8, "statistics shown"): the
// in-process engine (`tiny` model) serves a closed loop of requests; the
// candidate is the same engine with an injected 5% delay (every engine step
// is followed by a busy wait of 5% of that step's own duration, so every
// token and every prefill is 5% later). Each repeat makes three runs (base,
// base again, slowed) in a random order so drift of the shared machine hits
// all three alike, then gates base vs base again (A/A: a failure is a false
// regression) and base vs slowed (A/B: a failure is a catch). This is the
// per-request gate, one run a side; results/README.md explains why it fails
// A/A under run-to-run drift and recommends the run-level gate
// (BM_EngineRunGate below) instead.
//
// Environment knobs (defaults: the per-request gate's 5,000 requests per run):
//   PRISM_POWER_REPEATS   repeats (default 100)
//   PRISM_POWER_REQUESTS  measured requests per run (default 5000)
//   PRISM_POWER_DELAY     injected delay fraction (default 0.05)
//   PRISM_POWER_THREADS   kernel threads (default 1)
// Run: bench_results --benchmark_filter=EngineGate

std::size_t env_size(const char* name, std::size_t fallback) {
  const char* text = std::getenv(name);
  return text ? static_cast<std::size_t>(std::strtoull(text, nullptr, 10)) : fallback;
}

double env_double(const char* name, double fallback) {
  const char* text = std::getenv(name);
  return text ? std::strtod(text, nullptr) : fallback;
}

struct EngineLoad {
  std::size_t requests = 5000;
  std::size_t warmup = 50;  // requests excluded from the samples (cache and CPU warm-up)
  std::size_t concurrency = 8;
  int min_prompt = 32;
  int max_prompt = 160;
  int output_tokens = 16;
};

double seconds_since(std::chrono::steady_clock::time_point t0,
                     std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(t - t0).count();
}

// One closed-loop run on the calling thread. The prompt stream is the same
// for every run (same seed), so runs differ only by the engine's speed and
// the machine's noise.
Run engine_run(prism::engine::Engine& engine, const EngineLoad& load, double delay_fraction,
               const std::string& id) {
  using clock = std::chrono::steady_clock;
  std::mt19937_64 gen(42);
  std::uniform_int_distribution<int> length(load.min_prompt, load.max_prompt);
  std::uniform_int_distribution<int> byte(1, 255);
  const std::size_t total = load.requests + load.warmup;
  std::vector<Observation> observations(total);
  std::size_t next = 0, done = 0, in_flight = 0;
  const auto t0 = clock::now();
  auto submit = [&](std::size_t index) {
    prism::engine::GenerateRequest request;
    request.prompt.resize(static_cast<std::size_t>(length(gen)));
    for (auto& token : request.prompt) token = byte(gen);
    request.sampling.max_tokens = load.output_tokens;
    request.sampling.ignore_eos = true;
    Observation& o = observations[index];
    o.request_id = index;
    o.session = index;
    o.warmup = index < load.warmup;
    o.prompt_tokens = static_cast<std::uint32_t>(request.prompt.size());
    o.scheduled_s = o.sent_s = seconds_since(t0, clock::now());
    const auto admitted =
        engine.add_request(std::move(request), [&, index](const prism::engine::RequestOutput& out) {
          Observation& obs = observations[index];
          const double now = seconds_since(t0, clock::now());
          for (std::size_t k = 0; k < out.token_ids.size(); ++k) obs.token_times_s.push_back(now);
          if (out.finished) {
            obs.completed_s = now;
            obs.completion_tokens = static_cast<std::uint32_t>(out.completion_tokens);
            obs.cached_tokens = static_cast<std::uint32_t>(out.cached_tokens);
            if (out.finish_reason == prism::engine::FinishReason::kAbort) {
              obs.status = RequestStatus::kError;
              obs.error = ErrorClass::kOther;
            }
            ++done;
            --in_flight;
          }
        });
    if (!admitted.ok()) throw std::runtime_error("engine refused a request: " + admitted.message);
    ++in_flight;
  };
  while (done < total) {
    while (next < total && in_flight < load.concurrency) submit(next++);
    const auto start = clock::now();
    if (!engine.step()) continue;
    const auto step = clock::now() - start;
    if (delay_fraction > 0.0) {
      const auto until =
          clock::now() + std::chrono::duration_cast<clock::duration>(step * delay_fraction);
      while (clock::now() < until) {
      }
    }
  }
  Run run;
  run.run_id = id;
  run.target = {{"name", "engine:tiny"}, {"injected_delay", delay_fraction}};
  run.workload = {{"name", "bench-closed-loop"}, {"hash", "bench-closed-loop-42"}};
  run.observations = std::move(observations);
  return run;
}

void BM_EngineGatePower(benchmark::State& state) {
  const std::size_t repeats = env_size("PRISM_POWER_REPEATS", 100);
  EngineLoad load;
  load.requests = env_size("PRISM_POWER_REQUESTS", 5000);
  const double delay = env_double("PRISM_POWER_DELAY", 0.05);
  // One kernel thread: a thread pool on a shared, loaded machine adds
  // scheduling noise that has nothing to do with the engine.
  prism::kernels::set_kernel_threads(static_cast<int>(env_size("PRISM_POWER_THREADS", 1)));
  prism::engine::EngineOptions engine_options;
  auto loaded = prism::engine::load_engine("tiny", engine_options);
  prism::engine::Engine& engine = *loaded.engine;
  CompareOptions options;  // defaults: the six latency metrics, alpha 0.05, no threshold
  options.resamples = 1000;
  std::size_t false_regressions = 0, caught = 0, aa_slower_any = 0;
  double aa_change_sum = 0.0, ab_change_sum = 0.0;
  std::mt19937_64 order_gen(7);
  for (auto _ : state) {
    for (std::size_t r = 0; r < repeats; ++r) {
      std::array<int, 3> order{0, 1, 2};  // 0: base, 1: base again, 2: slowed
      std::shuffle(order.begin(), order.end(), order_gen);
      std::array<Run, 3> runs;
      for (int which : order)
        runs[static_cast<std::size_t>(which)] =
            engine_run(engine, load, which == 2 ? delay : 0.0, fmt::format("r{}-{}", r, which));
      std::array<RunSamples, 3> samples;
      for (std::size_t i = 0; i < 3; ++i) samples[i] = collect_samples(runs[i].observations);
      options.seed = 1000 + r;
      const auto aa = compare_runs(runs[0], samples[0], runs[1], samples[1], options);
      const auto ab = compare_runs(runs[0], samples[0], runs[2], samples[2], options);
      false_regressions += aa.regression ? 1 : 0;
      caught += ab.regression ? 1 : 0;
      for (const auto& m : aa.metrics)
        if (m.verdict == Verdict::kSlower) {
          ++aa_slower_any;
          break;
        }
      for (const auto& m : aa.metrics)
        if (m.spec.name == "e2e.p50") aa_change_sum += m.change;
      for (const auto& m : ab.metrics)
        if (m.spec.name == "e2e.p50") ab_change_sum += m.change;
      fmt::print(stderr, "repeat {:3}: A/A {} A/B {} (running: {} false of {}, {} caught)\n", r,
                 aa.regression ? "FAIL" : "pass", ab.regression ? "FAIL" : "pass",
                 false_regressions, r + 1, caught);
    }
  }
  const double n = static_cast<double>(repeats);
  state.counters["repeats"] = n;
  state.counters["requests_per_run"] = static_cast<double>(load.requests);
  state.counters["delay"] = delay;
  state.counters["aa_false_regression_rate"] = static_cast<double>(false_regressions) / n;
  state.counters["aa_any_metric_slower_rate"] = static_cast<double>(aa_slower_any) / n;
  state.counters["ab_power"] = static_cast<double>(caught) / n;
  state.counters["aa_mean_e2e_p50_change"] = aa_change_sum / n;
  state.counters["ab_mean_e2e_p50_change"] = ab_change_sum / n;
}
BENCHMARK(BM_EngineGatePower)->Unit(benchmark::kSecond)->Iterations(1);

// ---------------------------------------------------------------------------
// The run-level gate on the real reference engine: the unit of the test is
// the run. Each repeat makes `pairs` triples of runs (base, base again,
// slowed), each triple in a random order so drift of the machine hits all
// three alike, then gates base-set vs base-again-set (A/A: a failure is a
// false regression) and base-set vs slowed-set (A/B: a failure is a catch),
// both paired in triple order (compare_run_sets). For contrast, the
// per-request gate is applied to the first triple's single runs.
//
// Environment knobs (defaults: what results/README.md recommends):
//   PRISM_GATE_REPEATS   repeats (default 100)
//   PRISM_GATE_PAIRS     runs per side (default 10)
//   PRISM_GATE_REQUESTS  measured requests per run (default 400)
//   PRISM_GATE_WARMUP    warm-up requests per run, not measured (default 20)
//   PRISM_GATE_DELAY     injected delay fraction (default 0.05)
//   PRISM_GATE_SEED      run-order seed, so repeats split over several
//                        invocations (one per quiet-lock slot) stay independent
// Run: bench_results --benchmark_filter=EngineRunGate
void BM_EngineRunGate(benchmark::State& state) {
  const std::size_t repeats = env_size("PRISM_GATE_REPEATS", 100);
  const std::size_t pairs = env_size("PRISM_GATE_PAIRS", 10);
  EngineLoad load;
  load.requests = env_size("PRISM_GATE_REQUESTS", 400);
  load.warmup = env_size("PRISM_GATE_WARMUP", 20);
  const double delay = env_double("PRISM_GATE_DELAY", 0.05);
  const std::uint64_t seed = env_size("PRISM_GATE_SEED", 7);
  prism::kernels::set_kernel_threads(static_cast<int>(env_size("PRISM_POWER_THREADS", 1)));
  prism::engine::EngineOptions engine_options;
  auto loaded = prism::engine::load_engine("tiny", engine_options);
  prism::engine::Engine& engine = *loaded.engine;
  CompareOptions options;  // defaults: the six latency metrics, alpha 0.05, no threshold
  options.resamples = 1000;
  std::size_t aa_false = 0, ab_caught = 0, single_aa_false = 0, single_ab_caught = 0;
  double aa_log_sd_sum = 0.0, ab_change_sum = 0.0, aa_change_sum = 0.0;
  std::mt19937_64 order_gen(seed);
  // One unmeasured run first: the engine's first run after loading pays for
  // page faults and allocator growth that later runs do not.
  engine_run(engine, load, 0.0, "discarded-first-run");
  for (auto _ : state) {
    for (std::size_t r = 0; r < repeats; ++r) {
      std::array<std::vector<Run>, 3> runs;  // 0: base, 1: base again, 2: slowed
      std::array<std::vector<RunSamples>, 3> samples;
      for (std::size_t p = 0; p < pairs; ++p) {
        std::array<int, 3> order{0, 1, 2};
        std::shuffle(order.begin(), order.end(), order_gen);
        for (int which : order) {
          const auto w = static_cast<std::size_t>(which);
          runs[w].push_back(engine_run(engine, load, which == 2 ? delay : 0.0,
                                       fmt::format("s{}-r{}-p{}-{}", seed, r, p, which)));
          samples[w].push_back(collect_samples(runs[w].back().observations));
        }
      }
      const auto aa = compare_run_sets(runs[0], samples[0], runs[1], samples[1], options);
      const auto ab = compare_run_sets(runs[0], samples[0], runs[2], samples[2], options);
      options.seed = seed * 1000 + r;
      const auto single_aa =
          compare_runs(runs[0][0], samples[0][0], runs[1][0], samples[1][0], options);
      const auto single_ab =
          compare_runs(runs[0][0], samples[0][0], runs[2][0], samples[2][0], options);
      aa_false += aa.regression;
      ab_caught += ab.regression;
      single_aa_false += single_aa.regression;
      single_ab_caught += single_ab.regression;
      // Run-to-run noise: sd over pairs of ln(base again / base) of e2e.p50.
      std::vector<double> d;
      const MetricSpec e2e = parse_metric("e2e.p50");
      for (std::size_t p = 0; p < pairs; ++p) {
        const auto& a = samples[0][p].e2e_s;
        const auto& b = samples[1][p].e2e_s;
        d.push_back(std::log(percentile(b, 50) / percentile(a, 50)));
      }
      aa_log_sd_sum += sample_stddev(d);
      for (const auto& m : aa.metrics)
        if (m.spec.name == "e2e.p50") aa_change_sum += m.change;
      for (const auto& m : ab.metrics)
        if (m.spec.name == "e2e.p50") ab_change_sum += m.change;
      std::string failing;
      for (const auto& m : aa.metrics)
        if (m.regression) failing += " " + m.spec.name;
      fmt::print(stderr,
                 "seed {} repeat {:3}: run-level A/A {} A/B {} | per-request A/A {} A/B {} | "
                 "e2e.p50 pair sd {:.4f}{}\n",
                 seed, r, aa.regression ? "FAIL" : "pass", ab.regression ? "FAIL" : "pass",
                 single_aa.regression ? "FAIL" : "pass", single_ab.regression ? "FAIL" : "pass",
                 sample_stddev(d), failing.empty() ? "" : " (A/A failed on" + failing + ")");
    }
  }
  const double n = static_cast<double>(repeats);
  state.counters["repeats"] = n;
  state.counters["pairs"] = static_cast<double>(pairs);
  state.counters["requests_per_run"] = static_cast<double>(load.requests);
  state.counters["delay"] = delay;
  state.counters["run_aa_false_regression_rate"] = static_cast<double>(aa_false) / n;
  state.counters["run_ab_power"] = static_cast<double>(ab_caught) / n;
  state.counters["request_aa_false_regression_rate"] = static_cast<double>(single_aa_false) / n;
  state.counters["request_ab_power"] = static_cast<double>(single_ab_caught) / n;
  state.counters["aa_e2e_p50_pair_log_sd"] = aa_log_sd_sum / n;
  state.counters["aa_mean_e2e_p50_change"] = aa_change_sum / n;
  state.counters["ab_mean_e2e_p50_change"] = ab_change_sum / n;
}
BENCHMARK(BM_EngineRunGate)->Unit(benchmark::kSecond)->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
