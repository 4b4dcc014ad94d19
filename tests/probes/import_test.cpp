#include <sqlite3.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "prism/analysis/breakdown.h"
#include "prism/analysis/export.h"

using namespace prism::analysis;

namespace {

std::string temp_path(const std::string& name) {
  return "/tmp/prism-probes-test-" + std::to_string(getpid()) + "-" + name;
}

size_t stage_index(const Breakdown& b, const std::string& stage) {
  for (size_t i = 0; i < b.stages.size(); ++i) {
    if (b.stages[i] == stage) return i;
  }
  FAIL("no stage " << stage);
  return 0;
}

// A PyTorch-profiler (Kineto) trace as it writes them: µs timestamps, cpu ops,
// user annotations, CUDA runtime calls and kernels linked by correlation ids.
const char* const kKinetoTrace = R"({
  "schemaVersion": 1,
  "deviceProperties": [{"id": 0, "name": "NVIDIA H100"}],
  "traceEvents": [
    {"ph": "M", "name": "thread_name", "pid": 100, "tid": 7, "args": {"name": "engine"}},
    {"ph": "X", "cat": "user_annotation", "name": "EngineCore.step", "pid": 100, "tid": 7, "ts": 1000.0, "dur": 50.0},
    {"ph": "X", "cat": "user_annotation", "name": "Scheduler.schedule", "pid": 100, "tid": 7, "ts": 1001.0, "dur": 4.0},
    {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "pid": 100, "tid": 7, "ts": 1010.0, "dur": 10.0},
    {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 100, "tid": 7, "ts": 1012.0, "dur": 3.0,
     "args": {"correlation": 41, "External id": 9}},
    {"ph": "X", "cat": "kernel", "name": "void vllm::paged_attention_v1_kernel<half>", "pid": 0, "tid": "stream 7",
     "ts": 1020.5, "dur": 12.25, "args": {"device": 0, "stream": 7, "correlation": 41, "External id": 9}},
    {"ph": "X", "cat": "gpu_user_annotation", "name": "EngineCore.step", "pid": 0, "tid": 7, "ts": 1020.0, "dur": 13.0},
    {"ph": "X", "cat": "user_annotation", "name": "EngineCore.step", "pid": 100, "tid": 7, "ts": 1100.0, "dur": 30.0},
    {"ph": "i", "s": "t", "name": "marker", "pid": 100, "tid": 7, "ts": 1101.0},
    {"ph": "f", "id": 41, "pid": 0, "tid": 7, "ts": 1020.5, "cat": "ac2g", "name": "ac2g"}
  ]
})";

void exec(sqlite3* db, const std::string& sql) {
  char* error = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
    const std::string message = error ? error : "?";
    sqlite3_free(error);
    FAIL("sqlite: " << message << " in " << sql);
  }
}

// The subset of the Nsight Systems export schema the importer reads.
std::string make_nsys_db(const std::string& name, bool with_end_column = true,
                         bool with_version = false, const std::string& version = "3.7.1") {
  const std::string path = temp_path(name);
  unlink(path.c_str());
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  exec(db, "CREATE TABLE StringIds (id INTEGER PRIMARY KEY, value TEXT NOT NULL)");
  exec(db,
       "INSERT INTO StringIds VALUES (1, 'step'), (2, 'attention'), (3, 'flash_fwd_kernel'), "
       "(4, 'cudaLaunchKernel_v7000'), (5, 'mlp')");
  exec(
      db,
      std::string("CREATE TABLE NVTX_EVENTS (start INTEGER NOT NULL, ") +
          (with_end_column ? "end INTEGER, " : "") +
          "text TEXT, color INTEGER, textId INTEGER, domainId INTEGER, eventType INTEGER NOT NULL, "
          "rangeId INTEGER, category INTEGER, globalTid INTEGER, endGlobalTid INTEGER)");
  const long long tid = (100LL << 24) | 7;  // globalTid: pid 100, tid 7
  if (with_end_column) {
    exec(db,
         "INSERT INTO NVTX_EVENTS (start, end, text, textId, eventType, globalTid) VALUES "
         "(10000, 20000, NULL, 1, 59, " +
             std::to_string(tid) +
             "),"
             "(11000, 15000, NULL, 2, 59, " +
             std::to_string(tid) +
             "),"
             "(15000, 19000, 'mlp', NULL, 59, " +
             std::to_string(tid) +
             "),"
             "(30000, 38000, NULL, 1, 59, " +
             std::to_string(tid) +
             "),"
             "(31000, 35000, NULL, 2, 60, " +
             std::to_string(tid) +
             "),"
             "(36000, NULL, 'tick', NULL, 34, " +
             std::to_string(tid) +
             "),"
             "(0, NULL, 'domain', NULL, 75, " +
             std::to_string(tid) + ")");
  }
  exec(db,
       "CREATE TABLE CUPTI_ACTIVITY_KIND_KERNEL (start INTEGER NOT NULL, end INTEGER NOT NULL, "
       "deviceId INTEGER, contextId INTEGER, streamId INTEGER, correlationId INTEGER, globalPid "
       "INTEGER, "
       "demangledName INTEGER, shortName INTEGER, mangledName INTEGER)");
  exec(db,
       "INSERT INTO CUPTI_ACTIVITY_KIND_KERNEL VALUES (12500, 14500, 0, 1, 7, 77, 0, 3, 3, NULL)");
  exec(db,
       "CREATE TABLE CUPTI_ACTIVITY_KIND_RUNTIME (start INTEGER NOT NULL, end INTEGER NOT NULL, "
       "eventClass INTEGER, globalTid INTEGER, correlationId INTEGER, nameId INTEGER, returnValue "
       "INTEGER)");
  exec(db, "INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME VALUES (12000, 12300, 0, " +
               std::to_string(tid) + ", 77, 4, 0)");
  if (with_version) {
    exec(db, "CREATE TABLE EXPORT_META_DATA (name TEXT, value TEXT)");
    exec(db, "INSERT INTO EXPORT_META_DATA VALUES ('EXPORT_SCHEMA_VERSION', '" + version + "')");
  }
  sqlite3_close(db);
  return path;
}

}  // namespace

TEST_CASE("A Kineto trace imports into the same breakdown as the agent's traces",
          "[probes][import]") {
  const Trace trace = read_chrome_trace(kKinetoTrace, "kineto.json");
  CHECK(trace.source == "kineto");
  CHECK(trace.thread_names.at(7) == "engine");
  CHECK(trace.ranges.size() == 4);  // the GPU-side annotation copy is not a host range
  REQUIRE(trace.gpu.size() == 1);
  CHECK(trace.gpu[0].start_ns == 1020500);
  CHECK(trace.gpu[0].duration() == 12250);
  CHECK(trace.gpu[0].track == 7);
  CHECK(trace.api.size() == 1);
  CHECK(trace.marks.size() == 1);
  const Breakdown b = analyze(trace, StageRules::builtin("vllm"));
  REQUIRE(b.iterations.size() == 2);
  CHECK(b.iterations[0].duration() == 50000);
  CHECK(b.iterations[0].stage_ns[stage_index(b, "schedule")] == 4000);
  CHECK(b.totals[stage_index(b, "attention")].gpu_ns == 12250);  // by kernel name
  CHECK(b.iterations[0].launch_queue_ns == 8500);                // 1020.5 - 1012.0 µs
  CHECK(b.iterations[0].kernels == 1);
  CHECK(b.iterations[0].gpu_busy_ns == 12250);
}

TEST_CASE("An Nsight Systems SQLite export imports ranges, kernels and runtime calls",
          "[probes][import]") {
  const std::string path = make_nsys_db("nsys.sqlite");
  const Trace trace = load_trace(path);
  CHECK(trace.source == "nsys-sqlite");
  CHECK(trace.pid == 100);
  CHECK(trace.ranges.size() == 5);
  CHECK(trace.marks.size() == 1);
  REQUIRE(trace.gpu.size() == 1);
  CHECK(trace.name(trace.gpu[0].name) == "flash_fwd_kernel");
  const Breakdown b = analyze(trace, StageRules::builtin("prism"));
  REQUIRE(b.iterations.size() == 2);
  CHECK(b.iterations[0].duration() == 10000);
  CHECK(b.iterations[0].stage_ns[stage_index(b, "attention")] == 4000);
  CHECK(b.iterations[0].stage_ns[stage_index(b, "mlp")] == 4000);
  CHECK(b.iterations[1].stage_ns[stage_index(b, "attention")] == 4000);
  CHECK(b.totals[stage_index(b, "attention")].gpu_ns == 2000);  // launched inside attention
  CHECK(b.iterations[0].launch_queue_ns == 500);
  unlink(path.c_str());
}

TEST_CASE("Nsight exports with a missing column or an unknown schema version name it",
          "[probes][import]") {
  const std::string no_end = make_nsys_db("noend.sqlite", false);
  CHECK_THROWS_WITH(load_trace(no_end), Catch::Contains("NVTX_EVENTS: missing column \"end\""));
  unlink(no_end.c_str());
  const std::string future = make_nsys_db("future.sqlite", true, true, "9.0");
  CHECK_THROWS_WITH(load_trace(future), Catch::Contains("unknown EXPORT_SCHEMA_VERSION '9.0'"));
  unlink(future.c_str());
  const std::string known = make_nsys_db("known.sqlite", true, true, "3.7.1");
  CHECK_NOTHROW(load_trace(known));
  unlink(known.c_str());
  const std::string empty = temp_path("empty.sqlite");
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(empty.c_str(), &db) == SQLITE_OK);
  exec(db, "CREATE TABLE other (x INTEGER)");
  sqlite3_close(db);
  CHECK_THROWS_WITH(load_trace(empty),
                    Catch::Contains("neither an NVTX_EVENTS nor a CUPTI_ACTIVITY_KIND_KERNEL"));
  unlink(empty.c_str());
}

TEST_CASE("Chrome traces with missing or wrong fields are errors that name the event and field",
          "[probes][import]") {
  CHECK_THROWS_WITH(read_chrome_trace("{\"events\": []}", "a.json"),
                    Catch::Contains("missing field \"traceEvents\""));
  CHECK_THROWS_WITH(read_chrome_trace("{\"traceEvents\": 3}", "a.json"),
                    Catch::Contains("not an array"));
  CHECK_THROWS_WITH(read_chrome_trace("{\"traceEvents\": [", "a.json"),
                    Catch::Contains("not valid JSON"));
  CHECK_THROWS_WITH(
      read_chrome_trace(R"([{"ph":"X","name":"a","pid":1,"tid":1,"ts":5}])", "b.json"),
      Catch::Contains("traceEvents[0]: missing field \"dur\""));
  CHECK_THROWS_WITH(
      read_chrome_trace(R"([{"ph":"X","name":"a","pid":1,"tid":1,"ts":"5","dur":1}])", "b.json"),
      Catch::Contains("field \"ts\" is not a number"));
  CHECK_THROWS_WITH(
      read_chrome_trace(R"([{"ph":"i","ts":1,"tid":1,"pid":1},{"name":"x"}])", "c.json"),
      Catch::Contains("traceEvents[0]: missing field \"name\""));
  CHECK_THROWS_WITH(read_chrome_trace(R"([{"name":"x","ts":1}])", "c.json"),
                    Catch::Contains("traceEvents[0]: missing field \"ph\""));
  CHECK_THROWS_WITH(
      read_chrome_trace(R"([{"ph":"X","name":"a","pid":[1],"tid":1,"ts":1,"dur":1}])", "d.json"),
      Catch::Contains("field \"pid\" is neither"));
  CHECK_THROWS_WITH(
      read_chrome_trace(R"({"otherData":{"prism_trace_version":7},"traceEvents":[]})", "e.json"),
      Catch::Contains("unknown otherData.prism_trace_version 7"));
  CHECK_THROWS_WITH(read_chrome_trace(R"({"schemaVersion":"x","traceEvents":[]})", "f.json"),
                    Catch::Contains("unknown Kineto schemaVersion"));
  CHECK_THROWS_WITH(
      read_chrome_trace(R"([{"ph":"X","name":"a","pid":1,"tid":1,"ts":-1,"dur":1}])", "g.json"),
      Catch::Contains("out of range"));
  // Found by the fuzzer: a number no double holds is bad JSON, not an uncaught exception.
  CHECK_THROWS_WITH(
      read_chrome_trace(R"([{"ph":"X","name":"a","pid":1,"tid":1,"ts":1,"dur":1e+310}])", "h.json"),
      Catch::Contains("h.json: not valid JSON"));
}

TEST_CASE("load_trace detects the format and rejects files that are no trace", "[probes][import]") {
  const std::string path = temp_path("notatrace.txt");
  {
    std::ofstream out(path);
    out << "hello\n";
  }
  CHECK_THROWS_WITH(load_trace(path), Catch::Contains("not a trace"));
  CHECK_THROWS_WITH(load_trace(temp_path("missing.json")), Catch::Contains("cannot open"));
  {
    std::ofstream out(path);
    out << "[{\"ph\":\"B\",\"name\":\"step\",\"pid\":1,\"tid\":2,\"ts\":1},"
           "{\"ph\":\"E\",\"pid\":1,\"tid\":2,\"ts\":3}]";
  }
  const Trace trace = load_trace(path);
  REQUIRE(trace.ranges.size() == 1);
  CHECK(trace.ranges[0].duration() == 2000);
  unlink(path.c_str());
}
