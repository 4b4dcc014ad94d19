// The SQLite result store: runs, environments (deduplicated by content),
// per-request observations, precomputed metrics with confidence intervals,
// each run's per-request samples sorted into columns (any percentile is an
// index lookup), stage breakdowns and named baselines. The schema is versioned with
// PRAGMA user_version and upgraded in place by ordered migrations.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "prism/results/metrics.h"
#include "prism/results/run_file.h"
#include "prism/results/samples.h"

struct sqlite3;

namespace prism::results {

inline constexpr const char* kDefaultStorePath = "results/prism.db";

// What went wrong, naming the database file and (where there is one) the
// table, column or run involved.
class StoreError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct RunSummary {
  std::string run_id;
  std::string started_at;
  std::string target;    // display name of the system measured
  std::string workload;  // workload name
  bool complete = true;
  std::size_t requests = 0;
};

struct StoredMetric {
  Estimate estimate;
  std::string unit;  // stored unit: "s", "req/s", "tok/s", "ratio"
};

class Store {
 public:
  static constexpr int kSchemaVersion = 3;
  // Values per stored chunk of a sorted sample column (schema v3).
  static constexpr std::size_t kSortedChunkValues = 8192;

  // Opens (creating if needed) and migrates to kSchemaVersion. Throws
  // StoreError naming the file for a corrupt database or a newer schema.
  explicit Store(const std::string& path);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const std::string& path() const { return path_; }
  int schema_version() const;

  // Inserts a run, replacing a stored run with the same id. Computes and
  // stores the standard metrics (standard_metric_names()) from observations.
  void put_run(const Run& run);
  bool has_run(const std::string& run_id) const;
  // Throws StoreError when absent. Without observations: header and JSON slots only.
  Run get_run(const std::string& run_id, bool with_observations = true) const;
  std::vector<RunSummary> list_runs() const;  // oldest first
  void remove_run(const std::string& run_id);

  // Per-request samples read from the stored derived columns, without
  // rebuilding Observation objects: the fast path for tables and compare.
  // Without with_itl the token lists are not decoded (itl_s stays empty).
  RunSamples load_samples(const std::string& run_id, bool with_itl = true) const;
  std::map<std::string, StoredMetric> load_metrics(const std::string& run_id) const;

  // Any latency metric (ttft|tpot|itl|e2e . p<N>|mean) from the run's stored
  // sorted sample columns (schema v3): a quantile and its order-statistic
  // interval read four stored values, a mean its stored n, mean and standard
  // deviation, so the cost does not grow with the run's size. n == 0 when the
  // run has no such samples. Throws std::invalid_argument for a metric that is
  // not a latency, StoreError for an unknown run.
  Estimate latency_metric(const std::string& run_id, const MetricSpec& spec,
                          double confidence = 0.95) const;
  // A quantity's samples of a run, ascending, as stored.
  std::vector<double> sorted_samples(const std::string& run_id, Quantity quantity) const;

  void set_baseline(const std::string& name, const std::string& run_id);
  std::optional<std::string> baseline(const std::string& name) const;

 private:
  long long run_key(const std::string& run_id) const;  // -1 when absent
  std::string path_;
  sqlite3* db_ = nullptr;
};

// Creates a database at an older schema version (no migrations past it).
// Exists so tests and tools can exercise the upgrade path.
void create_store_at_version(const std::string& path, int version);

// Display names used by the store, tables and plots.
std::string target_display_name(const nlohmann::json& target);
std::string workload_display_name(const nlohmann::json& workload);

// Packing of token times for the observations table: little-endian doubles.
std::string pack_times(const std::vector<double>& times);
std::vector<double> unpack_times(const void* data, std::size_t bytes);

}  // namespace prism::results
