// Probe costs and speeds (issue 6):
//  - NVTX push+pop with no agent, with the agent loaded but dormant, and active;
//  - analysis of a 10-million-event raw trace (events per second, one core);
//  - attach latency: connect to a dormant agent in another process, start, and
//    see the first event in its live stats.
// This binary loads the agent into itself through NVTX_INJECTION64_PATH (set
// in main before the first NVTX call), the same path a traced program takes.
#include <benchmark/benchmark.h>
#include <nvtx3/nvToolsExt.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <dirent.h>

#include <fstream>
#include <sstream>

#include "prism/agent/raw_format.h"
#include "prism/analysis/breakdown.h"
#include "prism/analysis/live.h"
#include "prism/control/client.h"

extern char** environ;

namespace {

std::string g_socket_path;
nvtxRangePushA_impl_fntype g_agent_push = nullptr;
nvtxRangePop_impl_fntype g_agent_pop = nullptr;

void use_agent(bool loaded) {
  NVTX_VERSIONED_IDENTIFIER(nvtxGlobals).nvtxRangePushA_impl_fnptr =
      loaded ? g_agent_push : nullptr;
  NVTX_VERSIONED_IDENTIFIER(nvtxGlobals).nvtxRangePop_impl_fnptr = loaded ? g_agent_pop : nullptr;
}

void push_pop_loop(benchmark::State& state) {
  for (auto _ : state) {
    nvtxRangePushA("attention");
    nvtxRangePop();
  }
  state.SetItemsProcessed(state.iterations());
}

// No injection: NVTX's function pointers are null, as in a process started without any tool.
void BM_NvtxPushPop_NoAgent(benchmark::State& state) {
  use_agent(false);
  push_pop_loop(state);
  use_agent(true);
}
BENCHMARK(BM_NvtxPushPop_NoAgent);

void BM_NvtxPushPop_AgentDormant(benchmark::State& state) {
  if (g_agent_push == nullptr) {
    state.SkipWithError("the agent did not load (NVTX injection failed)");
    return;
  }
  use_agent(true);
  push_pop_loop(state);
}
BENCHMARK(BM_NvtxPushPop_AgentDormant);

void BM_NvtxPushPop_AgentActive(benchmark::State& state) {
  if (g_agent_push == nullptr) {
    state.SkipWithError("the agent did not load (NVTX injection failed)");
    return;
  }
  use_agent(true);
  prism::control::ProbeClient client = prism::control::ProbeClient::connect_path(g_socket_path);
  client.start(0, prism::control::kActivityNvtx);
  push_pop_loop(state);
  const auto status = client.status();
  client.stop();
  state.counters["dropped"] = static_cast<double>(std::stoull(status.at("dropped")));
}
// 1M pairs per run: 2M events fit the 4M-event thread ring, so every pair is recorded (a tight
// loop produces events faster than any collector drains them; past the ring, pairs would be
// dropped and the figure would time the drop path). `dropped` must read 0.
BENCHMARK(BM_NvtxPushPop_AgentActive)->Iterations(1000000);

// A synthetic engine trace: per iteration step{schedule, decode{attention, mlp}, sample} = 10
// events.
std::string make_raw_trace(uint64_t events) {
  using namespace prism::agent;
  std::string bytes;
  prism_raw_header header{};
  std::memcpy(header.magic, PRISM_RAW_MAGIC, 8);
  header.version = PRISM_RAW_VERSION;
  header.pid = 1;
  bytes.append(reinterpret_cast<const char*>(&header), sizeof(header));
  const char* names[] = {"", "step", "schedule", "decode", "attention", "mlp", "sample"};
  for (uint32_t id = 1; id < 7; ++id) {
    const uint32_t head[3] = {PRISM_RAW_STRING, static_cast<uint32_t>(4 + std::strlen(names[id])),
                              id};
    bytes.append(reinterpret_cast<const char*>(head), sizeof(head));
    bytes.append(names[id]);
  }
  std::vector<prism_raw_event> chunk;
  uint64_t t = 1000000;
  auto flush = [&] {
    const uint32_t head[2] = {PRISM_RAW_EVENTS,
                              static_cast<uint32_t>(chunk.size() * sizeof(prism_raw_event))};
    bytes.append(reinterpret_cast<const char*>(head), sizeof(head));
    bytes.append(reinterpret_cast<const char*>(chunk.data()),
                 chunk.size() * sizeof(prism_raw_event));
    chunk.clear();
  };
  auto ev = [&](uint16_t kind, uint32_t name, uint64_t dt) {
    t += dt;
    prism_raw_event e{};
    e.t0 = t;
    e.kind = kind;
    e.name = name;
    e.tid = 7;
    chunk.push_back(e);
    if (chunk.size() == 8192) flush();
  };
  for (uint64_t i = 0; i < events / 10; ++i) {
    ev(PRISM_EV_PUSH, 1, 100);
    ev(PRISM_EV_PUSH, 2, 1);
    ev(PRISM_EV_POP, 0, 20 + i % 7);
    ev(PRISM_EV_PUSH, 3, 1);
    ev(PRISM_EV_PUSH, 4, 1);
    ev(PRISM_EV_POP, 0, 50);
    ev(PRISM_EV_PUSH, 5, 1);
    ev(PRISM_EV_POP, 0, 40);
    ev(PRISM_EV_POP, 0, 1);
    ev(PRISM_EV_POP, 0, 15);
  }
  if (!chunk.empty()) flush();
  prism_raw_end end{};
  const uint32_t head[2] = {PRISM_RAW_END, sizeof(end)};
  bytes.append(reinterpret_cast<const char*>(head), sizeof(head));
  bytes.append(reinterpret_cast<const char*>(&end), sizeof(end));
  return bytes;
}

// Read + attribute: raw bytes in memory to a per-iteration breakdown.
void BM_AnalyzeRawTrace(benchmark::State& state) {
  const auto events = static_cast<uint64_t>(state.range(0));
  const std::string bytes = make_raw_trace(events);
  const auto rules = prism::analysis::StageRules::builtin("prism");
  for (auto _ : state) {
    const auto trace = prism::analysis::read_raw_trace(bytes, "bench");
    const auto breakdown = prism::analysis::analyze(trace, rules);
    benchmark::DoNotOptimize(breakdown.iterations.data());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(events));
}
BENCHMARK(BM_AnalyzeRawTrace)->Arg(10000000)->Unit(benchmark::kMillisecond)->Iterations(3);

#ifdef PRISM_NVTX_STAGE_PROGRAM
// nvtx_stage_program looping for 10 minutes with the agent injected and its
// control socket under dir/sock; returns once the program says it is ready.
pid_t spawn_stage_program(const std::string& dir, const std::string& agent) {
  const std::string ready = dir + "/ready";
  std::vector<std::string> env_storage = {"NVTX_INJECTION64_PATH=" + agent,
                                          "PRISM_PROBE_DIR=" + dir + "/sock", "PATH=/usr/bin:/bin"};
  std::vector<char*> env;
  for (auto& e : env_storage) env.push_back(e.data());
  env.push_back(nullptr);
  std::string program = PRISM_NVTX_STAGE_PROGRAM;
  std::vector<std::string> args_storage = {program, "--loop-ms", "600000", "--ready", ready};
  std::vector<char*> args;
  for (auto& a : args_storage) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t pid = 0;
  posix_spawn(&pid, program.c_str(), nullptr, nullptr, args.data(), env.data());
  struct stat st;
  for (int i = 0; i < 1000 && stat(ready.c_str(), &st) != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pid;
}
#endif

// Attach latency against a dormant agent in another process.
void BM_AttachToFirstData(benchmark::State& state) {
#ifdef PRISM_NVTX_STAGE_PROGRAM
  char pattern[] = "/tmp/prism-bench-attach-XXXXXX";
  const std::string dir = mkdtemp(pattern);
  const pid_t pid = spawn_stage_program(dir, PRISM_PROBE_AGENT);
  setenv("PRISM_PROBE_DIR", (dir + "/sock").c_str(), 1);
  double worst = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    auto client = prism::control::ProbeClient::connect(pid);
    client.start(0, prism::control::kActivityNvtx);
    while (client.status().at("events") == "0")
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    worst = std::max(worst, seconds);
    state.SetIterationTime(seconds);
    client.stop();
  }
  state.counters["worst_ms"] = worst * 1e3;
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  std::system(("rm -rf '" + dir + "'").c_str());
#else
  state.SkipWithError("built without the NVTX stage program (PRISM_BUILD_TESTS=OFF)");
#endif
}
BENCHMARK(BM_AttachToFirstData)->UseManualTime()->Unit(benchmark::kMillisecond)->Iterations(20);

// CPU time (user + system, ns) of the thread named `name` in process pid; 0 when none.
uint64_t thread_cpu_ns(pid_t pid, const std::string& name) {
  const std::string task = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = opendir(task.c_str());
  if (d == nullptr) return 0;
  uint64_t total = 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream comm(task + "/" + e->d_name + "/comm");
    std::string thread;
    std::getline(comm, thread);
    if (thread != name) continue;
    std::ifstream stat(task + "/" + e->d_name + "/stat");
    std::string line;
    std::getline(stat, line);
    if (line.rfind(')') == std::string::npos || line.rfind(')') + 2 > line.size()) continue;
    std::istringstream fields(line.substr(line.rfind(')') + 2));
    std::string field;
    uint64_t utime = 0, stime = 0;
    for (int i = 3; i <= 15 && fields >> field; ++i) {
      if (i == 14) utime = std::stoull(field);
      if (i == 15) stime = std::stoull(field);
    }
    total += (utime + stime) * (1'000'000'000ull / static_cast<uint64_t>(sysconf(_SC_CLK_TCK)));
  }
  closedir(d);
  return total;
}

// The live path's cost: `prism attach --spikes` polls the agent's "events" verb every 2 ms.
// Against nvtx_stage_program in another process (one engine-shaped thread, busy loops of fixed
// length per stage), blocks of 250 polls (0.5 s) alternate with 0.5 s blocks of no polling
// (range(0) = blocks, ABBA). Per poll: the round trip here (request, drain, copy, read, and
// LiveBreakdown's work: manual time) and the CPU time of the agent's control thread (/proc,
// clock ticks: coarse, so summed over all polls; agent_core_pct is that share of one core at
// 500 polls/s). The target's own cost: its iterations' mean duration in polled blocks over
// that in the neighbouring quiet blocks (median of the pair ratios, 100 = no slowdown), from the
// iterations' own timestamps. The host thread never waits on the agent (no lock on its path).
void BM_LiveEventsPoll(benchmark::State& state) {
#ifdef PRISM_NVTX_STAGE_PROGRAM
  char pattern[] = "/tmp/prism-bench-live-XXXXXX";
  const std::string dir = mkdtemp(pattern);
  const pid_t pid = spawn_stage_program(dir, PRISM_PROBE_AGENT);
  setenv("PRISM_PROBE_DIR", (dir + "/sock").c_str(), 1);
  auto client = prism::control::ProbeClient::connect(pid);
  unsetenv("PRISM_PROBE_DIR");
  client.start(0, prism::control::kActivityNvtx);
  prism::analysis::LiveBreakdown live(prism::analysis::StageRules::builtin("prism"));
  prism::control::EventsCursor cursor;
  uint64_t events = 0, most_pending = 0, polls = 0, agent_cpu = 0;
  std::vector<prism::analysis::Iteration> iterations;
  auto poll = [&] {
    const auto reply = client.events(cursor);
    const auto batch = prism::analysis::read_raw_batch(reply.bytes, "poll");
    live.add(batch);
    prism::analysis::Breakdown done = live.take();
    for (auto& it : done.iterations) iterations.push_back(std::move(it));
    events += batch.events.size();
    most_pending = std::max<uint64_t>(most_pending, live.pending_events());
  };
  auto now_ns = [] {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
  };
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  poll();
  std::vector<std::pair<uint64_t, uint64_t>> polled, quiet;  // block windows
  double round_trip_s = 0;
  for (auto _ : state) {
    const int blocks = static_cast<int>(state.range(0));
    for (int b = 0; b < blocks; ++b) {
      const bool polling = (b % 4 == 0 || b % 4 == 3);  // ABBA
      const uint64_t t0 = now_ns();
      if (polling) {
        const uint64_t cpu0 = thread_cpu_ns(pid, "prism-control");
        auto next = std::chrono::steady_clock::now();
        for (int i = 0; i < 250; ++i) {
          const auto p0 = std::chrono::steady_clock::now();
          poll();
          round_trip_s +=
              std::chrono::duration<double>(std::chrono::steady_clock::now() - p0).count();
          ++polls;
          next += std::chrono::milliseconds(2);
          std::this_thread::sleep_until(next);
        }
        agent_cpu += thread_cpu_ns(pid, "prism-control") - cpu0;
        polled.emplace_back(t0, now_ns());
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        quiet.emplace_back(t0, now_ns());
      }
    }
    state.SetIterationTime(round_trip_s);
  }
  poll();
  client.stop();
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  std::system(("rm -rf '" + dir + "'").c_str());
  auto mean_in = [&](const std::pair<uint64_t, uint64_t>& w) {
    double sum = 0;
    uint64_t n = 0;
    for (const auto& it : iterations)
      if (it.start_ns >= w.first && it.end_ns <= w.second) {
        sum += static_cast<double>(it.duration());
        ++n;
      }
    return n == 0 ? 0.0 : sum / static_cast<double>(n);
  };
  std::vector<double> ratios;
  for (size_t i = 0; i < polled.size() && i < quiet.size(); ++i) {
    const double q = mean_in(quiet[i]);
    if (q > 0) ratios.push_back(100.0 * mean_in(polled[i]) / q);
  }
  std::sort(ratios.begin(), ratios.end());
  const double per_poll = static_cast<double>(std::max<uint64_t>(polls, 1));
  state.counters["round_trip_us"] = round_trip_s / per_poll * 1e6;
  state.counters["events_per_poll"] = static_cast<double>(events) / per_poll;
  state.counters["most_pending_events"] = static_cast<double>(most_pending);
  state.counters["agent_cpu_us_per_poll"] = static_cast<double>(agent_cpu) / 1e3 / per_poll;
  state.counters["agent_core_pct"] = static_cast<double>(agent_cpu) / (per_poll * 2e6) * 100.0;
  state.counters["step_pct_polled_vs_quiet"] = ratios.empty() ? 0 : ratios[ratios.size() / 2];
  state.counters["pairs"] = static_cast<double>(ratios.size());
#else
  state.SkipWithError("built without the NVTX stage program (PRISM_BUILD_TESTS=OFF)");
#endif
}
BENCHMARK(BM_LiveEventsPoll)->Arg(40)->UseManualTime()->Iterations(1)->Unit(benchmark::kSecond);

// Runs engine_stage_program (tiny model, stage clock off) and returns its stdout. agent: load
// the agent through NVTX injection (its control socket under sock_dir); start: make it active
// from the first NVTX call.
#ifdef PRISM_ENGINE_STAGE_PROGRAM
std::string run_engine_program(bool agent, bool start, const std::string& sock_dir,
                               const std::vector<std::string>& extra_args) {
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    if (entry.rfind("NVTX_INJECTION64_PATH=", 0) == 0 || entry.rfind("PRISM_PROBE", 0) == 0)
      continue;
    env_storage.push_back(entry);
  }
  if (agent) {
    env_storage.push_back(std::string("NVTX_INJECTION64_PATH=") + PRISM_PROBE_AGENT);
    if (start) env_storage.push_back("PRISM_PROBE_START=1");
    env_storage.push_back("PRISM_PROBE_QUIET=1");
    env_storage.push_back("PRISM_PROBE_DIR=" + sock_dir);
  }
  std::vector<char*> env;
  for (auto& e : env_storage) env.push_back(e.data());
  env.push_back(nullptr);
  std::vector<std::string> args_storage = {PRISM_ENGINE_STAGE_PROGRAM,
                                           "--requests",
                                           "32",
                                           "--prompt",
                                           "32",
                                           "--max-tokens",
                                           "32",
                                           "--no-clock"};
  args_storage.insert(args_storage.end(), extra_args.begin(), extra_args.end());
  std::vector<char*> args;
  for (auto& a : args_storage) args.push_back(a.data());
  args.push_back(nullptr);
  int fds[2];
  if (pipe(fds) != 0) return {};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), env.data());
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  std::string out;
  char buffer[512];
  ssize_t n;
  while ((n = read(fds[0], buffer, sizeof(buffer))) > 0) out.append(buffer, static_cast<size_t>(n));
  close(fds[0]);
  if (rc != 0) return {};
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? out : std::string();
}

// The value of "key=" in a program's output line; 0 when absent.
double field(const std::string& out, const std::string& key) {
  const auto at = out.find(key + "=");
  return at == std::string::npos ? 0.0 : std::atof(out.c_str() + at + key.size() + 1);
}

// Reference engine throughput with the agent active against no agent at all, one process per
// run, A/B interleaved in one benchmark run (ABBA order so drift in machine load falls on both
// sides). Each run reports its own tokens/s after one warm-up round (which is when NVTX loads
// the agent: a one-time cost, not throughput). Whole processes differ by several percent from
// run to run here (placement, page layout), so see also the in-process A/B below.
double run_engine_tokens_per_s(bool agent, const std::string& sock_dir) {
  return field(
      run_engine_program(agent, true, sock_dir, {"--warmup-rounds", "1", "--rounds", "40"}),
      "tokens_per_s");
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : (v[(v.size() - 1) / 2] + v[v.size() / 2]) / 2;
}
#endif

void BM_EngineThroughput_AgentActiveVsNone(benchmark::State& state) {
#ifdef PRISM_ENGINE_STAGE_PROGRAM
  char pattern[] = "/tmp/prism-bench-engine-XXXXXX";
  const std::string dir = mkdtemp(pattern);
  std::vector<double> none, active, ratios;
  for (auto _ : state) {
    for (int64_t pair = 0; pair < state.range(0); ++pair) {
      double a = 0, b = 0;
      if (pair % 2 == 0) {
        a = run_engine_tokens_per_s(false, dir);
        b = run_engine_tokens_per_s(true, dir);
      } else {
        b = run_engine_tokens_per_s(true, dir);
        a = run_engine_tokens_per_s(false, dir);
      }
      if (a <= 0 || b <= 0) {
        state.SkipWithError("engine_stage_program did not report its throughput");
        return;
      }
      none.push_back(a);
      active.push_back(b);
      ratios.push_back(b / a);
    }
  }
  state.counters["tok_s_no_agent"] = median(none);
  state.counters["tok_s_agent_active"] = median(active);
  state.counters["active_pct_of_none"] = 100.0 * median(ratios);
  state.counters["pairs"] = static_cast<double>(ratios.size());
  // The spread of the pair ratios: run-to-run noise of a whole process is what bounds how
  // small an agent cost this A/B can resolve.
  std::sort(ratios.begin(), ratios.end());
  state.counters["pct_min"] = 100.0 * ratios.front();
  state.counters["pct_p25"] = 100.0 * ratios[ratios.size() / 4];
  state.counters["pct_p75"] = 100.0 * ratios[(3 * ratios.size()) / 4];
  state.counters["pct_max"] = 100.0 * ratios.back();
  std::system(("rm -rf '" + dir + "'").c_str());
#else
  state.SkipWithError("built without the engine stage program (PRISM_BUILD_TESTS=OFF)");
#endif
}
BENCHMARK(BM_EngineThroughput_AgentActiveVsNone)->Arg(20)->Iterations(1)->Unit(benchmark::kSecond);

// The same question inside one engine process, where run-to-run noise is far smaller: the
// agent is loaded dormant, and 320 blocks of 4 rounds alternate dormant and active (ABBA), switched
// through the agent's control socket between blocks (engine_stage_program --ab-blocks). The
// dormant agent's own cost over no agent at all is BM_NvtxPushPop's dormant-vs-none figure
// times ranges_per_step, against a step time of 1 / (dormant_tokens_per_s / batch).
void BM_EngineThroughput_InProcessAB(benchmark::State& state) {
#ifdef PRISM_ENGINE_STAGE_PROGRAM
  char pattern[] = "/tmp/prism-bench-engine-XXXXXX";
  const std::string dir = mkdtemp(pattern);
  std::string out;
  for (auto _ : state) {
    out = run_engine_program(true, false, dir,
                             {"--warmup-rounds", "2", "--ab-blocks", std::to_string(state.range(0)),
                              "--ab-block-rounds", "4"});
  }
  std::system(("rm -rf '" + dir + "'").c_str());
  if (out.empty()) {
    state.SkipWithError("engine_stage_program --ab-blocks failed");
    return;
  }
  for (const char* key : {"ab_pairs", "active_pct_median", "active_pct_p25", "active_pct_p75",
                          "dormant_tokens_per_s", "active_tokens_per_s", "ranges_per_step"})
    state.counters[key] = field(out, key);
#else
  state.SkipWithError("built without the engine stage program (PRISM_BUILD_TESTS=OFF)");
#endif
}
BENCHMARK(BM_EngineThroughput_InProcessAB)->Arg(320)->Iterations(1)->Unit(benchmark::kSecond);

}  // namespace

int main(int argc, char** argv) {
  // Load the agent into this process the way any traced program gets it.
  char pattern[] = "/tmp/prism-bench-probes-XXXXXX";
  const std::string dir = mkdtemp(pattern);
  setenv("PRISM_PROBE_DIR", dir.c_str(), 1);
  setenv("PRISM_PROBE_BUFFER_EVENTS", "4194304",
         1);  // large enough that the active run measures recording, not drops
  setenv("PRISM_PROBE_DRAIN_MS", "2", 1);
  if (std::getenv("NVTX_INJECTION64_PATH") == nullptr)
    setenv("NVTX_INJECTION64_PATH", PRISM_PROBE_AGENT, 1);
  nvtxInitialize(nullptr);
  g_agent_push = NVTX_VERSIONED_IDENTIFIER(nvtxGlobals).nvtxRangePushA_impl_fnptr;
  g_agent_pop = NVTX_VERSIONED_IDENTIFIER(nvtxGlobals).nvtxRangePop_impl_fnptr;
  g_socket_path = dir + "/" + std::to_string(getpid()) + ".sock";
  unsetenv("PRISM_PROBE_DIR");
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  std::system(("rm -rf '" + dir + "'").c_str());
  return 0;
}
