#include <iostream>

#include "commands.h"
#include "prism/harness/environment.h"

namespace prism::cli {

void add_doctor_command(CLI::App& app, int& exit_code) {
  struct Options {
    bool json = false;
    bool no_measure = false;
  };
  auto options = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("doctor",
                                     "Print the environment record every result embeds (CPU, "
                                     "memory, OS, CUDA, GPUs, measured peaks)");
  cmd->add_flag("--json", options->json, "Print the record as JSON");
  cmd->add_flag("--no-measure", options->no_measure,
                "Skip the bandwidth and sgemm measurements (about 2 s)");
  cmd->callback([options, &exit_code] {
    harness::EnvironmentOptions env_options;
    env_options.measure = !options->no_measure;
    const auto env = harness::collect_environment(env_options);
    if (options->json) {
      std::cout << env.dump(2) << "\n";
    } else {
      std::cout << harness::format_environment(env);
    }
    exit_code = kExitOk;
  });
}

}  // namespace prism::cli
