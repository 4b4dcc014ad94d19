// prism spikes simulate | detect | eval and prism analyze --spikes driven as a
// program: alerts as JSON lines, piped to --alert-command, errors that name
// file, line and field.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "../support/process.h"

using prism::test::run_process;

namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("prism_spikes_cli_" + name)).string();
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<nlohmann::json> json_lines(const std::string& text) {
  std::vector<nlohmann::json> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

}  // namespace

TEST_CASE("spikes simulate then detect pipes alerts to the alert command and scores the labels",
          "[spikes][cli]") {
  const auto csv = temp_path("sim.csv"), alerts = temp_path("alerts.jsonl");
  std::filesystem::remove(alerts);
  auto r = run_process(
      {PRISM_CLI_PATH, "spikes", "simulate", "--seed", "3", "--iterations", "20000", "-o", csv});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  r = run_process({PRISM_CLI_PATH, "spikes", "detect", csv, "-q", "--no-window", "--alert-command",
                   "cat > '" + alerts + "'"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.empty());  // -q: the alerts went to the command only
  CHECK_THAT(r.err, Catch::Contains("against the fault column"));
  const auto lines = json_lines(slurp(alerts));
  REQUIRE(lines.size() >= 2);
  for (const auto& a : lines) {
    CHECK(a["type"] == "spike");
    CHECK_FALSE(a.contains("window"));
    CHECK(!a["blamed"].empty());
  }
  std::filesystem::remove(csv);
  std::filesystem::remove(alerts);
}

TEST_CASE("spikes detect names the file, line and column of a bad series", "[spikes][cli]") {
  const auto csv = temp_path("bad.csv");
  {
    std::ofstream f(csv);
    f << "iteration,start_ns,end_ns,sample_ns\n0,10,20,5\n1,30,4o,5\n";
  }
  const auto r = run_process({PRISM_CLI_PATH, "spikes", "detect", csv});
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Catch::Contains(csv + ":3: column 'end_ns': '4o' is not a number"));
  std::filesystem::remove(csv);
}

TEST_CASE("spikes eval refuses overlapping seeds and bad seed lists", "[spikes][cli]") {
  auto r = run_process({PRISM_CLI_PATH, "spikes", "eval", "--train-seeds", "1,2", "--eval-seeds",
                        "2,3", "--iterations", "500"});
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Catch::Contains("seed 2 is both a training and an evaluation seed"));
  r = run_process({PRISM_CLI_PATH, "spikes", "eval", "--train-seeds", "1,x"});
  CHECK(r.exit_code == 2);
  // Engine options: an unknown fault kind, a negative floor, a token budget out of range.
  r = run_process(
      {PRISM_CLI_PATH, "spikes", "eval", "--source", "engine", "--faults", "cpu_hog,gremlins"});
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("gremlins"));
  r = run_process({PRISM_CLI_PATH, "spikes", "eval", "--min-excess-us", "-3"});
  CHECK(r.exit_code == 2);
  r = run_process({PRISM_CLI_PATH, "spikes", "eval", "--source", "engine", "--token-budget", "0"});
  CHECK(r.exit_code == 2);
  r = run_process({PRISM_CLI_PATH, "spikes", "eval", "--source", "engine", "--fault-gap", "0"});
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("--fault-gap"));
  r = run_process({PRISM_CLI_PATH, "spikes", "eval", "--source", "engine", "--fault-prefix", "-5"});
  CHECK(r.exit_code == 2);
}

TEST_CASE("spikes eval on the engine reports what each fault did and the ambient interference",
          "[spikes][cli]") {
  const std::string dir = temp_path("engine_dump");
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const auto r = run_process({PRISM_CLI_PATH,
                              "spikes",
                              "eval",
                              "--source",
                              "engine",
                              "--faults",
                              "stage_delay",
                              "--iterations",
                              "500",
                              "--train-seeds",
                              "1",
                              "--eval-seeds",
                              "2",
                              "--fault-prefix",
                              "100",
                              "--fault-gap",
                              "150",
                              "--dump",
                              dir,
                              "--json"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const auto report = nlohmann::json::parse(r.out);
  CHECK(report.contains("ambient"));
  CHECK(report["ambient"]["iterations"].get<uint64_t>() > 0);
  CHECK(report.contains("stage_threshold"));
  for (const auto& [kind, k] : report["per_kind"].items()) {
    CHECK(kind == "stage_delay");
    CHECK(k["tp"].get<uint64_t>() + k["fn"].get<uint64_t>() <=
          k["window_iterations"].get<uint64_t>());
  }
  // The dump has the injected windows beside the series: with a 100-iteration warm prefix and
  // a fault every 150 iterations or so, a 500-iteration run has some, none before the prefix
  // (the engine source's own test covers the labels).
  const auto windows = nlohmann::json::parse(slurp(dir + "/engine-seed2-faults-windows.json"));
  REQUIRE(windows.is_array());
  CHECK_FALSE(windows.empty());
  for (const auto& w : windows) {
    CHECK(w["kind"] == "stage_delay");
    CHECK(w["stage"] == "detokenize");
    CHECK(w["first"].get<uint64_t>() >= 100);
    CHECK(w["last"].get<uint64_t>() >= w["first"].get<uint64_t>());
  }
  CHECK(std::filesystem::exists(dir + "/engine-seed2-clean.csv"));
  std::filesystem::remove_all(dir);
}

TEST_CASE("spikes eval on the simulator prints precision, recall, F1 and latency",
          "[spikes][cli]") {
  const auto report = temp_path("report.json");
  const auto r = run_process({PRISM_CLI_PATH, "spikes", "eval", "--train-seeds", "1",
                              "--eval-seeds", "7", "--iterations", "3000", "-o", report});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("F1"));
  CHECK_THAT(r.out, Catch::Contains("alert latency"));
  const auto j = nlohmann::json::parse(slurp(report));
  CHECK(j["source"] == "simulator");
  CHECK(j["held_out"].contains("f1"));
  CHECK(j["pure_variation"].contains("false_alarms_per_10k"));
  std::filesystem::remove(report);
}

TEST_CASE("analyze --spikes finds a stall in a trace and blames its stage", "[spikes][cli]") {
  // A Chrome trace of 600 engine steps (~100 us) with a 3 ms stall in
  // "sample" on steps 400-402.
  const auto trace = temp_path("trace.json"), piped = temp_path("piped.jsonl");
  {
    std::ofstream f(trace);
    f << "{\"traceEvents\":[";
    double ts = 1000;
    for (int i = 0; i < 600; ++i) {
      const double sched = 20 + (i * 7919 % 50) / 20.0, fwd = 70 + (i * 104729 % 50) / 20.0;
      const double sample = 10 + (i >= 400 && i <= 402 ? 3000 : 0);
      const double total = sched + fwd + sample;
      if (i) f << ",";
      f << "{\"ph\":\"X\",\"name\":\"step\",\"pid\":1,\"tid\":1,\"ts\":" << ts
        << ",\"dur\":" << total << "},";
      f << "{\"ph\":\"X\",\"name\":\"schedule\",\"pid\":1,\"tid\":1,\"ts\":" << ts
        << ",\"dur\":" << sched << "},";
      f << "{\"ph\":\"X\",\"name\":\"decode\",\"pid\":1,\"tid\":1,\"ts\":" << ts + sched
        << ",\"dur\":" << fwd << "},";
      f << "{\"ph\":\"X\",\"name\":\"sample\",\"pid\":1,\"tid\":1,\"ts\":" << ts + sched + fwd
        << ",\"dur\":" << sample << "}";
      ts += total + 30;
    }
    f << "]}";
  }
  const auto r = run_process(
      {PRISM_CLI_PATH, "analyze", trace, "--spikes", "--alert-command", "cat > '" + piped + "'"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const auto lines = json_lines(r.out);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0]["phase"] == "open");
  CHECK(lines[0]["blamed"] == nlohmann::json::array({"sample"}));
  CHECK(lines[1]["phase"] == "closed");
  CHECK(lines[1]["anomalous_iterations"] == 3);
  CHECK(json_lines(slurp(piped)).size() == 2);
  CHECK_THAT(r.err, Catch::Contains("600 iterations, 3 anomalous, 1 spike episodes"));
  std::filesystem::remove(trace);
  std::filesystem::remove(piped);
}
