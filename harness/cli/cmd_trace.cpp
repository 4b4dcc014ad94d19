// prism trace [--rules R] [-o DIR] [--preload] [--no-gpu] -- CMD ARGS
#include <iostream>

#include "commands.h"
#include "prism/analysis/export.h"
#include "prism/analysis/session.h"

namespace prism::cli {

void add_trace_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<analysis::TraceCommandOptions>();
  auto no_gpu = std::make_shared<bool>(false);
  CLI::App* cmd = app.add_subcommand(
      "trace",
      "Run a command with the probe agent loaded (NVTX_INJECTION64_PATH, CUDA_INJECTION64_PATH), "
      "trace it from start to exit, and write trace.json (Perfetto), iterations.csv, "
      "breakdown.json");
  cmd->add_option("--rules", options->rules,
                  "Stage rules: a built-in set (prism, vllm, sglang, trtllm) or a rules file")
      ->capture_default_str();
  cmd->add_option("-o,--output", options->output_dir,
                  "Output directory (default prism-trace-<time>)");
  cmd->add_flag("--preload", options->preload, "Also load the agent with LD_PRELOAD");
  cmd->add_flag("--no-gpu", *no_gpu, "Do not record GPU activity with CUPTI");
  cmd->add_option("command", options->command, "The command to trace, after --")->required();
  cmd->callback([options, no_gpu, &exit_code] {
    options->gpu = !*no_gpu;
    try {
      const auto result = analysis::trace_command(*options);
      std::cout << analysis::breakdown_report(result.breakdown);
      for (const auto& note : result.notes) std::cout << "note: " << note << "\n";
      std::cout << "\nwrote:\n" << result.files;
      if (result.exit_code != 0) {
        std::cerr << "prism trace: the traced command exited with status " << result.exit_code
                  << (result.breakdown.complete ? "" : " (the trace is partial)") << "\n";
        exit_code = kExitFailure;
      } else {
        exit_code = kExitOk;
      }
    } catch (const std::exception& e) {
      std::cerr << "prism trace: " << e.what() << "\n";
      exit_code = kExitFailure;
    }
  });
}

}  // namespace prism::cli
