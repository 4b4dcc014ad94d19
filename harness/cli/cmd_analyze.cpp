// prism analyze TRACE [--rules R] [-o DIR] [--json] [--spikes [--alert-command CMD]]
#include <csignal>
#include <iostream>
#include <memory>

#include <fmt/format.h>

#include "commands.h"
#include "prism/analysis/export.h"
#include "prism/spikes/trace_spikes.h"

namespace prism::cli {

void add_analyze_command(CLI::App& app, int& exit_code) {
  struct Options {
    std::string trace;
    std::string rules = "prism";
    std::string output;
    bool json = false;
    bool csv = false;
    bool spikes = false;
    std::string alert_command;
  };
  auto options = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "analyze",
      "Per-stage and per-iteration breakdown of a trace: a prism trace (.praw or trace.json), a "
      "Kineto / PyTorch profiler trace, or an Nsight Systems SQLite export");
  cmd->add_option("trace", options->trace, "Trace file")->required();
  cmd->add_option("--rules", options->rules, "Stage rules: prism, vllm, sglang, trtllm or a file")
      ->capture_default_str();
  cmd->add_option("-o,--output", options->output,
                  "Also write trace.json, iterations.csv, breakdown.json here");
  cmd->add_flag("--json", options->json, "Print breakdown JSON instead of the report");
  cmd->add_flag("--csv", options->csv, "Print per-iteration CSV instead of the report");
  cmd->add_flag("--spikes", options->spikes,
                "Find latency spikes: alerts as JSON lines instead of the report");
  cmd->add_option("--alert-command", options->alert_command,
                  "With --spikes: also pipe the alerts to this command's stdin (sh -c)");
  cmd->callback([options, &exit_code] {
    try {
      const analysis::StageRules rules = analysis::StageRules::load(options->rules);
      const analysis::Trace trace = analysis::load_trace(options->trace);
      const analysis::Breakdown breakdown = analysis::analyze(trace, rules);
      if (options->spikes) {
        std::signal(SIGPIPE, SIG_IGN);  // an alert command that exits early must not kill prism
        spikes::StreamSink out(std::cout);
        spikes::FanoutSink sinks;
        sinks.add(&out);
        std::unique_ptr<spikes::CommandSink> command;
        if (!options->alert_command.empty()) {
          command = std::make_unique<spikes::CommandSink>(options->alert_command);
          sinks.add(command.get());
        }
        spikes::SpikeWatcher watcher(spikes::DetectorConfig{}, sinks);
        watcher.feed(breakdown);
        watcher.finish();
        std::cerr << fmt::format("{}: {} iterations, {} anomalous, {} spike episodes\n",
                                 options->trace, watcher.iterations(), watcher.anomalous(),
                                 watcher.episodes());
        if (command && command->close() != 0)
          std::cerr << "prism analyze: --alert-command exited with an error\n";
      } else if (options->json) {
        std::cout << analysis::breakdown_json(breakdown);
      } else if (options->csv) {
        std::cout << analysis::iterations_csv(breakdown);
      } else {
        std::cout << "trace " << options->trace << " (" << trace.source << ")\n"
                  << analysis::breakdown_report(breakdown);
      }
      if (!options->output.empty()) {
        std::cerr << "wrote:\n"
                  << analysis::write_trace_outputs(options->output, trace, breakdown, rules);
      }
      exit_code = kExitOk;
    } catch (const std::exception& e) {
      std::cerr << "prism analyze: " << e.what() << "\n";
      exit_code = kExitFailure;
    }
  });
}

}  // namespace prism::cli
