// Spike detection over the probes' breakdowns (prism analyze --spikes, prism
// attach --spikes): stages picked from the breakdown, iterations fed once
// even when captures overlap, alerts naming the blamed stage.
#include <catch2/catch.hpp>

#include "prism/spikes/trace_spikes.h"

using namespace prism;
using namespace prism::spikes;

namespace {

// A breakdown of n iterations of ~100 us (schedule 20, forward 70, sample 10)
// with a 2 ms stall in "sample" on iterations [stall_first, stall_last].
analysis::Breakdown breakdown(uint64_t first, uint64_t n, uint64_t stall_first,
                              uint64_t stall_last) {
  analysis::Breakdown b;
  b.stages = {"schedule", "forward", "sample"};
  b.totals.resize(3);
  for (size_t s = 0; s < 3; ++s) b.totals[s].stage = b.stages[s];
  for (uint64_t i = first; i < first + n; ++i) {
    analysis::Iteration it;
    it.index = i;
    const uint64_t wobble = (i * 7919) % 5000;  // deterministic +-2.5 us
    it.stage_ns = {20'000 + wobble / 4, 70'000 + wobble / 2, 10'000 + wobble / 4};
    if (i >= stall_first && i <= stall_last) it.stage_ns[2] += 2'000'000;
    it.stage_gpu_ns.assign(3, 0);
    it.start_ns = 1'000'000 + i * 3'000'000;
    it.end_ns = it.start_ns + it.stage_ns[0] + it.stage_ns[1] + it.stage_ns[2];
    for (size_t s = 0; s < 3; ++s) b.totals[s].host_ns += it.stage_ns[s];
    b.iterations.push_back(it);
  }
  return b;
}

}  // namespace

TEST_CASE("a breakdown becomes a feature-less series of its costliest stages", "[spikes][trace]") {
  analysis::Breakdown b = breakdown(0, 10, 100, 100);
  // Nine stages: the detector watches at most eight, the ones with the most time.
  for (int extra = 0; extra < 6; ++extra) {
    b.stages.push_back("tiny" + std::to_string(extra));
    b.totals.push_back(
        analysis::StageTotal{b.stages.back(), 1, static_cast<uint64_t>(extra + 1), 0, 0});
    for (auto& it : b.iterations) it.stage_ns.push_back(0);
  }
  const LabelledRun run = series_from_breakdown(b);
  CHECK_FALSE(run.series.has_features);
  CHECK(run.series.stages == std::vector<std::string>{"schedule", "forward", "sample", "tiny1",
                                                      "tiny2", "tiny3", "tiny4", "tiny5"});
  REQUIRE(run.series.iterations.size() == 10);
  CHECK(run.series.iterations[3].stage_ns[1] == Approx(b.iterations[3].stage_ns[1]));
  CHECK(run.labels.size() == 10);
}

TEST_CASE("the watcher feeds each iteration once across overlapping captures and blames the stage",
          "[spikes][trace]") {
  MemorySink sink;
  SpikeWatcher w(DetectorConfig{}, sink, false);
  // A growing capture: each snapshot repeats what the previous one had.
  CHECK(w.feed(breakdown(0, 400, 1000, 1000)) == 0);
  CHECK(w.feed(breakdown(0, 800, 1000, 1000)) == 0);
  CHECK(w.iterations() == 800);
  CHECK(w.anomalous() == 0);
  const uint64_t now = 5'000'000'000;
  const uint64_t opened = w.feed(breakdown(300, 720, 900, 904), now);  // 300..1019
  CHECK(opened >= 1);
  CHECK(w.iterations() == 1020);
  CHECK(w.anomalous() == 5);
  CHECK(w.episodes() == 1);
  w.finish();
  REQUIRE(sink.alerts.size() == 2);
  CHECK(sink.alerts[0]["phase"] == "open");
  CHECK(sink.alerts[0]["iteration"] == 900);
  CHECK(sink.alerts[0]["blamed"] == nlohmann::json::array({"sample"}));
  CHECK(sink.alerts[0]["detected_ns"] == now);
  CHECK(sink.alerts[1]["phase"] == "closed");
  CHECK(sink.alerts[1]["anomalous_iterations"] == 5);
  CHECK(sink.alerts[1]["last_iteration"] == 904);
}

TEST_CASE("an iteration that shows up after later ones (drained late) is fed once, not dropped",
          "[spikes][trace]") {
  MemorySink sink;
  SpikeWatcher w(DetectorConfig{}, sink, false);
  analysis::Breakdown first = breakdown(0, 400, 1000, 1000);
  first.iterations.erase(first.iterations.begin() + 200);  // its thread's buffer not drained yet
  w.feed(first);
  CHECK(w.iterations() == 399);
  w.feed(breakdown(0, 400, 1000, 1000));  // now it is there, ending before the newest fed
  CHECK(w.iterations() == 400);
  w.feed(breakdown(0, 500, 1000, 1000));
  CHECK(w.iterations() == 500);
}

TEST_CASE("an iteration cut short by a live snapshot is left out until a snapshot has it whole",
          "[spikes][trace]") {
  MemorySink sink;
  SpikeWatcher w(DetectorConfig{}, sink, false);
  analysis::Breakdown first = breakdown(0, 300, 1000, 1000);
  first.iterations.back().open = true;  // still running when the snapshot was taken
  first.iterations.back().end_ns = first.iterations.back().start_ns + 1'000;
  CHECK(series_from_breakdown(first).series.iterations.size() == 299);
  w.feed(first);
  CHECK(w.iterations() == 299);
  w.feed(breakdown(0, 300, 1000, 1000));  // the same iteration, whole: fed once, now
  CHECK(w.iterations() == 300);
  w.feed(breakdown(0, 300, 1000, 1000));
  CHECK(w.iterations() == 300);
}

TEST_CASE("an anomalous iteration fed after later ones keeps the episode's range ordered",
          "[spikes][trace]") {
  MemorySink sink;
  SpikeWatcher w(DetectorConfig{}, sink, false);
  // The snapshot ends inside a stall of iterations 600..603 and lacks 600 (drained late).
  analysis::Breakdown first = breakdown(0, 604, 600, 603);
  first.iterations.erase(first.iterations.begin() + 600);
  w.feed(first);
  w.feed(breakdown(0, 700, 600, 603));  // 600 arrives while the episode is open
  w.finish();
  REQUIRE(sink.alerts.size() == 2);
  CHECK(sink.alerts[0]["phase"] == "open");
  CHECK(sink.alerts[0]["iteration"] == 601);  // what was known when it opened
  const auto& closed = sink.alerts[1];
  CHECK(closed["phase"] == "closed");
  CHECK(closed["first_iteration"] == 600);
  CHECK(closed["last_iteration"] == 603);
  CHECK(closed["anomalous_iterations"] == 4);
}

TEST_CASE("an empty breakdown feeds nothing", "[spikes][trace]") {
  MemorySink sink;
  SpikeWatcher w(DetectorConfig{}, sink);
  CHECK(w.feed(analysis::Breakdown{}) == 0);
  CHECK(w.finish() == 0);
  CHECK(w.iterations() == 0);
  CHECK(sink.alerts.empty());
}
