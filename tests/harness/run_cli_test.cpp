#include <catch2/catch.hpp>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>

#include "harness_test_support.h"
#include "prism/harness/mock_server.h"
#include "prism/results/run_file.h"
#include "prism/workloads/workload_json.h"
#include "support/process.h"

namespace fs = std::filesystem;
using prism::test::run_process;

namespace {

fs::path temp_dir(const std::string& name) {
  const fs::path dir =
      fs::temp_directory_path() / ("prism-cli-" + name + "-" + std::to_string(getpid()));
  fs::create_directories(dir);
  return dir;
}

std::string write_workload(const fs::path& dir, const prism::workloads::Workload& w) {
  const fs::path path = dir / "workload.json";
  std::ofstream(path) << prism::workloads::serialize_workload(w);
  return path.string();
}

// Starts a program with stdout and stderr going to files; returns its pid.
pid_t spawn(const std::vector<std::string>& argv, const fs::path& out, const fs::path& err) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  REQUIRE(rc == 0);
  return pid;
}

std::string slurp(const fs::path& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("prism run stopped by SIGINT writes what it measured, marked incomplete, and exits 130") {
  prism::harness::MockServerOptions mock;
  mock.ttft_ms = 5;
  mock.itl_ms = 20;  // each request streams for about 400 ms
  prism::harness::MockServer server(mock);
  server.start();
  const fs::path dir = temp_dir("sigint");
  const std::string workload = write_workload(dir, prism::test::open_loop_workload(40, 0.05, 20));
  const fs::path out = dir / "partial.json";
  const pid_t pid = spawn({PRISM_CLI_PATH, "run", "--target", "openai:" + server.url(), "--model",
                           "prism-mock", "--workload", workload, "-o", out.string()},
                          dir / "stdout.txt", dir / "stderr.txt");
  // Interrupt once a few requests have finished and others are mid-stream.
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (server.records().size() < 3 && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  REQUIRE(kill(pid, SIGINT) == 0);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  INFO(slurp(dir / "stderr.txt"));
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 130);
  REQUIRE_THAT(slurp(dir / "stderr.txt"), Catch::Contains("interrupted by SIGINT"));
  const auto run = prism::results::read_run_file(out.string());
  REQUIRE_FALSE(run.complete);
  REQUIRE(run.incomplete_reason == "interrupted by SIGINT");
  std::size_t ok = 0, cancelled = 0;
  for (const auto& o : run.observations) {
    ok += o.status == prism::results::RequestStatus::kOk;
    cancelled += o.status == prism::results::RequestStatus::kCancelled;
    if (o.status == prism::results::RequestStatus::kOk) REQUIRE(o.token_times_s.size() == 20);
  }
  REQUIRE(ok >= 3);
  REQUIRE(cancelled >= 1);  // in flight at the interrupt: kept, marked cancelled
  REQUIRE(run.observations.size() < 40);
  fs::remove_all(dir);
}

TEST_CASE("prism run against the mock prints a summary and writes the result file") {
  prism::harness::MockServerOptions mock;
  mock.ttft_ms = 2;
  mock.itl_ms = 1;
  prism::harness::MockServer server(mock);
  server.start();
  const fs::path dir = temp_dir("run");
  const std::string workload = write_workload(dir, prism::test::open_loop_workload(5, 0.002, 3));
  const std::string out = (dir / "result.json").string();
  const auto r = run_process({PRISM_CLI_PATH, "run", "--target", "openai:" + server.url(),
                              "--model", "prism-mock", "--workload", workload, "--slo", "ttft=5s",
                              "-o", out, "--io-cpu", "0"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  REQUIRE_THAT(r.out, Catch::Contains("TTFT") && Catch::Contains("Goodput") &&
                          Catch::Contains("5 ok, 0 failed"));
  REQUIRE_THAT(r.err, Catch::Contains("prism run:"));  // plain progress lines off a terminal
  const auto run = prism::results::read_run_file(out);
  REQUIRE(run.observations.size() == 5);
  REQUIRE(run.complete);
  REQUIRE(run.configuration["model"] == "prism-mock");
  fs::remove_all(dir);
}

TEST_CASE("prism run with a bad SLO or no model for an HTTP target is a usage error") {
  const fs::path dir = temp_dir("usage");
  const std::string workload = write_workload(dir, prism::test::open_loop_workload(1, 0.0, 1));
  auto r = run_process({PRISM_CLI_PATH, "run", "--target", "openai:http://127.0.0.1:1", "--model",
                        "m", "--workload", workload, "--slo", "ttft=fast"});
  REQUIRE(r.exit_code == 2);
  REQUIRE_THAT(r.err, Catch::Contains("ttft=fast"));
  r = run_process(
      {PRISM_CLI_PATH, "run", "--target", "openai:http://127.0.0.1:1", "--workload", workload});
  REQUIRE(r.exit_code == 2);
  REQUIRE_THAT(r.err, Catch::Contains("--model"));
  r = run_process({PRISM_CLI_PATH, "run", "--target", "openai:http://127.0.0.1:1", "--model", "m",
                   "--workload", workload, "--rate", "-3"});
  REQUIRE(r.exit_code == 2);
  fs::remove_all(dir);
}

TEST_CASE("prism run names a missing workload file and exits 1") {
  const auto r = run_process({PRISM_CLI_PATH, "run", "--target", "openai:http://127.0.0.1:1",
                              "--model", "m", "--workload", "/nonexistent/w.json"});
  REQUIRE(r.exit_code == 1);
  REQUIRE_THAT(r.err, Catch::Contains("/nonexistent/w.json"));
}

TEST_CASE("prism serve-mock prints where it listens and records the truth at exit") {
  const fs::path dir = temp_dir("serve");
  const std::string record = (dir / "truth.json").string();
  std::vector<std::string> args{PRISM_CLI_PATH, "serve-mock", "--port", "0", "--duration", "0.2",
                                "--record",     record,       "--ttft", "5", "--cpu",      "0"};
  // cubic needs root unless allowed (net.ipv4.tcp_allowed_congestion_control); reno is allowed.
  const std::string congestion = prism::harness::unpaced_tcp_congestion();
  if (congestion.empty()) {
    WARN("--tcp-congestion not tested: this process may set neither cubic nor reno");
  } else {
    args.insert(args.end(), {"--tcp-congestion", congestion});
  }
  const auto r = run_process(args);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  REQUIRE_THAT(r.out, Catch::Contains("listening on http://127.0.0.1:"));
  std::ifstream in(record);
  const auto doc = nlohmann::json::parse(in);
  REQUIRE(doc["records"].is_array());
  fs::remove_all(dir);
}

TEST_CASE("prism serve-mock refuses a rate outside [0, 1]") {
  const auto r = run_process({PRISM_CLI_PATH, "serve-mock", "--cut-rate", "2"});
  REQUIRE(r.exit_code == 2);
}

TEST_CASE("prism serve-mock names a TCP congestion control the system lacks and exits 1") {
  const auto r = run_process({PRISM_CLI_PATH, "serve-mock", "--port", "0", "--duration", "0.2",
                              "--tcp-congestion", "no-such-cc"});
  REQUIRE(r.exit_code == 1);
  REQUIRE_THAT(r.err, Catch::Contains("no-such-cc"));
}

TEST_CASE("prism run with user-space stamps measures the same run") {
  prism::harness::MockServerOptions mock;
  mock.ttft_ms = 2;
  mock.itl_ms = 1;
  prism::harness::MockServer server(mock);
  server.start();
  const fs::path dir = temp_dir("stamps");
  const std::string workload = write_workload(dir, prism::test::open_loop_workload(3, 0.0, 2));
  const auto r =
      run_process({PRISM_CLI_PATH, "run", "--target", "openai:" + server.url(), "--model",
                   "prism-mock", "--workload", workload, "--user-space-stamps"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  REQUIRE_THAT(r.out, Catch::Contains("3 ok, 0 failed"));
  fs::remove_all(dir);
}

TEST_CASE("prism run speaks through either HTTP client, records which, and refuses a bad choice") {
  prism::harness::MockServerOptions mock;
  mock.ttft_ms = 2;
  mock.itl_ms = 1;
  prism::harness::MockServer server(mock);
  server.start();
  const fs::path dir = temp_dir("client");
  const std::string workload = write_workload(dir, prism::test::open_loop_workload(3, 0.0, 2));
  for (const auto& [choice, recorded] : std::vector<std::pair<std::string, std::string>>{
           {"auto", "prism"}, {"prism", "prism"}, {"curl", "libcurl"}}) {
    INFO(choice);
    const std::string out = (dir / (choice + ".json")).string();
    const auto r =
        run_process({PRISM_CLI_PATH, "run", "--target", "openai:" + server.url(), "--model",
                     "prism-mock", "--workload", workload, "--http-client", choice, "-o", out});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    REQUIRE_THAT(r.out, Catch::Contains("3 ok, 0 failed"));
    const auto run = prism::results::read_run_file(out);
    REQUIRE(run.target["http_client"] == recorded);
  }
  const auto tls = run_process({PRISM_CLI_PATH, "run", "--target", "openai:https://127.0.0.1:1",
                                "--model", "m", "--workload", workload, "--http-client", "prism"});
  REQUIRE(tls.exit_code == 1);
  REQUIRE_THAT(tls.err, Catch::Contains("plain http://"));
  const auto bad = run_process({PRISM_CLI_PATH, "run", "--target", "openai:" + server.url(),
                                "--model", "m", "--workload", workload, "--http-client", "h3"});
  REQUIRE(bad.exit_code == 2);
  fs::remove_all(dir);
}
