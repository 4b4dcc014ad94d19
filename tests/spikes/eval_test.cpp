// The evaluation kit: seeds for training and held-out evaluation are kept
// apart, the threshold is calibrated on training runs only, and the report
// carries precision / recall / F1, alert latency, false alarms and cost. Also
// the alert sinks (JSON lines to a stream or a user command).
#include <csignal>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <catch2/catch.hpp>

#include "prism/spikes/alerts.h"
#include "prism/spikes/eval.h"
#include "prism/spikes/simulator.h"

using namespace prism::spikes;

namespace {

EvalOptions small_options() {
  EvalOptions o;
  o.train_seeds = {1, 2};
  o.eval_seeds = {11, 12};
  o.thresholds = {6, 8, 12};
  return o;
}

SimulatorConfig small_simulator() {
  SimulatorConfig c;
  c.iterations = 4000;
  c.fault_free_prefix = 500;
  c.mean_fault_gap = 500;
  return c;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TEST_CASE("the simulator is deterministic and labels its faults", "[spikes][eval]") {
  SimulatorConfig c = small_simulator();
  c.seed = 9;
  const LabelledRun a = simulate(c), b = simulate(c);
  REQUIRE(a.series.iterations.size() == 4000);
  CHECK(a.series.iterations.back().end_ns == b.series.iterations.back().end_ns);
  CHECK(a.labels == b.labels);
  REQUIRE(!a.faults.empty());
  for (const FaultWindow& w : a.faults) {
    CHECK(w.first >= c.fault_free_prefix);
    CHECK(w.last - w.first + 1 >= c.min_fault_len);
    CHECK(w.last - w.first + 1 <= c.max_fault_len);
  }
  c.faults = false;
  const LabelledRun clean = simulate(c);
  CHECK(clean.faults.empty());
  // Pure variation is the same workload without the faults.
  CHECK(clean.series.iterations[100].features.prefill_tokens ==
        a.series.iterations[100].features.prefill_tokens);
}

TEST_CASE("evaluation calibrates on training seeds and scores held-out seeds only",
          "[spikes][eval]") {
  std::set<std::pair<uint64_t, bool>> asked;
  const RunSource sim = simulator_source(small_simulator());
  const RunSource source = [&](uint64_t seed, bool faults) {
    asked.insert({seed, faults});
    return sim(seed, faults);
  };
  const EvalReport r = evaluate(source, small_options());
  CHECK(asked == std::set<std::pair<uint64_t, bool>>{{1, false},
                                                     {1, true},
                                                     {2, false},
                                                     {2, true},
                                                     {11, true},
                                                     {11, false},
                                                     {12, true},
                                                     {12, false}});
  CHECK(r.source == "simulator");
  REQUIRE(r.calibration.size() == 3);
  for (const auto& c : r.calibration) {
    CHECK(c.contains("threshold"));
    CHECK(c.contains("f1"));
  }
  CHECK((r.threshold == 6 || r.threshold == 8 || r.threshold == 12));
  CHECK(r.train_iterations == 4 * 4000);
  CHECK(r.eval_iterations == 4 * 4000);
  CHECK(r.held_out.windows > 0);
  // The simulator's faults are strong: the detector must find them.
  CHECK(r.held_out.windows_detected == r.held_out.windows);
  CHECK(r.held_out.f1 > 0.9);
  CHECK(r.clean.false_alarms_per_10k <= 2.0);
  CHECK(r.cost_ns_per_iteration > 0);
  const auto j = r.to_json();
  CHECK(j["held_out"]["f1"] == Approx(r.held_out.f1));
  CHECK(j.contains("pure_variation"));
  CHECK(j["per_kind"].size() >= 1);
  const std::string text = r.to_text();
  CHECK(text.find("F1") != std::string::npos);
  CHECK(text.find("alert latency") != std::string::npos);
}

TEST_CASE("evaluation refuses a seed that is both training and held-out", "[spikes][eval]") {
  EvalOptions o = small_options();
  o.eval_seeds = {2, 11};
  CHECK_THROWS_WITH(evaluate(simulator_source(small_simulator()), o),
                    "spikes eval: seed 2 is both a training and an evaluation seed");
  o = small_options();
  o.train_seeds.clear();
  CHECK_THROWS_AS(evaluate(simulator_source(small_simulator()), o), std::invalid_argument);
  o = small_options();
  o.thresholds.clear();
  CHECK_THROWS_AS(evaluate(simulator_source(small_simulator()), o), std::invalid_argument);
}

TEST_CASE("run_detector counts alert latency from the end of the iteration, plus the handover",
          "[spikes][eval]") {
  SimulatorConfig c = small_simulator();
  c.seed = 4;
  const LabelledRun run = simulate(c);
  DetectorConfig dc;
  dc.stages = run.series.stages;
  Detector d(dc);
  // The source says each iteration reached the detector 3 ms after it ended.
  const std::vector<double> handover(run.series.iterations.size(), 3e6);
  const DetectionResult r = run_detector(d, run, handover);
  REQUIRE(!r.episodes.empty());
  for (const AlertEpisode& e : r.episodes) {
    CHECK(e.latency_ns >= 3e6);
    CHECK(e.last >= e.first);
  }
  CHECK(r.flagged.size() == run.series.iterations.size());
}

TEST_CASE("pick_stages keeps the eight costliest stages in their original order",
          "[spikes][eval]") {
  CHECK(pick_stages({5, 1, 3}) == std::vector<size_t>{0, 1, 2});
  const std::vector<double> ten{1, 10, 2, 9, 3, 8, 4, 7, 5, 6};
  CHECK(pick_stages(ten) == std::vector<size_t>{1, 3, 4, 5, 6, 7, 8, 9});
}

TEST_CASE("alerts go to a user command's stdin as JSON lines", "[spikes][alerts]") {
  std::signal(SIGPIPE, SIG_IGN);
  const std::string out =
      (std::filesystem::temp_directory_path() / "prism_spikes_command_sink.txt").string();
  std::filesystem::remove(out);
  {
    CommandSink sink("cat > '" + out + "'");
    sink.emit({{"type", "spike"}, {"n", 1}});
    sink.emit({{"type", "slo_burn"}, {"n", 2}});
    CHECK(sink.close() == 0);
    CHECK(sink.dropped() == 0);
    sink.emit({{"n", 3}});  // after close: dropped, not a crash
    CHECK(sink.dropped() == 1);
  }
  CHECK(slurp(out) == "{\"n\":1,\"type\":\"spike\"}\n{\"n\":2,\"type\":\"slo_burn\"}\n");
  std::filesystem::remove(out);

  CommandSink failing("cat > /dev/null; exit 3");
  failing.emit({{"n", 1}});
  CHECK(failing.close() == 3);
  CHECK_THROWS_AS(CommandSink(""), std::invalid_argument);
}

TEST_CASE("a stream sink writes one flushed line per alert; a fanout reaches every sink",
          "[spikes][alerts]") {
  std::ostringstream s;
  StreamSink stream(s);
  MemorySink memory;
  FanoutSink all;
  all.add(&stream);
  all.add(&memory);
  all.emit({{"a", 1}});
  all.emit({{"b", "x\ny"}});
  CHECK(s.str() == "{\"a\":1}\n{\"b\":\"x\\ny\"}\n");
  CHECK(memory.alerts.size() == 2);
}
