// Request-level SLO burn: the share of requests over their TTFT / TPOT SLO in
// a sliding time window, with a minimum count, an alert threshold and a lower
// clear threshold (hysteresis).
#include <stdexcept>

#include <catch2/catch.hpp>

#include "prism/spikes/alerts.h"
#include "prism/spikes/slo_burn.h"

using namespace prism::spikes;

namespace {

constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kS = 1'000'000'000;

SloConfig ttft_config() {
  SloConfig c;
  c.ttft_slo_ns = 100.0 * kMs;
  c.window_ns = 10 * kS;
  c.max_bad_share = 0.10;
  c.clear_share = 0.05;
  c.min_requests = 20;
  return c;
}

RequestTiming req(uint64_t finish_ns, double ttft_ms, double tpot_ms = -1) {
  return RequestTiming{finish_ns, ttft_ms * kMs, tpot_ms < 0 ? -1.0 : tpot_ms * kMs};
}

}  // namespace

TEST_CASE("SLO burn opens when the share over SLO reaches the bound with enough requests",
          "[spikes][slo]") {
  SloBurnMonitor m(ttft_config());
  // Two slow requests first, then good ones, 100 ms apart.
  CHECK(m.add(req(100 * kMs, 250)).empty());
  CHECK(m.add(req(200 * kMs, 180)).empty());
  for (uint64_t i = 3; i <= 19; ++i) CHECK(m.add(req(i * 100 * kMs, 40)).empty());
  // 2 of 19 is over 10 %, but 19 requests are too few for a verdict.
  CHECK(m.ttft().requests == 19);
  CHECK(m.ttft().over_slo == 2);
  CHECK_FALSE(m.ttft_burning());
  const auto alerts = m.add(req(2000 * kMs, 40));
  REQUIRE(alerts.size() == 1);
  const SloAlert& a = alerts[0];
  CHECK(a.metric == "ttft");
  CHECK(a.open);
  CHECK(a.requests == 20);
  CHECK(a.over_slo == 2);
  CHECK(a.share == Approx(0.10));
  CHECK(a.time_ns == 2000 * kMs);
  CHECK(a.slo_ns == Approx(100.0 * kMs));
  CHECK(m.ttft_burning());
  // No second alert while it keeps burning.
  CHECK(m.add(req(2100 * kMs, 40)).empty());

  const auto j = slo_alert_json(a);
  CHECK(j["type"] == "slo_burn");
  CHECK(j["phase"] == "open");
  CHECK(j["metric"] == "ttft");
  CHECK(j["share"] == Approx(0.10));
}

TEST_CASE("SLO burn clears only below the clear share (hysteresis)", "[spikes][slo]") {
  SloBurnMonitor m(ttft_config());
  m.add(req(100 * kMs, 250));
  m.add(req(200 * kMs, 250));
  for (uint64_t i = 3; i <= 20; ++i) m.add(req(i * 100 * kMs, 40));
  REQUIRE(m.ttft_burning());
  // Up to 40 requests, 2 over: 5 %, which is not below the clear share.
  for (uint64_t i = 21; i <= 40; ++i) CHECK(m.add(req(i * 100 * kMs, 40)).empty());
  CHECK(m.ttft().share() == Approx(0.05));
  CHECK(m.ttft_burning());
  const auto cleared = m.add(req(4100 * kMs, 40));
  REQUIRE(cleared.size() == 1);
  CHECK_FALSE(cleared[0].open);
  CHECK(cleared[0].requests == 41);
  CHECK(slo_alert_json(cleared[0])["phase"] == "cleared");
  CHECK_FALSE(m.ttft_burning());
}

TEST_CASE("the window is (now - window, now]: old requests leave it as time advances",
          "[spikes][slo]") {
  SloConfig c = ttft_config();
  c.min_requests = 1;
  c.max_bad_share = 0.5;
  c.clear_share = 0.5;
  SloBurnMonitor m(c);
  const auto opened = m.add(req(1 * kS, 500));
  REQUIRE(opened.size() == 1);
  m.add(req(5 * kS, 10));
  CHECK(m.ttft().requests == 2);
  // At 10.999 s the slow request (finished at 1 s) is still inside (0.999 s, 10.999 s].
  CHECK(m.advance(10 * kS + 999 * kMs).empty());
  CHECK(m.ttft().requests == 2);
  // At exactly 11 s it is at the window's open edge and leaves: 0 of 1 over, cleared.
  const auto cleared = m.advance(11 * kS);
  REQUIRE(cleared.size() == 1);
  CHECK_FALSE(cleared[0].open);
  CHECK(m.ttft().requests == 1);
  CHECK(m.ttft().over_slo == 0);
  // Past everything: an empty window has no verdict, and the alert stays closed.
  CHECK(m.advance(100 * kS).empty());
  CHECK(m.ttft().requests == 0);
  CHECK(m.ttft().share() == 0.0);
}

TEST_CASE("requests finishing out of order are counted; those already outside the window are not",
          "[spikes][slo]") {
  SloConfig c = ttft_config();
  c.min_requests = 1;
  SloBurnMonitor m(c);
  m.add(req(20 * kS, 10));
  m.add(req(15 * kS, 10));  // late report, still inside (10 s, 20 s]
  CHECK(m.ttft().requests == 2);
  m.add(req(9 * kS, 900));  // finished before the window: changes nothing
  CHECK(m.ttft().requests == 2);
  CHECK(m.ttft().over_slo == 0);
  CHECK_FALSE(m.ttft_burning());
  // Eviction follows finish order, not arrival order.
  m.advance(25 * kS);
  CHECK(m.ttft().requests == 1);
}

TEST_CASE("TTFT and TPOT burn independently; single-token requests have no TPOT", "[spikes][slo]") {
  SloConfig c;
  c.ttft_slo_ns = 100.0 * kMs;
  c.tpot_slo_ns = 20.0 * kMs;
  c.window_ns = 60 * kS;
  c.min_requests = 4;
  c.max_bad_share = 0.5;
  c.clear_share = 0.25;
  SloBurnMonitor m(c);
  m.add(req(1 * kS, 10, 50));
  m.add(req(2 * kS, 10, 50));
  m.add(req(3 * kS, 10));  // one token: TPOT not applicable
  CHECK(m.tpot().requests == 2);
  CHECK(m.ttft().requests == 3);
  const auto alerts = m.add(req(4 * kS, 10, 5));
  REQUIRE(alerts.size() == 0);  // TPOT 2 of 3: requests below min
  const auto more = m.add(req(5 * kS, 10, 50));
  REQUIRE(more.size() == 1);
  CHECK(more[0].metric == "tpot");
  CHECK(more[0].over_slo == 3);
  CHECK(more[0].requests == 4);
  CHECK(m.tpot_burning());
  CHECK_FALSE(m.ttft_burning());
}

TEST_CASE("SLO burn configuration is validated", "[spikes][slo]") {
  SloConfig c = ttft_config();
  c.window_ns = 0;
  CHECK_THROWS_AS(SloBurnMonitor(c), std::invalid_argument);
  c = ttft_config();
  c.max_bad_share = 0;
  CHECK_THROWS_AS(SloBurnMonitor(c), std::invalid_argument);
  c.max_bad_share = 1.5;
  CHECK_THROWS_AS(SloBurnMonitor(c), std::invalid_argument);
  c.max_bad_share = 0.1;
  c.clear_share = 0.2;
  CHECK_THROWS_AS(SloBurnMonitor(c), std::invalid_argument);
}
