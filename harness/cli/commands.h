// Each subcommand of `prism` registers itself here. A command file
// (harness/cli/cmd_<name>.cpp) parses options with CLI11 and calls library
// functions that the tests call too; it sets exit_code from its callback.
#pragma once

#include <CLI/CLI.hpp>

namespace prism::cli {

// Exit codes shared by every command.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // the command ran and found a problem (or a regression)
inline constexpr int kExitUsage = 2;    // bad command line

void add_doctor_command(CLI::App& app, int& exit_code);
void add_workload_command(CLI::App& app, int& exit_code);  // workloads (issue 3)
void add_kernels_command(CLI::App& app, int& exit_code);   // kernels (issue 5)
void add_trace_command(CLI::App& app, int& exit_code);
void add_attach_command(CLI::App& app, int& exit_code);
void add_analyze_command(CLI::App& app, int& exit_code);
void add_run_command(CLI::App& app, int& exit_code);
void add_serve_mock_command(CLI::App& app, int& exit_code);
// results/ commands (results engineer).
void add_results_command(CLI::App& app, int& exit_code);
void add_table_command(CLI::App& app, int& exit_code);
void add_plot_command(CLI::App& app, int& exit_code);
void add_report_command(CLI::App& app, int& exit_code);
void add_compare_command(CLI::App& app, int& exit_code);
void add_baseline_command(CLI::App& app, int& exit_code);

void add_serve_command(CLI::App& app, int& exit_code);
void add_spikes_command(CLI::App& app, int& exit_code);  // latency spikes (issue 7)
}  // namespace prism::cli
