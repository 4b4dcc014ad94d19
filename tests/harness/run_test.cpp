#include <catch2/catch.hpp>

#include <unistd.h>
#include <cstdlib>
#include <filesystem>

#include "harness_test_support.h"
#include "prism/harness/mock_server.h"
#include "prism/harness/runner.h"
#include "prism/results/run_file.h"

namespace fs = std::filesystem;
using prism::results::RequestStatus;

namespace {

fs::path temp_dir(const std::string& name) {
  const fs::path dir =
      fs::temp_directory_path() / ("prism-harness-" + name + "-" + std::to_string(getpid()));
  fs::create_directories(dir);
  return dir;
}

}  // namespace

TEST_CASE("A run against the mock writes a result file that reads back identically") {
  prism::harness::MockServerOptions mock;
  mock.ttft_ms = 3;
  mock.itl_ms = 1;
  prism::harness::MockServer server(mock);
  server.start();
  const fs::path dir = temp_dir("roundtrip");
  prism::harness::RunSpec spec;
  spec.workload = prism::test::open_loop_workload(6, 0.002, 4);
  spec.workload_source = "<test>";
  spec.target.url = server.url();
  spec.target.model = "prism-mock";
  spec.load.warmup_requests = 1;
  spec.metrics.slo = prism::harness::parse_slo("ttft=10s");
  spec.metrics.bootstrap.resamples = 200;
  spec.output_path = (dir / "run.json").string();
  spec.configuration = {{"note", "test"}};
  const auto outcome = prism::harness::execute_run(spec);
  REQUIRE(outcome.run.complete);
  REQUIRE(outcome.metrics.succeeded == 5);
  REQUIRE(outcome.metrics.warmup == 1);
  REQUIRE(outcome.metrics.slo_met == 5);

  const auto back = prism::results::read_run_file(spec.output_path);
  REQUIRE(back.run_id == outcome.run.run_id);
  REQUIRE(back.complete);
  REQUIRE(back.target["kind"] == "openai");
  REQUIRE(back.target["model"] == "prism-mock");
  REQUIRE(back.configuration["note"] == "test");
  REQUIRE(back.configuration["slo"] == "ttft=10000ms");
  REQUIRE(back.workload["requests"] == 6);
  REQUIRE(back.workload["hash"].get<std::string>().rfind("fnv1a64:", 0) == 0);
  REQUIRE(back.environment.is_object());
  REQUIRE(back.metrics["requests"]["succeeded"] == 5);
  REQUIRE(back.metrics["ttft"]["p99"]["value"].is_number());
  REQUIRE(back.observations.size() == 6);
  for (std::size_t i = 0; i < 6; ++i) {
    const auto& a = outcome.run.observations[i];
    const auto& b = back.observations[i];
    REQUIRE(b.request_id == a.request_id);
    REQUIRE(b.warmup == a.warmup);
    REQUIRE(b.scheduled_s == a.scheduled_s);
    REQUIRE(b.sent_s == a.sent_s);
    REQUIRE(b.token_times_s == a.token_times_s);
    REQUIRE(b.completed_s == a.completed_s);
    REQUIRE(b.completion_tokens == 4);
    REQUIRE(b.status == RequestStatus::kOk);
  }
  fs::remove_all(dir);
}

TEST_CASE("An interrupted run still writes what it measured, marked incomplete") {
  prism::harness::MockServerOptions mock;
  mock.ttft_ms = 1;
  mock.itl_ms = 1;
  prism::harness::MockServer server(mock);
  server.start();
  const fs::path dir = temp_dir("interrupted");
  std::atomic<int> interrupt{0};
  prism::harness::RunSpec spec;
  spec.workload = prism::test::open_loop_workload(200, 0.005, 2);
  spec.target.url = server.url();
  spec.target.model = "prism-mock";
  spec.metrics.bootstrap.resamples = 100;
  spec.load.interrupt = &interrupt;
  spec.load.on_progress = [&](const prism::harness::LoadProgress& p) {
    if (p.done >= 3) interrupt.store(15);
  };
  spec.load.progress_interval_s = 0.01;
  spec.output_path = (dir / "partial.json").string();
  const auto outcome = prism::harness::execute_run(spec);
  REQUIRE_FALSE(outcome.run.complete);
  REQUIRE(outcome.run.incomplete_reason == "interrupted by SIGTERM");
  const auto back = prism::results::read_run_file(spec.output_path);
  REQUIRE_FALSE(back.complete);
  REQUIRE(back.observations.size() >= 3);
  REQUIRE(back.observations.size() < 200);
  fs::remove_all(dir);
}
