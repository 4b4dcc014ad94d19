// prism results list|show|export|import|remove: the result store.
#include <iostream>

#include <fmt/core.h>

#include "commands.h"
#include "prism/results/metrics.h"
#include "prism/results/run_source.h"
#include "prism/results/store.h"
#include "prism/results/table.h"

namespace prism::cli {
namespace {

void print_metrics(const std::map<std::string, results::Estimate>& metrics) {
  for (const auto& name : results::standard_metric_names()) {
    auto it = metrics.find(name);
    if (it == metrics.end() || it->second.n == 0) continue;
    const auto spec = results::parse_metric(name);
    const auto& e = it->second;
    std::optional<double> half;
    if (e.has_ci()) half = (e.ci_high - e.ci_low) / 2.0 * spec.display_scale;
    std::cout << fmt::format("  {:<22} {:>18} {}\n", name,
                             results::format_value(e.value * spec.display_scale, half),
                             spec.display_unit);
  }
}

}  // namespace

void add_results_command(CLI::App& app, int& exit_code) {
  struct Options {
    std::string db = results::kDefaultStorePath;
    std::vector<std::string> files;
    std::string run;
    std::string output;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("results", "Manage the result store (SQLite)");
  cmd->require_subcommand(1);

  CLI::App* list = cmd->add_subcommand("list", "List the runs in the store");
  list->add_option("--db", o->db, "Result store")->capture_default_str();
  list->add_flag("--json", o->json, "Print JSON");
  list->callback([o, &exit_code] {
    results::Store store(o->db);
    const auto runs = store.list_runs();
    if (o->json) {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& r : runs)
        out.push_back({{"run_id", r.run_id},
                       {"started_at", r.started_at},
                       {"target", r.target},
                       {"workload", r.workload},
                       {"requests", r.requests},
                       {"complete", r.complete}});
      std::cout << out.dump(2) << "\n";
    } else {
      std::cout << fmt::format("{:<28} {:<24} {:<20} {:<16} {:>9} {}\n", "RUN", "STARTED", "TARGET",
                               "WORKLOAD", "REQUESTS", "COMPLETE");
      for (const auto& r : runs)
        std::cout << fmt::format("{:<28} {:<24} {:<20} {:<16} {:>9} {}\n", r.run_id, r.started_at,
                                 r.target, r.workload, r.requests, r.complete ? "yes" : "no");
    }
    exit_code = kExitOk;
  });

  CLI::App* show =
      cmd->add_subcommand("show", "Show a run: target, workload, environment, metrics");
  show->add_option("RUN", o->run, "Run id in the store, or a run file")->required();
  show->add_option("--db", o->db, "Result store")->capture_default_str();
  show->add_flag("--json", o->json, "Print the run header and metrics as JSON");
  show->callback([o, &exit_code] {
    results::RunLoader loader(o->db);
    const auto handle = loader.resolve(o->run);
    const auto table_run = loader.table_run(handle, results::standard_metric_names());
    if (o->json) {
      nlohmann::json metrics = nlohmann::json::object();
      for (const auto& [name, e] : table_run.metrics) {
        if (e.n == 0) continue;
        metrics[name] = {{"value", e.value}, {"n", e.n}};
        if (e.has_ci()) {
          metrics[name]["ci_low"] = e.ci_low;
          metrics[name]["ci_high"] = e.ci_high;
        }
      }
      std::cout << nlohmann::json{{"run_id", table_run.run_id},
                                  {"started_at", table_run.started_at},
                                  {"target", table_run.target},
                                  {"workload", table_run.workload},
                                  {"environment", table_run.environment},
                                  {"metrics", metrics}}
                       .dump(2)
                << "\n";
    } else {
      std::cout << fmt::format(
          "run        {}\nstarted    {}\ntarget     {}\nworkload   {}\n"
          "environment {}\nmetrics (± half 95% CI):\n",
          table_run.run_id, table_run.started_at, table_run.target, table_run.workload,
          results::describe_environment(table_run.environment));
      print_metrics(table_run.metrics);
    }
    exit_code = kExitOk;
  });

  CLI::App* exp = cmd->add_subcommand("export", "Write a stored run as a run file (schema v1)");
  exp->add_option("RUN", o->run, "Run id in the store")->required();
  exp->add_option("-o,--output", o->output, "Output file (default: stdout)");
  exp->add_option("--db", o->db, "Result store")->capture_default_str();
  exp->callback([o, &exit_code] {
    results::Store store(o->db);
    results::RunLoader loader(o->db);
    const auto handle = loader.resolve(o->run);
    const results::Run& run = loader.run(handle);
    if (o->output.empty()) {
      std::cout << results::run_to_json(run).dump(1) << "\n";
    } else {
      results::write_run_file(o->output, run);
      std::cerr << fmt::format("exported {} to {}\n", run.run_id, o->output);
    }
    exit_code = kExitOk;
  });

  CLI::App* imp = cmd->add_subcommand("import", "Add run files to the store (replacing same ids)");
  imp->add_option("FILE", o->files, "Run files")->required()->check(CLI::ExistingFile);
  imp->add_option("--db", o->db, "Result store")->capture_default_str();
  imp->callback([o, &exit_code] {
    results::Store store(o->db);
    for (const auto& file : o->files) {
      const results::Run run = results::read_run_file(file);
      store.put_run(run);
      std::cout << fmt::format("imported {} ({} requests) from {}\n", run.run_id,
                               run.observations.size(), file);
    }
    exit_code = kExitOk;
  });

  CLI::App* rm = cmd->add_subcommand("remove", "Remove a run from the store");
  rm->add_option("RUN", o->run, "Run id")->required();
  rm->add_option("--db", o->db, "Result store")->capture_default_str();
  rm->callback([o, &exit_code] {
    results::Store store(o->db);
    store.remove_run(o->run);
    std::cout << fmt::format("removed {}\n", o->run);
    exit_code = kExitOk;
  });
}

}  // namespace prism::cli
