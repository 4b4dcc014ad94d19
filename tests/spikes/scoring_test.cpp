// Scoring math on hand-made cases: labels from windows, the grace after a
// window, iteration-level precision / recall / F1, event-level detection,
// false alarms per 10,000 clean iterations and alert latency.
#include <stdexcept>

#include <catch2/catch.hpp>

#include "prism/spikes/scoring.h"

using namespace prism::spikes;

namespace {

std::vector<uint8_t> flags(size_t n, std::initializer_list<size_t> on) {
  std::vector<uint8_t> f(n, 0);
  for (size_t i : on) f[i] = 1;
  return f;
}

}  // namespace

TEST_CASE("labels mark every iteration inside a fault window, inclusive, clipped to the run",
          "[spikes][scoring]") {
  const auto l = labels_from_windows({{2, 4, "cpu_hog", ""}, {8, 12, "freq_cap", ""}}, 10);
  CHECK(l == std::vector<uint8_t>{0, 0, 1, 1, 1, 0, 0, 0, 1, 1});
  CHECK(labels_from_windows({}, 3) == std::vector<uint8_t>{0, 0, 0});
  CHECK(labels_from_windows({{1, 1, "x", ""}}, 3) == std::vector<uint8_t>{0, 1, 0});
  CHECK_THROWS_AS(labels_from_windows({{5, 4, "x", ""}}, 10), std::invalid_argument);
}

TEST_CASE("precision, recall and F1 from counts, with empty denominators", "[spikes][scoring]") {
  CHECK(precision_of(3, 1) == Approx(0.75));
  CHECK(recall_of(3, 3) == Approx(0.5));
  CHECK(f1_of(0.75, 0.5) == Approx(0.6));
  CHECK(f1_of(1, 1) == 1.0);
  // Nothing flagged and nothing to find: nothing got wrong.
  CHECK(precision_of(0, 0) == 1.0);
  CHECK(recall_of(0, 0) == 1.0);
  CHECK(f1_of(0, 0) == 0.0);
  CHECK(precision_of(0, 5) == 0.0);
}

TEST_CASE("a hand-made run scores as counted by hand", "[spikes][scoring]") {
  // 20 iterations, one fault in [5, 8]. Tolerance 2: iterations 9 and 10 are
  // neither right nor wrong. Flags at 6, 7, 8 (hits), 9 (grace), 15 (false).
  const std::vector<FaultWindow> windows{{5, 8, "stage_delay", "sample"}};
  const auto labels = labels_from_windows(windows, 20);
  const auto flagged = flags(20, {6, 7, 8, 9, 15});
  const std::vector<AlertEpisode> episodes{{6, 9, 2000}, {15, 15, 5000}};
  const Score s = score(labels, flagged, windows, episodes);

  CHECK(s.iterations == 18);
  CHECK(s.tp == 3);
  CHECK(s.fn == 1);  // iteration 5: the onset was missed
  CHECK(s.fp == 1);
  CHECK(s.tn == 13);
  CHECK(s.precision == Approx(0.75));
  CHECK(s.recall == Approx(0.75));
  CHECK(s.f1 == Approx(0.75));

  CHECK(s.windows == 1);
  CHECK(s.windows_detected == 1);
  CHECK(s.onset_delay_mean == Approx(1.0));
  CHECK(s.onset_delay_max == Approx(1.0));
  CHECK(s.alerts == 2);
  CHECK(s.false_alarms == 1);
  CHECK(s.clean_iterations == 14);
  CHECK(s.false_alarms_per_10k == Approx(1e4 / 14));
  CHECK(s.flagged_clean_per_10k == Approx(1e4 / 14));

  CHECK(s.latency_mean_ns == Approx(3500));
  CHECK(s.latency_max_ns == Approx(5000));
  CHECK(s.latency_p99_ns == Approx(5000));

  const auto j = s.to_json();
  CHECK(j["f1"] == Approx(0.75));
  CHECK(j["false_alarms"] == 1);
  CHECK(j["alert_latency_ns_max"] == Approx(5000));
}

TEST_CASE("an alert that starts within the tolerance after a window still matches it",
          "[spikes][scoring]") {
  const std::vector<FaultWindow> windows{{5, 8, "cpu_hog", ""}};
  const auto labels = labels_from_windows(windows, 20);
  ScoringOptions o;
  o.tolerance = 2;
  const Score late = score(labels, flags(20, {10}), windows, {{10, 10, 0}}, o);
  CHECK(late.windows_detected == 1);
  CHECK(late.false_alarms == 0);
  CHECK(late.onset_delay_max == Approx(5));
  CHECK(late.fp == 0);  // iteration 10 is in the grace
  CHECK(late.recall == 0.0);
  o.tolerance = 0;
  const Score strict = score(labels, flags(20, {10}), windows, {{10, 10, 0}}, o);
  CHECK(strict.windows_detected == 0);
  CHECK(strict.false_alarms == 1);
  CHECK(strict.fp == 1);
  CHECK(strict.f1 == 0.0);
}

TEST_CASE("warmup iterations before scored_from are not scored", "[spikes][scoring]") {
  const std::vector<FaultWindow> windows{{1, 2, "deschedule", ""}, {10, 12, "cpu_hog", ""}};
  const auto labels = labels_from_windows(windows, 20);
  ScoringOptions o;
  o.scored_from = 5;
  const Score s = score(labels, flags(20, {0, 10, 11, 12}), windows, {{0, 0, 0}, {10, 12, 0}}, o);
  CHECK(s.iterations == 15 - 2);  // 15 scored, minus 13 and 14 (grace)
  CHECK(s.fp == 0);               // iteration 0 is warmup
  CHECK(s.fn == 0);               // the first window is warmup too
  CHECK(s.windows == 1);
  CHECK(s.alerts == 1);
  CHECK(s.f1 == 1.0);
}

TEST_CASE("a run with no faults and no alerts is perfect; flags on it are false alarms",
          "[spikes][scoring]") {
  const std::vector<uint8_t> labels(10000, 0);
  const Score quiet = score(labels, std::vector<uint8_t>(10000, 0), {}, {});
  CHECK(quiet.f1 == 1.0);
  CHECK(quiet.false_alarms_per_10k == 0.0);
  CHECK(quiet.clean_iterations == 10000);
  const Score noisy =
      score(labels, flags(10000, {100, 101, 5000}), {}, {{100, 101, 0}, {5000, 5000, 0}});
  CHECK(noisy.false_alarms == 2);
  CHECK(noisy.false_alarms_per_10k == Approx(2.0));
  CHECK(noisy.flagged_clean_per_10k == Approx(3.0));
  CHECK(noisy.precision == 0.0);
}

TEST_CASE("merging scores adds counts and recomputes the ratios", "[spikes][scoring]") {
  const std::vector<FaultWindow> w{{5, 8, "x", ""}};
  const auto labels = labels_from_windows(w, 20);
  const Score a = score(labels, flags(20, {5, 6, 7, 8}), w, {{5, 8, 1000}});
  const Score b = score(labels, flags(20, {15}), w, {{15, 15, 3000}});
  Score m = a;
  m.merge(b);
  CHECK(m.tp == 4);
  CHECK(m.fn == 4);
  CHECK(m.fp == 1);
  CHECK(m.precision == Approx(0.8));
  CHECK(m.recall == Approx(0.5));
  CHECK(m.f1 == Approx(2 * 0.8 * 0.5 / 1.3));
  CHECK(m.windows == 2);
  CHECK(m.windows_detected == 1);
  CHECK(m.false_alarms == 1);
  CHECK(m.latency_mean_ns == Approx(2000));
  CHECK(m.latency_max_ns == Approx(3000));
}

TEST_CASE("scoring rejects labels and verdicts of different lengths", "[spikes][scoring]") {
  CHECK_THROWS_AS(score(std::vector<uint8_t>(5, 0), std::vector<uint8_t>(4, 0), {}, {}),
                  std::invalid_argument);
}

TEST_CASE("iterations slowed by ambient interference are not scored and excuse the alerts on them",
          "[spikes][scoring]") {
  // 30 iterations, a fault in [5, 8]; iterations 20 and 21 were off CPU
  // (another process ran), and the detector flagged them.
  const std::vector<FaultWindow> windows{{5, 8, "cpu_hog", ""}};
  const auto labels = labels_from_windows(windows, 30);
  const auto flagged = flags(30, {5, 6, 7, 8, 20, 21});
  std::vector<uint8_t> ambient(30, 0);
  ambient[20] = ambient[21] = 1;
  ambient[6] = 1;  // inside the fault: stays a fault iteration
  const std::vector<AlertEpisode> episodes{{5, 8, 0}, {20, 21, 0}};
  const Score s = score(labels, flagged, windows, episodes, {}, ambient);
  CHECK(s.tp == 4);
  CHECK(s.fp == 0);
  CHECK(s.f1 == 1.0);
  CHECK(s.ambient_iterations == 4);  // 20, 21 and the tolerance after them (22, 23)
  CHECK(s.iterations == 30 - 2 - 4);
  CHECK(s.ambient_alerts == 1);
  CHECK(s.false_alarms == 0);
  // Counted as wrong instead, the same run has two false flags and one false alarm.
  CHECK(s.raw_fp == 2);
  CHECK(s.raw_false_alarms == 1);
  CHECK(s.raw_clean_iterations == 30 - 4 - 2);
  CHECK(s.raw_precision == Approx(4.0 / 6));
  CHECK(s.raw_false_alarms_per_10k == Approx(1e4 / 24));
  // Without ambient marks the raw and the scored figures agree.
  const Score plain = score(labels, flagged, windows, episodes);
  CHECK(plain.fp == 2);
  CHECK(plain.false_alarms == 1);
  CHECK(plain.raw_false_alarms == 1);
  CHECK(plain.precision == Approx(plain.raw_precision));
  CHECK_THROWS_AS(score(labels, flagged, windows, episodes, {}, std::vector<uint8_t>(3, 0)),
                  std::invalid_argument);
}

TEST_CASE("ambient interference is off-CPU time above both the floor and the share",
          "[spikes][scoring]") {
  ScoringOptions o;  // 20 us and 5 % of the on-CPU time
  const std::vector<double> durations{100e3, 100e3, 1e6, 10e6, 50e3};
  const std::vector<double> off{0, 30e3, 30e3, 30e3, 19e3};
  // 30 us off against 70 us on CPU: yes; against 970 us (3.1 %) or 9.97 ms: no;
  // 19 us is under the floor.
  CHECK(ambient_mask(off, durations, o) == std::vector<uint8_t>{0, 1, 0, 0, 0});
  CHECK(ambient_mask({}, durations, o) == std::vector<uint8_t>(5, 0));
}
