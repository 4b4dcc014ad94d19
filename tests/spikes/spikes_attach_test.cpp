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
struct Target {
  pid_t pid = -1;
  Target(const std::string& sock, const std::string& ready) {
    pid = fork();
    if (pid == 0) {
      setenv("NVTX_INJECTION64_PATH", PRISM_PROBE_AGENT, 1);
      setenv("PRISM_PROBE_DIR", sock.c_str(), 1);
      execl(PRISM_SPIKE_STAGE_PROGRAM, PRISM_SPIKE_STAGE_PROGRAM, "--seconds", "30", "--ready",
            ready.c_str(), "--stall-every", "1500", "--stall-len", "5", "--stall-us", "3000",
            static_cast<char*>(nullptr));
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

TEST_CASE("prism attach --spikes without a target agent fails with a clear message",
          "[spikes][cli][attach]") {
  TempDir dir;
  const auto r =
      prism::test::run_process({PRISM_CLI_PATH, "attach", "999999", "--duration", "1s", "--spikes"},
                               {"PRISM_PROBE_DIR=" + dir.path + "/none"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("prism attach:") != std::string::npos);
}
