// An engine-shaped NVTX program with an injected stage delay, for attaching
// `prism attach --spikes` to a real process. Each iteration is a "step" range
// with schedule / decode (attention, mlp) / sample inside, busy loops of known
// length; every --stall-every iterations, --stall-len iterations get
// --stall-us of extra time in "sample" (the injected fault). With --log, each
// stalled iteration's index and end (CLOCK_MONOTONIC ns, read after its "step"
// range closed) is written there as it happens, "stall <index> <end_ns>": the
// truth that live alerts are checked and timed against.
//
//   spike_stage_program --seconds S --ready FILE [--stall-every N] [--stall-len K] [--stall-us U]
//                       [--log FILE]
#include <nvtx3/nvToolsExt.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <string>

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

template <typename F>
void range(const char* name, F&& body) {
  nvtxRangePushA(name);
  body();
  nvtxRangePop();
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t seconds = 5, stall_every = 1500, stall_len = 5, stall_us = 3000;
  std::string ready_path, log_path;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) {
      fprintf(stderr, "missing value for %s\n", arg.c_str());
      return 2;
    }
    const std::string value = argv[++i];
    if (arg == "--seconds")
      seconds = std::stoull(value);
    else if (arg == "--stall-every")
      stall_every = std::stoull(value);
    else if (arg == "--stall-len")
      stall_len = std::stoull(value);
    else if (arg == "--stall-us")
      stall_us = std::stoull(value);
    else if (arg == "--ready")
      ready_path = value;
    else if (arg == "--log")
      log_path = value;
    else {
      fprintf(stderr, "unknown argument %s\n", arg.c_str());
      return 2;
    }
  }
  if (stall_every == 0) stall_every = 1;
  nvtxInitialize(nullptr);  // loads the injection now, so the control socket exists before "ready"
  if (!ready_path.empty()) {
    FILE* f = fopen(ready_path.c_str(), "w");
    if (f != nullptr) {
      fprintf(f, "%d\n", static_cast<int>(getpid()));
      fclose(f);
    }
  }
  FILE* log = log_path.empty() ? nullptr : fopen(log_path.c_str(), "w");
  if (!log_path.empty() && log == nullptr) {
    fprintf(stderr, "cannot write %s\n", log_path.c_str());
    return 1;
  }
  const uint64_t deadline = now_ns() + seconds * 1000000000ull;
  for (uint64_t i = 0; now_ns() < deadline; ++i) {
    const bool stalled = i % stall_every >= stall_every - stall_len;
    range("step", [&] {
      range("schedule", [&] { spin_for(30000 + (i % 3) * 5000); });
      range("decode", [&] {
        range("attention", [&] { spin_for(60000); });
        range("mlp", [&] { spin_for(80000); });
      });
      range("sample", [&] { spin_for(20000 + (stalled ? stall_us * 1000 : 0)); });
    });
    if (stalled && log != nullptr) {
      fprintf(log, "stall %llu %llu\n", static_cast<unsigned long long>(i),
              static_cast<unsigned long long>(now_ns()));
      fflush(log);  // a test may kill the program at any time
    }
  }
  if (log != nullptr) fclose(log);
  return 0;
}
