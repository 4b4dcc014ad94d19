// prism attach PID [--duration 10s] [--watch] [--rules R] [-o DIR] [--spikes [--alert-command CMD]]
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <iostream>
#include <memory>

#include "commands.h"
#include "prism/analysis/export.h"
#include "prism/analysis/session.h"
#include "prism/spikes/trace_spikes.h"

namespace prism::cli {
namespace {

std::atomic<bool> g_interrupted{false};
void on_interrupt(int) {
  g_interrupted.store(true);
}

}  // namespace

void add_attach_command(CLI::App& app, int& exit_code) {
  struct Options {
    int pid = 0;
    std::string duration = "10s";
    std::string interval = "1s";
    bool watch = false;
    bool no_gpu = false;
    std::string rules = "prism";
    std::string output;
    bool spikes = false;
    std::string alert_command;
  };
  auto options = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "attach",
      "Wake the dormant probe agent in a running process, show live per-stage times, capture a "
      "window and write the trace (no restart, no code change)");
  cmd->add_option("pid", options->pid, "Process id of a program started with the agent")
      ->required();
  cmd->add_option("--duration", options->duration,
                  "Capture window (e.g. 10s, 500ms, 2m; 0 = until Ctrl-C)")
      ->capture_default_str();
  cmd->add_option("--interval", options->interval, "Live table refresh period")
      ->capture_default_str();
  cmd->add_flag("--watch", options->watch, "Show a live, top-like stage table while capturing");
  cmd->add_option("--rules", options->rules, "Stage rules: prism, vllm, sglang, trtllm or a file")
      ->capture_default_str();
  cmd->add_option("-o,--output", options->output,
                  "Output directory (default prism-attach-<pid>-<time>)");
  cmd->add_flag("--no-gpu", options->no_gpu, "Do not ask for GPU activity");
  cmd->add_flag("--spikes", options->spikes,
                "Find latency spikes in the capture: alerts as JSON lines after the report");
  cmd->add_option("--alert-command", options->alert_command,
                  "With --spikes: also pipe the alerts to this command's stdin (sh -c)");
  cmd->callback([options, &exit_code] {
    try {
      analysis::AttachOptions attach;
      attach.pid = options->pid;
      attach.duration_ms = analysis::parse_duration_ms(options->duration);
      attach.interval_ms = std::max<uint64_t>(50, analysis::parse_duration_ms(options->interval));
      attach.rules = options->rules;
      attach.output_dir = options->output;
      attach.gpu = !options->no_gpu;
      std::signal(SIGINT, on_interrupt);
      attach.stop_requested = [] { return g_interrupted.load(); };
      const bool tty = isatty(STDOUT_FILENO) != 0;
      if (options->watch) {
        attach.on_stats = [tty](const control::Stats& stats, double elapsed) {
          if (tty) std::cout << "\x1b[H\x1b[2J";  // redraw in place, like top
          std::cout << analysis::format_stats_table(stats, elapsed) << (tty ? "" : "\n")
                    << std::flush;
        };
      }
      const auto result = analysis::attach_and_capture(attach);
      std::signal(SIGINT, SIG_DFL);
      if (result.first_data_ms >= 0)
        std::cout << "first data " << result.first_data_ms << " ms after attaching\n";
      std::cout << analysis::breakdown_report(result.breakdown) << "\nwrote:\n" << result.files;
      if (options->spikes) {
        std::signal(SIGPIPE, SIG_IGN);
        spikes::StreamSink out(std::cout);
        spikes::FanoutSink sinks;
        sinks.add(&out);
        std::unique_ptr<spikes::CommandSink> command;
        if (!options->alert_command.empty()) {
          command = std::make_unique<spikes::CommandSink>(options->alert_command);
          sinks.add(command.get());
        }
        spikes::SpikeWatcher watcher(spikes::DetectorConfig{}, sinks);
        watcher.feed(result.breakdown);
        watcher.finish();
        std::cerr << "prism attach: " << watcher.episodes() << " spike episodes in "
                  << watcher.iterations() << " iterations\n";
      }
      exit_code = result.partial ? kExitFailure : kExitOk;
      if (result.partial)
        std::cerr << "prism attach: the target exited mid-capture; the trace written is partial\n";
    } catch (const std::invalid_argument& e) {
      std::cerr << "prism attach: " << e.what() << "\n";
      exit_code = kExitUsage;
    } catch (const std::exception& e) {
      std::cerr << "prism attach: " << e.what() << "\n";
      exit_code = kExitFailure;
    }
  });
}

}  // namespace prism::cli
