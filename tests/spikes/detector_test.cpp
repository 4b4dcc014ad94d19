// The online detector on a short deterministic scenario: alerts fire on the
// injected faults, stay quiet on legitimate bursts, name the stage to blame
// and carry the flight-recorder window.
#include <algorithm>
#include <stdexcept>

#include <catch2/catch.hpp>

#include "prism/spikes/alerts.h"
#include "prism/spikes/detector.h"
#include "prism/spikes/eval.h"
#include "scenario.h"

using namespace prism::spikes;
using prism::spikes::test::make_scenario;
using prism::spikes::test::ScenarioOptions;

namespace {

DetectorConfig scenario_config() {
  DetectorConfig c;
  c.stages = prism::spikes::test::scenario_stages();
  return c;
}

struct Observed {
  std::vector<uint8_t> flagged;
  std::vector<SpikeAlert> alerts;
};

Observed observe_all(Detector& d, const LabelledRun& run) {
  Observed o;
  for (const IterationRecord& r : run.series.iterations) {
    o.flagged.push_back(d.observe(r).anomalous ? 1 : 0);
    while (d.has_alert()) o.alerts.push_back(d.take_alert());
  }
  d.flush();
  while (d.has_alert()) o.alerts.push_back(d.take_alert());
  return o;
}

std::vector<SpikeAlert> of_phase(const std::vector<SpikeAlert>& all, AlertPhase phase) {
  std::vector<SpikeAlert> out;
  for (const SpikeAlert& a : all)
    if (a.phase == phase) out.push_back(a);
  return out;
}

}  // namespace

TEST_CASE("alerts fire on injected faults and stay quiet on long-prompt bursts and batch swings",
          "[spikes][detector]") {
  const LabelledRun run = make_scenario();
  Detector d(scenario_config());
  const Observed o = observe_all(d, run);

  const auto opened = of_phase(o.alerts, AlertPhase::kOpen);
  REQUIRE(opened.size() == 2);
  // Each alert opens on the first iteration of its fault (the bound is exceeded at once).
  CHECK(opened[0].first_iteration == 2000);
  CHECK(opened[1].first_iteration == 3000);
  // Nothing is flagged outside the fault windows: not the 4x-longer long-prompt
  // bursts, not the quadrupled batches, not the return to normal.
  for (size_t i = 0; i < o.flagged.size(); ++i) {
    if (run.labels[i]) continue;
    INFO("iteration " << i);
    REQUIRE(o.flagged[i] == 0);
  }
  // And every faulty iteration is flagged.
  for (const FaultWindow& w : run.faults)
    for (uint64_t i = w.first; i <= w.last; ++i) CHECK(o.flagged[i] == 1);
}

TEST_CASE("a stage-delay alert blames the delayed stage; a whole-process slowdown blames several",
          "[spikes][detector]") {
  const LabelledRun run = make_scenario();
  Detector d(scenario_config());
  const Observed o = observe_all(d, run);
  const auto opened = of_phase(o.alerts, AlertPhase::kOpen);
  const auto closed = of_phase(o.alerts, AlertPhase::kClosed);
  REQUIRE(opened.size() == 2);
  REQUIRE(closed.size() == 2);

  // Stage delay on "sample": the open alert (one iteration) and the closing one
  // (the whole episode) both blame sample alone, which explains all the excess.
  for (const SpikeAlert* a : {&opened[0], &closed[0]}) {
    REQUIRE(a->blamed == std::vector<std::string>{"sample"});
    REQUIRE(!a->stages.empty());
    CHECK(a->stages.front().stage == "sample");
    CHECK(a->stages.front().share == Approx(1.0).margin(0.1));
  }
  CHECK(closed[0].stages.front().excess_ns == Approx(30 * 1e6).epsilon(0.1));

  // CPU hog: every stage doubled, forward (the largest) first; sample alone cannot explain it.
  REQUIRE(closed[1].blamed.size() >= 1);
  CHECK(closed[1].blamed.front() == "forward");
  const bool sample_alone = closed[1].blamed == std::vector<std::string>{"sample"};
  CHECK_FALSE(sample_alone);
}

TEST_CASE("an episode is one open alert and one closed alert carrying the flight-recorder window",
          "[spikes][detector]") {
  const LabelledRun run = make_scenario();
  DetectorConfig c = scenario_config();
  c.window_before = 16;
  c.window_after = 4;
  Detector d(c);
  const Observed o = observe_all(d, run);
  REQUIRE(o.alerts.size() == 4);
  const SpikeAlert& open = o.alerts[0];
  const SpikeAlert& close = o.alerts[1];
  CHECK(open.phase == AlertPhase::kOpen);
  CHECK(close.phase == AlertPhase::kClosed);
  CHECK(open.alert_id == close.alert_id);
  CHECK(o.alerts[2].alert_id != open.alert_id);

  // Open: raised on the first anomalous iteration, with the iterations before it.
  CHECK(open.trigger.record.index == 2000);
  CHECK(open.trigger.anomalous);
  CHECK(open.trigger.bound_ns < static_cast<double>(open.trigger.record.duration_ns()));
  REQUIRE(open.window.size() == 17);
  CHECK(open.window.front().record.index == 1984);
  CHECK(open.window.back().record.index == 2000);

  // Closed: the whole episode, 16 before and 4 after.
  CHECK(close.first_iteration == 2000);
  CHECK(close.last_iteration == 2029);
  CHECK(close.anomalous_iterations == 30);
  REQUIRE(!close.window.empty());
  CHECK(close.window.front().record.index == 1984);
  CHECK(close.window.back().record.index == 2033);
  CHECK_FALSE(close.window_truncated);
  CHECK(close.stage_names == prism::spikes::test::scenario_stages());
}

TEST_CASE("the alert JSON line names the blamed stage and carries the window",
          "[spikes][detector][alerts]") {
  const LabelledRun run = make_scenario();
  Detector d(scenario_config());
  const Observed o = observe_all(d, run);
  REQUIRE(!o.alerts.empty());
  const SpikeAlert& open = o.alerts[0];
  const uint64_t detected = open.trigger.record.end_ns + 1234;
  const nlohmann::json j = spike_alert_json(open, detected);
  CHECK(j["type"] == "spike");
  CHECK(j["version"] == kAlertFormatVersion);
  CHECK(j["phase"] == "open");
  CHECK(j["iteration"] == 2000);
  CHECK(j["blamed"] == nlohmann::json::array({"sample"}));
  CHECK(j["stages"][0]["stage"] == "sample");
  CHECK(j["latency_ns"] == 1234);
  CHECK(j["detected_ns"] == detected);
  CHECK(j["features"].contains("prefill_tokens"));
  CHECK(j["window"].size() == open.window.size());
  CHECK(j["window"].back()["stage_ns"].contains("sample"));
  CHECK(j["window"].back()["anomalous"] == true);
  // Without the window, and without a detection time, those fields are left out.
  const nlohmann::json lean = spike_alert_json(open, 0, false);
  CHECK_FALSE(lean.contains("window"));
  CHECK_FALSE(lean.contains("latency_ns"));
  // One line: no raw newline in the dump (JSON lines).
  CHECK(j.dump().find('\n') == std::string::npos);
}

TEST_CASE("no verdict is given during warmup, however slow the iteration", "[spikes][detector]") {
  ScenarioOptions so;
  so.iterations = 600;
  so.faults = {{100, 120, "cpu_hog"}};
  const LabelledRun run = make_scenario(so);
  DetectorConfig c = scenario_config();
  c.warmup = 200;
  Detector d(c);
  const Observed o = observe_all(d, run);
  CHECK(o.alerts.empty());
  for (uint8_t f : o.flagged) CHECK(f == 0);
  CHECK(d.observed() == 600);
}

TEST_CASE("a lasting step change becomes the new normal after rebaseline_after iterations",
          "[spikes][detector]") {
  ScenarioOptions so;
  so.iterations = 4000;
  so.faults = {};
  so.long_prompt_bursts = {};
  so.batch_swings = {};
  so.step_change_from = 1000;
  so.step_change_factor = 1.6;
  const LabelledRun run = make_scenario(so);
  DetectorConfig c = scenario_config();
  c.rebaseline_after = 100;
  Detector d(c);
  const Observed o = observe_all(d, run);
  // One episode for the change, then quiet: the model has learnt the new level.
  CHECK(of_phase(o.alerts, AlertPhase::kOpen).size() == 1);
  CHECK(o.alerts.front().first_iteration == 1000);
  for (size_t i = 3000; i < o.flagged.size(); ++i) REQUIRE(o.flagged[i] == 0);
}

TEST_CASE("detector configuration is validated", "[spikes][detector]") {
  DetectorConfig c;
  c.stages = std::vector<std::string>(9, "s");
  CHECK_THROWS_AS(Detector(c), std::invalid_argument);
  c.stages = {"a"};
  c.threshold = 0;
  CHECK_THROWS_AS(Detector(c), std::invalid_argument);
  c.threshold = 8;
  c.ring_capacity = 1;
  CHECK_THROWS_AS(Detector(c), std::invalid_argument);
  c.ring_capacity = 64;
  c.feature_scale[2] = 0;
  CHECK_THROWS_AS(Detector(c), std::invalid_argument);
  c.feature_scale[2] = 1;
  Detector ok(c);
  CHECK_THROWS_AS(ok.set_threshold(-1), std::invalid_argument);
  CHECK_FALSE(ok.has_alert());
  CHECK_THROWS_AS(ok.take_alert(), std::logic_error);
}

TEST_CASE("offline detection over a labelled series scores itself against the fault column",
          "[spikes][detector]") {
  const LabelledRun run = make_scenario();
  MemorySink sink;
  const OfflineDetection det = detect_series(run, DetectorConfig{}, sink, false);
  CHECK(det.iterations == 4000);
  CHECK(det.alerts == 2);
  CHECK(det.anomalous == 70);
  REQUIRE(det.labelled);
  CHECK(det.score.f1 == 1.0);
  CHECK(det.score.false_alarms == 0);
  REQUIRE(sink.alerts.size() == 4);
  CHECK(sink.alerts[0]["phase"] == "open");
  CHECK(sink.alerts[1]["phase"] == "closed");
  CHECK_FALSE(sink.alerts[0].contains("window"));
}

TEST_CASE("without feature columns the detector is a robust running baseline",
          "[spikes][detector]") {
  // A flat workload (no features known) with a fault: still found.
  ScenarioOptions so;
  so.long_prompt_bursts = {};
  so.batch_swings = {};
  LabelledRun run = make_scenario(so);
  for (IterationRecord& r : run.series.iterations) r.features = IterationFeatures{};
  run.series.has_features = false;
  MemorySink sink;
  const OfflineDetection det = detect_series(run, DetectorConfig{}, sink, false);
  CHECK(det.score.windows_detected == 2);
  CHECK(det.score.false_alarms == 0);
}
