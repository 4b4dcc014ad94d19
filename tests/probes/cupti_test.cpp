// The agent's CUPTI kernel timing against CUDA events, on a real GPU: a kernel of
// known duration launched 40 times, each launch bracketed by CUDA events; the agent,
// injected through CUDA_INJECTION64_PATH, records the same launches through CUPTI's
// activity API. Skips (saying why) where there is no GPU.

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "../support/process.h"
#include "../support/temp_dir.h"
#include "prism/analysis/trace.h"

namespace {

using prism::test::find_file_with_suffix;
using prism::test::TempDir;

const std::string kAgent = PRISM_PROBE_AGENT;
const std::string kProgram = PRISM_CUPTI_KERNEL_PROGRAM;

struct Launch {
  long target_us = 0;
  double event_us = 0;
};

std::vector<Launch> parse_launches(const std::string& out) {
  std::vector<Launch> launches;
  std::istringstream lines(out);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("launch,", 0) != 0) continue;
    Launch l;
    std::sscanf(line.c_str(), "launch,%*d,%ld,%lf", &l.target_us, &l.event_us);
    launches.push_back(l);
  }
  return launches;
}

}  // namespace

TEST_CASE("CUPTI kernel durations match CUDA events within 2%", "[probes][cupti][gpu]") {
  const auto bare = prism::test::run_process({kProgram, "--launches", "1", "--durations-us", "10"});
  if (bare.exit_code == 77) {
    WARN("SKIPPED: " << bare.err);
    return;
  }
  REQUIRE(bare.exit_code == 0);

  TempDir dir;
  const auto result = prism::test::run_process(
      {kProgram, "--launches", "20", "--durations-us", "1000,5000"},
      {"CUDA_INJECTION64_PATH=" + kAgent, "NVTX_INJECTION64_PATH=" + kAgent, "PRISM_PROBE_START=1",
       "PRISM_PROBE_ACTIVITIES=nvtx,gpu", "PRISM_PROBE_QUIET=1", "PRISM_PROBE_OUTPUT=" + dir.path,
       "PRISM_PROBE_DIR=" + dir.path + "/sock"});
  INFO(result.err);
  REQUIRE(result.exit_code == 0);
  const std::vector<Launch> launches = parse_launches(result.out);
  REQUIRE(launches.size() == 40);

  const std::string path = find_file_with_suffix(dir.path, ".praw");
  REQUIRE_FALSE(path.empty());
  const prism::analysis::Trace trace = prism::analysis::read_raw_trace_file(path);
  CHECK(trace.dropped_gpu == 0);
  std::vector<prism::analysis::Span> kernels;
  for (const auto& span : trace.gpu) {
    if (span.kind == prism::analysis::SpanKind::kKernel &&
        trace.name(span.name).find("prism_spin_kernel") != std::string::npos)
      kernels.push_back(span);
  }
  std::sort(kernels.begin(), kernels.end(),
            [](const auto& a, const auto& b) { return a.start_ns < b.start_ns; });
  // The first kernel is the program's untimed warm-up launch.
  REQUIRE(kernels.size() == launches.size() + 1);
  for (size_t i = 0; i < launches.size(); ++i) {
    const double cupti_us = static_cast<double>(kernels[i + 1].duration()) / 1000.0;
    INFO("launch " << i << ": target " << launches[i].target_us << " us, events "
                   << launches[i].event_us << " us, CUPTI " << cupti_us << " us");
    // Events bracket the kernel from the stream, so they see slightly more than it.
    CHECK(std::fabs(cupti_us - launches[i].event_us) <= 0.02 * launches[i].event_us);
    CHECK(cupti_us >= 0.9 * static_cast<double>(launches[i].target_us));
  }
}
