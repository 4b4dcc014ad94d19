// prism trace / attach / analyze, driven the way a user runs them.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "../support/process.h"
#include "../support/temp_dir.h"
#include "prism/analysis/breakdown.h"

extern char** environ;

namespace {

using prism::test::TempDir;

const std::string kPrism = PRISM_CLI_PATH;
const std::string kProgram = PRISM_NVTX_STAGE_PROGRAM;

bool exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// `prism serve` in the background with extra environment, stdout to a file; killed on exit.
struct Server {
  pid_t pid = -1;
  Server(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env,
         const std::string& out) {
    std::vector<std::string> env_storage;
    for (char** e = environ; *e != nullptr; ++e) env_storage.emplace_back(*e);
    for (const auto& e : extra_env) env_storage.push_back(e);
    std::vector<char*> env;
    for (auto& e : env_storage) env.push_back(e.data());
    env.push_back(nullptr);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    posix_spawn(&pid, args[0], &actions, nullptr, args.data(), env.data());
    posix_spawn_file_actions_destroy(&actions);
  }
  ~Server() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
};

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

TEST_CASE("prism run --probe finds the local server's agent and joins its stages to requests",
          "[probes][cli]") {
  if (kSanitized) {
    WARN(
        "skipped under AddressSanitizer: the server loads the agent with LD_PRELOAD, which "
        "would load before the ASan runtime");
    return;
  }
  TempDir dir;
  const std::string workload = dir.path + "/w.json";
  REQUIRE(prism::test::run_process({kPrism, "workload", "gen", "synthetic", "--requests", "6",
                                    "--input-tokens", "16", "--output-tokens", "8", "--arrival",
                                    "closed-loop", "--concurrency", "3", "-o", workload})
              .exit_code == 0);
  // LD_PRELOAD: the agent (and its socket) is there from the start, before the first NVTX call.
  const std::string sock = dir.path + "/sock";
  const std::string server_out = dir.path + "/serve.out";
  Server server({kPrism, "serve", "--model", "tiny", "--port", "0"},
                {"LD_PRELOAD=" + std::string(PRISM_PROBE_AGENT), "PRISM_PROBE_DIR=" + sock,
                 "PRISM_PROBE_QUIET=1"},
                server_out);
  std::string url;
  for (int waited = 0; waited < 30000 && url.empty(); waited += 20) {
    const std::string text = slurp(server_out);
    const auto at = text.find("http://127.0.0.1:");
    if (at != std::string::npos && text.find(' ', at) != std::string::npos)
      url = text.substr(at, text.find(' ', at) - at);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  REQUIRE_FALSE(url.empty());
  const std::string out = dir.path + "/run.json";
  const auto run =
      prism::test::run_process({kPrism, "run", "--target", "openai:" + url, "--model", "tiny",
                                "--workload", workload, "--probe", "-q", "-o", out},
                               {"PRISM_PROBE_DIR=" + sock});
  INFO(run.out << run.err);
  REQUIRE(run.exit_code == 0);
  CHECK(run.out.find("Probe (pid " + std::to_string(server.pid) + ")") != std::string::npos);
  const auto result = nlohmann::json::parse(slurp(out));
  const auto& stages = result.at("stages");
  CHECK(stages.at("pid") == server.pid);
  CHECK(stages.at("iterations").at("count").get<int>() > 0);
  CHECK(stages.at("requests").at("total") == 6);
  CHECK(stages.at("requests").at("covered") == 6);
  bool decode = false;
  for (const auto& t : stages.at("totals"))
    decode |= t.at("stage") == "decode" && t.at("count") > 0;
  CHECK(decode);
  for (const auto& row : stages.at("requests").at("rows"))
    CHECK(row.at("iterations").get<int>() > 0);
}

TEST_CASE("prism run --probe without an agent in the target says how to start one",
          "[probes][cli]") {
  TempDir dir;
  const std::string workload = dir.path + "/w.json";
  REQUIRE(prism::test::run_process({kPrism, "workload", "gen", "synthetic", "--requests", "1",
                                    "--input-tokens", "4", "--output-tokens", "2", "-o", workload})
              .exit_code == 0);
  const auto run = prism::test::run_process(
      {kPrism, "run", "--target", "engine:tiny", "--workload", workload, "--probe", "-q"});
  CHECK(run.exit_code == 1);
  CHECK(run.err.find("--probe") != std::string::npos);
  CHECK(run.err.find("NVTX_INJECTION64_PATH=") != std::string::npos);
  const auto remote =
      prism::test::run_process({kPrism, "run", "--target", "openai:http://10.255.255.1:9/v1",
                                "--model", "m", "--workload", workload, "--probe=auto", "-q"});
  CHECK(remote.exit_code == 1);
  CHECK(remote.err.find("not on this machine") != std::string::npos);
}
