#include <sqlite3.h>

#include <algorithm>
#include <cmath>
#include <fstream>

#include <catch2/catch.hpp>

#include "prism/results/store.h"
#include "synthetic.h"
#include "temp_dir.h"

using namespace prism::results;
using prism::test::synthetic_run;
using prism::test::SyntheticOptions;
using prism::test::TempDir;

namespace {

void require_same_observation(const Observation& a, const Observation& b) {
  CHECK(a.request_id == b.request_id);
  CHECK(a.session == b.session);
  CHECK(a.turn == b.turn);
  CHECK(a.warmup == b.warmup);
  CHECK(a.scheduled_s == b.scheduled_s);
  CHECK(a.sent_s == b.sent_s);
  CHECK(a.token_times_s == b.token_times_s);
  CHECK(a.completed_s == b.completed_s);
  CHECK(a.prompt_tokens == b.prompt_tokens);
  CHECK(a.completion_tokens == b.completion_tokens);
  CHECK(a.cached_tokens == b.cached_tokens);
  CHECK(a.status == b.status);
  CHECK(a.error == b.error);
  CHECK(a.http_status == b.http_status);
  CHECK(a.error_message == b.error_message);
}

Run sample_run() {
  SyntheticOptions o;
  o.requests = 40;
  Run run = synthetic_run(o);
  run.observations[0].warmup = true;
  run.observations[3].status = RequestStatus::kError;
  run.observations[3].error = ErrorClass::kHttpStatus;
  run.observations[3].http_status = 503;
  run.observations[3].error_message = "Service Unavailable";
  run.observations[3].token_times_s.clear();
  run.observations[5].cached_tokens = 128;
  run.complete = false;
  run.incomplete_reason = "interrupted (SIGINT)";
  run.metrics = {{"ttft", {{"p50_s", 0.2}}}};
  run.stages = {{"totals", nlohmann::json::array({{{"stage", "prefill"}, {"host_ns", 5000000}},
                                                  {{"stage", "decode"}, {"host_ns", 9000000}}})}};
  return run;
}

}  // namespace

TEST_CASE("a run stored and read back is identical, observations included") {
  TempDir dir;
  const Run run = sample_run();
  Store store(dir.file("prism.db"));
  CHECK(store.schema_version() == Store::kSchemaVersion);
  store.put_run(run);
  const Run back = store.get_run(run.run_id);
  CHECK(back.run_id == run.run_id);
  CHECK(back.started_at == run.started_at);
  CHECK(back.finished_at == run.finished_at);
  CHECK(back.complete == run.complete);
  CHECK(back.incomplete_reason == run.incomplete_reason);
  CHECK(back.prism_version == run.prism_version);
  CHECK(back.prism_git_sha == run.prism_git_sha);
  CHECK(back.environment == run.environment);
  CHECK(back.configuration == run.configuration);
  CHECK(back.target == run.target);
  CHECK(back.workload == run.workload);
  CHECK(back.metrics == run.metrics);
  CHECK(back.stages == run.stages);
  REQUIRE(back.observations.size() == run.observations.size());
  for (std::size_t i = 0; i < run.observations.size(); ++i)
    require_same_observation(back.observations[i], run.observations[i]);
  // And through the JSON run file form: byte-identical documents.
  CHECK(run_to_json(back) == run_to_json(run));
}

TEST_CASE("the store lists, replaces and removes runs and deduplicates environments") {
  TempDir dir;
  Store store(dir.file("prism.db"));
  SyntheticOptions o;
  o.requests = 10;
  Run a = synthetic_run(o);
  o.seed = 2;
  o.target = "engine-b";
  Run b = synthetic_run(o);
  b.started_at = "2026-11-24T16:00:00.000Z";
  store.put_run(b);
  store.put_run(a);
  auto runs = store.list_runs();
  REQUIRE(runs.size() == 2);
  CHECK(runs[0].run_id == a.run_id);  // oldest first
  CHECK(runs[0].target == "engine-a");
  CHECK(runs[0].workload == "chat");
  CHECK(runs[0].requests == 10);
  a.observations.resize(5);
  store.put_run(a);  // replace
  CHECK(store.list_runs().size() == 2);
  CHECK(store.get_run(a.run_id).observations.size() == 5);
  store.remove_run(b.run_id);
  CHECK_FALSE(store.has_run(b.run_id));
  CHECK_THROWS_AS(store.get_run(b.run_id), StoreError);
  CHECK_THROWS_AS(store.remove_run("nope"), StoreError);
}

TEST_CASE("samples loaded from the store equal those computed from the observations") {
  TempDir dir;
  Store store(dir.file("prism.db"));
  const Run run = sample_run();
  store.put_run(run);
  const RunSamples expected = collect_samples(run.observations);
  const RunSamples loaded = store.load_samples(run.run_id);
  CHECK(loaded.ttft_s == expected.ttft_s);
  CHECK(loaded.tpot_s == expected.tpot_s);
  CHECK(loaded.e2e_s == expected.e2e_s);
  CHECK(loaded.itl_s == expected.itl_s);
  CHECK(loaded.requests == expected.requests);
  CHECK(loaded.failed == 1);
  CHECK(loaded.output_tokens == expected.output_tokens);
  CHECK(loaded.duration_s() == expected.duration_s());
  CHECK(store.load_samples(run.run_id, false).itl_s.empty());
}

TEST_CASE("the store precomputes the standard metrics with confidence intervals") {
  TempDir dir;
  Store store(dir.file("prism.db"));
  const Run run = sample_run();
  store.put_run(run);
  const auto metrics = store.load_metrics(run.run_id);
  for (const auto& name : standard_metric_names()) CHECK(metrics.count(name) == 1);
  const RunSamples samples = collect_samples(run.observations);
  const auto expected = compute_metric(samples, parse_metric("ttft.p50"), {});
  REQUIRE(expected.has_ci());
  CHECK(metrics.at("ttft.p50").estimate.value == expected.value);
  CHECK(metrics.at("ttft.p50").estimate.ci_low == expected.ci_low);
  CHECK(metrics.at("ttft.p99").unit == "s");
  CHECK(metrics.at("goodput").estimate.n > 0);  // the synthetic run declares SLOs
}

TEST_CASE("baselines are named runs in the store") {
  TempDir dir;
  Store store(dir.file("prism.db"));
  const Run run = sample_run();
  store.put_run(run);
  CHECK_FALSE(store.baseline("main"));
  store.set_baseline("main", run.run_id);
  CHECK(store.baseline("main") == run.run_id);
  CHECK_THROWS_WITH(store.set_baseline("main", "missing-run"),
                    Catch::Contains("no run 'missing-run'"));
}

TEST_CASE("a version 1 store is migrated in place and its per-request samples backfilled") {
  TempDir dir;
  const std::string path = dir.file("old.db");
  create_store_at_version(path, 1);
  {
    // What a version-1 Prism wrote: no derived sample columns, no baselines.
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    const std::vector<double> times{1.5, 1.6, 1.8};
    const std::string blob = pack_times(times);
    const char* sql =
        "INSERT INTO environments(id, hash, json) VALUES (1, 'h', '{}');"
        "INSERT INTO runs(id, run_id, started_at, finished_at, complete, incomplete_reason, "
        "prism_version, prism_git_sha, environment_id, configuration, target, workload, "
        "target_name, workload_name, metrics_json, request_count) VALUES (1, 'old-run', "
        "'2026-01-01T00:00:00.000Z', '2026-01-01T00:01:00.000Z', 1, '', '0.0.9', 'deadbeef', 1, "
        "'{}', '{\"name\":\"e\"}', '{\"name\":\"w\"}', 'e', 'w', 'null', 1);";
    REQUIRE(sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_stmt* stmt = nullptr;
    REQUIRE(sqlite3_prepare_v2(db,
                               "INSERT INTO observations VALUES (1, 0, 7, 0, 0, 0, 1.0, 1.01, "
                               "1.9, 100, 3, 0, 'ok', 'none', 0, '', ?)",
                               -1, &stmt, nullptr) == SQLITE_OK);
    sqlite3_bind_blob(stmt, 1, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
    REQUIRE(sqlite3_step(stmt) == SQLITE_DONE);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
  }
  Store store(path);
  CHECK(store.schema_version() == Store::kSchemaVersion);
  const RunSamples s = store.load_samples("old-run");
  REQUIRE(s.ttft_s.size() == 1);
  CHECK(s.ttft_s[0] == Approx(0.5));
  CHECK(s.tpot_s[0] == Approx(0.15));
  CHECK(s.e2e_s[0] == Approx(0.9));
  const Run run = store.get_run("old-run");
  CHECK(run.observations.at(0).request_id == 7);
  store.set_baseline("main", "old-run");  // the version-2 table exists
  CHECK(store.baseline("main") == "old-run");
  // Version 3: the sorted columns were backfilled too.
  const auto itl = store.sorted_samples("old-run", Quantity::kItl);
  REQUIRE(itl.size() == 2);
  CHECK(itl[0] == Approx(0.1));
  CHECK(itl[1] == Approx(0.2));
}

TEST_CASE("a store from a newer Prism is refused, naming the file and the version field") {
  TempDir dir;
  const std::string path = dir.file("future.db");
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "PRAGMA user_version = 99", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  try {
    Store store(path);
    FAIL("expected StoreError");
  } catch (const StoreError& e) {
    const std::string what = e.what();
    CHECK(what.find(path) != std::string::npos);
    CHECK(what.find("user_version") != std::string::npos);
    CHECK(what.find("99") != std::string::npos);
  }
}

TEST_CASE("a corrupted store file is refused with an error naming the file") {
  TempDir dir;
  const std::string path = dir.file("corrupt.db");
  {
    std::ofstream out(path, std::ios::binary);
    out << std::string(4096, 'x');
  }
  try {
    Store store(path);
    FAIL("expected StoreError");
  } catch (const StoreError& e) {
    const std::string what = e.what();
    CHECK(what.find(path) != std::string::npos);
    CHECK(what.find("not a Prism result store") != std::string::npos);
  }
}

TEST_CASE("token times survive packing exactly") {
  const std::vector<double> times{0.0, 1e-9, 3.141592653589793, 1e12};
  const std::string packed = pack_times(times);
  CHECK(packed.size() == 32);
  CHECK(unpack_times(packed.data(), packed.size()) == times);
  CHECK(unpack_times(nullptr, 0).empty());
}

namespace {

// Turns a current store into what a version-2 Prism left: no sorted columns,
// percentile intervals from the bootstrap (here: marked with sentinel bounds).
void downgrade_to_version_2(const std::string& path) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  const char* sql =
      "DROP TABLE sorted_samples; DROP TABLE sample_summaries;"
      "UPDATE metrics SET ci_low = -1, ci_high = -1 WHERE name = 'ttft.p50';"
      "PRAGMA user_version = 2;";
  REQUIRE(sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
}

}  // namespace

TEST_CASE("a version 2 store gains sorted sample columns and order-statistic intervals") {
  TempDir dir;
  const std::string path = dir.file("v2.db");
  const Run run = sample_run();
  {
    Store store(path);
    store.put_run(run);
  }
  downgrade_to_version_2(path);
  Store store(path);
  CHECK(store.schema_version() == 3);
  RunSamples expected = collect_samples(run.observations);
  sort_samples(expected);
  CHECK(store.sorted_samples(run.run_id, Quantity::kTtft) == expected.ttft_s);
  CHECK(store.sorted_samples(run.run_id, Quantity::kTpot) == expected.tpot_s);
  CHECK(store.sorted_samples(run.run_id, Quantity::kItl) == expected.itl_s);
  CHECK(store.sorted_samples(run.run_id, Quantity::kE2e) == expected.e2e_s);
  // The stored bootstrap interval was replaced by the order-statistic one.
  const auto p50 = store.load_metrics(run.run_id).at("ttft.p50").estimate;
  const auto want = quantile_with_order_statistic_ci(expected.ttft_s, 0.5, 0.95);
  REQUIRE(want.has_ci());
  CHECK(p50.ci_low == want.ci_low);
  CHECK(p50.ci_high == want.ci_high);
  CHECK(p50.value == want.value);
  // 38 measured requests cannot support a 95% interval for p99: none is stored.
  CHECK_FALSE(store.load_metrics(run.run_id).at("ttft.p99").estimate.has_ci());
}

TEST_CASE("any latency percentile or mean comes from the sorted columns, equal to the samples'") {
  TempDir dir;
  Store store(dir.file("prism.db"));
  const Run run = sample_run();
  store.put_run(run);
  const RunSamples samples = collect_samples(run.observations);
  for (const char* name :
       {"ttft.p95", "ttft.p99.9", "tpot.p75", "itl.p99.9", "itl.p0", "e2e.p100", "itl.mean"}) {
    INFO(name);
    const MetricSpec spec = parse_metric(name);
    const Estimate got = store.latency_metric(run.run_id, spec, 0.95);
    const Estimate want = compute_metric(samples, spec, {});
    CHECK(got.n == want.n);
    CHECK(got.value == Approx(want.value).epsilon(1e-12));
    CHECK(got.has_ci() == want.has_ci());
    if (want.has_ci()) {
      CHECK(got.ci_low == Approx(want.ci_low).epsilon(1e-12));
      CHECK(got.ci_high == Approx(want.ci_high).epsilon(1e-12));
    }
  }
  CHECK_THROWS_AS(store.latency_metric(run.run_id, parse_metric("goodput")), std::invalid_argument);
  CHECK_THROWS_AS(store.latency_metric("missing", parse_metric("ttft.p50")), StoreError);
}

TEST_CASE("a run without samples of a quantity has no latency metric, not a made-up one") {
  TempDir dir;
  Store store(dir.file("prism.db"));
  SyntheticOptions o;
  o.requests = 5;
  o.tokens = 1;  // one token per request: no TPOT and no ITL
  const Run run = synthetic_run(o);
  store.put_run(run);
  CHECK(store.latency_metric(run.run_id, parse_metric("tpot.p99")).n == 0);
  CHECK(std::isnan(store.latency_metric(run.run_id, parse_metric("itl.mean")).value));
  CHECK(store.latency_metric(run.run_id, parse_metric("ttft.p50")).n == 5);
  CHECK(store.sorted_samples(run.run_id, Quantity::kItl).empty());
}

TEST_CASE("a sorted column longer than one chunk is read across the chunk boundaries") {
  TempDir dir;
  Store store(dir.file("prism.db"));
  // 2,000 requests x 16 tokens = 30,000 token gaps: four chunks of 8,192.
  SyntheticOptions o;
  o.requests = 2000;
  o.tokens = 16;
  const Run run = synthetic_run(o);
  store.put_run(run);
  const auto itl = store.sorted_samples(run.run_id, Quantity::kItl);
  REQUIRE(itl.size() == 2000u * 15u);
  REQUIRE(itl.size() > 3 * Store::kSortedChunkValues);
  CHECK(std::is_sorted(itl.begin(), itl.end()));
  // Quantiles whose ranks fall in the first, middle and last chunks.
  for (const char* name : {"itl.p1", "itl.p50", "itl.p99.9"}) {
    INFO(name);
    const MetricSpec spec = parse_metric(name);  // quantile p / 100, as the table computes it
    const auto e = store.latency_metric(run.run_id, spec, 0.95);
    const auto want = quantile_with_order_statistic_ci(itl, spec.quantile, 0.95);
    REQUIRE(want.has_ci());
    CHECK(e.value == want.value);
    CHECK(e.ci_low == want.ci_low);
    CHECK(e.ci_high == want.ci_high);
  }
  // The maximum (last value of the last chunk) has no upper interval at all.
  const auto top = store.latency_metric(run.run_id, parse_metric("itl.p100"), 0.95);
  CHECK(top.value == itl.back());
  CHECK_FALSE(top.has_ci());
}

TEST_CASE("replacing or removing a run replaces or removes its sorted columns too") {
  TempDir dir;
  const std::string path = dir.file("prism.db");
  const Run run = sample_run();
  RunSamples expected = collect_samples(run.observations);
  sort_samples(expected);
  {
    Store store(path);
    store.put_run(run);
    store.put_run(run);  // same id: replaced, not duplicated
    CHECK(store.sorted_samples(run.run_id, Quantity::kItl) == expected.itl_s);
    store.remove_run(run.run_id);
  }
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  REQUIRE(sqlite3_prepare_v2(db,
                             "SELECT (SELECT count(*) FROM sorted_samples) + "
                             "(SELECT count(*) FROM sample_summaries)",
                             -1, &stmt, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(stmt) == SQLITE_ROW);
  CHECK(sqlite3_column_int64(stmt, 0) == 0);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}
