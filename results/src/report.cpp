#include "prism/results/report.h"

#include <filesystem>

#include <fmt/core.h>

#include "prism/results/atomic_file.h"
#include "prism/results/metrics.h"
#include "prism/results/samples.h"
#include "prism/results/store.h"

namespace prism::results {
namespace {

namespace fs = std::filesystem;

const std::vector<std::string>& report_metrics() {
  static const std::vector<std::string> names{"ttft.p50", "ttft.p99",       "tpot.p50",
                                              "tpot.p99", "itl.p99",        "e2e.p50",
                                              "e2e.p99",  "throughput.rps", "goodput"};
  return names;
}

std::vector<TableRun> table_runs(std::span<const Run> runs, const std::vector<std::string>& metrics,
                                 const BootstrapOptions& bootstrap) {
  std::vector<TableRun> out;
  for (const auto& run : runs) {
    TableRun t;
    t.run_id = run.run_id;
    t.started_at = run.started_at;
    t.target = target_display_name(run.target);
    t.workload = workload_display_name(run.workload);
    t.environment = run.environment;
    const RunSamples samples = collect_samples(run.observations);
    const Slo slo = slo_from_configuration(run.configuration);
    for (const auto& name : metrics)
      t.metrics[name] = compute_metric(samples, parse_metric(name), slo, bootstrap);
    out.push_back(std::move(t));
  }
  return out;
}

struct RunFacts {
  std::string id;
  std::string label;
  std::string window;
  std::string counts;
  std::string configuration;
  std::string status;
};

RunFacts facts(const Run& run) {
  const RunSamples s = collect_samples(run.observations);
  RunFacts f;
  f.id = run.run_id;
  f.label = run_label(run);
  f.window = fmt::format("{} → {}", run.started_at,
                         run.finished_at.empty() ? "(in progress)" : run.finished_at);
  f.counts = fmt::format(
      "{} requests measured ({} succeeded, {} failed), {} input and {} output tokens, "
      "{:.1f} s",
      s.requests, s.succeeded, s.failed, s.input_tokens, s.output_tokens, s.duration_s());
  f.configuration = run.configuration.dump();
  f.status = run.complete ? "complete" : "INCOMPLETE: " + run.incomplete_reason;
  return f;
}

constexpr const char* kStyle = R"css(
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}
table.prism-table{border-collapse:collapse;margin:1em 0;font-variant-numeric:tabular-nums}
table.prism-table th,table.prism-table td{border:1px solid #ccc;padding:.3em .6em;text-align:right}
table.prism-table th[scope=row]{text-align:left}
p.prism-note,figcaption,.small{font-size:.85em;color:#555}
figure{margin:1.5em 0}figure img{max-width:100%;border:1px solid #eee}
code{background:#f4f4f4;padding:0 .2em}
)css";

}  // namespace

std::string base64_encode(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const auto n = (static_cast<unsigned char>(bytes[i]) << 16) |
                   (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                   static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += kAlphabet[n & 63];
  }
  if (i + 1 == bytes.size()) {
    const auto n = static_cast<unsigned char>(bytes[i]) << 16;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += "==";
  } else if (i + 2 == bytes.size()) {
    const auto n = (static_cast<unsigned char>(bytes[i]) << 16) |
                   (static_cast<unsigned char>(bytes[i + 1]) << 8);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += '=';
  }
  return out;
}

ReportResult write_report(std::span<const Run> runs, const std::string& dir,
                          const ReportOptions& options) {
  ReportResult result;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw FileError(fmt::format("{}: cannot create directory: {}", dir, ec.message()));
  const auto& metrics = options.metrics.empty() ? report_metrics() : options.metrics;
  const auto inputs = table_runs(runs, metrics, options.bootstrap);
  TableOptions table_options;
  table_options.metrics = metrics;
  const Table table = build_table(inputs, table_options);

  if (options.figures) {
    try {
      result.figures = write_figures(runs, (fs::path(dir) / "figures").string(), options.plot);
    } catch (const PlotError& e) {
      result.warnings.push_back(fmt::format("figures skipped: {}", e.what()));
    }
  }

  // Markdown.
  std::string md = fmt::format("# {}\n\n", options.title);
  md += fmt::format(
      "{} run(s). Latencies are per request from its scheduled time; percentiles "
      "are type 7 with 95% order-statistic (distribution-free) confidence intervals.\n\n",
      runs.size());
  md += "## Summary\n\n" + render_table(table, TableFormat::kMarkdown) + "\n";
  if (!result.figures.empty()) md += "## Figures\n\n";
  for (const auto& f : result.figures) {
    const std::string image = !f.png.empty() ? f.png : f.svg;
    md += fmt::format("### {}\n\n![{}]({})\n\n{}\n\n", f.title, f.title,
                      fs::relative(image, dir).generic_string(), f.caption);
  }
  for (const auto& w : result.warnings) md += "> Note: " + w + "\n\n";
  md += "## Runs\n\n";
  for (const auto& run : runs) {
    const RunFacts f = facts(run);
    md += fmt::format("- **{}** — `{}` ({})  \n  {}  \n  {}  \n  configuration: `{}`\n", f.label,
                      f.id, f.status, f.window, f.counts, f.configuration);
  }
  result.markdown_path = (fs::path(dir) / "report.md").string();
  write_file_atomically(result.markdown_path, md);

  // Self-contained HTML: every figure inlined as a data URI.
  std::string html = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  html += "<title>" + escape_markup(options.title) + "</title>\n<style>" + kStyle +
          "</style>\n</head>\n<body>\n";
  html += "<h1>" + escape_markup(options.title) + "</h1>\n";
  html += fmt::format(
      "<p class=\"small\">{} run(s). Latencies are per request from its scheduled "
      "time; percentiles are type 7 with 95% order-statistic (distribution-free) confidence "
      "intervals.</p>\n",
      runs.size());
  html += "<h2>Summary</h2>\n" + render_table(table, TableFormat::kHtml);
  if (!result.figures.empty()) html += "<h2>Figures</h2>\n";
  for (const auto& f : result.figures) {
    const bool use_svg = !f.svg.empty();
    const std::string bytes = read_file(use_svg ? f.svg : f.png);
    html += fmt::format(
        "<figure>\n<img alt=\"{}\" src=\"data:{};base64,{}\">\n<figcaption><b>{}</b>. "
        "{}</figcaption>\n</figure>\n",
        escape_markup(f.title), use_svg ? "image/svg+xml" : "image/png", base64_encode(bytes),
        escape_markup(f.title), escape_markup(f.caption));
  }
  for (const auto& w : result.warnings)
    html += "<p class=\"prism-note\">Note: " + escape_markup(w) + "</p>\n";
  html += "<h2>Runs</h2>\n<ul>\n";
  for (const auto& run : runs) {
    const RunFacts f = facts(run);
    html += fmt::format(
        "<li><b>{}</b> — <code>{}</code> ({})<br>{}<br>{}<br><span "
        "class=\"small\">configuration: <code>{}</code></span></li>\n",
        escape_markup(f.label), escape_markup(f.id), escape_markup(f.status),
        escape_markup(f.window), escape_markup(f.counts), escape_markup(f.configuration));
  }
  html += "</ul>\n</body>\n</html>\n";
  result.html_path = (fs::path(dir) / "report.html").string();
  write_file_atomically(result.html_path, html);
  return result;
}

}  // namespace prism::results
