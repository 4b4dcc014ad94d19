#include <cstdio>
#include <exception>
#include <iostream>

#include <fmt/core.h>

#include "commands.h"
#include "prism/build_sha.h"

int main(int argc, char** argv) {
  CLI::App app{"Prism: benchmark and latency profiling for LLM inference"};
  app.name("prism");
  app.require_subcommand(1);
  app.set_version_flag("--version", fmt::format("prism {} (git {})", PRISM_VERSION, PRISM_GIT_SHA));

  int exit_code = prism::cli::kExitOk;
  prism::cli::add_doctor_command(app, exit_code);
  prism::cli::add_workload_command(app, exit_code);
  prism::cli::add_kernels_command(app, exit_code);
  prism::cli::add_trace_command(app, exit_code);
  prism::cli::add_attach_command(app, exit_code);
  prism::cli::add_analyze_command(app, exit_code);
  prism::cli::add_results_command(app, exit_code);
  prism::cli::add_table_command(app, exit_code);
  prism::cli::add_plot_command(app, exit_code);
  prism::cli::add_report_command(app, exit_code);
  prism::cli::add_compare_command(app, exit_code);
  prism::cli::add_baseline_command(app, exit_code);
  prism::cli::add_run_command(app, exit_code);
  prism::cli::add_serve_mock_command(app, exit_code);
  prism::cli::add_serve_command(app, exit_code);
  prism::cli::add_spikes_command(app, exit_code);

  // CLI11 would only say "a subcommand is required": name the unknown one.
  const auto is_known = [&](const char* name) {
    return !app.get_subcommands([name](CLI::App* sub) { return sub->check_name(name); }).empty();
  };
  if (argc > 1 && argv[1][0] != '-' && !is_known(argv[1])) {
    std::cerr << "prism: unknown subcommand '" << argv[1] << "'\n\n" << app.help();
    return prism::cli::kExitUsage;
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // Unknown subcommands and options, missing values: usage, exit 2.
    std::cerr << "prism: " << e.what() << "\n\n";
    const CLI::App* failing = &app;
    for (const CLI::App* sub = &app; sub != nullptr;) {
      failing = sub;
      const auto parsed = sub->get_subcommands();
      sub = parsed.empty() ? nullptr : parsed.front();
    }
    std::cerr << failing->help();
    return prism::cli::kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "prism: error: " << e.what() << "\n";
    return prism::cli::kExitFailure;
  }
  return exit_code;
}
