#include <catch2/catch.hpp>

#include <limits>

#include "prism/results/table.h"

using namespace prism::results;

namespace {

Estimate est(double value, double low, double high) {
  Estimate e;
  e.value = value;
  e.ci_low = low;
  e.ci_high = high;
  e.n = 100;
  return e;
}

std::vector<TableRun> two_systems() {
  const nlohmann::json env = {
      {"cpu", {{"model", "EPYC 9654"}, {"logical_cores", 192}}},
      {"cuda",
       {{"gpus", nlohmann::json::array({{{"name", "H100"}}, {{"name", "H100"}}})},
        {"driver_version", "580.65"},
        {"toolkit_version", "13.0"}}},
      {"prism", {{"version", "0.1.0"}, {"git_sha", "abc123"}}}};
  TableRun a;
  a.run_id = "r1";
  a.started_at = "2026-11-24T10:00:00.000Z";
  a.target = "vllm";
  a.workload = "chat";
  a.environment = env;
  a.metrics["ttft.p50"] = est(0.1234, 0.1200, 0.1270);  // 123.4 ms, +- 3.5
  a.metrics["goodput"] = est(9.5, 9.0, 10.0);
  TableRun b = a;
  b.run_id = "r2";
  b.target = "sglang";
  b.metrics["ttft.p50"] = est(0.0987, 0.0950, 0.1020);
  b.metrics["goodput"] = est(8.25, 8.0, 8.5);
  return {a, b};
}

TableOptions options() {
  TableOptions o;
  o.metrics = {"ttft.p50", "goodput"};
  return o;
}

const char* kNotes =
    "± is half the width of the 95% confidence interval (order-statistic interval for "
    "percentiles); best value per column in bold.\n\n"
    "Environment: EPYC 9654 (192 threads), 2 x H100, driver 580.65, CUDA 13.0, Prism 0.1.0 "
    "(abc123). Runs: r1, r2.\n";

}  // namespace

TEST_CASE(
    "a Markdown table has systems as rows, units, CIs, bold best values and the environment") {
  const auto table = build_table(two_systems(), options());
  const std::string expected = std::string(
                                   "| System | chat: TTFT p50 (ms) | chat: Goodput (req/s) |\n"
                                   "|:---|---:|---:|\n"
                                   "| vllm | 123 ± 4 | **9.50 ± 0.50** |\n"
                                   "| sglang | **98.7 ± 3.5** | 8.25 ± 0.25 |\n"
                                   "\n") +
                               kNotes;
  CHECK(render_table(table, TableFormat::kMarkdown) == expected);
}

TEST_CASE("a CSV table carries raw values and interval bounds in display units") {
  const auto table = build_table(two_systems(), options());
  const std::string expected =
      "System,chat: TTFT p50 (ms),chat: TTFT p50 (ms) ci_low,chat: TTFT p50 (ms) ci_high,"
      "chat: Goodput (req/s),chat: Goodput (req/s) ci_low,chat: Goodput (req/s) ci_high\n"
      "vllm,123.4,120,127,9.5,9,10\n"
      "sglang,98.7,95,102,8.25,8,8.5\n";
  CHECK(render_table(table, TableFormat::kCsv) == expected);
}

TEST_CASE("a LaTeX table uses booktabs, grouped workload headers and escapes text") {
  auto runs = two_systems();
  runs[0].target = "my_engine & co";
  const auto table = build_table(runs, options());
  const std::string expected =
      "\\begin{table}[t]\n\\centering\n\\begin{tabular}{lrr}\n\\toprule\n"
      " & \\multicolumn{2}{c}{chat} \\\\\n"
      "\\cmidrule(lr){2-3}\n"
      "System & TTFT p50 (ms) & Goodput (req/s) \\\\\n"
      "\\midrule\n"
      "my\\_engine \\& co & 123 $\\pm$ 4 & \\textbf{9.50 $\\pm$ 0.50} \\\\\n"
      "sglang & \\textbf{98.7 $\\pm$ 3.5} & 8.25 $\\pm$ 0.25 \\\\\n"
      "\\bottomrule\n\\end{tabular}\n"
      "\\par\\smallskip\\footnotesize\n"
      "$\\pm$ is half the width of the 95\\% confidence interval (order-statistic interval for "
      "percentiles); best value per column in bold.\\\\\n"
      "Environment: EPYC 9654 (192 threads), 2 x H100, driver 580.65, CUDA 13.0, Prism 0.1.0 "
      "(abc123). Runs: r1, r2.\\\\\n"
      "\\end{table}\n";
  CHECK(render_table(table, TableFormat::kLatex) == expected);
}

TEST_CASE("an HTML table has a two-level header and strong best values") {
  auto runs = two_systems();
  runs[1].target = "<b>sglang</b>";
  const auto table = build_table(runs, options());
  const std::string expected =
      "<table class=\"prism-table\">\n<thead>\n"
      "<tr><th rowspan=\"2\">System</th><th colspan=\"2\">chat</th></tr>\n"
      "<tr><th>TTFT p50 (ms)</th><th>Goodput (req/s)</th></tr>\n"
      "</thead>\n<tbody>\n"
      "<tr><th scope=\"row\">vllm</th><td>123 ± 4</td><td><strong>9.50 ± 0.50</strong></td></tr>\n"
      "<tr><th scope=\"row\">&lt;b&gt;sglang&lt;/b&gt;</th><td><strong>98.7 ± 3.5</strong></td>"
      "<td>8.25 ± 0.25</td></tr>\n"
      "</tbody>\n</table>\n"
      "<p class=\"prism-note\">± is half the width of the 95% confidence interval (order-statistic "
      "interval for percentiles); best value per column in bold.</p>\n"
      "<p class=\"prism-note\">Environment: EPYC 9654 (192 threads), 2 x H100, driver 580.65, "
      "CUDA 13.0, Prism 0.1.0 (abc123). Runs: r1, r2.</p>\n";
  CHECK(render_table(table, TableFormat::kHtml) == expected);
}

TEST_CASE("workloads become column groups, missing cells show a dash and are never bold") {
  auto runs = two_systems();
  TableRun rag = runs[0];
  rag.run_id = "r3";
  rag.workload = "rag";
  rag.metrics.erase("goodput");
  runs.push_back(rag);
  TableOptions o = options();
  const auto table = build_table(runs, o);
  REQUIRE(table.groups == std::vector<std::string>{"chat", "rag"});
  const std::string md = render_table(table, TableFormat::kMarkdown);
  CHECK(md.find("| System | chat: TTFT p50 (ms) | chat: Goodput (req/s) | rag: TTFT p50 (ms) | "
                "rag: Goodput (req/s) |") == 0);
  // vllm has rag TTFT only; sglang ran no rag: a single value per column is not bolded.
  CHECK(md.find("| vllm | 123 ± 4 | **9.50 ± 0.50** | 123 ± 4 | — |") != std::string::npos);
  CHECK(md.find("| sglang | **98.7 ± 3.5** | 8.25 ± 0.25 | — | — |") != std::string::npos);
}

TEST_CASE("a table with nothing to compare does not promise bold values in its footnote") {
  // One system: every column has a single value, so nothing is bold.
  const auto runs = two_systems();
  const auto single = build_table(std::span<const TableRun>(runs.data(), 1), options());
  for (const auto& cell : single.cells.at(0)) CHECK_FALSE(cell.best);
  REQUIRE_FALSE(single.notes.empty());
  CHECK(single.notes.front() ==
        "± is half the width of the 95% confidence interval (order-statistic interval for "
        "percentiles).");
  for (auto format : {TableFormat::kMarkdown, TableFormat::kLatex, TableFormat::kHtml})
    CHECK(render_table(single, format).find("bold") == std::string::npos);
  // Two systems: the footnote says what the bold means.
  const auto both = build_table(runs, options());
  CHECK(both.notes.front().find("best value per column in bold") != std::string::npos);
}

TEST_CASE("a latency without an interval shows no ± and the footnote says why") {
  auto runs = two_systems();
  Estimate no_ci;
  no_ci.value = 0.25;
  no_ci.n = 50;  // p99 of 50 samples: no distribution-free 95% interval exists
  runs[0].metrics["ttft.p50"] = no_ci;
  const auto table = build_table(runs, options());
  const std::string md = render_table(table, TableFormat::kMarkdown);
  CHECK(md.find("| vllm | 250 | **9.50 ± 0.50** |") != std::string::npos);
  CHECK(table.notes.front() ==
        "± is half the width of the 95% confidence interval (order-statistic interval for "
        "percentiles); best value per column in bold; a latency without ± had too few samples "
        "for such an interval.");
}

TEST_CASE("a lopsided interval is shown as its bounds, not as a symmetric ±") {
  auto runs = two_systems();
  // A median's order-statistic interval over a skewed sample: 785 ms, 95% in [690, 5670].
  runs[0].metrics["ttft.p50"] = est(0.785, 0.690, 5.670);
  const auto table = build_table(runs, options());
  const std::string md = render_table(table, TableFormat::kMarkdown);
  CHECK(md.find("| vllm | 785 (690–5670) | **9.50 ± 0.50** |") != std::string::npos);
  CHECK(md.find("98.7 ± 3.5") != std::string::npos);  // the symmetric one keeps ±
  CHECK(table.notes.front() ==
        "± is half the width of the 95% confidence interval (order-statistic interval for "
        "percentiles); an interval with one side over twice the other is shown as its bounds, "
        "(low–high); best value per column in bold.");
  const std::string tex = render_table(table, TableFormat::kLatex);
  CHECK(tex.find("vllm & 785 (690--5670) & ") != std::string::npos);
  CHECK(tex.find("(low--high)") != std::string::npos);
  const std::string html = render_table(table, TableFormat::kHtml);
  CHECK(html.find("<td>785 (690–5670)</td>") != std::string::npos);
  // Exactly twice on one side (exact in binary) is still shown with ±; just over is not.
  runs[0].metrics["ttft.p50"] = est(0.5, 0.25, 1.0);
  CHECK(render_table(build_table(runs, options()), TableFormat::kMarkdown).find("500 ± 375") !=
        std::string::npos);
  runs[0].metrics["ttft.p50"] = est(0.5, 0.25, 1.0078125);
  CHECK(render_table(build_table(runs, options()), TableFormat::kMarkdown).find("500 (250–1008)") !=
        std::string::npos);
  // Bounds far smaller than the value keep their own digits.
  runs[0].metrics["ttft.p50"] = est(0.785, 0.0004, 5.670);
  CHECK(
      render_table(build_table(runs, options()), TableFormat::kMarkdown).find("785 (0.400–5670)") !=
      std::string::npos);
  // An infinite bound is not shown as bounds (nor claimed in the footnote).
  runs[0].metrics["ttft.p50"] = est(0.785, 0.690, std::numeric_limits<double>::infinity());
  const auto infinite = build_table(runs, options());
  CHECK(infinite.notes.front().find("shown as its bounds") == std::string::npos);
}

TEST_CASE("--by workload,target transposes the table") {
  TableOptions o = options();
  o.rows = "workload";
  o.columns = "target";
  const auto table = build_table(two_systems(), o);
  CHECK(table.row_header == "Workload");
  CHECK(table.row_labels == std::vector<std::string>{"chat"});
  CHECK(table.groups == std::vector<std::string>{"vllm", "sglang"});
}

TEST_CASE("the latest of several runs of one system and workload is shown, with a note") {
  auto runs = two_systems();
  TableRun again = runs[0];
  again.run_id = "r9";
  again.started_at = "2026-11-25T10:00:00.000Z";
  again.metrics["ttft.p50"] = est(0.05, 0.049, 0.051);
  runs.push_back(again);
  const auto table = build_table(runs, options());
  REQUIRE(table.row_labels.size() == 2);
  CHECK(table.cells[0][0].estimate->value == 0.05);
  const std::string md = render_table(table, TableFormat::kMarkdown);
  CHECK(md.find("vllm / chat: 2 runs, the latest (r9) is shown.") != std::string::npos);
}

TEST_CASE("higher-is-better metrics bold the maximum, lower-is-better the minimum") {
  const auto table = build_table(two_systems(), options());
  CHECK(table.cells[1][0].best);  // sglang has the lower TTFT
  CHECK_FALSE(table.cells[0][0].best);
  CHECK(table.cells[0][1].best);  // vllm has the higher goodput
}

TEST_CASE("table options are validated") {
  TableOptions o = options();
  o.metrics = {"ttft.p50", "latency.wat"};
  CHECK_THROWS_AS(build_table(two_systems(), o), std::invalid_argument);
  o = options();
  o.rows = "workload";
  o.columns = "workload";
  CHECK_THROWS_AS(build_table(two_systems(), o), std::invalid_argument);
  CHECK_THROWS_AS(table_format_from_string("pdf"), std::invalid_argument);
  CHECK(table_format_from_string("tex") == TableFormat::kLatex);
}

TEST_CASE("values keep about three significant digits") {
  CHECK(format_value(1234.5) == "1234");
  CHECK(format_value(123.45) == "123");
  CHECK(format_value(12.345, 0.44) == "12.3 ± 0.4");
  CHECK(format_value(0.012345) == "0.0123");
  CHECK(format_value(0.0) == "0");
}
