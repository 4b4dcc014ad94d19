// Iteration series as CSV: Prism's labelled form round-trips, the probes'
// iterations.csv is read as stages without features, and bad input is
// rejected with an error naming the file, the line and the field.
#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>

#include "prism/spikes/series_io.h"
#include "prism/spikes/simulator.h"

using namespace prism::spikes;

namespace {

std::string error_of(const std::string& csv) {
  try {
    read_series_csv(csv, "trace.csv");
  } catch (const SeriesError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("a simulated labelled series survives a CSV round trip", "[spikes][series]") {
  SimulatorConfig c;
  c.seed = 3;
  c.iterations = 3000;
  c.fault_free_prefix = 200;
  c.mean_fault_gap = 400;
  const LabelledRun run = simulate(c);
  REQUIRE(run.faults.size() >= 2);
  const LabelledRun back = read_series_csv(write_series_csv(run), "sim.csv");
  CHECK(back.series.stages == run.series.stages);
  CHECK(back.series.has_features);
  REQUIRE(back.series.iterations.size() == run.series.iterations.size());
  for (size_t i = 0; i < run.series.iterations.size(); i += 97) {
    const IterationRecord& a = run.series.iterations[i];
    const IterationRecord& b = back.series.iterations[i];
    CHECK(b.index == a.index);
    CHECK(b.start_ns == a.start_ns);
    CHECK(b.end_ns == a.end_ns);
    CHECK(b.features.prefill_tokens == a.features.prefill_tokens);
    CHECK(b.features.context_tokens == a.features.context_tokens);
    CHECK(b.stage_ns[1] == Approx(a.stage_ns[1]).margin(0.5));
  }
  CHECK(back.labels == run.labels);
  // Fault windows come back from the label column (their kinds are not in the CSV).
  REQUIRE(back.faults.size() == run.faults.size());
  for (size_t i = 0; i < run.faults.size(); ++i) {
    CHECK(back.faults[i].first == run.faults[i].first);
    CHECK(back.faults[i].last == run.faults[i].last);
  }
}

TEST_CASE("the probes' iterations.csv reads as stages without features", "[spikes][series]") {
  const std::string csv =
      "iteration,start_ns,end_ns,duration_ns,schedule_ns,sample_ns,schedule_gpu_ns,sample_gpu_ns,"
      "gpu_busy_ns,gpu_idle_ns,launch_queue_ns,kernels\n"
      "0,1000,2000,1000,300,600,0,0,0,0,0,0\n"
      "1,2100,3300,1200,350,700,0,0,0,0,0,0\r\n"
      "\n"
      "2,3400,4400,1000,320,610,0,0,0,0,0,0\n";
  const LabelledRun run = read_series_csv(csv, "iterations.csv");
  CHECK(run.series.stages == std::vector<std::string>{"schedule", "sample"});
  CHECK_FALSE(run.series.has_features);
  REQUIRE(run.series.iterations.size() == 3);
  CHECK(run.series.iterations[1].duration_ns() == 1200);
  CHECK(run.series.iterations[1].stage_ns[1] == 700);
  CHECK(run.faults.empty());
  CHECK(run.labels == std::vector<uint8_t>{0, 0, 0});
}

TEST_CASE("a series with duration_ns and no end_ns or index is accepted", "[spikes][series]") {
  const LabelledRun run =
      read_series_csv("start_ns,duration_ns,prefill_tokens,fault\n10,5,3,0\n20,7,0,1\n", "d.csv");
  REQUIRE(run.series.iterations.size() == 2);
  CHECK(run.series.iterations[1].index == 1);
  CHECK(run.series.iterations[1].end_ns == 27);
  CHECK(run.series.has_features);
  CHECK(run.series.iterations[0].features.prefill_tokens == 3);
  CHECK(run.labels == std::vector<uint8_t>{0, 1});
  REQUIRE(run.faults.size() == 1);
  CHECK(run.faults[0].first == 1);
}

TEST_CASE("bad series input names the file, the line and the field", "[spikes][series]") {
  const std::string header = "iteration,start_ns,end_ns,sample_ns\n";
  CHECK(error_of("") == "trace.csv: empty file (no header)");
  CHECK(error_of("iteration,sample_ns\n1,2\n") ==
        "trace.csv:1: header needs start_ns and end_ns (or duration_ns)");
  CHECK(error_of(header + "0,10,20,5\n1,30,abc,5\n") ==
        "trace.csv:3: column 'end_ns': 'abc' is not a number");
  CHECK(error_of(header + "0,10,20,\n") == "trace.csv:2: column 'sample_ns': '' is not a number");
  CHECK(error_of(header + "0,10,20,5x\n") ==
        "trace.csv:2: column 'sample_ns': '5x' is not a number");
  CHECK(error_of(header + "0,10,20\n") == "trace.csv:2: 3 fields, the header has 4");
  CHECK(error_of(header + "0,30,20,5\n") == "trace.csv:2: end_ns before start_ns");
  CHECK(error_of(header + "0,10,50,5\n1,20,40,5\n") ==
        "trace.csv:3: iterations must be in end order");
  std::string nine = "start_ns,end_ns";
  for (int i = 0; i < 9; ++i) nine += ",s" + std::to_string(i) + "_ns";
  CHECK(error_of(nine + "\n") == "trace.csv:1: 9 stage columns; the detector takes at most 8");
}

TEST_CASE("a series file that cannot be opened is named in the error", "[spikes][series]") {
  const std::string missing =
      (std::filesystem::temp_directory_path() / "prism_spikes_no_such_file.csv").string();
  std::filesystem::remove(missing);
  CHECK_THROWS_WITH(read_series_csv_file(missing), missing + ": cannot open");
  const std::string path =
      (std::filesystem::temp_directory_path() / "prism_spikes_series_io.csv").string();
  {
    std::ofstream f(path);
    f << "start_ns,end_ns,x_ns\n0,1,1\n5,oops,1\n";
  }
  CHECK_THROWS_WITH(read_series_csv_file(path),
                    path + ":3: column 'end_ns': 'oops' is not a number");
  std::filesystem::remove(path);
}
