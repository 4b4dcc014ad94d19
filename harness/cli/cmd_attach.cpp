// prism attach PID [--duration 10s] [--watch] [--rules R] [-o DIR] [--spikes [--alert-command CMD]
//                  [--poll 2ms]]
// With --spikes, alerts are raised while capturing: every --poll the events that arrived are
// fetched from the agent and each iteration they complete goes through the detector at once.
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <iostream>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

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

// Same clock as the agent's timestamps, so an alert's latency_ns is meaningful.
uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// The last few alerts, one line each, for the live table on a terminal.
class RecentAlerts : public spikes::AlertSink {
 public:
  void emit(const nlohmann::json& alert) override {
    ++count_;
    if (!finished_) ++live_;
    std::string blamed;
    for (const auto& b : alert.value("blamed", nlohmann::json::array()))
      blamed += (blamed.empty() ? "" : ",") + b.get<std::string>();
    lines_.push_back(fmt::format(
        "spike #{} {:<6} iterations {}-{}  observed {:.1f} us  predicted {:.1f} us  blamed {}",
        alert.value("alert_id", 0), alert.value("phase", ""), alert.value("first_iteration", 0),
        alert.value("last_iteration", 0), alert.value("observed_ns", 0.0) / 1e3,
        alert.value("predicted_ns", 0.0) / 1e3, blamed.empty() ? "-" : blamed));
    if (lines_.size() > 8) lines_.erase(lines_.begin());
  }
  std::string format() const {
    std::string out = fmt::format("\nspike alerts: {}\n", count_);
    for (const auto& l : lines_) out += l + "\n";
    return out;
  }
  void finish() { finished_ = true; }
  uint64_t live() const { return live_; }

 private:
  std::vector<std::string> lines_;
  uint64_t count_ = 0, live_ = 0;
  bool finished_ = false;
};

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
    std::string poll = "2ms";
    double threshold = spikes::DetectorConfig{}.threshold;
    double min_excess_us = 0;
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
                "Detect latency spikes while capturing: alerts as JSON lines within a few ms of "
                "the iteration that raised them (new events are fetched every --poll)");
  cmd->add_option("--threshold", options->threshold,
                  "With --spikes: anomaly bound in robust-scale units (higher: fewer alerts)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--min-excess-us", options->min_excess_us,
                  "With --spikes: smallest excess over the prediction that alerts, in us (a "
                  "floor for steps that a timer interrupt or a preemption slows by a few us)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--poll", options->poll,
                  "With --spikes: how often new events are fetched from the agent (1ms-1s)")
      ->capture_default_str();
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
      uint64_t poll_ms = 0;
      try {
        poll_ms = analysis::parse_duration_ms(options->poll);
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(std::string("--poll: ") + e.what());
      }
      if (poll_ms < 1 || poll_ms > 1000)
        throw std::invalid_argument("--poll " + options->poll + " must be between 1ms and 1s");
      attach.live_poll_ms = poll_ms;
      std::signal(SIGINT, on_interrupt);
      attach.stop_requested = [] { return g_interrupted.load(); };
      const bool tty = isatty(STDOUT_FILENO) != 0;

      // Spike alerts: each iteration goes through the detector as soon as the
      // live path has it whole, so alerts arrive while watching.
      std::unique_ptr<spikes::StreamSink> out;
      std::unique_ptr<spikes::CommandSink> command;
      spikes::FanoutSink sinks;
      RecentAlerts recent;
      std::unique_ptr<spikes::SpikeWatcher> watcher;
      if (options->spikes) {
        std::signal(SIGPIPE, SIG_IGN);  // an --alert-command that exits early must not kill prism
        // On a terminal the live table redraws over the JSON lines: it lists them instead.
        if (!(tty && options->watch)) {
          out = std::make_unique<spikes::StreamSink>(std::cout);
          sinks.add(out.get());
        }
        if (!options->alert_command.empty()) {
          command = std::make_unique<spikes::CommandSink>(options->alert_command);
          sinks.add(command.get());
        }
        sinks.add(&recent);
        spikes::DetectorConfig detector;
        detector.threshold = options->threshold;
        detector.min_excess_ns = options->min_excess_us * 1e3;
        watcher = std::make_unique<spikes::SpikeWatcher>(detector, sinks);
        attach.on_iterations = [&watcher](const analysis::Breakdown& breakdown, double) {
          watcher->feed(breakdown, monotonic_ns());
        };
      }
      if (options->watch) {
        attach.on_stats = [tty, &recent, spikes = options->spikes](const control::Stats& stats,
                                                                   double elapsed) {
          if (tty) std::cout << "\x1b[H\x1b[2J";  // redraw in place, like top
          std::cout << analysis::format_stats_table(stats, elapsed);
          if (tty && spikes) std::cout << recent.format();
          std::cout << (tty ? "" : "\n") << std::flush;
        };
      }
      const auto result = analysis::attach_and_capture(attach);
      std::signal(SIGINT, SIG_DFL);
      recent.finish();
      if (watcher) {
        // The final trace has what came after the last live poll.
        watcher->feed(result.breakdown, monotonic_ns());
        watcher->finish(monotonic_ns());
      }
      if (result.first_data_ms >= 0)
        std::cout << "first data " << result.first_data_ms << " ms after attaching\n";
      std::cout << analysis::breakdown_report(result.breakdown) << "\nwrote:\n" << result.files;
      if (watcher) {
        std::cerr << "prism attach: " << watcher->episodes() << " spike episodes in "
                  << watcher->iterations() << " iterations (" << recent.live()
                  << " alerts raised while capturing)\n";
        if (command && command->close() != 0)
          std::cerr << "prism attach: --alert-command exited with an error\n";
      }
      if (result.live_errors > 0)
        std::cerr << "prism attach: live analysis failed on " << result.live_errors
                  << " snapshot(s), the capture went on: " << result.live_error << "\n";
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
