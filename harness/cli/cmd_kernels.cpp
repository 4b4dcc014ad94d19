// `prism kernels`: the attention-method comparison table (library:
// prism::baselines::run_kernel_report, which the tests call too).
#include <algorithm>
#include <iostream>
#include <sstream>

#include "commands.h"
#include "prism/baselines/kernel_report.h"
#include "prism/kernels/threading.h"
#include "prism/results/atomic_file.h"

namespace prism::cli {

void add_kernels_command(CLI::App& app, int& exit_code) {
  struct Options {
    std::string workload = "long-context";
    std::string methods;
    std::string device = "cpu";
    int context = 0;
    int repetitions = 3;
    int threads = 0;
    bool no_peaks = false;
    bool json = false;
    std::string output;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("kernels",
                                     "Run a workload's attention shapes through dense and "
                                     "sparse/quantized methods: time per stage, speedup, "
                                     "% of roofline, accuracy vs dense");
  cmd->add_option("--workload", o->workload, "Shapes to run: long-context, rag or multi-turn")
      ->check(CLI::IsMember({"long-context", "rag", "multi-turn"}))
      ->capture_default_str();
  cmd->add_option("--methods", o->methods,
                  "Comma-separated subset of "
                  "dense,sink-window,quest,vertical-slash,block-topk,kivi-int8,kivi-int4 "
                  "(default: all; dense always runs as the baseline)");
  cmd->add_option("--device", o->device, "cpu or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_option("--context", o->context, "Override the workload's context length in tokens")
      ->check(CLI::Range(16, 1 << 20));
  cmd->add_option("--repetitions", o->repetitions, "Timed runs per short stage (median)")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  cmd->add_option("--threads", o->threads, "Kernel threads (default: all hardware threads)")
      ->check(CLI::Range(1, 1024));
  cmd->add_flag("--no-peaks", o->no_peaks,
                "Skip measuring sgemm and memory-bandwidth peaks (no roofline column)");
  cmd->add_flag("--json", o->json, "Print JSON instead of the table");
  cmd->add_option("--output", o->output, "Also write the JSON report to this file");
  cmd->callback([o, &exit_code] {
    baselines::KernelReportOptions options;
    options.workload = o->workload;
    options.device = o->device;
    options.context = o->context;
    options.repetitions = o->repetitions;
    options.measure_peaks = !o->no_peaks;
    std::stringstream list(o->methods);
    for (std::string m; std::getline(list, m, ',');)
      if (!m.empty()) options.methods.push_back(m);
    for (const auto& m : options.methods) {
      const auto& known = baselines::kernel_method_names();
      if (std::find(known.begin(), known.end(), m) == known.end())
        throw CLI::ValidationError("--methods", "unknown method '" + m + "'");
    }
    if (o->threads > 0) kernels::set_kernel_threads(o->threads);
    try {
      const auto report = baselines::run_kernel_report(options);
      const std::string json = baselines::kernel_report_json(report);
      std::cout << (o->json ? json + "\n" : baselines::format_kernel_report(report));
      if (!o->output.empty()) results::write_file_atomically(o->output, json + "\n");
      exit_code = kExitOk;
    } catch (const std::exception& e) {
      std::cerr << "prism kernels: " << e.what() << "\n";
      exit_code = kExitFailure;
    }
  });
}

}  // namespace prism::cli
