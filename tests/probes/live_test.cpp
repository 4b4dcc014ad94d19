// The live path of prism attach: the agent's "events" verb (each event handed
// over once, in order, only what is new) and LiveBreakdown (completed
// iterations, each once, with the stage times the offline breakdown gives).
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <set>
#include <thread>

#include "../support/process.h"
#include "../support/temp_dir.h"
#include "prism/analysis/breakdown.h"
#include "prism/analysis/live.h"
#include "prism/analysis/session.h"
#include "prism/control/client.h"
#include "raw_writer.h"

extern char** environ;

using namespace prism::analysis;
using prism::agent::prism_raw_event;
using prism::test::RawWriter;

namespace {

constexpr uint32_t kStep = 1, kSchedule = 2, kDecode = 3, kAttention = 4, kSample = 5, kRequest = 6,
                   kMark = 7;

// Events of an engine-shaped thread: n steps of 100 ns (schedule, decode > attention, sample),
// a request range (start/end) open across all of them, and a mark in each step.
std::vector<prism_raw_event> engine_events(uint32_t tid, uint64_t n) {
  std::vector<prism_raw_event> events;
  auto add = [&](uint16_t kind, uint64_t t, uint32_t name = 0, uint64_t arg = 0) {
    prism_raw_event e{};
    e.kind = kind;
    e.t0 = t;
    e.tid = tid;
    e.name = name;
    e.arg = arg;
    events.push_back(e);
  };
  using namespace prism::agent;
  add(PRISM_EV_RANGE_START, 500, kRequest, 77);
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t t = 1000 + i * 200 + (i % 3) * 10;
    add(PRISM_EV_PUSH, t, kStep);
    add(PRISM_EV_PUSH, t + 1, kSchedule);
    add(PRISM_EV_POP, t + 11);
    add(PRISM_EV_PUSH, t + 12, kDecode);
    add(PRISM_EV_PUSH, t + 13, kAttention);
    add(PRISM_EV_POP, t + 40 + i % 7);
    add(PRISM_EV_POP, t + 60 + i % 7);
    add(PRISM_EV_MARK, t + 61, kMark);
    add(PRISM_EV_PUSH, t + 62, kSample);
    add(PRISM_EV_POP, t + 80 + (i == n / 2 ? 50 : 0));
    add(PRISM_EV_POP, t + 90 + (i == n / 2 ? 50 : 0));
  }
  add(PRISM_EV_RANGE_END, 1000 + n * 200, 0, 77);
  return events;
}

const std::vector<std::string>& names() {
  static const std::vector<std::string> n = {"",          "step",   "schedule",  "decode",
                                             "attention", "sample", "request 1", "token"};
  return n;
}

std::string as_raw(const std::vector<prism_raw_event>& events, bool with_strings) {
  RawWriter w;
  if (with_strings)
    for (uint32_t id = 1; id < names().size(); ++id) w.string(id, names()[id]);
  for (const auto& e : events) w.event(e.kind, e.t0, e.tid, e.name, e.arg, e.corr);
  return w.bytes();
}

// The events handed to LiveBreakdown in slices of `slice`, taking after each.
std::vector<Iteration> live_iterations(const std::vector<prism_raw_event>& events, size_t slice,
                                       const StageRules& rules, size_t* most_pending = nullptr,
                                       std::vector<std::string>* stages = nullptr) {
  LiveBreakdown live(rules);
  std::vector<Iteration> out;
  for (size_t from = 0; from < events.size(); from += slice) {
    const size_t to = std::min(events.size(), from + slice);
    const RawBatch batch =
        read_raw_batch(as_raw({events.begin() + static_cast<std::ptrdiff_t>(from),
                               events.begin() + static_cast<std::ptrdiff_t>(to)},
                              from == 0),
                       "batch");
    live.add(batch);
    const Breakdown b = live.take();
    if (stages != nullptr && !b.stages.empty()) *stages = b.stages;
    for (const Iteration& it : b.iterations) out.push_back(it);
    if (most_pending != nullptr) *most_pending = std::max(*most_pending, live.pending_events());
  }
  return out;
}

}  // namespace

TEST_CASE("Live iterations fed in any slicing match the offline breakdown, each handed out once",
          "[probes][live]") {
  const StageRules rules = StageRules::builtin("prism");
  const std::vector<prism_raw_event> events = engine_events(4242, 60);
  const Breakdown offline = analyze(read_raw_trace(as_raw(events, true), "whole"), rules);
  REQUIRE(offline.iterations.size() == 60);
  for (const size_t slice : {1, 3, 7, 11, 64, 100000}) {
    INFO("slice " << slice);
    size_t most_pending = 0;
    std::vector<std::string> stages;
    const std::vector<Iteration> live =
        live_iterations(events, slice, rules, &most_pending, &stages);
    CHECK(stages == offline.stages);
    // Every step, though the request range stays open across all of them.
    REQUIRE(live.size() == offline.iterations.size());
    for (size_t i = 0; i < live.size(); ++i) {
      CHECK(live[i].index == i);
      CHECK(live[i].start_ns == offline.iterations[i].start_ns);
      CHECK(live[i].end_ns == offline.iterations[i].end_ns);
      CHECK(live[i].stage_ns == offline.iterations[i].stage_ns);
      CHECK_FALSE(live[i].open);
    }
    // Only the unfinished tail is kept, not the capture: a step is 11 events (+ the request's).
    if (slice < 1000) CHECK(most_pending <= slice + 24);
  }
}

TEST_CASE("An iteration waits while a stage range that began inside it is open on another thread",
          "[probes][live]") {
  const StageRules rules = StageRules::builtin("prism");
  RawWriter first;
  first.string(kStep, "step");
  first.string(kSample, "sample");
  first.push(1000, 1, kStep);
  first.push(1050, 2, kSample);  // another thread's stage range, inside the step
  first.pop(1100, 1);            // the step ends; "sample" is still running
  LiveBreakdown live(rules);
  live.add(read_raw_batch(first.bytes(), "first"));
  CHECK(live.take().iterations.empty());
  RawWriter second;
  second.pop(1300, 2);
  live.add(read_raw_batch(second.bytes(), "second"));
  const Breakdown b = live.take();
  REQUIRE(b.iterations.size() == 1);
  size_t sample = 0;
  while (b.stages[sample] != "sample") ++sample;
  CHECK(b.iterations[0].stage_ns[sample] == 50);  // its part inside the step, as offline
  CHECK(b.totals[sample].host_ns == 50);
  CHECK(live.take().iterations.empty());  // handed out once
}

TEST_CASE("Without an iteration rule the detected step name is kept from poll to poll",
          "[probes][live]") {
  const StageRules rules = StageRules::parse("prism-rules 1\nrange work* work\n", "test rules");
  LiveBreakdown live(rules);
  RawWriter w;
  w.string(1, "loop");
  w.string(2, "work item");
  for (uint64_t i = 0; i < 5; ++i) {
    w.push(1000 + i * 100, 9, 1);
    w.push(1010 + i * 100, 9, 2);
    w.pop(1050 + i * 100, 9);
    w.pop(1060 + i * 100, 9);
  }
  live.add(read_raw_batch(w.bytes(), "batch"));
  const Breakdown b = live.take();
  CHECK(live.detected_iteration() == "loop");
  REQUIRE(b.iterations.size() == 5);
  CHECK(b.iterations[4].stage_ns[0] == 40);
  // One more step alone: a window with one top-level range still knows it is the step.
  RawWriter more;
  more.push(2000, 9, 1);
  more.pop(2030, 9);
  live.add(read_raw_batch(more.bytes(), "more"));
  const Breakdown next = live.take();
  REQUIRE(next.iterations.size() == 1);
  CHECK(next.iterations[0].index == 5);
  CHECK(next.iterations[0].duration() == 30);
}

TEST_CASE("A live batch that is not the raw format is refused, naming the record",
          "[probes][live]") {
  CHECK_THROWS_WITH(read_raw_batch("short", "poll 3"), Catch::Contains("poll 3: too short"));
  std::string bytes = RawWriter().bytes();
  bytes[0] = 'X';
  CHECK_THROWS_WITH(read_raw_batch(bytes, "poll"), Catch::Contains("magic"));
  RawWriter w;
  w.event(prism::agent::PRISM_EV_PUSH, 10, 1, 1);
  std::string cut = w.bytes();
  cut.resize(cut.size() - 3);
  CHECK_THROWS_WITH(read_raw_batch(cut, "poll"), Catch::Contains("record 0: cut short"));
  RawWriter odd;
  odd.string(0, "zero");
  CHECK_THROWS_WITH(read_raw_batch(odd.bytes(), "poll"), Catch::Contains("string id 0"));
  std::string unknown = RawWriter().bytes();
  const uint32_t head[2] = {99, 0};
  unknown.append(reinterpret_cast<const char*>(head), sizeof(head));
  CHECK_THROWS_WITH(read_raw_batch(unknown, "poll"), Catch::Contains("unknown record type 99"));
}

namespace {

using Program = prism::test::BackgroundProcess;

}  // namespace

TEST_CASE("The agent's events verb hands over every event of the capture once, in order",
          "[probes][live][injection]") {
  prism::test::TempDir dir;
  const std::string sock = dir.path + "/sock", ready = dir.path + "/ready";
  Program program(
      {PRISM_NVTX_STAGE_PROGRAM, "--loop-ms", "20000", "--ready", ready},
      {"NVTX_INJECTION64_PATH=" + std::string(PRISM_PROBE_AGENT), "PRISM_PROBE_DIR=" + sock});
  REQUIRE(prism::test::wait_for_file(ready, 10000));
  setenv("PRISM_PROBE_DIR", sock.c_str(), 1);
  prism::control::ProbeClient client = prism::control::ProbeClient::connect(program.pid);
  unsetenv("PRISM_PROBE_DIR");

  // Dormant: nothing to hand over, and the cursor stays where it was.
  prism::control::EventsCursor cursor;
  auto reply = client.events(cursor);
  CHECK_FALSE(reply.active);
  CHECK(read_raw_batch(reply.bytes, "dormant").events.empty());

  client.start(0, prism::control::kActivityNvtx);
  std::vector<prism_raw_event> received;
  std::vector<uint32_t> string_ids;
  for (int poll = 0; poll < 40; ++poll) {
    reply = client.events(cursor);
    CHECK(reply.active);
    CHECK(reply.lost == 0);
    const RawBatch batch = read_raw_batch(reply.bytes, "poll");
    for (const auto& [id, text] : batch.strings) string_ids.push_back(id);
    received.insert(received.end(), batch.events.begin(), batch.events.end());
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  client.stop();
  do {
    reply = client.events(cursor);
    const RawBatch batch = read_raw_batch(reply.bytes, "after stop");
    received.insert(received.end(), batch.events.begin(), batch.events.end());
  } while (reply.pending > 0);
  CHECK_FALSE(reply.active);

  // The same events as the snapshot of the whole capture, in the same order.
  const std::string snapshot = client.snapshot();
  const Trace whole = read_raw_trace(snapshot, "snapshot");
  const RawBatch snapshot_events = read_raw_batch(snapshot, "snapshot");
  REQUIRE(received.size() == snapshot_events.events.size());
  REQUIRE(received.size() > 100);
  CHECK(std::memcmp(received.data(), snapshot_events.events.data(),
                    received.size() * sizeof(prism_raw_event)) == 0);
  // Each string was sent once.
  std::sort(string_ids.begin(), string_ids.end());
  CHECK(std::adjacent_find(string_ids.begin(), string_ids.end()) == string_ids.end());
  // And the live breakdown of what was received has the snapshot's iterations.
  LiveBreakdown live(StageRules::builtin("prism"));
  RawBatch all;
  all.pid = static_cast<uint32_t>(program.pid);
  all.events = received;
  for (uint32_t id = 1; id < whole.strings.size(); ++id)
    all.strings.emplace_back(id, whole.strings[id]);
  live.add(all);
  const Breakdown offline = analyze(whole, StageRules::builtin("prism"));
  size_t closed = 0;
  for (const Iteration& it : offline.iterations) closed += it.open ? 0 : 1;
  CHECK(live.take().iterations.size() == closed);
}

TEST_CASE("attach_and_capture's live path passes on each iteration once while capturing",
          "[probes][live][injection]") {
  prism::test::TempDir dir;
  const std::string sock = dir.path + "/sock", ready = dir.path + "/ready";
  Program program(
      {PRISM_NVTX_STAGE_PROGRAM, "--loop-ms", "20000", "--ready", ready},
      {"NVTX_INJECTION64_PATH=" + std::string(PRISM_PROBE_AGENT), "PRISM_PROBE_DIR=" + sock});
  REQUIRE(prism::test::wait_for_file(ready, 10000));
  setenv("PRISM_PROBE_DIR", sock.c_str(), 1);
  AttachOptions options;
  options.pid = program.pid;
  options.duration_ms = 600;
  options.interval_ms = 3'600'000;  // no periodic snapshot could have delivered them
  options.gpu = false;
  options.output_dir = dir.path + "/trace";
  std::vector<std::pair<uint64_t, uint64_t>> seen;  // (start, end) as passed on
  int calls = 0;
  bool snapshot_called = false;
  options.on_iterations = [&](const Breakdown& b, double) {
    ++calls;
    for (const Iteration& it : b.iterations) seen.emplace_back(it.start_ns, it.end_ns);
  };
  options.on_snapshot = [&](const Breakdown&, double) { snapshot_called = true; };
  const AttachResult result = attach_and_capture(options);
  unsetenv("PRISM_PROBE_DIR");
  CHECK_FALSE(snapshot_called);
  CHECK(result.live_errors == 0);
  CHECK(calls > 1);  // several polls delivered, not one batch at the end
  CHECK(result.live_iterations == seen.size());
  std::vector<std::pair<uint64_t, uint64_t>> sorted = seen;
  std::sort(sorted.begin(), sorted.end());
  CHECK(std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end());
  // Every iteration passed on live is one of the final trace's, with the same bounds.
  std::set<std::pair<uint64_t, uint64_t>> final_iterations;
  for (const Iteration& it : result.breakdown.iterations)
    final_iterations.emplace(it.start_ns, it.end_ns);
  REQUIRE(seen.size() > 5);
  for (const auto& it : seen) CHECK(final_iterations.count(it) == 1);
}
