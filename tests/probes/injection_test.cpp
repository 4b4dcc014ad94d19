// The agent injected for real (NVTX_INJECTION64_PATH, LD_PRELOAD) into an
// NVTX-annotated program whose own stage clock is the truth. No GPU needed.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "../support/process.h"
#include "../support/temp_dir.h"
#include "prism/analysis/breakdown.h"
#include "prism/analysis/export.h"
#include "prism/analysis/session.h"
#include "prism/control/client.h"

extern char** environ;

using namespace prism::analysis;
using prism::control::ProbeClient;

namespace {

using prism::test::find_file_with_suffix;
using prism::test::TempDir;

const std::string kAgent = PRISM_PROBE_AGENT;
const std::string kProgram = PRISM_NVTX_STAGE_PROGRAM;
const std::string kEngineProgram = PRISM_ENGINE_STAGE_PROGRAM;

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

struct ClockRow {
  uint64_t iteration;
  std::string stage;
  uint64_t start;
  uint64_t end;
};

std::vector<ClockRow> read_clock(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);  // header
  std::vector<ClockRow> rows;
  while (std::getline(in, line)) {
    std::stringstream s(line);
    std::string field;
    ClockRow row;
    std::getline(s, field, ',');
    std::getline(s, field, ',');
    row.iteration = std::stoull(field);
    std::getline(s, row.stage, ',');
    std::getline(s, field, ',');
    row.start = std::stoull(field);
    std::getline(s, field, ',');
    row.end = std::stoull(field);
    rows.push_back(row);
  }
  return rows;
}

size_t stage_index(const Breakdown& b, const std::string& stage) {
  for (size_t i = 0; i < b.stages.size(); ++i) {
    if (b.stages[i] == stage) return i;
  }
  FAIL("no stage " << stage);
  return 0;
}

using Child = prism::test::BackgroundProcess;
using prism::test::wait_for_file;

}  // namespace

TEST_CASE("Probe-measured stage times match the program's own stage clock", "[probes][injection]") {
  TempDir dir;
  const std::string clock = dir.path + "/clock.csv";
  const auto result = prism::test::run_process(
      {kProgram, "--iterations", "40", "--clock", clock},
      {"NVTX_INJECTION64_PATH=" + kAgent, "PRISM_PROBE_START=1", "PRISM_PROBE_OUTPUT=" + dir.path,
       "PRISM_PROBE_DIR=" + dir.path + "/sock"});
  REQUIRE(result.exit_code == 0);
  const std::string praw = find_file_with_suffix(dir.path, ".praw");
  REQUIRE_FALSE(praw.empty());
  const Trace trace = load_trace(praw);
  CHECK(trace.complete);
  CHECK(trace.dropped_host == 0);
  CHECK(trace.thread_names.size() >= 1);
  const Breakdown b = analyze(trace, StageRules::builtin("prism"));
  const auto truth = read_clock(clock);

  // Per-stage totals within 2%.
  std::map<std::string, uint64_t> truth_totals;
  std::map<uint64_t, uint64_t> truth_iteration;
  std::map<std::pair<uint64_t, std::string>, uint64_t> truth_stage_iteration;
  for (const auto& row : truth) {
    if (row.stage == "step") {
      truth_iteration[row.iteration] = row.end - row.start;
    } else {
      truth_totals[row.stage] += row.end - row.start;
      truth_stage_iteration[{row.iteration, row.stage}] += row.end - row.start;
    }
  }
  for (const auto& [stage, total] : truth_totals) {
    INFO("stage " << stage);
    const uint64_t measured = b.totals[stage_index(b, stage)].host_ns;
    CHECK(std::fabs(static_cast<double>(measured) - static_cast<double>(total)) <=
          0.02 * static_cast<double>(total));
  }
  // Per iteration within 50 µs, for the iteration and for each stage in it.
  REQUIRE(b.iterations.size() == 40);
  for (const Iteration& it : b.iterations) {
    INFO("iteration " << it.index);
    const double truth_duration = static_cast<double>(truth_iteration.at(it.index));
    CHECK(std::fabs(static_cast<double>(it.duration()) - truth_duration) <= 50000.0);
    for (size_t s = 0; s < b.stages.size(); ++s) {
      const auto found = truth_stage_iteration.find({it.index, b.stages[s]});
      const double expected =
          found == truth_stage_iteration.end() ? 0.0 : static_cast<double>(found->second);
      INFO("stage " << b.stages[s]);
      CHECK(std::fabs(static_cast<double>(it.stage_ns[s]) - expected) <= 50000.0);
    }
  }
  CHECK(trace.marks.size() == 40);
}

TEST_CASE(
    "Injected into the reference engine, the probe's stage times match the engine's own stage "
    "clock",
    "[probes][injection][engine]") {
  TempDir dir;
  const std::string clock = dir.path + "/clock.csv";
  // 64 concurrent requests keep even the engine's shortest stage (schedule, about 1 µs) long
  // enough to compare; three rounds give about 50 engine steps, prefill and decode.
  const auto result = prism::test::run_process(
      {kEngineProgram, "--requests", "64", "--prompt", "8", "--max-tokens", "16", "--rounds", "3",
       "--clock", clock},
      {"NVTX_INJECTION64_PATH=" + kAgent, "PRISM_PROBE_START=1", "PRISM_PROBE_OUTPUT=" + dir.path,
       "PRISM_PROBE_DIR=" + dir.path + "/sock"});
  INFO(result.err);
  REQUIRE(result.exit_code == 0);
  const auto overhead_at = result.out.find("clock_overhead_ns=");
  REQUIRE(overhead_at != std::string::npos);
  // The engine's clock reads time inside each NVTX range (after the push, before the pop):
  // every range holds one clock read and one record() that the truth leaves out. The program
  // measures that cost on a scratch clock; it is the truth instrument's cost, not the probe's.
  const double clock_cost = std::stod(result.out.substr(overhead_at + 18));
  const std::string praw = find_file_with_suffix(dir.path, ".praw");
  REQUIRE_FALSE(praw.empty());
  const Trace trace = load_trace(praw);
  CHECK(trace.complete);
  CHECK(trace.dropped_host == 0);
  const Breakdown b = analyze(trace, StageRules::builtin("prism"));
  const auto truth = read_clock(clock);

  std::map<std::string, uint64_t> truth_totals;
  std::map<std::string, uint64_t> truth_counts;
  std::vector<uint64_t> steps;  // engine step numbers in order
  std::map<uint64_t, uint64_t> truth_iteration;
  std::map<std::pair<uint64_t, std::string>, uint64_t> truth_stage_iteration;
  for (const auto& row : truth) {
    if (row.stage == "step") {
      steps.push_back(row.iteration);
      truth_iteration[row.iteration] = row.end - row.start;
    } else {
      truth_totals[row.stage] += row.end - row.start;
      ++truth_counts[row.stage];
      truth_stage_iteration[{row.iteration, row.stage}] += row.end - row.start;
    }
  }
  std::sort(steps.begin(), steps.end());
  REQUIRE(steps.size() >= 40);
  REQUIRE(b.iterations.size() == steps.size());
  CHECK(b.iteration_rule == "step");

  // Per-stage totals within 2% of the engine's clock.
  for (const char* stage :
       {"schedule", "prefill", "decode", "attention", "mlp", "sample", "detokenize"}) {
    const uint64_t total = truth_totals[stage];
    REQUIRE(total > 0);
    const uint64_t measured = b.totals[stage_index(b, stage)].host_ns;
    const double expected =
        static_cast<double>(total) + clock_cost * static_cast<double>(truth_counts[stage]);
    INFO("stage " << stage << ": probe " << measured << " ns, engine clock " << total << " ns in "
                  << truth_counts[stage] << " ranges, clock cost " << clock_cost << " ns/range");
    CHECK(b.totals[stage_index(b, stage)].count == truth_counts[stage]);
    // 2% of the total. For ranges of about a microsecond (schedule), 2% (about 25 ns) is below
    // what the engine's clock itself resolves: on a loaded machine its clock read and record()
    // miss the cache (100-200 ns) outside the truth but inside the NVTX range, so there the
    // bound is 300 ns per range. Stages of 5 µs and more are held to 2% (sample, the forward
    // pass) or to that bound, whichever is larger.
    // Under ASan the engine's clock read and record() are instrumented and cost several times
    // more, unevenly: the per-range floor is 1 µs there. The release build holds 300 ns.
    const double per_range_floor = kSanitized ? 1000.0 : 300.0;
    const double tolerance = std::max(0.02 * static_cast<double>(total),
                                      per_range_floor * static_cast<double>(truth_counts[stage]));
    CHECK(std::fabs(static_cast<double>(measured) - expected) <= tolerance);
  }
  // Per iteration within 50 µs, for the step and each stage in it.
  // 50 µs in the release build; under ASan the first steps also pay for shadow memory and
  // instrumented allocation on one side of the clock only, so the bound there is 200 µs.
  const double per_iteration_bound = kSanitized ? 200000.0 : 50000.0;
  for (size_t i = 0; i < b.iterations.size(); ++i) {
    const Iteration& it = b.iterations[i];
    const uint64_t step = steps[i];
    INFO("iteration " << i << " (engine step " << step << ")");
    CHECK(std::fabs(static_cast<double>(it.duration()) -
                    static_cast<double>(truth_iteration.at(step))) <= per_iteration_bound);
    for (size_t s = 0; s < b.stages.size(); ++s) {
      const auto found = truth_stage_iteration.find({step, b.stages[s]});
      const double expected =
          found == truth_stage_iteration.end() ? 0.0 : static_cast<double>(found->second);
      INFO("stage " << b.stages[s]);
      CHECK(std::fabs(static_cast<double>(it.stage_ns[s]) - expected) <= per_iteration_bound);
    }
  }
}

TEST_CASE("The reference engine runs unchanged with a dormant agent and records nothing",
          "[probes][injection][engine]") {
  TempDir dir;
  const auto result = prism::test::run_process(
      {kEngineProgram, "--requests", "4", "--prompt", "8", "--max-tokens", "4", "--no-clock"},
      {"NVTX_INJECTION64_PATH=" + kAgent, "PRISM_PROBE_OUTPUT=" + dir.path,
       "PRISM_PROBE_DIR=" + dir.path + "/sock"});
  REQUIRE(result.exit_code == 0);
  CHECK(result.out.find("tokens=16 ") != std::string::npos);
  CHECK(find_file_with_suffix(dir.path, ".praw").empty());
}

TEST_CASE("The engine's in-process A/B switches the agent on and off through its own socket",
          "[probes][injection][engine]") {
  // What BM_EngineThroughput_InProcessAB measures with: active blocks record exactly the
  // engine's stage ranges (one range per stage per step), dormant blocks record nothing.
  TempDir dir;
  const auto result = prism::test::run_process(
      {kEngineProgram, "--requests", "4", "--prompt", "8", "--max-tokens", "4", "--no-clock",
       "--warmup-rounds", "1", "--ab-blocks", "4", "--ab-block-rounds", "2"},
      {"NVTX_INJECTION64_PATH=" + kAgent, "PRISM_PROBE_QUIET=1", "PRISM_PROBE_DIR=" + dir.path});
  INFO(result.out << result.err);
  REQUIRE(result.exit_code == 0);
  CHECK(result.out.find("ab_pairs=2 ") != std::string::npos);
  const auto at = result.out.find("ranges_per_step=");
  REQUIRE(at != std::string::npos);
  const double ranges_per_step = std::atof(result.out.c_str() + at + 16);
  CHECK(ranges_per_step == Approx(9.0));  // the engine's nine stages, each once per step

  SECTION("without the agent it refuses with exit 2 and says why") {
    const auto bare =
        prism::test::run_process({kEngineProgram, "--no-clock", "--ab-blocks", "2"}, {});
    CHECK(bare.exit_code == 2);
    CHECK(bare.err.find("needs the agent injected") != std::string::npos);
  }
}

TEST_CASE("A dormant agent records nothing and writes no trace", "[probes][injection]") {
  TempDir dir;
  const auto result =
      prism::test::run_process({kProgram, "--iterations", "5"},
                               {"NVTX_INJECTION64_PATH=" + kAgent, "PRISM_PROBE_OUTPUT=" + dir.path,
                                "PRISM_PROBE_DIR=" + dir.path + "/sock"});
  REQUIRE(result.exit_code == 0);
  CHECK(find_file_with_suffix(dir.path, ".praw").empty());
  CHECK(result.err.empty());
}

TEST_CASE("The agent also loads through LD_PRELOAD with no NVTX variable set",
          "[probes][injection]") {
  if (kSanitized) {
    WARN(
        "skipped under AddressSanitizer: an LD_PRELOAD'ed sanitized library would load before the "
        "ASan runtime");
    return;
  }
  TempDir dir;
  const auto result = prism::test::run_process(
      {kProgram, "--iterations", "3"},
      {"LD_PRELOAD=" + kAgent, "PRISM_PROBE_START=1", "PRISM_PROBE_OUTPUT=" + dir.path,
       "PRISM_PROBE_DIR=" + dir.path + "/sock"});
  REQUIRE(result.exit_code == 0);
  const std::string praw = find_file_with_suffix(dir.path, ".praw");
  REQUIRE_FALSE(praw.empty());
  const Breakdown b = analyze(load_trace(praw), StageRules::builtin("prism"));
  CHECK(b.iterations.size() == 3);
}

TEST_CASE("Without a CUDA driver the agent records NVTX only and says why once",
          "[probes][injection]") {
  TempDir dir;
  const auto result = prism::test::run_process(
      {kProgram, "--iterations", "3"},
      {"NVTX_INJECTION64_PATH=" + kAgent, "CUDA_INJECTION64_PATH=" + kAgent, "PRISM_PROBE_START=1",
       "PRISM_PROBE_ACTIVITIES=nvtx,gpu", "PRISM_PROBE_OUTPUT=" + dir.path,
       "PRISM_PROBE_DIR=" + dir.path + "/sock"});
  REQUIRE(result.exit_code == 0);
  const auto first = result.err.find("GPU activity off");
  REQUIRE(first != std::string::npos);
  CHECK(result.err.find("GPU activity off", first + 1) == std::string::npos);
  const Trace trace = load_trace(find_file_with_suffix(dir.path, ".praw"));
  bool said = false;
  for (const auto& info : trace.info) said |= info.rfind("cupti=", 0) == 0;
  CHECK(said);
  CHECK(analyze(trace, StageRules::builtin("prism")).iterations.size() == 3);
}

TEST_CASE("Full per-thread buffers drop events and the drops are counted exactly",
          "[probes][injection]") {
  TempDir dir;
  const uint64_t burst = 200000;
  const auto result = prism::test::run_process(
      {kProgram, "--burst", std::to_string(burst)},
      {"NVTX_INJECTION64_PATH=" + kAgent, "PRISM_PROBE_START=1", "PRISM_PROBE_BUFFER_EVENTS=64",
       "PRISM_PROBE_DRAIN_MS=200", "PRISM_PROBE_OUTPUT=" + dir.path,
       "PRISM_PROBE_DIR=" + dir.path + "/sock"});
  REQUIRE(result.exit_code == 0);
  const Trace trace = load_trace(find_file_with_suffix(dir.path, ".praw"));
  CHECK(trace.complete);
  CHECK(trace.dropped_host > 0);
  CHECK(trace.event_count + trace.dropped_host == 2 * burst);
  CHECK(breakdown_report(analyze(trace, StageRules::builtin("prism"))).find("dropped") !=
        std::string::npos);
}

TEST_CASE("A target killed mid-capture leaves a partial trace that is read and marked",
          "[probes][injection]") {
  TempDir dir;
  const auto result = prism::test::run_process(
      {kProgram, "--iterations", "100000", "--abort-after", "300"},
      {"NVTX_INJECTION64_PATH=" + kAgent, "PRISM_PROBE_START=1", "PRISM_PROBE_DRAIN_MS=5",
       "PRISM_PROBE_OUTPUT=" + dir.path, "PRISM_PROBE_DIR=" + dir.path + "/sock"});
  REQUIRE(result.exit_code == 128 + SIGKILL);
  const std::string praw = find_file_with_suffix(dir.path, ".praw");
  REQUIRE_FALSE(praw.empty());
  const Trace trace = load_trace(praw);
  CHECK_FALSE(trace.complete);
  CHECK_FALSE(trace.partial_reason.empty());
  const Breakdown b = analyze(trace, StageRules::builtin("prism"));
  CHECK(b.iterations.size() > 10);
  CHECK(b.iterations.size() <= 301);
}

TEST_CASE("Attach wakes a dormant agent over its socket, reads live stats and a snapshot",
          "[probes][injection][control]") {
  TempDir dir;
  const std::string sock_dir = dir.path + "/sock";
  const std::string ready = dir.path + "/ready";
  Child child({kProgram, "--loop-ms", "20000", "--ready", ready},
              {"NVTX_INJECTION64_PATH=" + kAgent, "PRISM_PROBE_DIR=" + sock_dir});
  REQUIRE(wait_for_file(ready, 10000));
  setenv("PRISM_PROBE_DIR", sock_dir.c_str(), 1);
  ProbeClient client = ProbeClient::connect(child.pid);
  unsetenv("PRISM_PROBE_DIR");
  auto status = client.status();
  CHECK(status["active"] == "0");
  CHECK(status["pid"] == std::to_string(child.pid));

  // The socket is private: 0600 in a 0700 directory.
  struct stat st;
  REQUIRE(stat(sock_dir.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  REQUIRE(stat(client.path().c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);

  client.load_rules(builtin_rules_text("prism"));
  auto started = client.start(0, prism::control::kActivityNvtx);
  CHECK(started["active"] == "1");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto stats = client.stats();
  std::map<std::string, prism::control::StatsRow> rows;
  for (const auto& row : stats.rows) rows[row.name] = row;
  REQUIRE(rows.count("attention") == 1);
  CHECK(rows["attention"].count > 0);
  CHECK(rows["attention"].total_ns > 0);
  CHECK(rows.count("iteration") == 1);

  const std::string raw = client.snapshot();
  const Trace trace = read_raw_trace(raw, "snapshot");
  CHECK(trace.complete);
  const Breakdown b = analyze(trace, StageRules::builtin("prism"));
  CHECK(b.iterations.size() > 3);
  client.stop();
  CHECK(client.status()["active"] == "0");
}

TEST_CASE("Malformed control messages are rejected and the agent keeps running",
          "[probes][injection][control]") {
  TempDir dir;
  const std::string sock_dir = dir.path + "/sock";
  const std::string ready = dir.path + "/ready";
  Child child({kProgram, "--loop-ms", "20000", "--ready", ready},
              {"NVTX_INJECTION64_PATH=" + kAgent, "PRISM_PROBE_DIR=" + sock_dir});
  REQUIRE(wait_for_file(ready, 10000));
  const std::string path = sock_dir + "/" + std::to_string(child.pid) + ".sock";
  {
    ProbeClient client = ProbeClient::connect_path(path);
    CHECK(client.send_raw("hello\n").rfind("err bad_request", 0) == 0);
    CHECK(client.send_raw("PRISM/9 status\n").find("version") != std::string::npos);
    CHECK(client.send_raw("PRISM/1 start duration_ms=-1\n").rfind("err", 0) == 0);
    CHECK(client.send_raw(std::string("PRISM/1 stat\0us\n", 16)).rfind("err", 0) == 0);
    CHECK(client.send_raw("PRISM/1 rules bytes=9\nrange x\n\n").find("bad_rules") !=
          std::string::npos);
    CHECK(client.send_raw("PRISM/1 status\n").rfind("ok status", 0) ==
          0);  // same connection still served
  }
  {
    ProbeClient client = ProbeClient::connect_path(path);
    CHECK(client.send_raw(std::string(5000, 'A')).find("line too long") != std::string::npos);
  }
  ProbeClient again = ProbeClient::connect_path(path);
  CHECK(again.status()["active"] == "0");
  CHECK(kill(child.pid, 0) == 0);  // the host is alive
}

TEST_CASE("A peer with another uid is refused", "[probes][injection][control]") {
  if (geteuid() != 0) {
    WARN("skipped: needs root to switch a child to another uid");
    return;
  }
  TempDir dir;
  const std::string sock_dir = dir.path + "/sock";
  const std::string ready = dir.path + "/ready";
  Child child({kProgram, "--loop-ms", "20000", "--ready", ready},
              {"NVTX_INJECTION64_PATH=" + kAgent, "PRISM_PROBE_DIR=" + sock_dir});
  REQUIRE(wait_for_file(ready, 10000));
  const std::string path = sock_dir + "/" + std::to_string(child.pid) + ".sock";

  // Connects as uid 65534 (nobody) and reports what happened through a pipe.
  auto connect_as_nobody = [&]() -> std::string {
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    const pid_t pid = fork();
    if (pid == 0) {
      close(fds[0]);
      std::string outcome;
      if (setgid(65534) != 0 || setuid(65534) != 0) {
        outcome = "setuid failed";
      } else {
        const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", path.c_str());
        if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
          outcome = std::string("connect refused: ") + strerror(errno);
        } else {
          const char request[] = "PRISM/1 start\n";
          // The agent may refuse and close before we write: no SIGPIPE for us.
          (void)!send(fd, request, sizeof(request) - 1, MSG_NOSIGNAL);
          char reply[256] = {};
          const ssize_t n = read(fd, reply, sizeof(reply) - 1);
          outcome = n > 0 ? std::string(reply, static_cast<size_t>(n)) : "closed";
        }
      }
      (void)!write(fds[1], outcome.data(), outcome.size());
      _exit(0);
    }
    close(fds[1]);
    std::string outcome;
    char buffer[256];
    ssize_t n;
    while ((n = read(fds[0], buffer, sizeof(buffer))) > 0)
      outcome.append(buffer, static_cast<size_t>(n));
    close(fds[0]);
    waitpid(pid, nullptr, 0);
    return outcome;
  };

  // The filesystem refuses first: the directory is 0700 and the socket 0600.
  CHECK(connect_as_nobody().find("connect refused") != std::string::npos);
  // Open the permissions up: the agent's own SO_PEERCRED check must still refuse.
  REQUIRE(chmod(dir.path.c_str(), 0711) == 0);
  REQUIRE(chmod(sock_dir.c_str(), 0777) == 0);
  REQUIRE(chmod(path.c_str(), 0777) == 0);
  const std::string outcome = connect_as_nobody();
  INFO("outcome: " << outcome);
  CHECK(outcome.find("err denied peer uid 65534") != std::string::npos);
  // And the agent was not started by the refused peer.
  ProbeClient owner = ProbeClient::connect_path(path);
  CHECK(owner.status()["active"] == "0");
}

TEST_CASE("Attaching to a process without the agent says how to start it with the agent",
          "[probes][control]") {
  Child child({"/bin/sleep", "20"}, {});
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  try {
    ProbeClient::connect(child.pid);
    FAIL("connected to a process without the agent");
  } catch (const prism::control::ProbeError& e) {
    const std::string message = e.what();
    CHECK(message.find("is not running the Prism probe agent") != std::string::npos);
    CHECK(message.find("NVTX_INJECTION64_PATH=") != std::string::npos);
    CHECK(message.find("prism trace") != std::string::npos);
  }
  CHECK_THROWS_WITH(ProbeClient::connect(999999999), Catch::Contains("no process with pid"));
}

TEST_CASE("A target that exits during prism attach leaves a partial trace, written and marked",
          "[probes][injection][control]") {
  TempDir dir;
  const std::string sock_dir = dir.path + "/sock";
  const std::string ready = dir.path + "/ready";
  // The program runs for about a second after it is ready; the capture asks for ten.
  Child child({kProgram, "--loop-ms", "1000", "--ready", ready},
              {"NVTX_INJECTION64_PATH=" + kAgent, "PRISM_PROBE_DIR=" + sock_dir});
  REQUIRE(wait_for_file(ready, 10000));
  setenv("PRISM_PROBE_DIR", sock_dir.c_str(), 1);
  AttachOptions options;
  options.pid = child.pid;
  options.duration_ms = 10000;
  options.interval_ms = 100;
  options.gpu = false;
  options.output_dir = dir.path + "/out";
  const AttachResult result = attach_and_capture(options);
  unsetenv("PRISM_PROBE_DIR");
  CHECK(result.partial);
  CHECK_FALSE(result.breakdown.complete);
  CHECK(result.breakdown.partial_reason.find("exited mid-capture") != std::string::npos);
  CHECK(result.breakdown.iterations.size() > 0);
  const Trace reloaded = load_trace(options.output_dir + "/trace.json");
  CHECK(reloaded.ranges.size() > 0);
  struct stat st;
  CHECK(stat((options.output_dir + "/iterations.csv").c_str(), &st) == 0);
}

TEST_CASE("A live consumer that throws is counted and the attach capture goes on",
          "[probes][injection][control]") {
  TempDir dir;
  const std::string sock_dir = dir.path + "/sock";
  const std::string ready = dir.path + "/ready";
  Child child({kProgram, "--loop-ms", "20000", "--ready", ready},
              {"NVTX_INJECTION64_PATH=" + kAgent, "PRISM_PROBE_DIR=" + sock_dir});
  REQUIRE(wait_for_file(ready, 10000));
  setenv("PRISM_PROBE_DIR", sock_dir.c_str(), 1);
  AttachOptions options;
  options.pid = child.pid;
  options.duration_ms = 600;
  options.interval_ms = 100;
  options.gpu = false;
  options.output_dir = dir.path + "/out";
  int calls = 0;
  options.on_snapshot = [&calls](const Breakdown&, double) {
    ++calls;
    throw std::runtime_error("consumer failed");
  };
  const AttachResult result = attach_and_capture(options);
  unsetenv("PRISM_PROBE_DIR");
  CHECK(calls >= 2);  // called again after the first one threw
  CHECK(result.live_errors == static_cast<uint64_t>(calls));
  CHECK(result.live_error == "consumer failed");
  CHECK_FALSE(result.partial);
  CHECK(result.breakdown.complete);
  CHECK(result.breakdown.iterations.size() > 0);
  struct stat st;
  CHECK(stat((options.output_dir + "/trace.json").c_str(), &st) == 0);
}
