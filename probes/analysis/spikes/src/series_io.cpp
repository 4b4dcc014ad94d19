#include "prism/spikes/series_io.h"

#include <charconv>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

namespace prism::spikes {

namespace {

std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : line) {
    if (c == ',') {
      out.push_back(cur);
      cur.clear();
    } else if (c != '\r') {
      cur.push_back(c);
    }
  }
  out.push_back(cur);
  return out;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

double number(const std::string& text, const std::string& origin, size_t line,
              const std::string& column) {
  double v = 0;
  const char* b = text.data();
  const char* e = b + text.size();
  const auto [p, ec] = std::from_chars(b, e, v);
  if (ec != std::errc() || p != e || text.empty())
    throw SeriesError(
        fmt::format("{}:{}: column '{}': '{}' is not a number", origin, line, column, text));
  return v;
}

}  // namespace

LabelledRun read_series_csv(const std::string& text, const std::string& origin) {
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line)) throw SeriesError(origin + ": empty file (no header)");
  const std::vector<std::string> header = split(line);
  int col_index = -1, col_start = -1, col_end = -1, col_duration = -1, col_fault = -1,
      col_off_cpu = -1;
  std::array<int, kFeatureCount> col_feature;
  col_feature.fill(-1);
  std::vector<int> stage_cols;
  LabelledRun run;
  run.source = "file";
  for (size_t i = 0; i < header.size(); ++i) {
    const std::string& h = header[i];
    const int c = static_cast<int>(i);
    if (h == "iteration" || h == "index")
      col_index = c;
    else if (h == "start_ns")
      col_start = c;
    else if (h == "end_ns")
      col_end = c;
    else if (h == "duration_ns")
      col_duration = c;
    else if (h == "fault")
      col_fault = c;
    else if (h == "off_cpu_ns")
      col_off_cpu = c;
    else if (h == "gpu_busy_ns" || h == "gpu_idle_ns" || h == "launch_queue_ns" ||
             ends_with(h, "_gpu_ns"))
      continue;
    else if (ends_with(h, "_ns")) {
      stage_cols.push_back(c);
      run.series.stages.push_back(h.substr(0, h.size() - 3));
    } else {
      for (int f = 0; f < kFeatureCount; ++f)
        if (h == feature_names()[static_cast<size_t>(f)]) col_feature[static_cast<size_t>(f)] = c;
    }
  }
  if (col_start < 0 || (col_end < 0 && col_duration < 0))
    throw SeriesError(origin + ":1: header needs start_ns and end_ns (or duration_ns)");
  if (stage_cols.size() > static_cast<size_t>(kMaxStages))
    throw SeriesError(fmt::format("{}:1: {} stage columns; the detector takes at most {}", origin,
                                  stage_cols.size(), kMaxStages));
  run.series.has_features = false;
  for (int c : col_feature) run.series.has_features = run.series.has_features || c >= 0;

  size_t lineno = 1;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty() || line == "\r") continue;
    const std::vector<std::string> cells = split(line);
    if (cells.size() != header.size())
      throw SeriesError(fmt::format("{}:{}: {} fields, the header has {}", origin, lineno,
                                    cells.size(), header.size()));
    auto get = [&](int c) {
      return number(cells[static_cast<size_t>(c)], origin, lineno, header[static_cast<size_t>(c)]);
    };
    IterationRecord r;
    r.index = col_index >= 0 ? static_cast<uint64_t>(get(col_index)) : run.series.iterations.size();
    const double start = get(col_start);
    const double end = col_end >= 0 ? get(col_end) : start + get(col_duration);
    if (start < 0 || end < start)
      throw SeriesError(fmt::format("{}:{}: end_ns before start_ns", origin, lineno));
    r.start_ns = static_cast<uint64_t>(start);
    r.end_ns = static_cast<uint64_t>(end);
    for (int f = 0; f < kFeatureCount; ++f)
      if (col_feature[static_cast<size_t>(f)] >= 0)
        set_feature_value(r.features, f, get(col_feature[static_cast<size_t>(f)]));
    for (size_t s = 0; s < stage_cols.size(); ++s) r.stage_ns[s] = get(stage_cols[s]);
    if (col_off_cpu >= 0) r.off_cpu_ns = get(col_off_cpu);
    if (!run.series.iterations.empty() && r.end_ns < run.series.iterations.back().end_ns)
      throw SeriesError(fmt::format("{}:{}: iterations must be in end order", origin, lineno));
    run.series.iterations.push_back(r);
    run.labels.push_back(col_fault >= 0 && get(col_fault) != 0 ? 1 : 0);
    if (col_off_cpu >= 0) run.off_cpu_ns.push_back(get(col_off_cpu));
  }
  // Ground-truth windows from the label column (runs of 1s).
  for (size_t i = 0; i < run.labels.size(); ++i) {
    if (!run.labels[i]) continue;
    size_t j = i;
    while (j + 1 < run.labels.size() && run.labels[j + 1]) ++j;
    run.faults.push_back(FaultWindow{i, j, "labelled", ""});
    i = j;
  }
  return run;
}

LabelledRun read_series_csv_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw SeriesError(path + ": cannot open");
  std::ostringstream ss;
  ss << f.rdbuf();
  return read_series_csv(ss.str(), path);
}

std::string write_series_csv(const LabelledRun& run) {
  fmt::memory_buffer out;
  auto it = std::back_inserter(out);
  fmt::format_to(it, "iteration,start_ns,end_ns,duration_ns");
  for (const char* f : feature_names()) fmt::format_to(it, ",{}", f);
  for (const std::string& s : run.series.stages) fmt::format_to(it, ",{}_ns", s);
  const bool off_cpu = run.off_cpu_ns.size() == run.series.iterations.size();
  fmt::format_to(it, ",fault{}\n", off_cpu ? ",off_cpu_ns" : "");
  for (size_t i = 0; i < run.series.iterations.size(); ++i) {
    const IterationRecord& r = run.series.iterations[i];
    fmt::format_to(it, "{},{},{},{}", r.index, r.start_ns, r.end_ns, r.duration_ns());
    for (int f = 0; f < kFeatureCount; ++f) fmt::format_to(it, ",{}", feature_value(r.features, f));
    for (size_t s = 0; s < run.series.stages.size(); ++s)
      fmt::format_to(it, ",{:.0f}", r.stage_ns[s]);
    fmt::format_to(it, ",{}", i < run.labels.size() ? static_cast<int>(run.labels[i]) : 0);
    if (off_cpu) fmt::format_to(it, ",{:.0f}", run.off_cpu_ns[i]);
    fmt::format_to(it, "\n");
  }
  return fmt::to_string(out);
}

}  // namespace prism::spikes
