// Figures with gnuplot, as SVG and PNG, next to the data and the script that
// made them (so a figure can be restyled and re-rendered by hand):
//   ttft-cdf, itl-cdf                  CDFs, one line per run
//   throughput-latency                 one point per run (achieved req/s vs
//                                      TTFT p50/p99), a line per target: a rate sweep
//   stage-breakdown                    stacked bars of per-stage time, one bar per run
//   latency-by-context                 TTFT p50/p99 by prompt length bin, per run
//   timeline                           a trace window: each request as a bar
//                                      (queued, waiting for its first token, decoding)
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "prism/results/run_file.h"

namespace prism::results {

enum class FigureKind {
  kTtftCdf,
  kItlCdf,
  kThroughputLatency,
  kStageBreakdown,
  kLatencyByContext,
  kTimeline
};
const std::vector<FigureKind>& all_figure_kinds();
std::string figure_name(FigureKind kind);                // "ttft-cdf", ...
FigureKind figure_kind_from_string(const std::string&);  // throws std::invalid_argument

struct PlotOptions {
  std::vector<FigureKind> kinds = all_figure_kinds();
  bool svg = true;
  bool png = true;
  // Timeline window in seconds from the run's start; default: 20 s around
  // the slowest request of the first run (where a spike would be).
  std::optional<double> window_start_s;
  std::optional<double> window_end_s;
  std::string gnuplot = "gnuplot";  // executable
};

struct Figure {
  FigureKind kind;
  std::string title;
  std::string caption;             // how it was measured, for reports
  std::vector<std::string> files;  // images written (svg, png), absolute or relative to cwd
  std::string svg;                 // path of the SVG, empty when not written
  std::string png;
};

class PlotError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Writes the figures that the runs have data for into `dir` (created), with
// the data (.dat) and script (.gp) beside them. Figures without data are
// skipped (e.g. stage-breakdown when no run has stages). Throws PlotError
// when gnuplot is missing or fails, with its message.
std::vector<Figure> write_figures(std::span<const Run> runs, const std::string& dir,
                                  const PlotOptions& options = {});

// Per-stage times in milliseconds from a run's `stages` record. Accepts the
// probes' breakdown (`totals: [{stage, host_ns}]`), an object of stage ->
// number (ms) or -> {mean_ms|total_ms|ms|seconds|total_s|host_ns}, or an
// array of {name|stage, ...}; nested under "breakdown" or "stages" too.
std::vector<std::pair<std::string, double>> stage_times_ms(const nlohmann::json& stages);

// Label of a run in legends: "target / workload" plus the rate when the
// configuration has one.
std::string run_label(const Run& run);

}  // namespace prism::results
