#include "prism/results/store.h"

#include <sqlite3.h>

#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>

#include <fmt/core.h>

namespace prism::results {
namespace {

using nlohmann::json;

// A prepared statement that finalizes itself and names the database in errors.
class Statement {
 public:
  Statement(sqlite3* db, const std::string& path, const char* sql) : db_(db), path_(path) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) {
      throw StoreError(fmt::format("{}: cannot prepare '{}': {}", path, sql, sqlite3_errmsg(db)));
    }
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& bind(int i, long long v) {
    check(sqlite3_bind_int64(stmt_, i, v));
    return *this;
  }
  Statement& bind(int i, double v) {
    check(sqlite3_bind_double(stmt_, i, v));
    return *this;
  }
  // A figure that may be missing (NaN: an interval the sample cannot support) is stored as
  // NULL, explicitly, which is what reading it back (nan_if_null) expects.
  Statement& bind_number(int i, double v) {
    if (std::isnan(v)) return bind_null(i);
    return bind(i, v);
  }
  Statement& bind(int i, const std::string& v) {
    check(sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
    return *this;
  }
  Statement& bind_blob(int i, const std::string& v) {
    check(sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
    return *this;
  }
  Statement& bind_null(int i) {
    check(sqlite3_bind_null(stmt_, i));
    return *this;
  }
  Statement& bind_optional(int i, const std::optional<double>& v) {
    return v ? bind(i, *v) : bind_null(i);
  }
  // True while there is a row.
  bool step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw StoreError(fmt::format("{}: {}", path_, sqlite3_errmsg(db_)));
  }
  void run() {
    step();
    reset();
  }
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  long long integer(int c) const { return sqlite3_column_int64(stmt_, c); }
  double real(int c) const { return sqlite3_column_double(stmt_, c); }
  bool is_null(int c) const { return sqlite3_column_type(stmt_, c) == SQLITE_NULL; }
  std::string text(int c) const {
    const auto* p = sqlite3_column_text(stmt_, c);
    return p ? std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(stmt_, c))
             : std::string();
  }
  bool text_equals(int c, const char* expected) const {
    const auto* p = sqlite3_column_text(stmt_, c);
    return p != nullptr && std::strcmp(reinterpret_cast<const char*>(p), expected) == 0;
  }
  std::size_t bytes(int c) const {
    return static_cast<std::size_t>(sqlite3_column_bytes(stmt_, c));
  }
  std::vector<double> times(int c) const {
    return unpack_times(sqlite3_column_blob(stmt_, c),
                        static_cast<std::size_t>(sqlite3_column_bytes(stmt_, c)));
  }

 private:
  void check(int rc) {
    if (rc != SQLITE_OK) throw StoreError(fmt::format("{}: bind: {}", path_, sqlite3_errmsg(db_)));
  }
  sqlite3* db_;
  const std::string& path_;
  sqlite3_stmt* stmt_ = nullptr;
};

void exec(sqlite3* db, const std::string& path, const char* sql) {
  char* message = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &message) != SQLITE_OK) {
    std::string text = message ? message : sqlite3_errmsg(db);
    sqlite3_free(message);
    throw StoreError(fmt::format("{}: {}", path, text));
  }
}

// Version 1: the base schema.
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE environments (
  id INTEGER PRIMARY KEY,
  hash TEXT NOT NULL UNIQUE,
  json TEXT NOT NULL
);
CREATE TABLE runs (
  id INTEGER PRIMARY KEY,
  run_id TEXT NOT NULL UNIQUE,
  started_at TEXT NOT NULL,
  finished_at TEXT NOT NULL,
  complete INTEGER NOT NULL,
  incomplete_reason TEXT NOT NULL,
  prism_version TEXT NOT NULL,
  prism_git_sha TEXT NOT NULL,
  environment_id INTEGER REFERENCES environments(id),
  configuration TEXT NOT NULL,
  target TEXT NOT NULL,
  workload TEXT NOT NULL,
  target_name TEXT NOT NULL,
  workload_name TEXT NOT NULL,
  metrics_json TEXT NOT NULL,
  request_count INTEGER NOT NULL
);
CREATE TABLE observations (
  run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  request_id INTEGER NOT NULL,
  session INTEGER NOT NULL,
  turn INTEGER NOT NULL,
  warmup INTEGER NOT NULL,
  scheduled_s REAL NOT NULL,
  sent_s REAL NOT NULL,
  completed_s REAL NOT NULL,
  prompt_tokens INTEGER NOT NULL,
  completion_tokens INTEGER NOT NULL,
  cached_tokens INTEGER NOT NULL,
  status TEXT NOT NULL,
  error TEXT NOT NULL,
  http_status INTEGER NOT NULL,
  error_message TEXT NOT NULL,
  token_times BLOB NOT NULL,
  PRIMARY KEY (run, seq)
) WITHOUT ROWID;
CREATE TABLE metrics (
  run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  value REAL,
  ci_low REAL,
  ci_high REAL,
  confidence REAL NOT NULL,
  n INTEGER NOT NULL,
  unit TEXT NOT NULL,
  PRIMARY KEY (run, name)
) WITHOUT ROWID;
CREATE TABLE stages (
  run INTEGER PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
  json TEXT NOT NULL
);
)sql";

// Version 2: per-request derived samples as columns (tables and compare read
// them without decoding token lists) and named baselines.
constexpr const char* kSchemaV2 = R"sql(
ALTER TABLE observations ADD COLUMN ttft_s REAL;
ALTER TABLE observations ADD COLUMN tpot_s REAL;
ALTER TABLE observations ADD COLUMN e2e_s REAL;
CREATE TABLE baselines (
  name TEXT PRIMARY KEY,
  run_id TEXT NOT NULL,
  set_at TEXT NOT NULL
);
)sql";

void backfill_derived_samples(sqlite3* db, const std::string& path) {
  Statement select(db, path,
                   "SELECT run, seq, warmup, status, scheduled_s, completed_s, token_times "
                   "FROM observations");
  Statement update(db, path,
                   "UPDATE observations SET ttft_s = ?, tpot_s = ?, e2e_s = ? "
                   "WHERE run = ? AND seq = ?");
  while (select.step()) {
    Observation o;
    o.warmup = select.integer(2) != 0;
    o.status = request_status_from_string(select.text(3));
    o.scheduled_s = select.real(4);
    o.completed_s = select.real(5);
    o.token_times_s = select.times(6);
    const RequestSamples s = per_request_samples(o);
    update.bind_optional(1, s.ttft_s).bind_optional(2, s.tpot_s).bind_optional(3, s.e2e_s);
    update.bind(4, select.integer(0)).bind(5, select.integer(1)).run();
  }
}

// Version 3: each run's per-request samples, sorted, one column per quantity
// (ttft, tpot, itl, e2e) stored as little-endian doubles in chunks of
// kSortedChunk values, plus n, mean and standard deviation. A quantile of any
// level and its order-statistic interval then read four values by incremental
// blob I/O instead of every observation row (rowid table: blob I/O needs one).
constexpr const char* kSchemaV3 = R"sql(
CREATE TABLE sorted_samples (
  id INTEGER PRIMARY KEY,
  run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  quantity TEXT NOT NULL,
  chunk INTEGER NOT NULL,
  data BLOB NOT NULL,
  UNIQUE (run, quantity, chunk)
);
CREATE TABLE sample_summaries (
  run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  quantity TEXT NOT NULL,
  n INTEGER NOT NULL,
  mean REAL,
  stddev REAL,
  PRIMARY KEY (run, quantity)
) WITHOUT ROWID;
)sql";

// Chunks of 64 KiB: SQLite keeps a large value as a chain of overflow pages
// that a read at an offset walks from the start, so a small chunk bounds a
// lookup to a few page reads (8 MiB chunks cost 15 ms a table); and any run
// size stays far below SQLite's 1 GB value limit.
constexpr std::size_t kSortedChunk = Store::kSortedChunkValues;

constexpr std::array<Quantity, 4> kQuantities{Quantity::kTtft, Quantity::kTpot, Quantity::kItl,
                                              Quantity::kE2e};

const char* quantity_key(Quantity q) {
  switch (q) {
    case Quantity::kTtft:
      return "ttft";
    case Quantity::kTpot:
      return "tpot";
    case Quantity::kItl:
      return "itl";
    case Quantity::kE2e:
      break;
  }
  return "e2e";
}

// Writes a run's sorted sample columns and summaries (samples must be sorted).
void write_sample_columns(sqlite3* db, const std::string& path, long long key,
                          const RunSamples& samples) {
  Statement chunk(db, path,
                  "INSERT INTO sorted_samples(run, quantity, chunk, data) VALUES (?, ?, ?, ?)");
  Statement summary(db, path,
                    "INSERT INTO sample_summaries(run, quantity, n, mean, stddev) "
                    "VALUES (?, ?, ?, ?, ?)");
  for (Quantity q : kQuantities) {
    const std::vector<double>& values = samples_of(samples, q);
    const std::string name = quantity_key(q);
    for (std::size_t start = 0, index = 0; start < values.size(); start += kSortedChunk, ++index) {
      const std::size_t end = std::min(values.size(), start + kSortedChunk);
      const std::vector<double> part(values.begin() + static_cast<std::ptrdiff_t>(start),
                                     values.begin() + static_cast<std::ptrdiff_t>(end));
      chunk.bind(1, key).bind(2, name).bind(3, static_cast<long long>(index));
      chunk.bind_blob(4, pack_times(part)).run();
    }
    summary.bind(1, key).bind(2, name).bind(3, static_cast<long long>(values.size()));
    summary.bind_optional(4, values.empty() ? std::nullopt : std::optional<double>(mean(values)));
    summary.bind_optional(
        5, values.size() < 2 ? std::nullopt : std::optional<double>(sample_stddev(values)));
    summary.run();
  }
}

RunSamples read_samples(sqlite3* db, const std::string& path, long long key, bool with_itl);

void backfill_sorted_samples(sqlite3* db, const std::string& path) {
  std::vector<long long> keys;
  {
    Statement runs(db, path, "SELECT id FROM runs ORDER BY id");
    while (runs.step()) keys.push_back(runs.integer(0));
  }
  for (long long key : keys) {
    RunSamples samples = read_samples(db, path, key, /*with_itl=*/true);
    sort_samples(samples);
    write_sample_columns(db, path, key, samples);
    // Percentile intervals stored by an older Prism were bootstrapped: replace
    // them with the order-statistic intervals this version computes, so a table
    // shows one kind of interval whatever version stored the run.
    Statement stored(db, path, "SELECT name, confidence FROM metrics WHERE run = ?");
    stored.bind(1, key);
    std::vector<std::pair<std::string, double>> names;
    while (stored.step()) {
      const double c = stored.real(1);
      names.emplace_back(stored.text(0), c > 0.0 && c < 1.0 ? c : 0.95);
    }
    Statement update(db, path,
                     "UPDATE metrics SET value = ?, ci_low = ?, ci_high = ? WHERE run = ? AND "
                     "name = ?");
    for (const auto& [name, confidence] : names) {
      MetricSpec spec;
      try {
        spec = parse_metric(name);
      } catch (const std::invalid_argument&) {
        continue;  // a metric this version does not know: leave it as stored
      }
      if (!spec.quantity || spec.quantile < 0.0) continue;
      const auto& values = samples_of(samples, *spec.quantity);
      if (values.empty()) continue;
      const Estimate e = quantile_with_order_statistic_ci(values, spec.quantile, confidence);
      update.bind_number(1, e.value).bind_number(2, e.ci_low).bind_number(3, e.ci_high);
      update.bind(4, key).bind(5, name);
      update.run();
    }
  }
}

struct Migration {
  int version;
  const char* sql;
  void (*after)(sqlite3*, const std::string&);
};

const std::vector<Migration>& migrations() {
  static const std::vector<Migration> list{
      {1, kSchemaV1, nullptr},
      {2, kSchemaV2, backfill_derived_samples},
      {3, kSchemaV3, backfill_sorted_samples},
  };
  return list;
}

int user_version(sqlite3* db, const std::string& path) {
  Statement s(db, path, "PRAGMA user_version");
  s.step();
  return static_cast<int>(s.integer(0));
}

void migrate(sqlite3* db, const std::string& path, int target) {
  const int current = user_version(db, path);
  if (current > Store::kSchemaVersion) {
    throw StoreError(fmt::format(
        "{}: field 'PRAGMA user_version': schema version {} is newer than this Prism supports ({})",
        path, current, Store::kSchemaVersion));
  }
  for (const auto& m : migrations()) {
    if (m.version <= current || m.version > target) continue;
    exec(db, path, "BEGIN IMMEDIATE");
    try {
      exec(db, path, m.sql);
      if (m.after) m.after(db, path);
      exec(db, path, fmt::format("PRAGMA user_version = {}", m.version).c_str());
      exec(db, path, "COMMIT");
    } catch (...) {
      sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
  }
}

sqlite3* open_database(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) {
    std::error_code ignored;
    std::filesystem::create_directories(parent, ignored);
  }
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    std::string message = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    throw StoreError(fmt::format("{}: cannot open result store: {}", path, message));
  }
  sqlite3_busy_timeout(db, 5000);
  try {
    exec(db, path, "PRAGMA foreign_keys = ON");
    // Reading the schema is the first access to the file: a file that is not
    // a database fails here, and the message says so.
    Statement check(db, path, "SELECT count(*) FROM sqlite_master");
    check.step();
  } catch (const StoreError& e) {
    sqlite3_close(db);
    throw StoreError(fmt::format("{} (not a Prism result store, or corrupted)", e.what()));
  }
  return db;
}

std::string fnv1a_hex(const std::string& text) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return fmt::format("{:016x}", h);
}

std::string unit_of(const MetricSpec& spec) {
  if (spec.quantity) return "s";
  if (spec.display_unit == "%") return "ratio";
  return spec.display_unit;
}

json parse_stored_json(const std::string& text, const std::string& path, const std::string& field) {
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    throw StoreError(fmt::format("{}: field '{}': corrupted JSON: {}", path, field, e.what()));
  }
}

double nan_if_null(const Statement& s, int c) {
  return s.is_null(c) ? std::numeric_limits<double>::quiet_NaN() : s.real(c);
}

RunSamples read_samples(sqlite3* db, const std::string& path, long long key, bool with_itl) {
  // Without ITL, only the blob's length is read (SQLite knows it without the bytes).
  Statement s(db, path,
              with_itl ? "SELECT warmup, status, scheduled_s, completed_s, prompt_tokens, "
                         "completion_tokens, ttft_s, tpot_s, e2e_s, token_times FROM observations "
                         "WHERE run = ? ORDER BY seq"
                       : "SELECT warmup, status, scheduled_s, completed_s, prompt_tokens, "
                         "completion_tokens, ttft_s, tpot_s, e2e_s, length(token_times) FROM "
                         "observations WHERE run = ? ORDER BY seq");
  s.bind(1, key);
  RunSamples r;
  {
    Statement count(db, path, "SELECT request_count FROM runs WHERE id = ?");
    count.bind(1, key);
    if (count.step()) {
      const auto n = static_cast<std::size_t>(count.integer(0));
      for (auto* v : {&r.ttft_s, &r.tpot_s, &r.e2e_s, &r.prompt_tokens, &r.ttft_by_request,
                      &r.tpot_by_request, &r.e2e_by_request})
        v->reserve(n);
    }
  }
  bool first = true;
  while (s.step()) {
    if (s.integer(0) != 0) continue;  // warmup
    ++r.requests;
    const double scheduled = s.real(2);
    const double completed = s.real(3);
    if (first) {
      r.first_scheduled_s = scheduled;
      r.last_completed_s = completed;
      first = false;
    }
    r.first_scheduled_s = std::min(r.first_scheduled_s, scheduled);
    r.last_completed_s = std::max(r.last_completed_s, completed);
    if (!s.text_equals(1, "ok")) {
      ++r.failed;
      continue;
    }
    ++r.succeeded;
    const double ttft = nan_if_null(s, 6);
    const double tpot = nan_if_null(s, 7);
    const double e2e = nan_if_null(s, 8);
    if (!std::isnan(ttft)) r.ttft_s.push_back(ttft);
    if (!std::isnan(tpot)) r.tpot_s.push_back(tpot);
    if (!std::isnan(e2e)) r.e2e_s.push_back(e2e);
    const std::size_t token_count =
        (with_itl ? s.bytes(9) : static_cast<std::size_t>(s.integer(9))) / sizeof(double);
    if (with_itl) {
      const std::vector<double> times = s.times(9);
      for (std::size_t i = 1; i < times.size(); ++i) r.itl_s.push_back(times[i] - times[i - 1]);
    }
    const auto prompt = static_cast<std::uint64_t>(s.integer(4));
    const auto completion = static_cast<std::uint64_t>(s.integer(5));
    r.prompt_tokens.push_back(static_cast<double>(prompt));
    r.ttft_by_request.push_back(ttft);
    r.tpot_by_request.push_back(tpot);
    r.e2e_by_request.push_back(e2e);
    r.input_tokens += prompt;
    r.output_tokens += completion != 0 ? completion : token_count;
  }
  return r;
}

}  // namespace

std::string pack_times(const std::vector<double>& times) {
  std::string out(times.size() * sizeof(double), '\0');
  if constexpr (std::endian::native == std::endian::little) {
    if (!times.empty()) std::memcpy(out.data(), times.data(), out.size());
  } else {
    for (std::size_t i = 0; i < times.size(); ++i) {
      auto bits = std::bit_cast<std::uint64_t>(times[i]);
      for (int b = 0; b < 8; ++b) out[i * 8 + b] = static_cast<char>((bits >> (8 * b)) & 0xff);
    }
  }
  return out;
}

std::vector<double> unpack_times(const void* data, std::size_t bytes) {
  std::vector<double> out(bytes / sizeof(double));
  if (out.empty()) return out;
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(out.data(), data, out.size() * sizeof(double));
  } else {
    const auto* p = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < out.size(); ++i) {
      std::uint64_t bits = 0;
      for (int b = 0; b < 8; ++b) bits |= static_cast<std::uint64_t>(p[i * 8 + b]) << (8 * b);
      out[i] = std::bit_cast<double>(bits);
    }
  }
  return out;
}

std::string target_display_name(const json& target) {
  if (!target.is_object()) return "unknown";
  for (const char* key : {"name", "label"}) {
    if (auto it = target.find(key); it != target.end() && it->is_string() && !it->empty())
      return it->get<std::string>();
  }
  std::string name;
  for (const char* key : {"engine", "kind", "type"}) {
    if (auto it = target.find(key); it != target.end() && it->is_string()) {
      name = it->get<std::string>();
      break;
    }
  }
  if (auto it = target.find("model"); it != target.end() && it->is_string()) {
    name = name.empty() ? it->get<std::string>() : name + " " + it->get<std::string>();
  }
  return name.empty() ? "unknown" : name;
}

std::string workload_display_name(const json& workload) {
  if (workload.is_object()) {
    if (auto it = workload.find("name"); it != workload.end() && it->is_string())
      return it->get<std::string>();
  }
  return "unknown";
}

void create_store_at_version(const std::string& path, int version) {
  sqlite3* db = open_database(path);
  try {
    migrate(db, path, version);
  } catch (...) {
    sqlite3_close(db);
    throw;
  }
  sqlite3_close(db);
}

Store::Store(const std::string& path) : path_(path) {
  db_ = open_database(path);
  try {
    exec(db_, path_, "PRAGMA synchronous = NORMAL");
    migrate(db_, path_, kSchemaVersion);
  } catch (...) {
    sqlite3_close(db_);
    db_ = nullptr;
    throw;
  }
}

Store::~Store() {
  sqlite3_close(db_);
}

int Store::schema_version() const {
  return user_version(db_, path_);
}

long long Store::run_key(const std::string& run_id) const {
  Statement s(db_, path_, "SELECT id FROM runs WHERE run_id = ?");
  s.bind(1, run_id);
  return s.step() ? s.integer(0) : -1;
}

bool Store::has_run(const std::string& run_id) const {
  return run_key(run_id) >= 0;
}

void Store::put_run(const Run& run) {
  if (run.run_id.empty()) throw StoreError(fmt::format("{}: field 'run_id': empty", path_));
  // Metrics are computed before the transaction so the write lock is short.
  RunSamples samples = collect_samples(run.observations);
  sort_samples(samples);  // once: every quantile metric and the sorted columns use it
  const Slo slo = slo_from_configuration(run.configuration);
  std::vector<std::pair<MetricSpec, Estimate>> metrics;
  for (const auto& name : standard_metric_names()) {
    const MetricSpec spec = parse_metric(name);
    metrics.emplace_back(spec, compute_metric(samples, spec, slo));
  }

  exec(db_, path_, "BEGIN IMMEDIATE");
  try {
    if (const long long old = run_key(run.run_id); old >= 0) {
      Statement del(db_, path_, "DELETE FROM runs WHERE id = ?");
      del.bind(1, old).run();
    }
    const std::string environment = run.environment.dump();
    const std::string hash = fnv1a_hex(environment);
    Statement env(db_, path_, "INSERT OR IGNORE INTO environments(hash, json) VALUES (?, ?)");
    env.bind(1, hash).bind(2, environment).run();
    Statement env_id(db_, path_, "SELECT id FROM environments WHERE hash = ?");
    env_id.bind(1, hash);
    env_id.step();
    const long long environment_key = env_id.integer(0);

    Statement insert(db_, path_,
                     "INSERT INTO runs(run_id, started_at, finished_at, complete, "
                     "incomplete_reason, prism_version, prism_git_sha, environment_id, "
                     "configuration, target, workload, target_name, workload_name, metrics_json, "
                     "request_count) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
    insert.bind(1, run.run_id)
        .bind(2, run.started_at)
        .bind(3, run.finished_at)
        .bind(4, static_cast<long long>(run.complete))
        .bind(5, run.incomplete_reason)
        .bind(6, run.prism_version)
        .bind(7, run.prism_git_sha)
        .bind(8, environment_key)
        .bind(9, run.configuration.dump())
        .bind(10, run.target.dump())
        .bind(11, run.workload.dump())
        .bind(12, target_display_name(run.target))
        .bind(13, workload_display_name(run.workload))
        .bind(14, run.metrics.dump())
        .bind(15, static_cast<long long>(run.observations.size()))
        .run();
    const long long key = sqlite3_last_insert_rowid(db_);

    Statement obs(db_, path_,
                  "INSERT INTO observations(run, seq, request_id, session, turn, warmup, "
                  "scheduled_s, sent_s, completed_s, prompt_tokens, completion_tokens, "
                  "cached_tokens, status, error, http_status, error_message, token_times, ttft_s, "
                  "tpot_s, e2e_s) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
    long long seq = 0;
    for (const auto& o : run.observations) {
      const RequestSamples s = per_request_samples(o);
      obs.bind(1, key)
          .bind(2, seq++)
          .bind(3, static_cast<long long>(o.request_id))
          .bind(4, static_cast<long long>(o.session))
          .bind(5, static_cast<long long>(o.turn))
          .bind(6, static_cast<long long>(o.warmup))
          .bind(7, o.scheduled_s)
          .bind(8, o.sent_s)
          .bind(9, o.completed_s)
          .bind(10, static_cast<long long>(o.prompt_tokens))
          .bind(11, static_cast<long long>(o.completion_tokens))
          .bind(12, static_cast<long long>(o.cached_tokens))
          .bind(13, to_string(o.status))
          .bind(14, to_string(o.error))
          .bind(15, static_cast<long long>(o.http_status))
          .bind(16, o.error_message)
          .bind_blob(17, pack_times(o.token_times_s))
          .bind_optional(18, s.ttft_s)
          .bind_optional(19, s.tpot_s)
          .bind_optional(20, s.e2e_s)
          .run();
    }

    Statement metric(db_, path_,
                     "INSERT INTO metrics(run, name, value, ci_low, ci_high, confidence, n, unit) "
                     "VALUES (?,?,?,?,?,?,?,?)");
    for (const auto& [spec, e] : metrics) {
      metric.bind(1, key).bind(2, spec.name);
      metric.bind_number(3, e.value).bind_number(4, e.ci_low).bind_number(5, e.ci_high);
      metric.bind(6, e.confidence).bind(7, static_cast<long long>(e.n)).bind(8, unit_of(spec));
      metric.run();
    }
    write_sample_columns(db_, path_, key, samples);
    if (!run.stages.is_null()) {
      Statement stages(db_, path_, "INSERT INTO stages(run, json) VALUES (?, ?)");
      stages.bind(1, key).bind(2, run.stages.dump()).run();
    }
    exec(db_, path_, "COMMIT");
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

Run Store::get_run(const std::string& run_id, bool with_observations) const {
  Statement s(db_, path_,
              "SELECT r.id, r.run_id, r.started_at, r.finished_at, r.complete, "
              "r.incomplete_reason, r.prism_version, r.prism_git_sha, e.json, r.configuration, "
              "r.target, r.workload, r.metrics_json, st.json FROM runs r "
              "LEFT JOIN environments e ON e.id = r.environment_id "
              "LEFT JOIN stages st ON st.run = r.id WHERE r.run_id = ?");
  s.bind(1, run_id);
  if (!s.step()) throw StoreError(fmt::format("{}: no run '{}' in the store", path_, run_id));
  Run run;
  const long long key = s.integer(0);
  const std::string where = fmt::format("runs[{}].", run_id);
  run.run_id = s.text(1);
  run.started_at = s.text(2);
  run.finished_at = s.text(3);
  run.complete = s.integer(4) != 0;
  run.incomplete_reason = s.text(5);
  run.prism_version = s.text(6);
  run.prism_git_sha = s.text(7);
  run.environment =
      s.is_null(8) ? json::object() : parse_stored_json(s.text(8), path_, "environments.json");
  run.configuration = parse_stored_json(s.text(9), path_, where + "configuration");
  run.target = parse_stored_json(s.text(10), path_, where + "target");
  run.workload = parse_stored_json(s.text(11), path_, where + "workload");
  run.metrics = parse_stored_json(s.text(12), path_, where + "metrics_json");
  run.stages = s.is_null(13) ? json(nullptr) : parse_stored_json(s.text(13), path_, "stages.json");
  if (!with_observations) return run;

  Statement obs(db_, path_,
                "SELECT request_id, session, turn, warmup, scheduled_s, sent_s, completed_s, "
                "prompt_tokens, completion_tokens, cached_tokens, status, error, http_status, "
                "error_message, token_times, seq FROM observations WHERE run = ? ORDER BY seq");
  obs.bind(1, key);
  while (obs.step()) {
    Observation o;
    o.request_id = static_cast<std::uint64_t>(obs.integer(0));
    o.session = static_cast<std::uint64_t>(obs.integer(1));
    o.turn = static_cast<std::uint32_t>(obs.integer(2));
    o.warmup = obs.integer(3) != 0;
    o.scheduled_s = obs.real(4);
    o.sent_s = obs.real(5);
    o.completed_s = obs.real(6);
    o.prompt_tokens = static_cast<std::uint32_t>(obs.integer(7));
    o.completion_tokens = static_cast<std::uint32_t>(obs.integer(8));
    o.cached_tokens = static_cast<std::uint32_t>(obs.integer(9));
    try {
      o.status = request_status_from_string(obs.text(10));
      o.error = error_class_from_string(obs.text(11));
    } catch (const std::invalid_argument& e) {
      throw StoreError(fmt::format("{}: field 'observations.status/error' (run {}, seq {}): {}",
                                   path_, run_id, obs.integer(15), e.what()));
    }
    o.http_status = static_cast<int>(obs.integer(12));
    o.error_message = obs.text(13);
    o.token_times_s = obs.times(14);
    run.observations.push_back(std::move(o));
  }
  return run;
}

std::vector<RunSummary> Store::list_runs() const {
  Statement s(db_, path_,
              "SELECT run_id, started_at, target_name, workload_name, complete, request_count "
              "FROM runs ORDER BY started_at, id");
  std::vector<RunSummary> out;
  while (s.step()) {
    RunSummary r;
    r.run_id = s.text(0);
    r.started_at = s.text(1);
    r.target = s.text(2);
    r.workload = s.text(3);
    r.complete = s.integer(4) != 0;
    r.requests = static_cast<std::size_t>(s.integer(5));
    out.push_back(std::move(r));
  }
  return out;
}

void Store::remove_run(const std::string& run_id) {
  const long long key = run_key(run_id);
  if (key < 0) throw StoreError(fmt::format("{}: no run '{}' in the store", path_, run_id));
  Statement del(db_, path_, "DELETE FROM runs WHERE id = ?");
  del.bind(1, key).run();
}

RunSamples Store::load_samples(const std::string& run_id, bool with_itl) const {
  const long long key = run_key(run_id);
  if (key < 0) throw StoreError(fmt::format("{}: no run '{}' in the store", path_, run_id));
  return read_samples(db_, path_, key, with_itl);
}

namespace {

// Reads single values of a run's sorted column through incremental blob I/O.
class SortedColumnReader {
 public:
  SortedColumnReader(sqlite3* db, const std::string& path, long long key, Quantity quantity)
      : db_(db), path_(path) {
    Statement chunks(db, path,
                     "SELECT id, length(data) FROM sorted_samples WHERE run = ? AND quantity = ? "
                     "ORDER BY chunk");
    chunks.bind(1, key).bind(2, std::string(quantity_key(quantity)));
    bool short_seen = false;  // only the last chunk may be short
    while (chunks.step()) {
      if (short_seen) {
        throw StoreError(fmt::format(
            "{}: field 'sorted_samples.data': a short chunk before the last (run key {}, {})", path,
            key, quantity_key(quantity)));
      }
      rowids_.push_back(chunks.integer(0));
      short_seen = chunks.integer(1) != static_cast<long long>(kSortedChunk * sizeof(double));
    }
  }
  ~SortedColumnReader() { sqlite3_blob_close(blob_); }
  SortedColumnReader(const SortedColumnReader&) = delete;
  SortedColumnReader& operator=(const SortedColumnReader&) = delete;

  double at(std::size_t index) {
    const std::size_t chunk = index / kSortedChunk;
    if (chunk >= rowids_.size()) {
      throw StoreError(fmt::format("{}: field 'sorted_samples': value {} is past the stored column",
                                   path_, index));
    }
    const sqlite3_int64 rowid = rowids_[chunk];
    int rc = SQLITE_OK;
    if (blob_ == nullptr) {
      rc = sqlite3_blob_open(db_, "main", "sorted_samples", "data", rowid, 0, &blob_);
    } else if (rowid != open_rowid_) {
      rc = sqlite3_blob_reopen(blob_, rowid);
    }
    open_rowid_ = rowid;
    unsigned char bytes[sizeof(double)];
    if (rc == SQLITE_OK)
      rc = sqlite3_blob_read(blob_, bytes, sizeof bytes,
                             static_cast<int>((index % kSortedChunk) * sizeof(double)));
    if (rc != SQLITE_OK) {
      throw StoreError(
          fmt::format("{}: field 'sorted_samples.data': {}", path_, sqlite3_errmsg(db_)));
    }
    return unpack_times(bytes, sizeof bytes).front();
  }

 private:
  sqlite3* db_;
  const std::string& path_;
  std::vector<sqlite3_int64> rowids_;
  sqlite3_blob* blob_ = nullptr;
  sqlite3_int64 open_rowid_ = -1;
};

}  // namespace

Estimate Store::latency_metric(const std::string& run_id, const MetricSpec& spec,
                               double confidence) const {
  if (!spec.quantity)
    throw std::invalid_argument(fmt::format("'{}' is not a per-request latency", spec.name));
  const long long key = run_key(run_id);
  if (key < 0) throw StoreError(fmt::format("{}: no run '{}' in the store", path_, run_id));
  Statement summary(db_, path_,
                    "SELECT n, mean, stddev FROM sample_summaries WHERE run = ? AND quantity = ?");
  summary.bind(1, key).bind(2, std::string(quantity_key(*spec.quantity)));
  Estimate e;
  e.confidence = confidence;
  if (!summary.step()) return e;
  const auto n = static_cast<std::size_t>(summary.integer(0));
  if (n == 0) return e;
  if (spec.quantile < 0.0)
    return mean_with_normal_ci(n, summary.real(1), summary.is_null(2) ? 0.0 : summary.real(2),
                               confidence);
  SortedColumnReader column(db_, path_, key, *spec.quantity);
  return quantile_with_order_statistic_ci(
      n, [&](std::size_t i) { return column.at(i); }, spec.quantile, confidence);
}

std::vector<double> Store::sorted_samples(const std::string& run_id, Quantity quantity) const {
  const long long key = run_key(run_id);
  if (key < 0) throw StoreError(fmt::format("{}: no run '{}' in the store", path_, run_id));
  Statement s(db_, path_,
              "SELECT data FROM sorted_samples WHERE run = ? AND quantity = ? ORDER BY chunk");
  s.bind(1, key).bind(2, std::string(quantity_key(quantity)));
  std::vector<double> out;
  while (s.step()) {
    const std::vector<double> part = s.times(0);
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

std::map<std::string, StoredMetric> Store::load_metrics(const std::string& run_id) const {
  const long long key = run_key(run_id);
  if (key < 0) throw StoreError(fmt::format("{}: no run '{}' in the store", path_, run_id));
  Statement s(
      db_, path_,
      "SELECT name, value, ci_low, ci_high, confidence, n, unit FROM metrics WHERE run = ?");
  s.bind(1, key);
  std::map<std::string, StoredMetric> out;
  while (s.step()) {
    StoredMetric m;
    m.estimate.value = nan_if_null(s, 1);
    m.estimate.ci_low = nan_if_null(s, 2);
    m.estimate.ci_high = nan_if_null(s, 3);
    m.estimate.confidence = s.real(4);
    m.estimate.n = static_cast<std::size_t>(s.integer(5));
    m.unit = s.text(6);
    out.emplace(s.text(0), m);
  }
  return out;
}

void Store::set_baseline(const std::string& name, const std::string& run_id) {
  if (!has_run(run_id)) {
    throw StoreError(
        fmt::format("{}: cannot set baseline '{}': no run '{}' in the store", path_, name, run_id));
  }
  Statement s(db_, path_,
              "INSERT INTO baselines(name, run_id, set_at) VALUES (?, ?, ?) "
              "ON CONFLICT(name) DO UPDATE SET run_id = excluded.run_id, set_at = excluded.set_at");
  s.bind(1, name).bind(2, run_id).bind(3, utc_timestamp_now()).run();
}

std::optional<std::string> Store::baseline(const std::string& name) const {
  Statement s(db_, path_, "SELECT run_id FROM baselines WHERE name = ?");
  s.bind(1, name);
  if (!s.step()) return std::nullopt;
  return s.text(0);
}

}  // namespace prism::results
