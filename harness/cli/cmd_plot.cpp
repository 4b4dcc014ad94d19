// prism plot RUN... -o DIR: figures with gnuplot (SVG and PNG).
#include <iostream>

#include <fmt/core.h>

#include "commands.h"
#include "prism/results/plot.h"
#include "prism/results/run_source.h"

namespace prism::cli {

void add_plot_command(CLI::App& app, int& exit_code) {
  struct Options {
    std::vector<std::string> runs;
    std::string output = "figures";
    std::vector<std::string> figures;
    std::string format = "svg,png";
    std::string window;
    std::string db = results::kDefaultStorePath;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("plot",
                                     "Draw figures (CDFs, throughput-latency, stages, "
                                     "latency by context, timeline) with gnuplot");
  cmd->add_option("RUN", o->runs, "Run ids in the store or run files")->required();
  cmd->add_option("-o,--output", o->output, "Directory for the figures")->capture_default_str();
  cmd->add_option("--figure", o->figures,
                  "Only these (ttft-cdf, itl-cdf, throughput-latency, stage-breakdown, "
                  "latency-by-context, timeline); comma-separated or repeated")
      ->delimiter(',');
  cmd->add_option("--format", o->format, "svg, png or svg,png")
      ->capture_default_str()
      ->check(CLI::IsMember({"svg", "png", "svg,png", "png,svg"}));
  cmd->add_option("--window", o->window, "Timeline window START:END in seconds from the run start");
  cmd->add_option("--db", o->db, "Result store")->capture_default_str();
  cmd->callback([o, &exit_code] {
    results::PlotOptions options;
    options.svg = o->format.find("svg") != std::string::npos;
    options.png = o->format.find("png") != std::string::npos;
    if (!o->figures.empty()) {
      options.kinds.clear();
      for (const auto& f : o->figures) {
        try {
          options.kinds.push_back(results::figure_kind_from_string(f));
        } catch (const std::invalid_argument& e) {
          throw CLI::ValidationError("--figure", e.what());
        }
      }
    }
    if (!o->window.empty()) {
      const auto colon = o->window.find(':');
      try {
        if (colon == std::string::npos) throw std::invalid_argument("no colon");
        options.window_start_s = std::stod(o->window.substr(0, colon));
        options.window_end_s = std::stod(o->window.substr(colon + 1));
      } catch (const std::exception&) {
        throw CLI::ValidationError("--window", "expected START:END in seconds, e.g. 30:60");
      }
      if (*options.window_end_s <= *options.window_start_s)
        throw CLI::ValidationError("--window", "END must be after START");
    }
    results::RunLoader loader(o->db);
    std::vector<results::Run> runs;
    for (const auto& ref : o->runs) runs.push_back(loader.run(loader.resolve(ref)));
    const auto figures = results::write_figures(runs, o->output, options);
    for (const auto& f : figures)
      for (const auto& file : f.files) std::cout << file << "\n";
    if (figures.empty())
      std::cerr << "prism plot: the runs have no data for the figures asked for\n";
    exit_code = kExitOk;
  });
}

}  // namespace prism::cli
