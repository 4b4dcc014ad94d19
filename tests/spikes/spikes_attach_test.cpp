// prism attach PID --watch --spikes on a real process: the NVTX program
// spike_stage_program, started with the probe agent dormant, stalls its
// "sample" stage every so often; alerts must arrive while the capture runs
// (before the end-of-capture report), as JSON lines on stdout and on the
// --alert-command's stdin.
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "../support/process.h"
#include "../support/temp_dir.h"

namespace {

using prism::test::TempDir;

bool exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

// The program with the agent loaded and dormant, as a service runs; killed on scope exit.
// With a log, it stalls one iteration in 300 and writes down each stalled one.
struct Target {
  pid_t pid = -1;
  Target(const std::string& sock, const std::string& ready, const std::string& log = "") {
    pid = fork();
    if (pid == 0) {
      setenv("NVTX_INJECTION64_PATH", PRISM_PROBE_AGENT, 1);
      setenv("PRISM_PROBE_DIR", sock.c_str(), 1);
      if (log.empty()) {
        execl(PRISM_SPIKE_STAGE_PROGRAM, PRISM_SPIKE_STAGE_PROGRAM, "--seconds", "30", "--ready",
              ready.c_str(), "--stall-every", "1500", "--stall-len", "5", "--stall-us", "3000",
              static_cast<char*>(nullptr));
      } else {
        execl(PRISM_SPIKE_STAGE_PROGRAM, PRISM_SPIKE_STAGE_PROGRAM, "--seconds", "30", "--ready",
              ready.c_str(), "--stall-every", "300", "--stall-len", "1", "--stall-us", "3000",
              "--log", log.c_str(), static_cast<char*>(nullptr));
      }
      _exit(127);
    }
  }
  ~Target() {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
};

}  // namespace

TEST_CASE("prism attach --watch --spikes shows alerts on a stalled stage before the capture ends",
          "[spikes][cli][attach]") {
  TempDir dir;
  const std::string sock = dir.path + "/sock", ready = dir.path + "/ready";
  const std::string alerts = dir.path + "/alerts.jsonl";
  Target target(sock, ready);
  for (int i = 0; i < 1000 && !exists(ready); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  REQUIRE(exists(ready));
  const auto r = prism::test::run_process(
      {PRISM_CLI_PATH, "attach", std::to_string(target.pid), "--duration", "3s", "--interval",
       "200ms", "--watch", "--no-gpu", "--spikes", "--alert-command", "cat > '" + alerts + "'",
       "-o", dir.path + "/trace"},
      {"PRISM_PROBE_DIR=" + sock});
  INFO(r.out);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);

  // stdout: live tables and alert lines while capturing, then "first data ..." and the report.
  const size_t end_of_capture = r.out.find("first data");
  REQUIRE(end_of_capture != std::string::npos);
  std::istringstream lines(r.out.substr(0, end_of_capture));
  std::string line;
  int live_alerts = 0;
  bool blamed_sample = false;
  while (std::getline(lines, line)) {
    if (line.rfind("{\"", 0) != 0) continue;
    const auto alert = nlohmann::json::parse(line);
    if (alert.value("type", "") != "spike") continue;
    ++live_alerts;
    CHECK(alert.contains("detected_ns"));
    for (const auto& b : alert["blamed"])
      if (b == "sample") blamed_sample = true;
  }
  CHECK(live_alerts >= 1);
  CHECK(blamed_sample);
  CHECK(r.out.find("mean us") < end_of_capture);  // the live table was shown too
  CHECK(r.err.find("alerts raised while capturing") != std::string::npos);

  // The same alerts went to the command's stdin, as JSON lines.
  std::ifstream in(alerts);
  int piped = 0;
  while (std::getline(in, line))
    if (!line.empty() && nlohmann::json::parse(line).value("type", "") == "spike") ++piped;
  CHECK(piped >= live_alerts);
}

TEST_CASE("prism attach --spikes alerts on the injected slow iterations live, with no snapshot",
          "[spikes][cli][attach]") {
  TempDir dir;
  const std::string sock = dir.path + "/sock", ready = dir.path + "/ready";
  const std::string log = dir.path + "/stalls.log";
  Target target(sock, ready, log);
  for (int i = 0; i < 1000 && !exists(ready); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  REQUIRE(exists(ready));
  // --interval 1h: no periodic snapshot before the capture ends; only the live path can alert.
  const auto r = prism::test::run_process(
      {PRISM_CLI_PATH, "attach", std::to_string(target.pid), "--duration", "3s", "--interval", "1h",
       "--no-gpu", "--spikes", "--poll", "2ms", "-o", dir.path + "/trace"},
      {"PRISM_PROBE_DIR=" + sock});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const size_t end_of_capture = r.out.find("first data");
  REQUIRE(end_of_capture != std::string::npos);

  // Open alerts raised while capturing: the end of the iteration that opened each.
  struct Opened {
    uint64_t end_ns;
    bool blamed_sample;
  };
  std::vector<Opened> live;
  std::istringstream lines(r.out.substr(0, end_of_capture));
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] != '{') continue;
    const auto alert = nlohmann::json::parse(line);
    if (alert.value("type", "") != "spike" || alert.value("phase", "") != "open") continue;
    bool sample = false;
    for (const auto& b : alert["blamed"]) sample |= b == "sample";
    live.push_back({alert["end_ns"].get<uint64_t>(), sample});
  }
  REQUIRE_FALSE(live.empty());

  // The stalls that ended while live alerts were flowing, each matched to an open alert on
  // the stalled iteration itself (the program reads its clock just after the step ends).
  std::ifstream in(log);
  std::string word;
  uint64_t index = 0, end_ns = 0;
  int stalls = 0, alerted = 0, blamed = 0;
  while (in >> word >> index >> end_ns) {
    if (end_ns < live.front().end_ns || end_ns > live.back().end_ns) continue;
    ++stalls;
    for (const Opened& o : live) {
      if (o.end_ns <= end_ns && end_ns - o.end_ns < 5'000'000) {
        ++alerted;
        blamed += o.blamed_sample ? 1 : 0;
        break;
      }
    }
  }
  INFO(stalls << " stalls, " << alerted << " alerted live, " << blamed << " blaming sample");
  CHECK(alerted >= 3);
  // A stall can fall inside an episode already open on noise (a shared machine): most do not.
  CHECK(2 * alerted >= stalls);
  CHECK(2 * blamed >= alerted);
}

TEST_CASE("prism attach --spikes without a target agent fails with a clear message",
          "[spikes][cli][attach]") {
  TempDir dir;
  const auto r =
      prism::test::run_process({PRISM_CLI_PATH, "attach", "999999", "--duration", "1s", "--spikes"},
                               {"PRISM_PROBE_DIR=" + dir.path + "/none"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("prism attach:") != std::string::npos);
}

TEST_CASE("prism attach refuses a --poll outside 1ms to 1s and a bad detector bound",
          "[spikes][cli][attach]") {
  const std::vector<std::vector<std::string>> bad = {
      {"--poll", "0ms"},    {"--poll", "2s"},      {"--poll", "fast"},
      {"--threshold", "0"}, {"--threshold", "-3"}, {"--min-excess-us", "-1"}};
  for (const auto& option : bad) {
    const auto r = prism::test::run_process(
        {PRISM_CLI_PATH, "attach", "1", "--duration", "1s", "--spikes", option[0], option[1]}, {});
    INFO(option[0] << " " << option[1] << ": " << r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find(option[0]) != std::string::npos);
  }
}
