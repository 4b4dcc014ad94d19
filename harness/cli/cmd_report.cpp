// prism report RUN... -o DIR: Markdown with figures and a self-contained HTML page.
#include <iostream>

#include <fmt/core.h>

#include "commands.h"
#include "prism/results/report.h"
#include "prism/results/run_source.h"

namespace prism::cli {

void add_report_command(CLI::App& app, int& exit_code) {
  struct Options {
    std::vector<std::string> runs;
    std::string output = "report";
    std::string title = "Prism benchmark report";
    std::vector<std::string> metrics;
    bool no_figures = false;
    std::string db = results::kDefaultStorePath;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "report", "Write DIR/report.md (with figures) and a self-contained DIR/report.html");
  cmd->add_option("RUN", o->runs, "Run ids in the store or run files")->required();
  cmd->add_option("-o,--output", o->output, "Output directory")->capture_default_str();
  cmd->add_option("--title", o->title, "Report title")->capture_default_str();
  cmd->add_option("--metrics", o->metrics, "Table metrics, comma-separated")->delimiter(',');
  cmd->add_flag("--no-figures", o->no_figures, "Tables only (no gnuplot)");
  cmd->add_option("--db", o->db, "Result store")->capture_default_str();
  cmd->callback([o, &exit_code] {
    results::ReportOptions options;
    options.title = o->title;
    options.metrics = o->metrics;
    options.figures = !o->no_figures;
    for (const auto& m : o->metrics) {
      try {
        results::parse_metric(m);
      } catch (const std::invalid_argument& e) {
        throw CLI::ValidationError("--metrics", e.what());
      }
    }
    results::RunLoader loader(o->db);
    std::vector<results::Run> runs;
    for (const auto& ref : o->runs) runs.push_back(loader.run(loader.resolve(ref)));
    const auto result = results::write_report(runs, o->output, options);
    for (const auto& w : result.warnings) std::cerr << "prism report: " << w << "\n";
    std::cout << result.markdown_path << "\n" << result.html_path << "\n";
    exit_code = kExitOk;
  });
}

}  // namespace prism::cli
