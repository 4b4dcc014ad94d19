// Nsight Systems SQLite export (`nsys export --type sqlite`): NVTX_EVENTS with
// StringIds, CUPTI_ACTIVITY_KIND_KERNEL / MEMCPY / MEMSET / RUNTIME. Missing
// tables or columns are errors that name them.
#include <sqlite3.h>

#include <algorithm>
#include <memory>
#include <set>

#include "prism/analysis/trace.h"

namespace prism::analysis {
namespace {

// nsys event types in NVTX_EVENTS.
constexpr int kNvtxMark = 34;
constexpr int kNvtxPushPop = 59;
constexpr int kNvtxStartEnd = 60;
constexpr int kNvtxtPushPop = 70;

struct Db {
  sqlite3* handle = nullptr;
  std::string path;
  ~Db() {
    if (handle != nullptr) sqlite3_close_v2(handle);
  }

  [[noreturn]] void fail(const std::string& what) const { throw TraceError(path + ": " + what); }

  bool has_table(const std::string& table) const {
    sqlite3_stmt* stmt = nullptr;
    sqlite3_prepare_v2(handle,
                       "SELECT 1 FROM sqlite_master WHERE type IN ('table','view') AND name = ?",
                       -1, &stmt, nullptr);
    sqlite3_bind_text(stmt, 1, table.c_str(), -1, SQLITE_TRANSIENT);
    const bool found = sqlite3_step(stmt) == SQLITE_ROW;
    sqlite3_finalize(stmt);
    return found;
  }

  std::set<std::string> columns(const std::string& table) const {
    std::set<std::string> names;
    sqlite3_stmt* stmt = nullptr;
    const std::string sql = "PRAGMA table_info(\"" + table + "\")";
    if (sqlite3_prepare_v2(handle, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) return names;
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      names.insert(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 1)));
    }
    sqlite3_finalize(stmt);
    return names;
  }

  void require(const std::string& table, const std::set<std::string>& have,
               std::initializer_list<const char*> needed) const {
    for (const char* column : needed) {
      if (have.count(column) == 0) fail("table " + table + ": missing column \"" + column + "\"");
    }
  }

  template <typename RowFn>
  void query(const std::string& sql, RowFn row) const {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(handle, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
      fail(std::string("query failed: ") + sqlite3_errmsg(handle) + " (" + sql + ")");
    }
    // Finalized also when row() throws (a bad value): an unfinalized statement
    // keeps the connection open after sqlite3_close and leaks it.
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> guard(stmt, sqlite3_finalize);
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) row(stmt);
    guard.reset();
    if (rc != SQLITE_DONE) fail(std::string("reading failed: ") + sqlite3_errmsg(handle));
  }
};

uint64_t column_u64(sqlite3_stmt* stmt, int i) {
  const sqlite3_int64 v = sqlite3_column_int64(stmt, i);
  return v < 0 ? 0 : static_cast<uint64_t>(v);
}

std::string column_text(sqlite3_stmt* stmt, int i) {
  const unsigned char* text = sqlite3_column_text(stmt, i);
  return text == nullptr ? std::string{} : std::string(reinterpret_cast<const char*>(text));
}

}  // namespace

Trace read_nsys_sqlite(const std::string& path) {
  Db db;
  db.path = path;
  if (sqlite3_open_v2(path.c_str(), &db.handle, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    db.fail(std::string("cannot open as SQLite: ") +
            (db.handle ? sqlite3_errmsg(db.handle) : "out of memory"));
  }
  Trace trace;
  trace.source = "nsys-sqlite";

  if (db.has_table("EXPORT_META_DATA")) {
    db.query(
        "SELECT value FROM EXPORT_META_DATA WHERE name = 'EXPORT_SCHEMA_VERSION'",
        [&](sqlite3_stmt* s) {
          const std::string version = column_text(s, 0);
          const int major = version.empty() ? 0 : std::atoi(version.c_str());
          if (major < 1 || major > 3) {
            db.fail("unknown EXPORT_SCHEMA_VERSION '" + version + "' (this build reads 1 to 3)");
          }
        });
  }
  const bool has_nvtx = db.has_table("NVTX_EVENTS");
  const bool has_kernels = db.has_table("CUPTI_ACTIVITY_KIND_KERNEL");
  if (!has_nvtx && !has_kernels) {
    db.fail(
        "neither an NVTX_EVENTS nor a CUPTI_ACTIVITY_KIND_KERNEL table: not an Nsight Systems "
        "export, "
        "or one made without NVTX and CUDA tracing");
  }
  // StringIds: id -> text, mapped into the trace's own string table.
  std::unordered_map<int64_t, uint32_t> string_ids;
  const bool has_strings = db.has_table("StringIds");
  if (has_strings) {
    db.require("StringIds", db.columns("StringIds"), {"id", "value"});
    db.query("SELECT id, value FROM StringIds", [&](sqlite3_stmt* s) {
      string_ids[sqlite3_column_int64(s, 0)] = trace.intern(column_text(s, 1));
    });
  }
  auto string_id = [&](sqlite3_stmt* s, int column, const char* table) -> uint32_t {
    if (sqlite3_column_type(s, column) == SQLITE_NULL) return 0;
    if (!has_strings)
      db.fail(std::string("table ") + table + " refers to StringIds, which is missing");
    const auto it = string_ids.find(sqlite3_column_int64(s, column));
    return it == string_ids.end() ? 0 : it->second;
  };

  if (has_nvtx) {
    const auto columns = db.columns("NVTX_EVENTS");
    db.require("NVTX_EVENTS", columns, {"start", "end", "eventType", "globalTid"});
    if (columns.count("text") == 0 && columns.count("textId") == 0) {
      db.fail("table NVTX_EVENTS: missing column \"text\" (or \"textId\")");
    }
    const std::string text_column = columns.count("text") ? "text" : "NULL";
    const std::string text_id_column = columns.count("textId") ? "textId" : "NULL";
    db.query("SELECT start, end, eventType, globalTid, " + text_column + ", " + text_id_column +
                 " FROM NVTX_EVENTS WHERE eventType IN (34, 59, 60, 70) ORDER BY start",
             [&](sqlite3_stmt* s) {
               Span span;
               span.start_ns = column_u64(s, 0);
               const bool open = sqlite3_column_type(s, 1) == SQLITE_NULL;
               span.end_ns = open ? span.start_ns : std::max(span.start_ns, column_u64(s, 1));
               const int type = sqlite3_column_int(s, 2);
               const uint64_t global_tid = column_u64(s, 3);
               span.track = static_cast<uint32_t>(global_tid & 0xffffff);
               span.process = static_cast<uint32_t>((global_tid >> 24) & 0xffffff);
               span.name = sqlite3_column_type(s, 4) != SQLITE_NULL
                               ? trace.intern(column_text(s, 4))
                               : string_id(s, 5, "NVTX_EVENTS");
               ++trace.event_count;
               if (trace.pid == 0) trace.pid = span.process;
               if (type == kNvtxMark) {
                 span.kind = SpanKind::kMark;
                 span.end_ns = span.start_ns;
                 trace.marks.push_back(span);
               } else if (type == kNvtxPushPop || type == kNvtxStartEnd || type == kNvtxtPushPop) {
                 if (open) {
                   span.open = true;
                   ++trace.unclosed;
                 }
                 trace.ranges.push_back(span);
               }
             });
  }
  if (has_kernels) {
    const auto columns = db.columns("CUPTI_ACTIVITY_KIND_KERNEL");
    db.require("CUPTI_ACTIVITY_KIND_KERNEL", columns,
               {"start", "end", "deviceId", "streamId", "correlationId"});
    std::string name_column;
    for (const char* candidate : {"demangledName", "shortName", "mangledName"}) {
      if (columns.count(candidate)) {
        name_column = candidate;
        break;
      }
    }
    if (name_column.empty())
      db.fail(
          "table CUPTI_ACTIVITY_KIND_KERNEL: missing column \"demangledName\" (or \"shortName\")");
    db.query("SELECT start, end, deviceId, streamId, correlationId, " + name_column +
                 " FROM CUPTI_ACTIVITY_KIND_KERNEL",
             [&](sqlite3_stmt* s) {
               Span span;
               span.kind = SpanKind::kKernel;
               span.start_ns = column_u64(s, 0);
               span.end_ns = std::max(span.start_ns, column_u64(s, 1));
               span.process = static_cast<uint32_t>(sqlite3_column_int(s, 2));
               span.track = static_cast<uint32_t>(sqlite3_column_int(s, 3));
               span.correlation = static_cast<uint32_t>(sqlite3_column_int64(s, 4));
               span.name = string_id(s, 5, "CUPTI_ACTIVITY_KIND_KERNEL");
               ++trace.event_count;
               trace.gpu.push_back(span);
             });
  }
  for (const auto& [table, kind] :
       {std::pair<const char*, SpanKind>{"CUPTI_ACTIVITY_KIND_MEMCPY", SpanKind::kMemcpy},
        {"CUPTI_ACTIVITY_KIND_MEMSET", SpanKind::kMemset}}) {
    if (!db.has_table(table)) continue;
    const auto columns = db.columns(table);
    db.require(table, columns, {"start", "end", "deviceId", "streamId", "correlationId"});
    const std::string bytes = columns.count("bytes") ? "bytes" : "0";
    const SpanKind k = kind;
    const uint32_t name = trace.intern(k == SpanKind::kMemcpy ? "memcpy" : "memset");
    db.query(std::string("SELECT start, end, deviceId, streamId, correlationId, ") + bytes +
                 " FROM " + table,
             [&](sqlite3_stmt* s) {
               Span span;
               span.kind = k;
               span.start_ns = column_u64(s, 0);
               span.end_ns = std::max(span.start_ns, column_u64(s, 1));
               span.process = static_cast<uint32_t>(sqlite3_column_int(s, 2));
               span.track = static_cast<uint32_t>(sqlite3_column_int(s, 3));
               span.correlation = static_cast<uint32_t>(sqlite3_column_int64(s, 4));
               span.arg = column_u64(s, 5);
               span.name = name;
               ++trace.event_count;
               trace.gpu.push_back(span);
             });
  }
  if (db.has_table("CUPTI_ACTIVITY_KIND_RUNTIME")) {
    const auto columns = db.columns("CUPTI_ACTIVITY_KIND_RUNTIME");
    db.require("CUPTI_ACTIVITY_KIND_RUNTIME", columns,
               {"start", "end", "globalTid", "correlationId", "nameId"});
    db.query("SELECT start, end, globalTid, correlationId, nameId FROM CUPTI_ACTIVITY_KIND_RUNTIME",
             [&](sqlite3_stmt* s) {
               Span span;
               span.kind = SpanKind::kRuntime;
               span.start_ns = column_u64(s, 0);
               span.end_ns = std::max(span.start_ns, column_u64(s, 1));
               const uint64_t global_tid = column_u64(s, 2);
               span.track = static_cast<uint32_t>(global_tid & 0xffffff);
               span.process = static_cast<uint32_t>((global_tid >> 24) & 0xffffff);
               span.correlation = static_cast<uint32_t>(sqlite3_column_int64(s, 3));
               span.name = string_id(s, 4, "CUPTI_ACTIVITY_KIND_RUNTIME");
               ++trace.event_count;
               trace.api.push_back(span);
             });
  }
  if (db.has_table("ThreadNames")) {
    const auto columns = db.columns("ThreadNames");
    if (columns.count("nameId") && columns.count("globalTid")) {
      db.query("SELECT nameId, globalTid FROM ThreadNames", [&](sqlite3_stmt* s) {
        const uint32_t name = string_id(s, 0, "ThreadNames");
        trace.thread_names[static_cast<uint32_t>(column_u64(s, 1) & 0xffffff)] = trace.name(name);
      });
    }
  }
  link_range_parents(trace);
  return trace;
}

}  // namespace prism::analysis
