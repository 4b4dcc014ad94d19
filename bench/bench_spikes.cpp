// Spike detection cost (issue 7 target: <= 1 us per iteration). The detector
// sees a pre-generated simulated run (pure workload variation, or with faults
// so alerts with flight-recorder windows are built and serialised too), one
// iteration per benchmark iteration, as it would inside a live watcher.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

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

#if defined(PRISM_SPIKE_STAGE_PROGRAM) && defined(PRISM_CLI_PATH) && defined(PRISM_PROBE_AGENT)

uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = static_cast<size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// End-to-end live alert latency of `prism attach --spikes`: from the end of an
// injected slow iteration in the target (its own CLOCK_MONOTONIC, logged by
// spike_stage_program --log) to the alert's JSON line arriving on prism's
// stdout (stamped here as read). The target stalls "sample" by 2 ms once every
// 500 iterations of ~0.2 ms; range(0) = capture seconds, range(1) = --poll ms.
// --interval 1h: no snapshot is taken during the capture, only the live path.
void BM_LiveAlertLatency(benchmark::State& state) {
  const int seconds = static_cast<int>(state.range(0));
  const std::string poll = std::to_string(state.range(1)) + "ms";
  char dir_template[] = "/tmp/prism-live-latency-XXXXXX";
  const std::string dir = mkdtemp(dir_template);
  const std::string sock = dir + "/sock", ready = dir + "/ready", log = dir + "/stalls.log";
  mkdir(sock.c_str(), 0700);
  std::vector<double> latency_ms;
  uint64_t stalls = 0, matched = 0, other_alerts = 0;
  for (auto _ : state) {
    const pid_t target = fork();
    if (target == 0) {
      setenv("NVTX_INJECTION64_PATH", PRISM_PROBE_AGENT, 1);
      setenv("PRISM_PROBE_DIR", sock.c_str(), 1);
      const std::string run_s = std::to_string(seconds + 5);
      execl(PRISM_SPIKE_STAGE_PROGRAM, PRISM_SPIKE_STAGE_PROGRAM, "--seconds", run_s.c_str(),
            "--ready", ready.c_str(), "--stall-every", "500", "--stall-len", "1", "--stall-us",
            "2000", "--log", log.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    struct stat st {};
    for (int i = 0; i < 1000 && stat(ready.c_str(), &st) != 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    int out[2];
    if (pipe(out) != 0) {
      state.SkipWithError("pipe failed");
      break;
    }
    const pid_t prism = fork();
    if (prism == 0) {
      setenv("PRISM_PROBE_DIR", sock.c_str(), 1);
      dup2(out[1], STDOUT_FILENO);
      const int null = open("/dev/null", O_WRONLY);
      dup2(null, STDERR_FILENO);
      close(out[0]);
      const std::string pid = std::to_string(target), duration = std::to_string(seconds) + "s";
      const std::string trace = dir + "/trace";
      execl(PRISM_CLI_PATH, PRISM_CLI_PATH, "attach", pid.c_str(), "--duration", duration.c_str(),
            "--interval", "1h", "--no-gpu", "--spikes", "--poll", poll.c_str(), "-o", trace.c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    close(out[1]);
    // Read as the bytes arrive; each complete line is stamped when its newline is read.
    std::vector<std::pair<uint64_t, uint64_t>> opened;  // (alert's iteration end, arrival)
    std::string pending;
    char chunk[65536];
    for (;;) {
      const ssize_t n = read(out[0], chunk, sizeof(chunk));
      if (n <= 0) break;
      const uint64_t arrival = monotonic_ns();
      pending.append(chunk, static_cast<size_t>(n));
      size_t newline;
      while ((newline = pending.find('\n')) != std::string::npos) {
        const std::string line = pending.substr(0, newline);
        pending.erase(0, newline + 1);
        if (line.empty() || line[0] != '{') continue;
        const auto alert = nlohmann::json::parse(line, nullptr, false);
        if (alert.is_discarded() || alert.value("type", "") != "spike" ||
            alert.value("phase", "") != "open")
          continue;
        opened.emplace_back(alert.value("end_ns", uint64_t{0}), arrival);
      }
    }
    close(out[0]);
    waitpid(prism, nullptr, 0);
    kill(target, SIGKILL);
    waitpid(target, nullptr, 0);
    // Each stall that ended while alerts were flowing, matched to the open alert on it.
    std::ifstream in(log);
    std::string word;
    uint64_t index = 0, end_ns = 0;
    const uint64_t first = opened.empty() ? 0 : opened.front().first;
    const uint64_t last = opened.empty() ? 0 : opened.back().first;
    std::vector<char> used(opened.size(), 0);
    while (in >> word >> index >> end_ns) {
      if (end_ns < first || end_ns > last) continue;
      ++stalls;
      for (size_t a = 0; a < opened.size(); ++a) {
        const uint64_t e = opened[a].first;
        if (!used[a] && e <= end_ns && end_ns - e < 200'000) {
          used[a] = 1;
          ++matched;
          latency_ms.push_back(static_cast<double>(opened[a].second - end_ns) / 1e6);
          break;
        }
      }
    }
    for (char u : used) other_alerts += u ? 0 : 1;
    unlink(log.c_str());
    unlink(ready.c_str());
  }
  state.counters["p50_ms"] = percentile(latency_ms, 0.50);
  state.counters["p99_ms"] = percentile(latency_ms, 0.99);
  state.counters["max_ms"] = percentile(latency_ms, 1.0);
  state.counters["stalls"] = static_cast<double>(stalls);
  state.counters["alerted"] = static_cast<double>(matched);
  state.counters["other_alerts"] = static_cast<double>(other_alerts);
}
BENCHMARK(BM_LiveAlertLatency)
    ->Args({20, 2})
    ->Args({20, 1})
    ->Iterations(1)
    ->Unit(benchmark::kSecond);

#endif

}  // namespace

BENCHMARK_MAIN();
