// prism spikes eval | detect | simulate | slo: latency-spike detection
// (probes/analysis/spikes). Thin: options in, library calls out.
#include <algorithm>
#include <csignal>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include <fmt/format.h>

#include "commands.h"
#include "prism/results/atomic_file.h"
#include "prism/results/run_file.h"
#include "prism/spikes/alerts.h"
#include "prism/spikes/eval.h"
#include "prism/spikes/series_io.h"
#include "prism/spikes/slo_burn.h"
#include "prism/spikes/spikes_engine.h"

namespace prism::cli {

namespace {

void add_detector_options(CLI::App* cmd, spikes::DetectorConfig& c) {
  cmd->add_option("--threshold", c.threshold, "Anomaly bound in robust-scale units")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--warmup", c.warmup, "Iterations fitted before any verdict")
      ->capture_default_str();
  cmd->add_option("--min-excess", c.min_excess_ratio,
                  "Smallest excess that alerts, as a share of the prediction")
      ->capture_default_str();
  cmd->add_option("--window-before", c.window_before,
                  "Flight-recorder iterations before an episode")
      ->capture_default_str();
  cmd->add_option("--window-after", c.window_after, "Flight-recorder iterations after an episode")
      ->capture_default_str();
}

// Alerts to stdout and/or a user command's stdin.
struct Sinks {
  spikes::StreamSink out{std::cout};
  std::unique_ptr<spikes::CommandSink> command;
  spikes::FanoutSink all;
  Sinks(const std::string& exec, bool to_stdout) {
    if (to_stdout) all.add(&out);
    if (!exec.empty()) {
      std::signal(SIGPIPE, SIG_IGN);  // a command that exits early must not kill prism
      command = std::make_unique<spikes::CommandSink>(exec);
      all.add(command.get());
    }
  }
};

std::vector<uint64_t> parse_seeds(const std::string& text, const char* option) {
  std::vector<uint64_t> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      out.push_back(std::stoull(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw CLI::ValidationError(option, "'" + item + "' is not a seed (comma-separated integers)");
    }
  }
  if (out.empty()) throw CLI::ValidationError(option, "no seeds");
  return out;
}

void add_eval(CLI::App* spikes_cmd, int& exit_code) {
  struct Options {
    std::string source = "simulator";
    std::string train = "1,2,3";
    std::string eval = "101,102,103,104,105";
    uint64_t iterations = 20000;
    double fault_scale = 1.0;
    std::string model = "tiny";
    spikes::EngineEvalConfig engine;
    std::vector<double> min_excess_us;
    std::string output;
    std::string dump;
    bool json = false;
    spikes::DetectorConfig detector;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = spikes_cmd->add_subcommand(
      "eval",
      "Evaluate spike detection: calibrate on training seeds, score precision / recall / F1, alert "
      "latency and false alarms on held-out seeds");
  cmd->add_option("--source", o->source,
                  "simulator (known cost model + noise + faults) or engine (the reference engine, "
                  "in process, with injected faults)")
      ->check(CLI::IsMember({"simulator", "engine"}))
      ->capture_default_str();
  cmd->add_option("--train-seeds", o->train, "Training seeds")->capture_default_str();
  cmd->add_option("--eval-seeds", o->eval, "Held-out seeds (disjoint from training)")
      ->capture_default_str();
  cmd->add_option("--iterations", o->iterations, "Iterations per run")
      ->capture_default_str()
      ->check(CLI::Range(500, 10000000));
  cmd->add_option("--fault-scale", o->fault_scale, "Scale fault strength (1 = documented set)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--model", o->model, "Engine model for --source engine")->capture_default_str();
  cmd->add_option("--token-budget", o->engine.token_budget,
                  "Engine: chunked-prefill token budget per step")
      ->capture_default_str()
      ->check(CLI::Range(16, 65536));
  cmd->add_option("--max-seqs", o->engine.max_seqs, "Engine: most sequences in a batch")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--fault-gap", o->engine.mean_fault_gap,
                  "Engine: mean iterations between fault windows (shorter runs need fewer)")
      ->capture_default_str()
      ->check(CLI::Range(10.0, 1e7));
  cmd->add_option("--fault-prefix", o->engine.fault_free_prefix,
                  "Engine: iterations with no fault at the start of a run (model warm-up)")
      ->capture_default_str()
      ->check(CLI::Range(0, 10000000));
  cmd->add_option("--min-excess-us", o->min_excess_us,
                  "Smallest absolute excesses (us) to calibrate with the threshold (default: 0 "
                  "for the simulator; 0,100,200,400,600,800 for the engine)")
      ->delimiter(',')
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--faults", o->engine.fault_kinds,
                  "Engine: fault kinds to inject (default all: cpu_hog, membw_hog, stage_delay, "
                  "deschedule)")
      ->delimiter(',')
      ->check(CLI::IsMember({"cpu_hog", "membw_hog", "stage_delay", "deschedule"}));
  cmd->add_flag("!--no-pin", o->engine.pin,
                "Engine: leave the stepping thread and the hogs unpinned (faults bite less)");
  cmd->add_flag("!--no-cpu-time", o->engine.detector_sees_cpu_time,
                "Engine: do not give the detector each step's off-CPU time (wall clock only)");
  cmd->add_option("-o,--output", o->output, "Write the report JSON here");
  cmd->add_option("--dump", o->dump,
                  "Write each held-out fault run's iterations as CSV to this directory");
  cmd->add_flag("--json", o->json, "Print the report as JSON");
  cmd->callback([o, &exit_code] {
    try {
      spikes::EvalOptions eo;
      eo.train_seeds = parse_seeds(o->train, "--train-seeds");
      eo.eval_seeds = parse_seeds(o->eval, "--eval-seeds");
      spikes::RunSource source;
      if (o->source == "simulator") {
        spikes::SimulatorConfig sc;
        sc.iterations = o->iterations;
        sc.fault_scale = o->fault_scale;
        source = spikes::simulator_source(sc);
      } else {
        spikes::EngineEvalConfig ec = o->engine;
        ec.model = o->model;
        ec.iterations = o->iterations;
        ec.fault_scale = o->fault_scale;
        ec.progress = &std::cerr;
        source = spikes::engine_source(ec);
        eo.detector.feature_scale = spikes::engine_feature_scale();
        // A real step of ~100 us can double for reasons no feature explains:
        // the smallest excess that alerts is calibrated too.
        eo.min_excess_ns = {0, 100'000, 200'000, 400'000, 600'000, 800'000};
        eo.thresholds = {6, 8, 10, 12, 14, 16, 20, 25};
        // A stalled stage whose normal time is a few us: per-stage bounds.
        eo.stage_thresholds = {0, 20, 40};
        // Memory-bandwidth contention slows every step a little: the
        // sustained-slowdown EWMA is calibrated too (0: off).
        eo.sustained = {0, 3.0};
      }
      if (!o->min_excess_us.empty()) {
        eo.min_excess_ns.clear();
        for (double us : o->min_excess_us) eo.min_excess_ns.push_back(us * 1e3);
      }
      if (!o->dump.empty()) {
        source = [inner = source, dir = o->dump, eval = eo.eval_seeds](uint64_t seed, bool faults) {
          spikes::LabelledRun run = inner(seed, faults);
          if (std::find(eval.begin(), eval.end(), seed) != eval.end()) {
            const std::string stem =
                fmt::format("{}/{}-seed{}-{}", dir, run.source, seed, faults ? "faults" : "clean");
            results::write_file_atomically(stem + ".csv", spikes::write_series_csv(run));
            // The injected windows (kind, stage) beside the per-iteration labels.
            nlohmann::json windows = nlohmann::json::array();
            for (const spikes::FaultWindow& w : run.faults)
              windows.push_back(
                  {{"first", w.first}, {"last", w.last}, {"kind", w.kind}, {"stage", w.stage}});
            results::write_file_atomically(stem + "-windows.json", windows.dump(1) + "\n");
          }
          return run;
        };
      }
      const spikes::EvalReport report = spikes::evaluate(source, eo);
      if (o->json)
        std::cout << report.to_json().dump(2) << "\n";
      else
        std::cout << report.to_text();
      if (!o->output.empty())
        results::write_file_atomically(o->output, report.to_json().dump(2) + "\n");
      exit_code = kExitOk;
    } catch (const CLI::Error&) {
      throw;
    } catch (const std::exception& e) {
      std::cerr << "prism spikes eval: " << e.what() << "\n";
      exit_code = kExitFailure;
    }
  });
}

void add_detect(CLI::App* spikes_cmd, int& exit_code) {
  struct Options {
    std::string file;
    std::string exec;
    bool no_window = false;
    bool quiet = false;
    spikes::DetectorConfig detector;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = spikes_cmd->add_subcommand(
      "detect",
      "Find latency spikes in a per-iteration CSV (prism analyze's iterations.csv, or a series "
      "with feature columns from prism spikes simulate / eval --dump); alerts as JSON lines");
  cmd->add_option("file", o->file, "Iteration CSV")->required()->check(CLI::ExistingFile);
  cmd->add_option("--alert-command,--exec", o->exec,
                  "Also pipe alerts (JSON lines) to this command's stdin (sh -c)");
  cmd->add_flag("--no-window", o->no_window, "Leave the flight-recorder window out of alerts");
  cmd->add_flag("-q,--quiet", o->quiet, "Do not print alerts on stdout (with --alert-command)");
  add_detector_options(cmd, o->detector);
  cmd->callback([o, &exit_code] {
    try {
      const spikes::LabelledRun run = spikes::read_series_csv_file(o->file);
      if (!run.series.has_features)
        std::cerr << "prism spikes detect: " << o->file
                  << " has no feature columns: the model is a robust running baseline, so "
                     "workload-driven variation may alert\n";
      Sinks sinks(o->exec, !o->quiet);
      const spikes::OfflineDetection d =
          spikes::detect_series(run, o->detector, sinks.all, !o->no_window);
      std::cerr << fmt::format("{} iterations, {} anomalous, {} alert episodes\n", d.iterations,
                               d.anomalous, d.alerts);
      if (d.labelled)
        std::cerr << fmt::format(
            "against the fault column: precision {:.4f} recall {:.4f} F1 {:.4f}, "
            "{}/{} fault windows detected, {} false alarms\n",
            d.score.precision, d.score.recall, d.score.f1, d.score.windows_detected,
            d.score.windows, d.score.false_alarms);
      if (sinks.command && sinks.command->close() != 0)
        std::cerr << "prism spikes detect: --exec command exited with an error\n";
      exit_code = kExitOk;
    } catch (const std::exception& e) {
      std::cerr << "prism spikes detect: " << e.what() << "\n";
      exit_code = kExitFailure;
    }
  });
}

void add_simulate(CLI::App* spikes_cmd, int& exit_code) {
  auto c = std::make_shared<spikes::SimulatorConfig>();
  auto output = std::make_shared<std::string>();
  auto clean = std::make_shared<bool>(false);
  CLI::App* cmd = spikes_cmd->add_subcommand(
      "simulate",
      "Write a simulated iteration series (features, stage times, fault labels) as CSV");
  cmd->add_option("--seed", c->seed, "Seed")->capture_default_str();
  cmd->add_option("--iterations", c->iterations, "Iterations")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000000));
  cmd->add_option("--fault-scale", c->fault_scale, "Fault strength")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--no-faults", *clean, "Pure workload variation");
  cmd->add_option("-o,--output", *output, "CSV file (default: stdout)");
  cmd->callback([c, output, clean, &exit_code] {
    try {
      c->faults = !*clean;
      const std::string csv = spikes::write_series_csv(spikes::simulate(*c));
      if (output->empty())
        std::cout << csv;
      else
        results::write_file_atomically(*output, csv);
      exit_code = kExitOk;
    } catch (const std::exception& e) {
      std::cerr << "prism spikes simulate: " << e.what() << "\n";
      exit_code = kExitFailure;
    }
  });
}

void add_slo(CLI::App* spikes_cmd, int& exit_code) {
  struct Options {
    std::string run;
    double ttft_ms = 0, tpot_ms = 0, window_s = 60;
    std::string exec;
    spikes::SloConfig config;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = spikes_cmd->add_subcommand("slo",
                                             "SLO burn alerts over a run file: share of requests "
                                             "over the TTFT / TPOT SLO in a sliding window");
  cmd->add_option("run", o->run, "Run file (prism run output)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--ttft-ms", o->ttft_ms, "TTFT SLO in ms (0: not watched)")
      ->capture_default_str();
  cmd->add_option("--tpot-ms", o->tpot_ms, "TPOT SLO in ms (0: not watched)")
      ->capture_default_str();
  cmd->add_option("--window-s", o->window_s, "Sliding window in seconds")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-share", o->config.max_bad_share, "Alert when this share is over SLO")
      ->capture_default_str();
  cmd->add_option("--clear-share", o->config.clear_share, "Clear when the share falls below this")
      ->capture_default_str();
  cmd->add_option("--min-requests", o->config.min_requests,
                  "Fewest requests in the window for a verdict")
      ->capture_default_str();
  cmd->add_option("--alert-command,--exec", o->exec,
                  "Also pipe alerts (JSON lines) to this command's stdin (sh -c)");
  cmd->callback([o, &exit_code] {
    try {
      if (o->ttft_ms <= 0 && o->tpot_ms <= 0)
        throw CLI::ValidationError("--ttft-ms/--tpot-ms", "give at least one SLO");
      spikes::SloConfig c = o->config;
      c.ttft_slo_ns = o->ttft_ms * 1e6;
      c.tpot_slo_ns = o->tpot_ms * 1e6;
      c.window_ns = static_cast<uint64_t>(o->window_s * 1e9);
      spikes::SloBurnMonitor monitor(c);
      const results::Run run = results::read_run_file(o->run);
      std::vector<spikes::RequestTiming> timings;
      for (const auto& obs : run.observations) {
        if (obs.warmup || obs.token_times_s.empty()) continue;
        spikes::RequestTiming t;
        t.finish_ns = static_cast<uint64_t>(obs.completed_s * 1e9);
        t.ttft_ns = (obs.token_times_s.front() - obs.scheduled_s) * 1e9;
        const size_t n = obs.token_times_s.size();
        t.tpot_ns = n > 1 ? (obs.token_times_s.back() - obs.token_times_s.front()) * 1e9 /
                                static_cast<double>(n - 1)
                          : -1;
        timings.push_back(t);
      }
      std::sort(timings.begin(), timings.end(),
                [](const auto& a, const auto& b) { return a.finish_ns < b.finish_ns; });
      Sinks sinks(o->exec, true);
      uint64_t alerts = 0;
      for (const auto& t : timings)
        for (const auto& a : monitor.add(t)) {
          sinks.all.emit(spikes::slo_alert_json(a));
          ++alerts;
        }
      std::cerr << fmt::format("{} requests, {} SLO burn alerts\n", timings.size(), alerts);
      exit_code = kExitOk;
    } catch (const CLI::Error&) {
      throw;
    } catch (const std::exception& e) {
      std::cerr << "prism spikes slo: " << e.what() << "\n";
      exit_code = kExitFailure;
    }
  });
}

}  // namespace

void add_spikes_command(CLI::App& app, int& exit_code) {
  CLI::App* cmd =
      app.add_subcommand("spikes", "Latency-spike detection: evaluate, detect offline, SLO burn");
  cmd->require_subcommand(1);
  add_eval(cmd, exit_code);
  add_detect(cmd, exit_code);
  add_simulate(cmd, exit_code);
  add_slo(cmd, exit_code);
}

}  // namespace prism::cli
