// Reports: `prism report RUN... -o DIR` and the end of `prism run` write
// DIR/report.md (Markdown, figures beside it in DIR/figures/) and
// DIR/report.html (one self-contained page: figures inlined as data URIs,
// no external resources), ready to publish.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "prism/results/plot.h"
#include "prism/results/run_file.h"
#include "prism/results/table.h"

namespace prism::results {

struct ReportOptions {
  std::string title = "Prism benchmark report";
  std::vector<std::string> metrics;  // table metrics; empty: ttft/tpot/itl/e2e p50, p99, goodput
  bool figures = true;               // false: tables only (no gnuplot needed)
  PlotOptions plot;                  // which figures and formats
  BootstrapOptions bootstrap;
};

struct ReportResult {
  std::string markdown_path;
  std::string html_path;
  std::vector<Figure> figures;
  std::vector<std::string> warnings;  // e.g. figures skipped because gnuplot failed
};

// Writes the report for runs already in memory (the end of `prism run` calls
// this with the run it just measured). Every file goes through
// write_file_atomically. Throws FileError when DIR cannot be written.
ReportResult write_report(std::span<const Run> runs, const std::string& dir,
                          const ReportOptions& options = {});

// Base64 (RFC 4648) of bytes, for data URIs.
std::string base64_encode(std::string_view bytes);

}  // namespace prism::results
