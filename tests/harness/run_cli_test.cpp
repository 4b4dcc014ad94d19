#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>

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

}  // namespace

TEST_CASE("prism run against the mock prints a summary and writes the result file") {
  prism::harness::MockServerOptions mock;
  mock.ttft_ms = 2;
  mock.itl_ms = 1;
  prism::harness::MockServer server(mock);
  server.start();
  const fs::path dir = temp_dir("run");
  const std::string workload = write_workload(dir, prism::test::open_loop_workload(5, 0.002, 3));
  const std::string out = (dir / "result.json").string();
  const auto r =
      run_process({PRISM_CLI_PATH, "run", "--target", "openai:" + server.url(), "--model",
                   "prism-mock", "--workload", workload, "--slo", "ttft=5s", "-o", out});
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
  const auto r = run_process({PRISM_CLI_PATH, "serve-mock", "--port", "0", "--duration", "0.2",
                              "--record", record, "--ttft", "5"});
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
