// Publication tables: systems as rows, workloads x metrics as columns, values
// with +- confidence half-widths, the best value of each column in bold, and
// a footnote describing the environment. One Table, four printers.
#pragma once

#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "prism/results/metrics.h"
#include "prism/results/statistics.h"

namespace prism::results {

enum class TableFormat { kMarkdown, kCsv, kLatex, kHtml };
TableFormat table_format_from_string(const std::string& text);  // md|markdown|csv|latex|tex|html

// What one run contributes to a table.
struct TableRun {
  std::string run_id;
  std::string started_at;
  std::string target;    // display name of the system
  std::string workload;  // workload name
  nlohmann::json environment = nlohmann::json::object();
  std::map<std::string, Estimate> metrics;  // by metric name, stored units
};

struct TableOptions {
  std::vector<std::string> metrics = default_table_metrics();
  // --by ROWS,COLUMNS: which run attribute makes rows and which makes column
  // groups; each is "target" or "workload".
  std::string rows = "target";
  std::string columns = "workload";
};

struct TableCell {
  std::optional<Estimate> estimate;  // absent: no run, or metric not available
  bool best = false;
};

struct Table {
  std::string row_header;                     // "System" or "Workload"
  std::vector<std::string> row_labels;        // in order of first appearance
  std::vector<std::string> groups;            // column groups, in order of first appearance
  std::vector<MetricSpec> metrics;            // repeated within each group
  std::vector<std::vector<TableCell>> cells;  // [row][group * metrics.size() + metric]
  std::vector<std::string> notes;             // footnotes, in order
};

// Builds the table. When several runs share a row and group, the latest
// (by started_at) is shown and a note says so. Throws std::invalid_argument
// for an unknown metric or --by key.
Table build_table(std::span<const TableRun> runs, const TableOptions& options);
std::string render_table(const Table& table, TableFormat format);

// Escapes & < > " for HTML text and attributes; with escape_apostrophe also '
// (XML, JUnit). One escaper for tables, reports and the compare gate.
std::string escape_markup(const std::string& text, bool escape_apostrophe = false);

// A one-line description of an environment record for footnotes.
std::string describe_environment(const nlohmann::json& environment);

// Formats a displayed value with about three significant digits and, when
// given, a half-width with the same number of decimals: "12.3 ± 0.4".
std::string format_value(double value, std::optional<double> half_width = std::nullopt,
                         const char* plus_minus = "±");

}  // namespace prism::results
