#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "prism/results/run_file.h"

namespace fs = std::filesystem;
using namespace prism::results;
using nlohmann::json;

namespace {

Run sample_run() {
  Run run;
  run.run_id = "20261124T151626Z-abc123";
  run.started_at = "2026-11-24T15:16:26.000Z";
  run.finished_at = "2026-11-24T15:17:26.000Z";
  run.prism_version = "0.1.0";
  run.prism_git_sha = "deadbeef";
  run.environment = {{"cpu", {{"model", "test"}}}};
  run.configuration = {{"rate", 2.0}};
  run.target = {{"kind", "mock"}};
  run.workload = {{"name", "wl"}, {"hash", "abc"}};
  Observation ok;
  ok.request_id = 7;
  ok.session = 2;
  ok.turn = 1;
  ok.scheduled_s = 1.0;
  ok.sent_s = 1.001;
  ok.token_times_s = {1.1, 1.15, 1.2};
  ok.completed_s = 1.21;
  ok.prompt_tokens = 100;
  ok.completion_tokens = 3;
  ok.cached_tokens = 64;
  Observation bad;
  bad.request_id = 8;
  bad.status = RequestStatus::kError;
  bad.error = ErrorClass::kHttpStatus;
  bad.http_status = 503;
  bad.error_message = "overloaded";
  run.observations = {ok, bad};
  run.metrics = {{"ttft", {{"p50", 0.1}}}};
  return run;
}

std::string temp_path(const std::string& name) {
  return (fs::temp_directory_path() / ("prism-" + name + "-" + std::to_string(getpid()) + ".json"))
      .string();
}

std::string error_of(const json& document) {
  try {
    run_from_json(document, "file.json");
  } catch (const ResultFileError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("a run survives a write and read round trip field for field", "[schema]") {
  const std::string path = temp_path("roundtrip");
  const Run run = sample_run();
  write_run_file(path, run);
  const Run back = read_run_file(path);
  CHECK(back.run_id == run.run_id);
  CHECK(back.complete);
  CHECK(back.environment == run.environment);
  CHECK(back.configuration == run.configuration);
  CHECK(back.workload == run.workload);
  CHECK(back.metrics == run.metrics);
  CHECK(back.stages.is_null());
  REQUIRE(back.observations.size() == 2);
  CHECK(back.observations[0].token_times_s == run.observations[0].token_times_s);
  CHECK(back.observations[0].cached_tokens == 64);
  CHECK(back.observations[1].status == RequestStatus::kError);
  CHECK(back.observations[1].error == ErrorClass::kHttpStatus);
  CHECK(back.observations[1].http_status == 503);
  CHECK(back.observations[1].error_message == "overloaded");
  fs::remove(path);
}

TEST_CASE("an incomplete run keeps its reason through a round trip", "[schema]") {
  Run run = sample_run();
  run.complete = false;
  run.incomplete_reason = "interrupted by SIGINT";
  const Run back = run_from_json(run_to_json(run), "<memory>");
  CHECK_FALSE(back.complete);
  CHECK(back.incomplete_reason == "interrupted by SIGINT");
}

TEST_CASE("the reader rejects another schema version and names the field", "[schema]") {
  json doc = run_to_json(sample_run());
  doc["schema_version"] = 2;
  const std::string message = error_of(doc);
  CHECK(message.find("file.json") != std::string::npos);
  CHECK(message.find("schema_version") != std::string::npos);
  CHECK(message.find("unsupported version 2") != std::string::npos);
}

TEST_CASE("the reader rejects a document that is not a Prism run", "[schema]") {
  json doc = run_to_json(sample_run());
  doc["schema"] = "something.else";
  CHECK(error_of(doc).find("field 'schema'") != std::string::npos);
  CHECK(error_of(json::array()).find("expected a JSON object") != std::string::npos);
}

TEST_CASE("the reader names each missing required field", "[schema]") {
  for (const char* field :
       {"schema", "schema_version", "run_id", "started_at", "finished_at", "complete", "prism",
        "environment", "configuration", "target", "observations"}) {
    json doc = run_to_json(sample_run());
    doc.erase(field);
    const std::string message = error_of(doc);
    INFO(field);
    CHECK(message.find(std::string("field '") + field + "'") != std::string::npos);
    CHECK(message.find("missing required field") != std::string::npos);
  }
}

TEST_CASE("the reader names a bad field inside an observation with its index", "[schema]") {
  json doc = run_to_json(sample_run());
  doc["observations"][1]["sent_s"] = "soon";
  CHECK(error_of(doc).find("observations[1].sent_s': expected number, found string") !=
        std::string::npos);
  doc = run_to_json(sample_run());
  doc["observations"][0].erase("completion_tokens");
  CHECK(error_of(doc).find("observations[0].completion_tokens") != std::string::npos);
  doc = run_to_json(sample_run());
  doc["observations"][0]["token_times_s"][2] = nullptr;
  CHECK(error_of(doc).find("observations[0].token_times_s[2]") != std::string::npos);
  doc = run_to_json(sample_run());
  doc["observations"][0]["prompt_tokens"] = -4;
  CHECK(error_of(doc).find("non-negative integer") != std::string::npos);
}

TEST_CASE("a corrupted result file is rejected naming the file", "[schema]") {
  const std::string path = temp_path("corrupt");
  write_file_atomically(path, "{\"schema\": \"prism.run\", \"schema_ver");
  try {
    read_run_file(path);
    FAIL("expected ResultFileError");
  } catch (const ResultFileError& e) {
    CHECK(std::string(e.what()).find(path) != std::string::npos);
    CHECK(std::string(e.what()).find("not valid JSON") != std::string::npos);
  }
  fs::remove(path);
}

TEST_CASE("new run ids are distinct and timestamps are ISO-8601 UTC", "[schema]") {
  CHECK(new_run_id() != new_run_id());
  const std::string ts = utc_timestamp_now();
  REQUIRE(ts.size() == 24);
  CHECK(ts[4] == '-');
  CHECK(ts[10] == 'T');
  CHECK(ts.back() == 'Z');
}
