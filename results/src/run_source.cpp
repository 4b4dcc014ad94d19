#include "prism/results/run_source.h"

#include <filesystem>
#include <stdexcept>

#include <fmt/core.h>

namespace prism::results {

RunLoader::RunLoader(std::string store_path) : store_path_(std::move(store_path)) {}
RunLoader::~RunLoader() = default;

Store& RunLoader::store() {
  if (!store_) store_ = std::make_unique<Store>(store_path_);
  return *store_;
}

RunHandle RunLoader::resolve(const std::string& ref) {
  RunHandle handle;
  handle.ref = ref;
  std::error_code ec;
  if (std::filesystem::is_regular_file(ref, ec) && !ref.ends_with(".db")) {
    auto it = runs_.find(ref);
    if (it == runs_.end()) it = runs_.emplace(ref, read_run_file(ref)).first;
    handle.run_id = it->second.run_id;
    return handle;
  }
  if (!std::filesystem::exists(store_path_, ec)) {
    throw std::runtime_error(fmt::format(
        "run '{}': no such run file, and there is no result store at {} to look it up in", ref,
        store_path_));
  }
  Store& s = store();
  handle.from_store = true;
  std::string id = ref;
  if (ref.starts_with("baseline:")) {
    const std::string name = ref.substr(9);
    const auto base = s.baseline(name);
    if (!base)
      throw std::runtime_error(fmt::format("{}: no baseline named '{}'", store_path_, name));
    id = *base;
  }
  if (s.has_run(id)) {
    handle.run_id = id;
    return handle;
  }
  std::vector<std::string> matches;
  for (const auto& summary : s.list_runs())
    if (summary.run_id.starts_with(id)) matches.push_back(summary.run_id);
  if (matches.size() == 1) {
    handle.run_id = matches.front();
    return handle;
  }
  if (matches.empty()) {
    throw std::runtime_error(
        fmt::format("run '{}': no such run file, and no run with that id in {}", ref, store_path_));
  }
  throw std::runtime_error(fmt::format("run '{}': ambiguous in {} ({} runs start with it)", ref,
                                       store_path_, matches.size()));
}

const Run& RunLoader::run(const RunHandle& handle) {
  auto it = runs_.find(handle.ref);
  if (it != runs_.end()) return it->second;
  return runs_.emplace(handle.ref, store().get_run(handle.run_id)).first->second;
}

RunSamples RunLoader::samples(const RunHandle& handle, bool with_itl) {
  if (handle.from_store && runs_.find(handle.ref) == runs_.end())
    return store().load_samples(handle.run_id, with_itl);
  return collect_samples(run(handle).observations);
}

TableRun RunLoader::table_run(const RunHandle& handle, const std::vector<std::string>& metrics,
                              const BootstrapOptions& options) {
  TableRun t;
  t.run_id = handle.run_id;
  std::map<std::string, StoredMetric> stored;
  Run header;
  if (handle.from_store) {
    header = store().get_run(handle.run_id, /*with_observations=*/false);
    stored = store().load_metrics(handle.run_id);
  }
  const Run& r = handle.from_store ? header : run(handle);
  t.started_at = r.started_at;
  t.target = target_display_name(r.target);
  t.workload = workload_display_name(r.workload);
  t.environment = r.environment;
  std::optional<RunSamples> samples_cache;
  const Slo slo = slo_from_configuration(r.configuration);
  for (const auto& name : metrics) {
    const MetricSpec spec = parse_metric(name);
    if (auto it = stored.find(name); it != stored.end()) {
      t.metrics[name] = it->second.estimate;
      continue;
    }
    if (handle.from_store && spec.quantity) {
      // Any percentile or mean from the sorted columns: reads four values.
      t.metrics[name] = store().latency_metric(handle.run_id, spec, options.confidence);
      continue;
    }
    if (!samples_cache) {
      bool needs_itl = false;
      for (const auto& m : metrics) needs_itl = needs_itl || m.starts_with("itl.");
      samples_cache = handle.from_store ? store().load_samples(handle.run_id, needs_itl)
                                        : collect_samples(r.observations);
      sort_samples(*samples_cache);  // once, for every metric of this run
    }
    t.metrics[name] = compute_metric(*samples_cache, spec, slo, options);
  }
  return t;
}

}  // namespace prism::results
