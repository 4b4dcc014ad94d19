#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <thread>

#include "fake_target.h"
#include "harness_test_support.h"
#include "prism/harness/load_generator.h"

using prism::harness::LoadOptions;
using prism::harness::Role;
using prism::harness::run_load;
using prism::results::Observation;
using prism::results::RequestStatus;
using prism::test::FakeTarget;

namespace {

// Largest number of requests whose [sent, completed] intervals overlap.
std::size_t max_overlap(const std::vector<Observation>& obs) {
  std::vector<std::pair<double, int>> edges;
  for (const auto& o : obs) {
    edges.emplace_back(o.sent_s, 1);
    edges.emplace_back(o.completed_s, -1);
  }
  std::sort(edges.begin(), edges.end());  // ends sort before starts at equal times
  int now = 0, best = 0;
  for (const auto& [t, d] : edges) best = std::max(best, now += d);
  return static_cast<std::size_t>(best);
}

}  // namespace

TEST_CASE("Open loop sends every request at its scheduled time without waiting for earlier ones") {
  // The server takes 200 ms per request; requests are due every 10 ms.
  FakeTarget target(200, 1);
  const auto w = prism::test::open_loop_workload(5, 0.010, 1);
  const auto result = run_load(w, target, LoadOptions{});
  REQUIRE(result.complete);
  REQUIRE(result.observations.size() == 5);
  const double first_completion = result.observations.front().completed_s;
  for (std::size_t i = 0; i < 5; ++i) {
    const auto& o = result.observations[i];
    REQUIRE(o.scheduled_s == Approx(0.010 * i).margin(1e-6));
    REQUIRE(o.sent_s >= o.scheduled_s);
    REQUIRE(o.sent_s < first_completion);  // not held back by the first request
    REQUIRE(o.status == RequestStatus::kOk);
  }
  REQUIRE(target.max_in_flight() == 5);
}

TEST_CASE("Poisson arrivals at a given rate are reproducible from the seed") {
  const auto w = prism::test::open_loop_workload(6, 0.0, 1);
  LoadOptions options;
  options.rate_per_s = 200;
  options.seed = 42;
  FakeTarget a(1, 1), b(1, 1);
  const auto ra = run_load(w, a, options);
  const auto rb = run_load(w, b, options);
  REQUIRE(ra.observations.size() == 6);
  for (std::size_t i = 0; i < 6; ++i) {
    REQUIRE(ra.observations[i].scheduled_s == rb.observations[i].scheduled_s);
  }
  REQUIRE(ra.observations[0].scheduled_s == 0.0);
  REQUIRE(ra.observations[5].scheduled_s > 0.0);
}

TEST_CASE("A concurrency cap holds and waiting for a slot counts in TTFT and E2E") {
  FakeTarget target(30, 1);
  const auto w = prism::test::open_loop_workload(6, 0.0, 2);  // all due at t = 0
  LoadOptions options;
  options.concurrency = 2;
  const auto result = run_load(w, target, options);
  REQUIRE(result.observations.size() == 6);
  REQUIRE(target.max_in_flight() <= 2);
  REQUIRE(max_overlap(result.observations) <= 2);
  for (const auto& o : result.observations) {
    REQUIRE(o.scheduled_s == 0.0);
    REQUIRE(o.status == RequestStatus::kOk);
    // TTFT is measured from when the request was due, so it contains the wait.
    REQUIRE(o.token_times_s.front() - o.scheduled_s >= o.sent_s - o.scheduled_s);
  }
  // The last pair waited for two earlier pairs to finish.
  const auto& last = result.observations.back();
  REQUIRE(last.sent_s - last.scheduled_s >= 0.05);
}

TEST_CASE("A pure closed loop starts a session when a slot frees, so nothing waits") {
  FakeTarget target(5, 1);
  auto w = prism::test::open_loop_workload(6, 0.0, 1);
  w.arrival.kind = prism::workloads::ArrivalKind::kClosedLoop;
  w.arrival.concurrency = 2;
  const auto result = run_load(w, target, LoadOptions{});
  REQUIRE(result.observations.size() == 6);
  REQUIRE(target.max_in_flight() <= 2);
  for (const auto& o : result.observations) REQUIRE(o.sent_s - o.scheduled_s < 0.05);
}

TEST_CASE("Multi-turn sessions send turn n+1 after turn n plus think time, with the actual reply") {
  FakeTarget target(2, 1);
  const auto w = prism::test::multi_turn_workload(2, 3, 0.02, 2);
  const auto result = run_load(w, target, LoadOptions{});
  REQUIRE(result.observations.size() == 6);
  for (std::uint64_t session : {100u, 101u}) {
    std::vector<Observation> turns;
    for (const auto& o : result.observations) {
      if (o.session == session) turns.push_back(o);
    }
    REQUIRE(turns.size() == 3);
    std::sort(turns.begin(), turns.end(), [](auto& a, auto& b) { return a.turn < b.turn; });
    for (std::size_t t = 1; t < 3; ++t) {
      REQUIRE(turns[t].scheduled_s >= turns[t - 1].completed_s + 0.02 - 1e-6);
      REQUIRE(turns[t].sent_s >= turns[t].scheduled_s);
    }
  }
  // The third turn's conversation: system, user 0, reply 0, user 1, reply 1, user 2,
  // with the replies the target actually produced, not the workload's stand-ins.
  const auto requests = target.received();
  const auto third =
      std::find_if(requests.begin(), requests.end(), [](auto& r) { return r.turn == 2; });
  REQUIRE(third != requests.end());
  const auto& m = third->messages;
  REQUIRE(m.size() == 6);
  REQUIRE(m[0].role == Role::kSystem);
  REQUIRE(m[0].tokens == std::vector<std::int32_t>{83, 89, 83});
  REQUIRE(m[1].role == Role::kUser);
  REQUIRE(m[1].tokens.size() == 2);  // only the new user text, not the stale history
  REQUIRE(m[2].role == Role::kAssistant);
  const auto first_turn = std::find_if(requests.begin(), requests.end(), [&](auto& r) {
    return r.turn == 0 && r.session == third->session;
  });
  REQUIRE(m[2].text ==
          " r" + std::to_string(first_turn->id) + "t0 r" + std::to_string(first_turn->id) + "t1");
  REQUIRE(m[4].role == Role::kAssistant);
  REQUIRE(m[5].role == Role::kUser);
  REQUIRE(m[5].tokens ==
          std::vector<std::int32_t>{67, 48 + static_cast<int>(third->session - 100)});
}

TEST_CASE("Warm-up requests are flagged and do not count toward the request limit") {
  FakeTarget target(1, 1);
  const auto w = prism::test::open_loop_workload(10, 0.0, 1);
  LoadOptions options;
  options.warmup_requests = 2;
  options.max_requests = 3;
  const auto result = run_load(w, target, options);
  REQUIRE(result.complete);
  REQUIRE(result.observations.size() == 5);
  const auto warm = std::count_if(result.observations.begin(), result.observations.end(),
                                  [](const Observation& o) { return o.warmup; });
  REQUIRE(warm == 2);
}

TEST_CASE("A duration limit stops sending and lets in-flight requests finish") {
  FakeTarget target(20, 1);
  const auto w = prism::test::open_loop_workload(1000, 0.005, 1);
  LoadOptions options;
  options.max_duration_s = 0.1;
  const auto result = run_load(w, target, options);
  REQUIRE(result.complete);
  REQUIRE(result.observations.size() > 5);
  REQUIRE(result.observations.size() < 1000);
  for (const auto& o : result.observations) {
    REQUIRE(o.scheduled_s <= 0.1 + 1e-6);
    REQUIRE(o.status == RequestStatus::kOk);
  }
}

TEST_CASE(
    "An interrupt keeps what was measured, cancels what is in flight and marks the run "
    "incomplete") {
  FakeTarget target(10'000, 1);  // nothing finishes on its own
  const auto w = prism::test::open_loop_workload(3, 0.0, 4);
  std::atomic<int> interrupt{0};
  LoadOptions options;
  options.interrupt = &interrupt;
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    interrupt.store(SIGINT);
  });
  const auto result = run_load(w, target, options);
  stopper.join();
  REQUIRE_FALSE(result.complete);
  REQUIRE(result.incomplete_reason == "interrupted by SIGINT");
  REQUIRE(result.observations.size() == 3);
  for (const auto& o : result.observations) REQUIRE(o.status == RequestStatus::kCancelled);
}

TEST_CASE("build_messages keeps a single-turn prompt whole and splits off the system prompt") {
  const auto w = prism::test::multi_turn_workload(1, 1, 0.0, 1);
  const auto m = prism::harness::build_messages(w.sessions[0], 0, {});
  REQUIRE(m.size() == 2);
  REQUIRE(m[0].role == Role::kSystem);
  REQUIRE(m[1].role == Role::kUser);
  REQUIRE(m[1].tokens == std::vector<std::int32_t>{65, 48});
}
