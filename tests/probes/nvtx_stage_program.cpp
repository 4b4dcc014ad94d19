// A small engine-shaped program annotated with NVTX, for injecting the probe
// agent into for real. It keeps its own stage clock (CLOCK_MONOTONIC around
// each range) and writes it as CSV, so tests can compare what the probe saw
// with the truth. Stage work is a calibrated busy loop with known durations.
//
//   nvtx_stage_program --iterations N [--clock FILE] [--threads T]
//                      [--loop-ms MS] [--ready FILE] [--burst N] [--abort-after K]
#include <nvtx3/nvToolsExt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace {

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

void spin_for(uint64_t ns) {
  const uint64_t end = now_ns() + ns;
  while (now_ns() < end) {
  }
}

struct ClockEntry {
  uint32_t thread;
  uint64_t iteration;
  const char* stage;
  uint64_t start;
  uint64_t end;
};

struct StageClock {
  std::vector<ClockEntry> entries;
  uint32_t thread = 0;
  uint64_t iteration = 0;

  // Runs body inside an NVTX range named stage and clocks it the way the agent does:
  // from just before the push to just after the pop.
  template <typename F>
  void stage(const char* name, F&& body) {
    const uint64_t start = now_ns();
    nvtxRangePushA(name);
    body();
    nvtxRangePop();
    entries.push_back({thread, iteration, name, start, now_ns()});
  }
};

// Durations (µs) vary per iteration so per-iteration comparisons mean something.
void run_iteration(StageClock& clock, uint64_t i, nvtxDomainHandle_t domain,
                   nvtxStringHandle_t sample_name) {
  clock.iteration = i;
  const bool prefill = i % 4 == 0;
  clock.stage("step", [&] {
    clock.stage("schedule", [&] { spin_for(20000 + (i % 3) * 5000); });
    clock.stage(prefill ? "prefill" : "decode", [&] {
      clock.stage("attention", [&] { spin_for(prefill ? 120000 : 40000); });
      clock.stage("mlp", [&] { spin_for(prefill ? 80000 : 30000); });
    });
    // Registered strings and a domain: the Ex API path.
    const uint64_t start = now_ns();
    nvtxEventAttributes_t attributes = {};
    attributes.version = NVTX_VERSION;
    attributes.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
    attributes.messageType = NVTX_MESSAGE_TYPE_REGISTERED;
    attributes.message.registered = sample_name;
    nvtxDomainRangePushEx(domain, &attributes);
    spin_for(15000);
    nvtxDomainRangePop(domain);
    clock.entries.push_back({clock.thread, i, "sample", start, now_ns()});
    // A start/end range (may cross threads in real engines).
    // Clocked from inside the range: the first start/end call registers the
    // name and the range table (several µs, once), which the agent keeps out
    // of the range it measures and a clock around the call would count.
    const nvtxRangeId_t id = nvtxRangeStartA("detokenize");
    const uint64_t detok_start = now_ns();
    spin_for(10000);
    const uint64_t detok_end = now_ns();
    nvtxRangeEnd(id);
    clock.entries.push_back({clock.thread, i, "detokenize", detok_start, detok_end});
    nvtxMarkA("token");
  });
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t iterations = 20;
  int threads = 1;
  uint64_t loop_ms = 0;
  uint64_t burst = 0;
  int64_t abort_after = -1;
  std::string clock_path;
  std::string ready_path;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        fprintf(stderr, "missing value for %s\n", arg.c_str());
        exit(2);
      }
      return argv[++i];
    };
    if (arg == "--iterations")
      iterations = std::stoull(next());
    else if (arg == "--threads")
      threads = std::stoi(next());
    else if (arg == "--clock")
      clock_path = next();
    else if (arg == "--loop-ms")
      loop_ms = std::stoull(next());
    else if (arg == "--ready")
      ready_path = next();
    else if (arg == "--burst")
      burst = std::stoull(next());
    else if (arg == "--abort-after")
      abort_after = std::stoll(next());
    else {
      fprintf(stderr, "unknown argument %s\n", arg.c_str());
      return 2;
    }
  }
  nvtxInitialize(nullptr);  // loads the injection now, so the control socket exists before "ready"
  nvtxNameOsThreadA(static_cast<uint32_t>(gettid()), "engine-main");
  nvtxDomainHandle_t domain = nvtxDomainCreateA("prism-test");
  nvtxStringHandle_t sample_name = nvtxDomainRegisterStringA(domain, "sample");
  if (!ready_path.empty()) {
    FILE* f = fopen(ready_path.c_str(), "w");
    if (f != nullptr) {
      fprintf(f, "%d\n", static_cast<int>(getpid()));
      fclose(f);
    }
  }
  if (burst > 0) {
    // As fast as possible: overflows a small agent buffer on purpose.
    for (uint64_t i = 0; i < burst; ++i) {
      nvtxRangePushA("burst");
      nvtxRangePop();
    }
    printf("burst %llu\n", static_cast<unsigned long long>(burst));
    return 0;
  }
  std::vector<StageClock> clocks(static_cast<size_t>(threads));
  std::atomic<bool> stop{false};
  const uint64_t deadline = loop_ms == 0 ? 0 : now_ns() + loop_ms * 1000000ull;
  auto worker = [&](int t) {
    StageClock& clock = clocks[static_cast<size_t>(t)];
    clock.thread = static_cast<uint32_t>(t);
    // The agent sets up a thread's buffer on its first event and keeps that outside the range
    // (it stamps beginnings late), while the clock above would count it: one untimed range
    // first, so iteration 0 compares steady state to steady state.
    nvtxRangePushA("setup");
    nvtxRangePop();
    for (uint64_t i = 0; deadline != 0 || i < iterations; ++i) {
      if (deadline != 0 && now_ns() >= deadline) break;
      if (abort_after >= 0 && static_cast<int64_t>(i) == abort_after) {
        fflush(stdout);
        kill(getpid(), SIGKILL);  // dies without running any exit handler
      }
      run_iteration(clock, i, domain, sample_name);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(worker, t);
  worker(0);
  for (auto& th : pool) th.join();
  (void)stop;
  if (!clock_path.empty()) {
    FILE* f = fopen(clock_path.c_str(), "w");
    if (f == nullptr) return 1;
    fprintf(f, "thread,iteration,stage,start_ns,end_ns\n");
    for (const auto& clock : clocks) {
      for (const auto& e : clock.entries) {
        fprintf(f, "%u,%llu,%s,%llu,%llu\n", e.thread, static_cast<unsigned long long>(e.iteration),
                e.stage, static_cast<unsigned long long>(e.start),
                static_cast<unsigned long long>(e.end));
      }
    }
    fclose(f);
  }
  return 0;
}
