#include <catch2/catch.hpp>
#include <cstring>
#include <nlohmann/json.hpp>

#include "prism/analysis/breakdown.h"
#include "prism/analysis/export.h"
#include "raw_writer.h"

using namespace prism::analysis;
using prism::agent::PRISM_EV_KERNEL;
using prism::agent::PRISM_EV_RANGE_END;
using prism::agent::PRISM_EV_RANGE_START;
using prism::agent::PRISM_EV_RUNTIME;
using prism::test::RawWriter;

namespace {

// Two iterations on thread 7: step{schedule, prefill{attention, attention(nested)}, sample}
// and step{decode{attention}}, a request range across both, one kernel per iteration.
RawWriter engine_trace() {
  RawWriter w;
  w.string(1, "step");
  w.string(2, "schedule");
  w.string(3, "prefill");
  w.string(4, "attention");
  w.string(5, "sample");
  w.string(6, "decode");
  w.string(7, "request 1");
  w.string(8, "flash_fwd_kernel");
  w.string(9, "cudaLaunchKernel");
  w.thread_name(7, 1);
  w.event(PRISM_EV_RANGE_START, 500, 9, 7, /*id*/ 99);
  w.push(1000, 7, 1);
  w.push(1000, 7, 2);
  w.pop(1100, 7);  // schedule 100
  w.push(1100, 7, 3);
  w.push(1200, 7, 4);
  w.push(1250, 7, 4);  // nested attention: not counted twice
  w.pop(1300, 7);
  w.event(PRISM_EV_RUNTIME, 1310, 7, 9, 0, /*corr*/ 5, /*t1*/ 1320);
  w.pop(1400, 7);  // attention 200
  w.pop(1500, 7);  // prefill 400
  w.push(1500, 7, 5);
  w.pop(1600, 7);  // sample 100
  w.pop(1700, 7);  // step 700
  w.push(2000, 7, 1);
  w.push(2000, 7, 6);
  w.push(2100, 7, 4);
  w.event(PRISM_EV_RUNTIME, 2110, 7, 9, 0, 6, 2120);
  w.pop(2200, 7);  // attention 100
  w.pop(2300, 7);  // decode 300
  w.pop(2400, 7);  // step 400
  w.event(PRISM_EV_RANGE_END, 2500, 9, 0, 99);
  w.event(PRISM_EV_KERNEL, 1350, /*stream*/ 3, 8, 0, 5, /*t1*/ 1450);
  w.event(PRISM_EV_KERNEL, 2150, 3, 8, 0, 6, 2350);
  return w;
}

size_t stage_index(const Breakdown& b, const std::string& stage) {
  for (size_t i = 0; i < b.stages.size(); ++i) {
    if (b.stages[i] == stage) return i;
  }
  FAIL("no stage " << stage);
  return 0;
}

}  // namespace

TEST_CASE("A raw trace becomes nested ranges with parents and thread names", "[probes][analysis]") {
  RawWriter w = engine_trace();
  w.end();
  const Trace trace = read_raw_trace(w.bytes(), "test.praw");
  CHECK(trace.complete);
  CHECK(trace.pid == 4242);
  CHECK(trace.process_name == "fake-engine");
  CHECK(trace.thread_names.at(7) == "step");
  REQUIRE(trace.ranges.size() == 10);
  CHECK(trace.name(trace.ranges[0].name) == "request 1");  // start/end ranges have no parent
  CHECK(trace.ranges[0].parent == -1);
  CHECK(trace.ranges[1].parent == -1);  // step
  CHECK(trace.ranges[2].parent == 1);   // schedule inside step
  CHECK(trace.gpu.size() == 2);
  CHECK(trace.api.size() == 2);
  CHECK(trace.unmatched_ends == 0);
  CHECK(trace.unclosed == 0);
}

TEST_CASE("The breakdown sums stage time per iteration without double counting nested ranges",
          "[probes][analysis]") {
  RawWriter w = engine_trace();
  w.end();
  const Trace trace = read_raw_trace(w.bytes(), "test.praw");
  const Breakdown b = analyze(trace, StageRules::builtin("prism"));
  REQUIRE(b.iterations.size() == 2);
  CHECK_FALSE(b.iteration_detected);
  CHECK(b.iterations[0].duration() == 700);
  CHECK(b.iterations[1].duration() == 400);
  const size_t attention = stage_index(b, "attention");
  CHECK(b.iterations[0].stage_ns[attention] == 200);
  CHECK(b.iterations[1].stage_ns[attention] == 100);
  CHECK(b.totals[attention].host_ns == 300);
  CHECK(b.totals[attention].count == 2);
  CHECK(b.iterations[0].stage_ns[stage_index(b, "schedule")] == 100);
  CHECK(b.iterations[0].stage_ns[stage_index(b, "prefill")] == 400);
  CHECK(b.iterations[1].stage_ns[stage_index(b, "decode")] == 300);
  CHECK(b.totals[stage_index(b, "sample")].host_ns == 100);
  // GPU: kernels launched inside attention ranges are attention's GPU time.
  CHECK(b.has_gpu);
  CHECK(b.kernels == 2);
  CHECK(b.totals[attention].gpu_ns == 300);
  CHECK(b.iterations[0].gpu_busy_ns == 100);
  CHECK(b.iterations[0].gpu_idle_ns == 600);
  CHECK(b.iterations[1].gpu_busy_ns == 200);
  CHECK(b.iterations[0].launch_queue_ns == 40);  // 1350 - 1310
  CHECK(b.launch_queue_ns == 80);
  // The request spans both iterations.
  REQUIRE(b.requests.size() == 1);
  CHECK(b.requests[0].name == "request 1");
  CHECK(b.requests[0].iterations == 2);
  CHECK(b.requests[0].stage_ns[attention] == 300);
}

TEST_CASE("Iterations are detected from the most frequent top-level range when no rule matches",
          "[probes][analysis]") {
  RawWriter w;
  w.string(1, "engine_loop");
  w.string(2, "attention");
  for (uint64_t i = 0; i < 3; ++i) {
    w.push(1000 * i, 1, 1);
    w.push(1000 * i + 10, 1, 2);
    w.pop(1000 * i + 60, 1);
    w.pop(1000 * i + 100, 1);
  }
  w.end();
  const Breakdown b = analyze(read_raw_trace(w.bytes(), "t"), StageRules::builtin("prism"));
  CHECK(b.iteration_detected);
  CHECK(b.iteration_rule == "engine_loop");
  REQUIRE(b.iterations.size() == 3);
  CHECK(b.iterations[2].stage_ns[stage_index(b, "attention")] == 50);
}

TEST_CASE("A raw trace without its end record is read and marked partial", "[probes][analysis]") {
  RawWriter w = engine_trace();
  std::string bytes = w.bytes();
  bytes.resize(bytes.size() - 10);  // cut inside the last record
  const Trace trace = read_raw_trace(bytes, "cut.praw");
  CHECK_FALSE(trace.complete);
  CHECK(trace.partial_reason.find("cut short") != std::string::npos);
  const Trace no_end = read_raw_trace(engine_trace().bytes(), "noend.praw");
  CHECK_FALSE(no_end.complete);
  CHECK(no_end.partial_reason.find("no end record") != std::string::npos);
  const Breakdown b = analyze(no_end, StageRules::builtin("prism"));
  CHECK_FALSE(b.complete);
  CHECK(breakdown_report(b).find("PARTIAL TRACE") != std::string::npos);
}

TEST_CASE("Pops before the capture began and ranges left open are counted, not invented",
          "[probes][analysis]") {
  RawWriter w;
  w.string(1, "attention");
  w.pop(50, 1);  // its push happened while the agent was dormant
  w.push(100, 1, 1);
  w.push(150, 1, 1);
  w.pop(200, 1);
  w.end();
  const Trace trace = read_raw_trace(w.bytes(), "t");
  CHECK(trace.unmatched_ends == 1);
  CHECK(trace.unclosed == 1);
  REQUIRE(trace.ranges.size() == 2);
  CHECK(trace.ranges[0].end_ns == 200);  // closed at the last timestamp seen
  CHECK(trace.ranges[0].open);           // and said to be cut short
  CHECK_FALSE(trace.ranges[1].open);
}

TEST_CASE("An iteration still running when the capture ended is marked open",
          "[probes][analysis]") {
  RawWriter w;
  w.string(1, "engine_loop");
  w.push(0, 1, 1);
  w.pop(100, 1);
  w.push(1000, 1, 1);
  w.push(1010, 1, 1);  // work inside it, finished
  w.pop(1060, 1);
  w.end();
  const Breakdown b = analyze(read_raw_trace(w.bytes(), "t"), StageRules::builtin("prism"));
  REQUIRE(b.iterations.size() == 2);
  CHECK_FALSE(b.iterations[0].open);
  CHECK(b.iterations[1].open);
  CHECK(b.iterations[1].end_ns == 1060);
}

TEST_CASE("Bad raw traces name what is wrong", "[probes][analysis]") {
  CHECK_THROWS_WITH(read_raw_trace("short", "a.praw"), Catch::Contains("too short"));
  RawWriter future(1, 9);
  CHECK_THROWS_WITH(read_raw_trace(future.bytes(), "b.praw"),
                    Catch::Contains("unknown raw trace version 9"));
  std::string bad_magic = RawWriter().bytes();
  bad_magic[0] = 'X';
  CHECK_THROWS_WITH(read_raw_trace(bad_magic, "c.praw"), Catch::Contains("magic"));
  std::string bad_type = RawWriter().bytes();
  const uint32_t head[2] = {77, 0};
  bad_type.append(reinterpret_cast<const char*>(head), 8);
  CHECK_THROWS_WITH(read_raw_trace(bad_type, "d.praw"), Catch::Contains("unknown record type 77"));
  std::string bad_events = RawWriter().bytes();
  const uint32_t events_head[2] = {prism::agent::PRISM_RAW_EVENTS, 12};
  bad_events.append(reinterpret_cast<const char*>(events_head), 8);
  bad_events.append(12, '\0');
  CHECK_THROWS_WITH(read_raw_trace(bad_events, "e.praw"), Catch::Contains("multiple of 40"));
}

TEST_CASE(
    "An exported Chrome trace is valid JSON, keeps every span and reloads to the same breakdown",
    "[probes][analysis][export]") {
  RawWriter w = engine_trace();
  w.info("cupti=the process has not loaded the CUDA driver");
  w.end(3);
  const Trace trace = read_raw_trace(w.bytes(), "t.praw");
  const StageRules rules = StageRules::builtin("prism");
  const std::string json_text = to_chrome_trace(trace, &rules);
  const auto document = nlohmann::json::parse(json_text);
  REQUIRE(document.contains("traceEvents"));
  size_t complete_events = 0;
  for (const auto& e : document["traceEvents"]) {
    REQUIRE(e.contains("ph"));
    if (e["ph"] == "X") {
      ++complete_events;
      CHECK(e["dur"].get<double>() >= 0);
      CHECK(e.contains("pid"));
      CHECK(e.contains("tid"));
    }
  }
  CHECK(complete_events == trace.ranges.size() + trace.gpu.size() + trace.api.size());
  CHECK(document["otherData"]["prism_trace_version"] == 1);

  const Trace reloaded = read_chrome_trace(json_text, "trace.json");
  CHECK(reloaded.dropped_host == 3);
  CHECK(reloaded.ranges.size() == trace.ranges.size());
  CHECK(reloaded.gpu.size() == trace.gpu.size());
  const Breakdown a = analyze(trace, rules);
  const Breakdown b = analyze(reloaded, rules);
  REQUIRE(a.iterations.size() == b.iterations.size());
  for (size_t i = 0; i < a.iterations.size(); ++i) {
    CHECK(a.iterations[i].start_ns == b.iterations[i].start_ns);
    CHECK(a.iterations[i].stage_ns == b.iterations[i].stage_ns);
    CHECK(a.iterations[i].gpu_busy_ns == b.iterations[i].gpu_busy_ns);
  }
  CHECK(a.launch_queue_ns == b.launch_queue_ns);
}

TEST_CASE("Per-iteration CSV and JSON carry one row per iteration and every stage",
          "[probes][export]") {
  RawWriter w = engine_trace();
  w.end();
  const Breakdown b = analyze(read_raw_trace(w.bytes(), "t"), StageRules::builtin("prism"));
  const std::string csv = iterations_csv(b);
  size_t lines = 0;
  for (char c : csv) lines += c == '\n';
  CHECK(lines == 1 + b.iterations.size());
  CHECK(csv.rfind("iteration,start_ns,end_ns,duration_ns,schedule_ns", 0) == 0);
  const auto j = nlohmann::json::parse(breakdown_json(b));
  CHECK(j["iterations"].size() == 2);
  CHECK(j["stages"].size() == b.stages.size());
  CHECK(j["requests"][0]["iterations"] == 2);
}

TEST_CASE("Built-in rule sets exist for prism, vllm, sglang and trtllm and unknown names fail",
          "[probes][rules]") {
  for (const auto& name : {"prism", "vllm", "sglang", "trtllm"}) {
    const StageRules rules = StageRules::builtin(name);
    CHECK(rules.set().count > 5);
    CHECK_FALSE(rules.stage_names().empty());
  }
  CHECK_THROWS_WITH(StageRules::builtin("tgi"), Catch::Contains("unknown built-in rule set 'tgi'"));
  CHECK_THROWS_WITH(StageRules::load("/nonexistent/rules.txt"),
                    Catch::Contains("neither a built-in"));
  CHECK_THROWS_WITH(StageRules::parse("range x\n", "my.rules"),
                    Catch::Contains("my.rules: line 1"));
  const StageRules vllm = StageRules::builtin("vllm");
  const char* kernel = "void vllm::paged_attention_v2_kernel<float>";
  CHECK(vllm.set()
            .rules[prism::control::match_rule(vllm.set(), prism::control::RuleTarget::kKernel,
                                              kernel, strlen(kernel))]
            .stage == std::string("attention"));
}
