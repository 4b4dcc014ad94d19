// A known GPU workload for checking the agent's CUPTI kernel timing: a kernel that
// spins for a set number of device clock cycles, launched repeatedly, each launch
// timed with CUDA events recorded on the same stream right before and after it.
// Prints one line per launch: "launch,<index>,<target_us>,<event_us>".
// Exits 77 with "no CUDA device: <reason>" on stderr when there is no usable GPU.
//
//   cupti_kernel_program [--launches 20] [--durations-us 1000,5000]
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

extern "C" __global__ void prism_spin_kernel(long long cycles) {
  const long long start = clock64();
  while (clock64() - start < cycles) {
  }
}

namespace {

[[noreturn]] void fail(const char* what, cudaError_t error) {
  std::fprintf(stderr, "cupti_kernel_program: %s: %s\n", what, cudaGetErrorString(error));
  std::exit(1);
}

void check(cudaError_t error, const char* what) {
  if (error != cudaSuccess) fail(what, error);
}

}  // namespace

int main(int argc, char** argv) {
  int launches = 20;
  std::vector<long> durations_us = {1000, 5000};
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--launches" && i + 1 < argc) {
      launches = std::atoi(argv[++i]);
    } else if (arg == "--durations-us" && i + 1 < argc) {
      durations_us.clear();
      for (char* p = std::strtok(argv[++i], ","); p != nullptr; p = std::strtok(nullptr, ","))
        durations_us.push_back(std::atol(p));
    } else {
      std::fprintf(stderr, "cupti_kernel_program: unknown or incomplete option %s\n", arg.c_str());
      return 2;
    }
  }
  int count = 0;
  const cudaError_t probe = cudaGetDeviceCount(&count);
  if (probe != cudaSuccess || count == 0) {
    std::fprintf(stderr, "no CUDA device: %s\n",
                 probe != cudaSuccess ? cudaGetErrorString(probe) : "none found");
    return 77;
  }
  int clock_khz = 0;
  check(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0), "clock rate");
  cudaEvent_t before, after;
  check(cudaEventCreate(&before), "event");
  check(cudaEventCreate(&after), "event");
  // One untimed launch: module loading and the first launch's setup are not the kernel.
  prism_spin_kernel<<<1, 32>>>(1000);
  check(cudaDeviceSynchronize(), "warm-up");
  int index = 0;
  for (const long us : durations_us) {
    const long long cycles = static_cast<long long>(us) * clock_khz / 1000;
    for (int i = 0; i < launches; ++i, ++index) {
      check(cudaEventRecord(before), "record");
      prism_spin_kernel<<<1, 32>>>(cycles);
      check(cudaEventRecord(after), "record");
      check(cudaEventSynchronize(after), "synchronize");
      float ms = 0;
      check(cudaEventElapsedTime(&ms, before, after), "elapsed");
      std::printf("launch,%d,%ld,%.3f\n", index, us, ms * 1000.0);
    }
  }
  check(cudaGetLastError(), "kernel");
  cudaEventDestroy(before);
  cudaEventDestroy(after);
  return 0;
}
