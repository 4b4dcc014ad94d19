// Writing traces and breakdowns: Chrome trace JSON (opens in Perfetto and
// chrome://tracing, and reloads with read_chrome_trace), per-iteration CSV
// and JSON, and a text report for the terminal.
#pragma once

#include <string>

#include "prism/analysis/breakdown.h"
#include "prism/analysis/trace.h"

namespace prism::analysis {

inline constexpr int kChromeTraceVersion = 1;  // otherData.prism_trace_version

// Chrome trace JSON text. When rules are given each host range carries its stage in args.
std::string to_chrome_trace(const Trace& trace, const StageRules* rules = nullptr);

std::string iterations_csv(const Breakdown& breakdown);
std::string breakdown_json(const Breakdown& breakdown);
std::string breakdown_report(const Breakdown& breakdown, size_t slowest = 5);

// Writes trace.json, iterations.csv, breakdown.json (and the raw bytes as trace.praw when given)
// into dir, each atomically. Returns the paths written, one per line.
std::string write_trace_outputs(const std::string& dir, const Trace& trace,
                                const Breakdown& breakdown, const StageRules& rules,
                                const std::string& raw_bytes = {});

}  // namespace prism::analysis
