#include "prism/results/table.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>
#include <stdexcept>

#include <fmt/core.h>

namespace prism::results {
namespace {

using nlohmann::json;

int decimals_for(double value) {
  if (value == 0.0 || !std::isfinite(value)) return 0;
  const int magnitude = static_cast<int>(std::floor(std::log10(std::abs(value))));
  return std::clamp(2 - magnitude, 0, 4);
}

std::string column_title(const MetricSpec& m) {
  return fmt::format("{} ({})", m.label, m.display_unit);
}

double displayed(const MetricSpec& m, double v) {
  return v * m.display_scale;
}

std::optional<double> half_width(const MetricSpec& m, const Estimate& e) {
  if (!e.has_ci()) return std::nullopt;
  return (e.ci_high - e.ci_low) / 2.0 * m.display_scale;
}

// An interval with one side more than twice the other (order-statistic intervals of a
// percentile often are: the samples above a median spread further than those below) would read
// as symmetric with ±, and "785 ± 2490" suggests a negative lower bound: it is shown as its
// bounds instead, "785 (690–5670)".
bool lopsided(const Estimate& e) {
  if (!e.has_ci() || !std::isfinite(e.value) || !std::isfinite(e.ci_low) ||
      !std::isfinite(e.ci_high))
    return false;
  const double up = e.ci_high - e.value, down = e.value - e.ci_low;
  return std::max(up, down) > 2.0 * std::min(up, down);
}

std::string cell_text(const Table& t, const TableCell& cell, std::size_t column,
                      const char* plus_minus, const char* dash) {
  if (!cell.estimate) return "—";
  const MetricSpec& m = t.metrics[column % t.metrics.size()];
  const Estimate& e = *cell.estimate;
  const double value = displayed(m, e.value);
  if (lopsided(e)) {
    // Each number with about three significant digits of its own: "785 (0.400–5670)".
    const auto text = [](double v) { return fmt::format("{:.{}f}", v, decimals_for(v)); };
    return fmt::format("{} ({}{}{})", text(value), text(displayed(m, e.ci_low)), dash,
                       text(displayed(m, e.ci_high)));
  }
  return format_value(value, half_width(m, e), plus_minus);
}

std::string header_text(const Table& t, std::size_t column) {
  const MetricSpec& m = t.metrics[column % t.metrics.size()];
  const std::string& group = t.groups[column / t.metrics.size()];
  return fmt::format("{}: {}", group, column_title(m));
}

std::string escape_latex(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
      case '%':
      case '$':
      case '#':
      case '_':
      case '{':
      case '}':
        out += '\\';
        out += c;
        break;
      case '~':
        out += "\\textasciitilde{}";
        break;
      case '^':
        out += "\\textasciicircum{}";
        break;
      case '\\':
        out += "\\textbackslash{}";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string escape_markdown(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '|') out += '\\';
    out += c;
  }
  return out;
}

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\n") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string csv_number(const MetricSpec& m, double v) {
  if (std::isnan(v)) return "";
  return fmt::format("{:.10g}", displayed(m, v));  // enough digits, none of the float noise
}

std::string render_markdown(const Table& t) {
  std::string out = "| " + escape_markdown(t.row_header) + " |";
  std::string rule = "|:---|";
  const std::size_t columns = t.groups.size() * t.metrics.size();
  for (std::size_t c = 0; c < columns; ++c) {
    out += " " + escape_markdown(header_text(t, c)) + " |";
    rule += "---:|";
  }
  out += "\n" + rule + "\n";
  for (std::size_t r = 0; r < t.row_labels.size(); ++r) {
    out += "| " + escape_markdown(t.row_labels[r]) + " |";
    for (std::size_t c = 0; c < columns; ++c) {
      const auto& cell = t.cells[r][c];
      const std::string text = cell_text(t, cell, c, "±", "–");
      out += " " + (cell.best ? "**" + text + "**" : text) + " |";
    }
    out += "\n";
  }
  // One paragraph per note: Markdown would join consecutive lines.
  for (const auto& note : t.notes) out += "\n" + escape_markdown(note) + "\n";
  return out;
}

std::string render_csv(const Table& t) {
  std::string out = csv_field(t.row_header);
  const std::size_t columns = t.groups.size() * t.metrics.size();
  for (std::size_t c = 0; c < columns; ++c) {
    const std::string h = header_text(t, c);
    out += "," + csv_field(h) + "," + csv_field(h + " ci_low") + "," + csv_field(h + " ci_high");
  }
  out += "\n";
  for (std::size_t r = 0; r < t.row_labels.size(); ++r) {
    out += csv_field(t.row_labels[r]);
    for (std::size_t c = 0; c < columns; ++c) {
      const auto& cell = t.cells[r][c];
      const MetricSpec& m = t.metrics[c % t.metrics.size()];
      if (!cell.estimate) {
        out += ",,,";
        continue;
      }
      out += "," + csv_number(m, cell.estimate->value) + "," +
             csv_number(m, cell.estimate->ci_low) + "," + csv_number(m, cell.estimate->ci_high);
    }
    out += "\n";
  }
  return out;
}

std::string render_latex(const Table& t) {
  const std::size_t per_group = t.metrics.size();
  const std::size_t columns = t.groups.size() * per_group;
  std::string out = "\\begin{table}[t]\n\\centering\n\\begin{tabular}{l" +
                    std::string(columns, 'r') + "}\n\\toprule\n";
  for (std::size_t g = 0; g < t.groups.size(); ++g) {
    out += fmt::format(" & \\multicolumn{{{}}}{{c}}{{{}}}", per_group, escape_latex(t.groups[g]));
  }
  out += " \\\\\n";
  for (std::size_t g = 0; g < t.groups.size(); ++g) {
    out += fmt::format("\\cmidrule(lr){{{}-{}}}", 2 + g * per_group, 1 + (g + 1) * per_group);
  }
  out += "\n" + escape_latex(t.row_header);
  for (std::size_t c = 0; c < columns; ++c) {
    out += " & " + escape_latex(column_title(t.metrics[c % per_group]));
  }
  out += " \\\\\n\\midrule\n";
  for (std::size_t r = 0; r < t.row_labels.size(); ++r) {
    out += escape_latex(t.row_labels[r]);
    for (std::size_t c = 0; c < columns; ++c) {
      const auto& cell = t.cells[r][c];
      const std::string text = cell.estimate ? cell_text(t, cell, c, "$\\pm$", "--") : "--";
      out += " & " + (cell.best ? "\\textbf{" + text + "}" : text);
    }
    out += " \\\\\n";
  }
  out += "\\bottomrule\n\\end{tabular}\n";
  if (!t.notes.empty()) {
    out += "\\par\\smallskip\\footnotesize\n";
    for (const auto& note : t.notes) {
      std::string text = escape_latex(note);
      for (std::size_t at = text.find("±"); at != std::string::npos; at = text.find("±", at))
        text.replace(at, std::string("±").size(), "$\\pm$");
      for (std::size_t at = text.find("–"); at != std::string::npos; at = text.find("–", at))
        text.replace(at, std::string("–").size(), "--");
      out += text + "\\\\\n";
    }
  }
  out += "\\end{table}\n";
  return out;
}

std::string render_html(const Table& t) {
  const std::size_t per_group = t.metrics.size();
  const std::size_t columns = t.groups.size() * per_group;
  std::string out = "<table class=\"prism-table\">\n<thead>\n<tr><th rowspan=\"2\">" +
                    escape_markup(t.row_header) + "</th>";
  for (const auto& g : t.groups) {
    out += fmt::format("<th colspan=\"{}\">{}</th>", per_group, escape_markup(g));
  }
  out += "</tr>\n<tr>";
  for (std::size_t c = 0; c < columns; ++c) {
    out += "<th>" + escape_markup(column_title(t.metrics[c % per_group])) + "</th>";
  }
  out += "</tr>\n</thead>\n<tbody>\n";
  for (std::size_t r = 0; r < t.row_labels.size(); ++r) {
    out += "<tr><th scope=\"row\">" + escape_markup(t.row_labels[r]) + "</th>";
    for (std::size_t c = 0; c < columns; ++c) {
      const auto& cell = t.cells[r][c];
      const std::string text = escape_markup(cell_text(t, cell, c, "±", "–"));
      out += cell.best ? "<td><strong>" + text + "</strong></td>" : "<td>" + text + "</td>";
    }
    out += "</tr>\n";
  }
  out += "</tbody>\n</table>\n";
  for (const auto& note : t.notes)
    out += "<p class=\"prism-note\">" + escape_markup(note) + "</p>\n";
  return out;
}

const std::string& attribute(const TableRun& run, const std::string& key) {
  if (key == "target") return run.target;
  if (key == "workload") return run.workload;
  throw std::invalid_argument(
      fmt::format("unknown table key '{}' (expected target or workload)", key));
}

}  // namespace

std::string format_value(double value, std::optional<double> half, const char* plus_minus) {
  if (std::isnan(value)) return "—";
  const int decimals = decimals_for(value);
  std::string text = fmt::format("{:.{}f}", value, decimals);
  if (half && std::isfinite(*half)) text += fmt::format(" {} {:.{}f}", plus_minus, *half, decimals);
  return text;
}

TableFormat table_format_from_string(const std::string& text) {
  if (text == "md" || text == "markdown") return TableFormat::kMarkdown;
  if (text == "csv") return TableFormat::kCsv;
  if (text == "latex" || text == "tex") return TableFormat::kLatex;
  if (text == "html") return TableFormat::kHtml;
  throw std::invalid_argument(
      fmt::format("unknown table format '{}' (expected md, csv, latex or html)", text));
}

std::string describe_environment(const json& env) {
  if (!env.is_object() || env.empty()) return "environment not recorded";
  std::vector<std::string> parts;
  if (auto cpu = env.find("cpu"); cpu != env.end() && cpu->is_object()) {
    std::string text = cpu->value("model", std::string("unknown CPU"));
    if (auto cores = cpu->find("logical_cores"); cores != cpu->end() && cores->is_number())
      text += fmt::format(" ({} threads)", cores->get<long long>());
    parts.push_back(text);
  }
  if (auto cuda = env.find("cuda"); cuda != env.end() && cuda->is_object()) {
    std::map<std::string, int> gpus;
    if (auto list = cuda->find("gpus"); list != cuda->end() && list->is_array()) {
      for (const auto& g : *list)
        if (g.is_object()) ++gpus[g.value("name", std::string("GPU"))];
    }
    for (const auto& [name, count] : gpus)
      parts.push_back(count > 1 ? fmt::format("{} x {}", count, name) : name);
    if (gpus.empty()) parts.push_back("no GPU");
    if (auto d = cuda->find("driver_version"); d != cuda->end() && d->is_string())
      parts.push_back("driver " + d->get<std::string>());
    if (auto t = cuda->find("toolkit_version"); t != cuda->end() && t->is_string())
      parts.push_back("CUDA " + t->get<std::string>());
  }
  if (auto os = env.find("os"); os != env.end()) {
    if (os->is_string()) {
      parts.push_back(os->get<std::string>());
    } else if (os->is_object()) {
      parts.push_back(os->value("name", os->value("kernel", std::string())));
    }
  }
  if (auto prism = env.find("prism"); prism != env.end() && prism->is_object()) {
    parts.push_back(fmt::format("Prism {} ({})", prism->value("version", std::string("?")),
                                prism->value("git_sha", std::string("?"))));
  }
  std::erase_if(parts, [](const std::string& s) { return s.empty(); });
  if (parts.empty()) return "environment not recorded";
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) out += (i ? ", " : "") + parts[i];
  return out;
}

Table build_table(std::span<const TableRun> runs, const TableOptions& options) {
  if (options.rows == options.columns) {
    throw std::invalid_argument("--by needs two different keys, e.g. target,workload");
  }
  Table t;
  t.row_header = options.rows == "target" ? "System" : "Workload";
  for (const auto& name : options.metrics) t.metrics.push_back(parse_metric(name));
  if (t.metrics.empty()) throw std::invalid_argument("a table needs at least one metric");

  // Latest run per (row, group).
  std::map<std::pair<std::string, std::string>, const TableRun*> chosen;
  std::map<std::pair<std::string, std::string>, int> counts;
  for (const auto& run : runs) {
    const std::string& row = attribute(run, options.rows);
    const std::string& group = attribute(run, options.columns);
    if (std::find(t.row_labels.begin(), t.row_labels.end(), row) == t.row_labels.end())
      t.row_labels.push_back(row);
    if (std::find(t.groups.begin(), t.groups.end(), group) == t.groups.end())
      t.groups.push_back(group);
    const auto key = std::make_pair(row, group);
    ++counts[key];
    auto& slot = chosen[key];
    if (slot == nullptr || slot->started_at <= run.started_at) slot = &run;
  }
  const std::size_t per_group = t.metrics.size();
  t.cells.assign(t.row_labels.size(), std::vector<TableCell>(t.groups.size() * per_group));
  for (std::size_t r = 0; r < t.row_labels.size(); ++r) {
    for (std::size_t g = 0; g < t.groups.size(); ++g) {
      auto it = chosen.find({t.row_labels[r], t.groups[g]});
      if (it == chosen.end()) continue;
      for (std::size_t m = 0; m < per_group; ++m) {
        auto value = it->second->metrics.find(t.metrics[m].name);
        if (value == it->second->metrics.end() || value->second.n == 0 ||
            std::isnan(value->second.value))
          continue;
        t.cells[r][g * per_group + m].estimate = value->second;
      }
    }
  }
  // Bold the best value of each column, when there is a comparison to make.
  for (std::size_t c = 0; c < t.groups.size() * per_group; ++c) {
    const MetricSpec& m = t.metrics[c % per_group];
    std::optional<double> best;
    int present = 0;
    for (const auto& row : t.cells) {
      if (!row[c].estimate) continue;
      ++present;
      const double v = row[c].estimate->value;
      if (!best || (m.better == Better::kLower ? v < *best : v > *best)) best = v;
    }
    if (present < 2) continue;
    for (auto& row : t.cells)
      if (row[c].estimate && row[c].estimate->value == *best) row[c].best = true;
  }

  double confidence = 0.95;
  for (const auto& row : t.cells)
    for (const auto& cell : row)
      if (cell.estimate && cell.estimate->has_ci()) confidence = cell.estimate->confidence;
  // Only claim bold values when there are some: a single row, or columns with
  // one value each, leave nothing to compare.
  bool any_bold = false;
  for (const auto& row : t.cells)
    for (const auto& cell : row) any_bold = any_bold || cell.best;
  // A latency shown without ± (too few samples for its percentile's interval).
  bool any_without_ci = false;
  for (const auto& row : t.cells)
    for (std::size_t c = 0; c < row.size(); ++c)
      if (row[c].estimate && !row[c].estimate->has_ci() && t.metrics[c % per_group].quantity)
        any_without_ci = true;
  bool any_lopsided = false;
  for (const auto& row : t.cells)
    for (const auto& cell : row)
      any_lopsided = any_lopsided || (cell.estimate && lopsided(*cell.estimate));
  t.notes.push_back(fmt::format(
      "± is half the width of the {:g}% confidence interval (order-statistic interval for "
      "percentiles){}{}{}",
      confidence * 100.0,
      any_lopsided ? "; an interval with one side over twice the other is shown as its bounds, "
                     "(low–high)"
                   : "",
      any_bold ? "; best value per column in bold" : "",
      any_without_ci ? "; a latency without ± had too few samples for such an interval." : "."));
  for (const auto& [key, count] : counts) {
    if (count > 1)
      t.notes.push_back(fmt::format("{} / {}: {} runs, the latest ({}) is shown.", key.first,
                                    key.second, count, chosen[key]->run_id));
  }
  // One footnote per distinct environment, naming the runs measured on it.
  std::vector<std::pair<std::string, std::vector<std::string>>> environments;
  for (const auto& row : t.row_labels) {
    for (const auto& group : t.groups) {
      auto found = chosen.find({row, group});
      if (found == chosen.end()) continue;
      const TableRun* run = found->second;
      const std::string text = describe_environment(run->environment);
      auto it = std::find_if(environments.begin(), environments.end(),
                             [&](const auto& e) { return e.first == text; });
      if (it == environments.end()) {
        environments.push_back({text, {run->run_id}});
      } else {
        it->second.push_back(run->run_id);
      }
    }
  }
  for (const auto& [text, ids] : environments) {
    std::string list;
    for (std::size_t i = 0; i < ids.size(); ++i) list += (i ? ", " : "") + ids[i];
    t.notes.push_back(environments.size() == 1
                          ? fmt::format("Environment: {}. Runs: {}.", text, list)
                          : fmt::format("Environment of {}: {}.", list, text));
  }
  return t;
}

std::string render_table(const Table& table, TableFormat format) {
  switch (format) {
    case TableFormat::kMarkdown:
      return render_markdown(table);
    case TableFormat::kCsv:
      return render_csv(table);
    case TableFormat::kLatex:
      return render_latex(table);
    case TableFormat::kHtml:
      break;
  }
  return render_html(table);
}

std::string escape_markup(const std::string& text, bool escape_apostrophe) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += escape_apostrophe ? "&apos;" : "'";
        break;
      default:
        out += c;
    }
  }
  return out;
}

}  // namespace prism::results
