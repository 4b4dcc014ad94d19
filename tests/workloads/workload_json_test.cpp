#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <catch2/catch.hpp>

#include "prism/workloads/validation.h"
#include "prism/workloads/workload_json.h"

using namespace prism::workloads;

namespace {

Workload small_workload() {
  Workload w;
  w.name = "small";
  w.kind = "multi-turn";
  w.seed = 7;
  w.tokenizer = "bytes";
  w.description = "two turns \"quoted\"";
  w.parameters.emplace("turns", std::string("2"));
  w.arrival.kind = ArrivalKind::kGamma;
  w.arrival.rate_per_s = 2.5;
  w.arrival.burstiness = 0.5;
  w.arrival.sweep_rates_per_s = {1.0, 2.0};
  Session s;
  s.id = 3;
  Request r0;
  r0.id = 10;
  r0.session = 3;
  r0.turn = 0;
  r0.arrival_offset_s = 0.125;
  r0.output_tokens = 4;
  r0.segments = {{"sys", Provenance::kSystem, {1, 2, 3}}, {"u0", Provenance::kUser, {4, 5}}};
  Request r1 = r0;
  r1.id = 11;
  r1.turn = 1;
  r1.arrival_offset_s = 1.5;
  r1.ignore_eos = false;
  r1.segments = {{"sys", Provenance::kSystem, {1, 2, 3}},
                 {"u0", Provenance::kHistory, {4, 5}},
                 {"a0", Provenance::kHistory, {6, 7, 8, 9}},
                 {"u1", Provenance::kUser, {10}}};
  s.requests = {r0, r1};
  w.sessions.push_back(s);
  return w;
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("prism_wl_" + name)).string();
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string error_of(const nlohmann::json& j) {
  try {
    workload_from_json(j, "spec.json");
  } catch (const WorkloadError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("A workload survives a JSON round trip unchanged", "[workloads][json]") {
  const Workload w = small_workload();
  const Workload back = workload_from_json(to_json(w), "mem");
  CHECK(serialize_workload(back) == serialize_workload(w));
  REQUIRE(back.sessions.size() == 1);
  const auto& r1 = back.sessions[0].requests[1];
  CHECK(r1.segments[2].tokens == std::vector<std::int32_t>{6, 7, 8, 9});
  CHECK(r1.segments[1].provenance == Provenance::kHistory);
  CHECK_FALSE(r1.ignore_eos);
  CHECK(back.arrival.kind == ArrivalKind::kGamma);
  CHECK(back.arrival.sweep_rates_per_s == std::vector<double>{1.0, 2.0});
  CHECK(back.parameters.at("turns") == "2");
}

TEST_CASE("serialize_workload writes the same bytes as to_json().dump()", "[workloads][json]") {
  const Workload w = small_workload();
  CHECK(serialize_workload(w) == to_json(w).dump());
}

TEST_CASE("Repeated content ids are stored once in the contents table", "[workloads][json]") {
  const auto j = to_json(small_workload());
  CHECK(j.at("contents").size() == 4);
  CHECK(j.at("spec_version") == 1);
}

TEST_CASE("Hand-written specs may carry tokens inline in segments", "[workloads][json]") {
  auto j = nlohmann::json::parse(R"({"spec_version":1,"name":"h","kind":"synthetic","seed":1,
    "tokenizer":"bytes","arrival":{"kind":"closed-loop","concurrency":2},
    "sessions":[{"id":0,"requests":[{"id":0,"turn":0,"arrival_offset_s":0,"output_tokens":3,
      "segments":[{"content_id":"a","provenance":"user","tokens":[104,105]}]}]}]})");
  const Workload w = workload_from_json(j, "h.json");
  CHECK(w.sessions[0].requests[0].segments[0].tokens == std::vector<std::int32_t>{104, 105});
  CHECK(w.arrival.concurrency == 2);
}

TEST_CASE("Bad specs are rejected naming the source and the field path",
          "[workloads][json][errors]") {
  const auto good = to_json(small_workload());
  SECTION("unsupported spec version") {
    auto j = good;
    j["spec_version"] = 2;
    CHECK_THAT(error_of(j), Catch::Contains("spec.json: spec_version: unsupported version 2"));
  }
  SECTION("missing field") {
    auto j = good;
    j.erase("tokenizer");
    CHECK(error_of(j) == "spec.json: tokenizer: missing field");
  }
  SECTION("negative output length") {
    auto j = good;
    j["sessions"][0]["requests"][1]["output_tokens"] = -5;
    CHECK_THAT(
        error_of(j),
        Catch::Contains("spec.json: sessions[0].requests[1].output_tokens: must not be negative"));
  }
  SECTION("zero output length") {
    auto j = good;
    j["sessions"][0]["requests"][0]["output_tokens"] = 0;
    CHECK(error_of(j) == "spec.json: sessions[0].requests[0].output_tokens: must be at least 1");
  }
  SECTION("unknown provenance") {
    auto j = good;
    j["sessions"][0]["requests"][0]["segments"][0]["provenance"] = "banana";
    CHECK_THAT(
        error_of(j),
        Catch::Contains(
            "sessions[0].requests[0].segments[0].provenance: unknown provenance \"banana\""));
  }
  SECTION("unknown content id") {
    auto j = good;
    j["sessions"][0]["requests"][0]["segments"][0]["content_id"] = "nope";
    CHECK_THAT(error_of(j), Catch::Contains("segments[0].content_id: unknown content id \"nope\""));
  }
  SECTION("inline tokens contradict the contents table") {
    auto j = good;
    j["sessions"][0]["requests"][0]["segments"][0]["tokens"] = {9, 9};
    CHECK_THAT(
        error_of(j),
        Catch::Contains("segments[0].tokens: content id \"sys\" already names different tokens"));
  }
  SECTION("negative token id") {
    auto j = good;
    j["contents"][0]["tokens"][1] = -1;
    CHECK_THAT(error_of(j), Catch::Contains("contents[0].tokens[1]: expected a token id"));
  }
  SECTION("turns out of order") {
    auto j = good;
    j["sessions"][0]["requests"][1]["turn"] = 5;
    CHECK_THAT(error_of(j), Catch::Contains("sessions[0].requests[1].turn: turns must count"));
  }
  SECTION("duplicate request id") {
    auto j = good;
    j["sessions"][0]["requests"][1]["id"] = 10;
    CHECK(error_of(j) == "spec.json: sessions[0].requests[1].id: duplicate request id 10");
  }
  SECTION("negative arrival offset") {
    auto j = good;
    j["sessions"][0]["requests"][0]["arrival_offset_s"] = -1.0;
    CHECK_THAT(error_of(j),
               Catch::Contains("sessions[0].requests[0].arrival_offset_s: must be a non-negative"));
  }
  SECTION("non-positive rate") {
    auto j = good;
    j["arrival"]["rate_per_s"] = 0;
    CHECK_THAT(error_of(j),
               Catch::Contains("spec.json: arrival.rate_per_s: must be a positive number"));
  }
  SECTION("unknown arrival kind") {
    auto j = good;
    j["arrival"]["kind"] = "sometimes";
    CHECK_THAT(error_of(j), Catch::Contains("arrival.kind: unknown arrival kind \"sometimes\""));
  }
  SECTION("context beyond the declared limit") {
    auto j = good;
    j["max_context_tokens"] = 12;
    CHECK_THAT(error_of(j), Catch::Contains("sessions[0].requests[1]: prompt (10) + output (4) "
                                            "tokens exceed max_context_tokens 12"));
  }
  SECTION("no requests at all") {
    auto j = good;
    j["sessions"] = nlohmann::json::array();
    CHECK(error_of(j) == "spec.json: sessions: the workload has no requests");
  }
  SECTION("wrong type") {
    auto j = good;
    j["seed"] = "seven";
    CHECK(error_of(j) == "spec.json: seed: expected a non-negative integer, got string");
  }
}

TEST_CASE("A malformed spec file is rejected with file:line:column", "[workloads][json][errors]") {
  const std::string path = temp_path("malformed.json");
  write_text(path, "{\n  \"spec_version\": 1,\n  \"name\": oops\n}\n");
  try {
    read_workload_file(path);
    FAIL("no error");
  } catch (const WorkloadError& e) {
    CHECK_THAT(std::string(e.what()), Catch::StartsWith(path + ":3:"));
    CHECK_THAT(std::string(e.what()), Catch::Contains("malformed JSON"));
  }
  std::remove(path.c_str());
}

TEST_CASE("A missing spec file is reported by name", "[workloads][json][errors]") {
  CHECK_THROWS_WITH(read_workload_file("/nonexistent/w.json"),
                    "/nonexistent/w.json: cannot open for reading");
}

TEST_CASE("A spec file on disk reads back to the same workload", "[workloads][json]") {
  const std::string path = temp_path("good.json");
  const Workload w = small_workload();
  write_text(path, serialize_workload(w));
  CHECK(serialize_workload(read_workload_file(path)) == serialize_workload(w));
  std::remove(path.c_str());
}
