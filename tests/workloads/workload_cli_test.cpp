// `prism workload gen|inspect|validate` driven as a program.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>

#include "../support/process.h"

using prism::test::run_process;

namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("prism_wl_cli_" + name)).string();
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TEST_CASE("workload gen writes a spec that validate accepts and inspect describes",
          "[cli][workloads]") {
  const auto a = temp_path("mt_a.json"), b = temp_path("mt_b.json"), c = temp_path("mt_c.json");
  auto gen = [](const std::string& seed, const std::string& out) {
    return run_process({PRISM_CLI_PATH, "workload", "gen", "multi-turn", "--seed", seed,
                        "--sessions", "5", "--turns", "3", "--user-tokens", "20", "--answer-tokens",
                        "10", "--system-tokens", "8", "-o", out});
  };
  auto r = gen("4", a);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("15 requests in 5 sessions"));
  REQUIRE(gen("4", b).exit_code == 0);
  REQUIRE(gen("5", c).exit_code == 0);
  CHECK(slurp(a) == slurp(b));
  CHECK(slurp(a) != slurp(c));

  auto v = run_process({PRISM_CLI_PATH, "workload", "validate", a, "--check-tokens"});
  CHECK(v.exit_code == 0);
  CHECK_THAT(v.out, Catch::Contains("valid"));
  auto i = run_process({PRISM_CLI_PATH, "workload", "inspect", a});
  CHECK(i.exit_code == 0);
  CHECK_THAT(i.out, Catch::Contains("requests      15 in 5 sessions"));
  CHECK_THAT(i.out, Catch::Contains("reuse ratio"));
  auto j = run_process({PRISM_CLI_PATH, "workload", "inspect", "--json", a});
  CHECK(j.exit_code == 0);
  CHECK_THAT(j.out, Catch::Contains("\"reuse_ratio\""));
  for (const auto& p : {a, b, c}) std::filesystem::remove(p);
}

TEST_CASE("workload gen rejects impossible specs and writes nothing", "[cli][workloads][errors]") {
  const auto out = temp_path("rag_bad.json");
  std::filesystem::remove(out);
  auto r = run_process(
      {PRISM_CLI_PATH, "workload", "gen", "rag", "--chunks", "3", "--top-k", "5", "-o", out});
  CHECK(r.exit_code == 1);
  CHECK_THAT(
      r.err,
      Catch::Contains("top-k: 5 retrieved chunks per request need a corpus of at least 5 chunks"));
  CHECK_FALSE(std::filesystem::exists(out));

  auto t = run_process(
      {PRISM_CLI_PATH, "workload", "gen", "trace", "--file", "/nonexistent.csv", "-o", out});
  CHECK(t.exit_code == 1);
  CHECK_THAT(t.err, Catch::Contains("/nonexistent.csv: cannot open trace file"));
  CHECK_FALSE(std::filesystem::exists(out));
}

TEST_CASE("workload validate names file, line and field of a bad spec",
          "[cli][workloads][errors]") {
  const auto bad = temp_path("bad.json");
  std::ofstream(bad) << "{\n  \"spec_version\": 1,\n  oops\n}\n";
  auto r = run_process({PRISM_CLI_PATH, "workload", "validate", bad});
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Catch::Contains(bad + ":3:"));
  std::ofstream(bad)
      << R"({"spec_version":1,"name":"x","kind":"synthetic","seed":0,"tokenizer":"bytes",
    "arrival":{"kind":"poisson","rate_per_s":1},"sessions":[{"id":0,"requests":[{"id":0,"turn":0,
    "arrival_offset_s":0,"output_tokens":-4,"segments":[]}]}]})";
  auto f = run_process({PRISM_CLI_PATH, "workload", "validate", bad});
  CHECK(f.exit_code == 1);
  CHECK_THAT(f.err, Catch::Contains(
                        bad + ": sessions[0].requests[0].output_tokens: must not be negative"));
  std::filesystem::remove(bad);
}

TEST_CASE("workload commands report usage errors with exit code 2", "[cli][workloads][errors]") {
  CHECK(
      run_process({PRISM_CLI_PATH, "workload", "gen", "no-such-kind", "-o", "x.json"}).exit_code ==
      2);
  CHECK(run_process({PRISM_CLI_PATH, "workload", "gen", "synthetic"}).exit_code ==
        2);  // -o missing
  CHECK(run_process({PRISM_CLI_PATH, "workload", "gen", "trace", "-o", "x.json"}).exit_code ==
        2);  // --file
}
