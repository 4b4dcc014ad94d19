// prism trace / attach / analyze, driven the way a user runs them.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "../support/process.h"
#include "prism/analysis/breakdown.h"

namespace {

const std::string kPrism = PRISM_CLI_PATH;
const std::string kProgram = PRISM_NVTX_STAGE_PROGRAM;

struct TempDir {
  std::string path;
  TempDir() {
    char pattern[] = "/tmp/prism-cli-probe-XXXXXX";
    path = mkdtemp(pattern);
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
};

bool exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

}  // namespace

TEST_CASE("prism trace runs a command with the agent and writes the trace and breakdown",
          "[probes][cli]") {
  TempDir dir;
  const std::string out = dir.path + "/trace";
  const auto result =
      prism::test::run_process({kPrism, "trace", "-o", out, "--", kProgram, "--iterations", "12"},
                               {"PRISM_PROBE_DIR=" + dir.path + "/sock"});
  INFO(result.err);
  REQUIRE(result.exit_code == 0);
  CHECK(result.out.find("12 iterations") != std::string::npos);
  CHECK(result.out.find("attention") != std::string::npos);
  for (const char* name :
       {"trace.json", "iterations.csv", "breakdown.json", "report.txt", "trace.praw"}) {
    CHECK(exists(out + "/" + name));
  }
  std::ifstream in(out + "/trace.json");
  const auto json = nlohmann::json::parse(in);
  CHECK(json["otherData"]["complete"] == true);

  // The exported trace analyzes to the same iterations.
  const auto analyzed =
      prism::test::run_process({kPrism, "analyze", out + "/trace.json", "--json"});
  REQUIRE(analyzed.exit_code == 0);
  const auto breakdown = nlohmann::json::parse(analyzed.out);
  CHECK(breakdown["iterations"].size() == 12);
}

TEST_CASE("prism trace marks the trace partial when the target is killed", "[probes][cli]") {
  TempDir dir;
  const std::string out = dir.path + "/trace";
  const auto result =
      prism::test::run_process({kPrism, "trace", "-o", out, "--", kProgram, "--iterations",
                                "100000", "--abort-after", "300"},
                               {"PRISM_PROBE_DIR=" + dir.path + "/sock", "PRISM_PROBE_DRAIN_MS=5"});
  CHECK(result.exit_code == 1);
  CHECK(result.out.find("PARTIAL TRACE") != std::string::npos);
  CHECK(result.out.find("signal 9") != std::string::npos);
  CHECK(exists(out + "/trace.json"));
}

TEST_CASE("prism attach to a process without the agent explains how to start it", "[probes][cli]") {
  const pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sleep", "sleep", "20", static_cast<char*>(nullptr));
    _exit(127);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const auto result =
      prism::test::run_process({kPrism, "attach", std::to_string(pid), "--duration", "1s"});
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  CHECK(result.exit_code == 1);
  CHECK(result.err.find("not running the Prism probe agent") != std::string::npos);
  CHECK(result.err.find("NVTX_INJECTION64_PATH=") != std::string::npos);
}

TEST_CASE("prism attach captures a window from a running program and writes the trace",
          "[probes][cli]") {
  TempDir dir;
  const std::string ready = dir.path + "/ready";
  const std::string sock = dir.path + "/sock";
  // Start the program with the agent dormant, as a service would run.
  const std::string agent = PRISM_PROBE_AGENT;
  const pid_t target = fork();
  if (target == 0) {
    setenv("NVTX_INJECTION64_PATH", agent.c_str(), 1);
    setenv("PRISM_PROBE_DIR", sock.c_str(), 1);
    execl(kProgram.c_str(), kProgram.c_str(), "--loop-ms", "20000", "--ready", ready.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  for (int i = 0; i < 1000 && !exists(ready); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  REQUIRE(exists(ready));
  const std::string out = dir.path + "/attach";
  const auto result =
      prism::test::run_process({kPrism, "attach", std::to_string(target), "--duration", "600ms",
                                "--interval", "200ms", "--watch", "-o", out},
                               {"PRISM_PROBE_DIR=" + sock});
  kill(target, SIGKILL);
  waitpid(target, nullptr, 0);
  INFO(result.err);
  REQUIRE(result.exit_code == 0);
  CHECK(result.out.find("first data") != std::string::npos);
  CHECK(result.out.find("mean us") != std::string::npos);  // the live table was shown
  CHECK(exists(out + "/trace.json"));
  CHECK(exists(out + "/iterations.csv"));
}

TEST_CASE("prism analyze names the field a broken trace lacks and rejects bad options",
          "[probes][cli]") {
  TempDir dir;
  const std::string path = dir.path + "/bad.json";
  {
    std::ofstream out(path);
    out << R"({"traceEvents":[{"ph":"X","name":"a","pid":1,"tid":1,"ts":1}]})";
  }
  const auto result = prism::test::run_process({kPrism, "analyze", path});
  CHECK(result.exit_code == 1);
  CHECK(result.err.find("traceEvents[0]: missing field \"dur\"") != std::string::npos);
  CHECK(prism::test::run_process({kPrism, "analyze", path, "--rules", "nosuchset"}).exit_code == 1);
  CHECK(prism::test::run_process({kPrism, "attach", "123", "--duration", "ten"}).exit_code == 2);
  CHECK(prism::test::run_process({kPrism, "trace"}).exit_code == 2);
}
