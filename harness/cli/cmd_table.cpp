// prism table RUN...: a publication table (Markdown, CSV, LaTeX, HTML).
#include <iostream>

#include <fmt/core.h>

#include "commands.h"
#include "prism/results/atomic_file.h"
#include "prism/results/run_source.h"
#include "prism/results/table.h"

namespace prism::cli {

void add_table_command(CLI::App& app, int& exit_code) {
  struct Options {
    std::vector<std::string> runs;
    std::string by = "target,workload";
    std::vector<std::string> metrics;
    std::string format = "md";
    std::string output;
    std::string db = results::kDefaultStorePath;
    std::uint64_t seed = 1;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "table", "Print a comparison table: systems as rows, workloads x metrics as columns");
  cmd->add_option("RUN", o->runs, "Run ids in the store or run files")->required();
  cmd->add_option("--by", o->by, "ROWS,COLUMNS: target,workload or workload,target")
      ->capture_default_str();
  cmd->add_option("--metrics", o->metrics,
                  "Comma-separated metrics (default ttft.p50,ttft.p99,tpot.p50,goodput)")
      ->delimiter(',');
  cmd->add_option("--format", o->format, "md, csv, latex or html")
      ->capture_default_str()
      ->check(CLI::IsMember({"md", "markdown", "csv", "latex", "tex", "html"}));
  cmd->add_option("-o,--output", o->output, "Write to a file instead of stdout");
  cmd->add_option("--db", o->db, "Result store")->capture_default_str();
  cmd->add_option("--seed", o->seed, "Bootstrap seed")->capture_default_str();
  cmd->callback([o, &exit_code] {
    results::TableOptions options;
    if (!o->metrics.empty()) options.metrics = o->metrics;
    const auto comma = o->by.find(',');
    if (comma == std::string::npos) throw CLI::ValidationError("--by", "expected ROWS,COLUMNS");
    options.rows = o->by.substr(0, comma);
    options.columns = o->by.substr(comma + 1);
    for (const auto& key : {options.rows, options.columns})
      if (key != "target" && key != "workload")
        throw CLI::ValidationError("--by", fmt::format("unknown key '{}'", key));
    for (const auto& m : options.metrics) {
      try {
        results::parse_metric(m);
      } catch (const std::invalid_argument& e) {
        throw CLI::ValidationError("--metrics", e.what());
      }
    }
    results::BootstrapOptions bootstrap;
    bootstrap.seed = o->seed;
    results::RunLoader loader(o->db);
    std::vector<results::TableRun> runs;
    for (const auto& ref : o->runs)
      runs.push_back(loader.table_run(loader.resolve(ref), options.metrics, bootstrap));
    const auto table = results::build_table(runs, options);
    const std::string text =
        results::render_table(table, results::table_format_from_string(o->format));
    if (o->output.empty()) {
      std::cout << text;
    } else {
      results::write_file_atomically(o->output, text);
    }
    exit_code = kExitOk;
  });
}

}  // namespace prism::cli
