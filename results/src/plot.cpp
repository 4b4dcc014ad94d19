#include "prism/results/plot.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>

#include <fmt/core.h>

#include "prism/results/atomic_file.h"
#include "prism/results/samples.h"
#include "prism/results/statistics.h"
#include "prism/results/store.h"

extern char** environ;

namespace prism::results {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr std::size_t kCdfPoints = 1000;

std::string quote(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += ' ';
      continue;
    }
    out += c;
  }
  return out + "\"";
}

// Runs gnuplot on a script; throws PlotError with its stderr on failure.
void run_gnuplot(const std::string& gnuplot, const std::string& script, const std::string& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  std::vector<char*> argv{const_cast<char*>(gnuplot.c_str()), const_cast<char*>(script.c_str()),
                          nullptr};
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, gnuplot.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    throw PlotError(fmt::format("cannot run '{}' ({}): install gnuplot to draw figures", gnuplot,
                                std::strerror(rc)));
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  std::string output;
  try {
    output = read_file(log);
  } catch (const FileError&) {
  }
  std::error_code ignored;
  fs::remove(log, ignored);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw PlotError(fmt::format("{}: gnuplot failed: {}", script, output));
  }
}

struct Canvas {
  std::string dir;
  std::string name;
  const PlotOptions& options;
  std::string data;  // contents of <name>.dat
  std::string body;  // plot commands after the terminal setup
};

// Writes data and script, renders each terminal to a temporary name and
// renames it into place, so a reader never sees half a figure.
Figure render(Canvas& c, FigureKind kind, std::string title, std::string caption) {
  const fs::path base = fs::path(c.dir) / c.name;
  const std::string data_path = base.string() + ".dat";
  write_file_atomically(data_path, c.data);
  Figure f;
  f.kind = kind;
  f.title = std::move(title);
  f.caption = std::move(caption);
  std::string script = fmt::format("# Prism figure: {}\n# data: {}\n", f.title, data_path);
  std::vector<std::pair<std::string, std::string>> outputs;  // final, temporary
  auto add_terminal = [&](const char* ext, const char* terminal) {
    const std::string final_path = base.string() + "." + ext;
    const std::string temp = final_path + ".tmp";
    outputs.emplace_back(final_path, temp);
    script += fmt::format("set terminal {}\nset output {}\n", terminal, quote(temp));
    script += fmt::format("datafile = {}\n", quote(data_path));
    script += c.body;
    script += "unset output\n";
  };
  if (c.options.svg)
    add_terminal("svg",
                 "svg size 900,560 dynamic noenhanced font 'sans,12' background rgb 'white'");
  if (c.options.png) add_terminal("png", "pngcairo size 1200,750 noenhanced font 'sans,12'");
  const std::string script_path = base.string() + ".gp";
  write_file_atomically(script_path, script);
  run_gnuplot(c.options.gnuplot, script_path, base.string() + ".gnuplot.log");
  for (const auto& [final_path, temp] : outputs) {
    std::error_code ec;
    fs::rename(temp, final_path, ec);
    if (ec)
      throw PlotError(fmt::format("{}: cannot rename from {}: {}", final_path, temp, ec.message()));
    f.files.push_back(final_path);
    if (final_path.ends_with(".svg")) f.svg = final_path;
    if (final_path.ends_with(".png")) f.png = final_path;
  }
  return f;
}

const char* kCommonStyle =
    "set grid lc rgb '#dddddd'\nset border lc rgb '#444444'\nset key noenhanced\n"
    "set style line 1 lc rgb '#1f77b4' lw 2\nset style line 2 lc rgb '#d62728' lw 2\n"
    "set style line 3 lc rgb '#2ca02c' lw 2\nset style line 4 lc rgb '#9467bd' lw 2\n"
    "set style line 5 lc rgb '#ff7f0e' lw 2\nset style line 6 lc rgb '#8c564b' lw 2\n"
    "set style increment user\n";

std::optional<Figure> cdf_figure(std::span<const Run> runs, std::span<const RunSamples> samples,
                                 Quantity quantity, const std::string& dir,
                                 const PlotOptions& options) {
  const bool itl = quantity == Quantity::kItl;
  Canvas c{dir, itl ? "itl-cdf" : "ttft-cdf", options, "", ""};
  std::vector<std::string> plots;
  std::size_t block = 0;
  for (std::size_t r = 0; r < runs.size(); ++r) {
    std::vector<double> v = samples_of(samples[r], quantity);
    if (v.empty()) continue;
    std::sort(v.begin(), v.end());
    c.data += fmt::format("# {}\n", run_label(runs[r]));
    const std::size_t points = std::min(kCdfPoints, v.size());
    for (std::size_t i = 0; i < points; ++i) {
      const double q = points == 1 ? 1.0 : static_cast<double>(i) / static_cast<double>(points - 1);
      c.data += fmt::format("{:.6g} {:.6g}\n", quantile_sorted(v, q) * 1000.0, q);
    }
    c.data += "\n\n";
    plots.push_back(fmt::format("datafile index {} using 1:2 with lines title {}", block++,
                                quote(run_label(runs[r]))));
  }
  if (plots.empty()) return std::nullopt;
  const std::string what = itl ? "Inter-token latency" : "Time to first token";
  c.body = std::string(kCommonStyle) +
           fmt::format(
               "set title {}\nset xlabel {}\nset ylabel 'fraction of {}'\n"
               // Log x: latency tails are long and a linear axis hides the body.
               "set yrange [0:1]\nset key bottom right\nset logscale x\n",
               quote(what + " (CDF)"), quote(what + " (ms)"), itl ? "token gaps" : "requests");
  c.body += "plot ";
  for (std::size_t i = 0; i < plots.size(); ++i) c.body += (i ? ", \\\n     " : "") + plots[i];
  c.body += "\n";
  return render(c, itl ? FigureKind::kItlCdf : FigureKind::kTtftCdf, what + " CDF",
                itl ? "Every gap between consecutive tokens of successful requests."
                    : "TTFT from each request's scheduled time to its first token (queueing "
                      "and lateness included).");
}

std::optional<Figure> throughput_latency_figure(std::span<const Run> runs,
                                                std::span<const RunSamples> samples,
                                                const std::string& dir,
                                                const PlotOptions& options) {
  // One series per target, points sorted by achieved throughput.
  std::map<std::string, std::vector<std::tuple<double, double, double>>> series;
  std::vector<std::string> order;
  for (std::size_t r = 0; r < runs.size(); ++r) {
    const auto& s = samples[r];
    if (s.ttft_s.empty() || s.duration_s() <= 0) continue;
    std::vector<double> v = s.ttft_s;
    std::sort(v.begin(), v.end());
    const std::string target = target_display_name(runs[r].target);
    if (!series.count(target)) order.push_back(target);
    series[target].emplace_back(static_cast<double>(s.succeeded) / s.duration_s(),
                                quantile_sorted(v, 0.5) * 1000.0,
                                quantile_sorted(v, 0.99) * 1000.0);
  }
  if (series.empty()) return std::nullopt;
  Canvas c{dir, "throughput-latency", options, "", ""};
  std::string plots;
  std::size_t block = 0;
  for (const auto& target : order) {
    auto& points = series[target];
    std::sort(points.begin(), points.end());
    c.data += fmt::format("# {}: throughput_rps ttft_p50_ms ttft_p99_ms\n", target);
    for (const auto& [x, p50, p99] : points)
      c.data += fmt::format("{:.6g} {:.6g} {:.6g}\n", x, p50, p99);
    c.data += "\n\n";
    plots += fmt::format(
        "{}datafile index {} using 1:2 with linespoints pt 7 title {}, \\\n"
        "     datafile index {} using 1:3 with linespoints pt 5 dt 2 title {}",
        block ? ", \\\n     " : "", block, quote(target + " p50"), block, quote(target + " p99"));
    ++block;
  }
  c.body = std::string(kCommonStyle) +
           "set title 'Throughput vs latency'\nset xlabel 'achieved throughput (req/s)'\n"
           "set ylabel 'TTFT (ms)'\nset key top left\nset logscale y\nplot " +
           plots + "\n";
  return render(c, FigureKind::kThroughputLatency, "Throughput vs TTFT",
                "One point per run (a rate sweep is a line): achieved throughput against TTFT "
                "p50 (solid) and p99 (dashed).");
}

std::optional<Figure> stage_figure(std::span<const Run> runs, const std::string& dir,
                                   const PlotOptions& options) {
  std::vector<std::string> stages;
  std::vector<std::pair<std::string, std::map<std::string, double>>> bars;
  for (const auto& run : runs) {
    const auto times = stage_times_ms(run.stages);
    if (times.empty()) continue;
    std::map<std::string, double> bar;
    for (const auto& [stage, ms] : times) {
      if (std::find(stages.begin(), stages.end(), stage) == stages.end()) stages.push_back(stage);
      bar[stage] += ms;
    }
    bars.emplace_back(run_label(run), std::move(bar));
  }
  if (bars.empty()) return std::nullopt;
  Canvas c{dir, "stage-breakdown", options, "", ""};
  c.data = "run";
  for (const auto& s : stages) c.data += " " + quote(s);
  c.data += "\n";
  for (const auto& [label, bar] : bars) {
    c.data += quote(label);
    for (const auto& s : stages) {
      auto it = bar.find(s);
      c.data += fmt::format(" {:.6g}", it == bar.end() ? 0.0 : it->second);
    }
    c.data += "\n";
  }
  c.body = std::string(kCommonStyle) +
           "set title 'Per-stage time'\nset ylabel 'time (ms)'\nset style data histograms\n"
           "set style histogram rowstacked\nset style fill solid 0.85 border -1\n"
           "set boxwidth 0.6\nset key outside right\nset xtics rotate by -20\n"
           "plot for [i=2:" +
           std::to_string(stages.size() + 1) + "] datafile using i:xtic(1) title columnhead(i)\n";
  return render(c, FigureKind::kStageBreakdown, "Per-stage time",
                "Host time per pipeline stage from the probes, stacked, one bar per run.");
}

std::optional<Figure> context_figure(std::span<const Run> runs, std::span<const RunSamples> samples,
                                     const std::string& dir, const PlotOptions& options) {
  Canvas c{dir, "latency-by-context", options, "", ""};
  std::string plots;
  std::size_t block = 0;
  for (std::size_t r = 0; r < runs.size(); ++r) {
    const auto& s = samples[r];
    // Power-of-two bins of prompt length.
    std::map<int, std::vector<double>> bins;
    for (std::size_t i = 0; i < s.prompt_tokens.size(); ++i) {
      if (std::isnan(s.ttft_by_request[i]) || s.prompt_tokens[i] <= 0) continue;
      bins[static_cast<int>(std::floor(std::log2(s.prompt_tokens[i])))].push_back(
          s.ttft_by_request[i]);
    }
    if (bins.size() < 2) continue;
    c.data += fmt::format("# {}: prompt_tokens_bin_start ttft_p50_ms ttft_p99_ms requests\n",
                          run_label(runs[r]));
    for (auto& [bin, values] : bins) {
      std::sort(values.begin(), values.end());
      c.data +=
          fmt::format("{} {:.6g} {:.6g} {}\n", 1LL << bin, quantile_sorted(values, 0.5) * 1000,
                      quantile_sorted(values, 0.99) * 1000, values.size());
    }
    c.data += "\n\n";
    plots += fmt::format(
        "{}datafile index {} using 1:2 with linespoints pt 7 title {}, \\\n"
        "     datafile index {} using 1:3 with linespoints pt 5 dt 2 title {}",
        block ? ", \\\n     " : "", block, quote(run_label(runs[r]) + " p50"), block,
        quote(run_label(runs[r]) + " p99"));
    ++block;
  }
  if (block == 0) return std::nullopt;
  c.body = std::string(kCommonStyle) +
           "set title 'TTFT by prompt length'\nset xlabel 'prompt tokens (bin start, log2)'\n"
           "set ylabel 'TTFT (ms)'\nset logscale x 2\nset key top left\nplot " +
           plots + "\n";
  return render(c, FigureKind::kLatencyByContext, "TTFT by prompt length",
                "Requests binned by prompt length (powers of two): TTFT p50 (solid) and p99 "
                "(dashed).");
}

std::optional<Figure> timeline_figure(std::span<const Run> runs, const std::string& dir,
                                      const PlotOptions& options) {
  if (runs.empty()) return std::nullopt;
  const Run& run = runs.front();
  std::vector<const Observation*> measured;
  for (const auto& o : run.observations)
    if (!o.warmup) measured.push_back(&o);
  if (measured.empty()) return std::nullopt;
  double start = 0.0;
  double end = 0.0;
  if (options.window_start_s && options.window_end_s) {
    start = *options.window_start_s;
    end = *options.window_end_s;
  } else {
    const Observation* slowest = *std::max_element(
        measured.begin(), measured.end(), [](const Observation* a, const Observation* b) {
          return a->completed_s - a->scheduled_s < b->completed_s - b->scheduled_s;
        });
    start = options.window_start_s.value_or(slowest->scheduled_s - 10.0);
    end = options.window_end_s.value_or(slowest->completed_s + 10.0);
  }
  Canvas c{dir, "timeline", options, "", ""};
  // Three blocks of vectors: queued (scheduled -> sent), waiting (sent ->
  // first token), decoding (first token -> completed); failures in a fourth.
  std::string queued, waiting, decoding, failed;
  int row = 0;
  for (const Observation* o : measured) {
    if (o->completed_s < start || o->scheduled_s > end) continue;
    ++row;
    queued += fmt::format("{:.6f} {} {:.6f} 0\n", o->scheduled_s, row, o->sent_s - o->scheduled_s);
    if (o->status != RequestStatus::kOk) {
      failed += fmt::format("{:.6f} {} {:.6f} 0\n", o->sent_s, row, o->completed_s - o->sent_s);
      continue;
    }
    const double first = o->token_times_s.empty() ? o->completed_s : o->token_times_s.front();
    waiting += fmt::format("{:.6f} {} {:.6f} 0\n", o->sent_s, row, first - o->sent_s);
    decoding += fmt::format("{:.6f} {} {:.6f} 0\n", first, row, o->completed_s - first);
  }
  if (row == 0) return std::nullopt;
  auto block = [](const std::string& s) {
    return (s.empty() ? std::string("nan nan 0 0\n") : s) + "\n\n";
  };
  c.data = "# x y dx dy (seconds from run start, request row)\n" + block(queued) + block(waiting) +
           block(decoding) + block(failed);
  c.body = std::string(kCommonStyle) +
           fmt::format(
               "set title {}\nset xlabel 'time since run start (s)'\n"
               "set ylabel 'request'\nset xrange [{:.6f}:{:.6f}]\nset yrange [0:{}]\n"
               "set key outside top center horizontal\n",
               quote("Trace window: " + run_label(run)), start, end, row + 1) +
           "plot datafile index 0 using 1:2:3:4 with vectors nohead lw 3 lc rgb '#bbbbbb' "
           "title 'queued', \\\n     datafile index 1 using 1:2:3:4 with vectors nohead lw 3 lc "
           "rgb '#ff7f0e' title 'waiting for first token', \\\n     datafile index 2 using "
           "1:2:3:4 with vectors nohead lw 3 lc rgb '#1f77b4' title 'decoding', \\\n     "
           "datafile index 3 using 1:2:3:4 with vectors nohead lw 3 lc rgb '#d62728' title "
           "'failed'\n";
  return render(c, FigureKind::kTimeline, "Trace window",
                fmt::format("Each request in {:.1f}-{:.1f} s of run {} as a bar: queued, waiting "
                            "for its first token, decoding.",
                            start, end, run.run_id));
}

double stage_value_ms(const json& v) {
  if (v.is_number()) return v.get<double>();
  if (!v.is_object()) return std::nan("");
  for (const auto& [key, scale] :
       std::initializer_list<std::pair<const char*, double>>{{"host_ns", 1e-6},
                                                             {"total_ms", 1.0},
                                                             {"mean_ms", 1.0},
                                                             {"ms", 1.0},
                                                             {"total_s", 1e3},
                                                             {"seconds", 1e3},
                                                             {"mean_s", 1e3},
                                                             {"ns", 1e-6}}) {
    if (auto it = v.find(key); it != v.end() && it->is_number()) return it->get<double>() * scale;
  }
  return std::nan("");
}

}  // namespace

const std::vector<FigureKind>& all_figure_kinds() {
  static const std::vector<FigureKind> kinds{
      FigureKind::kTtftCdf,        FigureKind::kItlCdf,           FigureKind::kThroughputLatency,
      FigureKind::kStageBreakdown, FigureKind::kLatencyByContext, FigureKind::kTimeline};
  return kinds;
}

std::string figure_name(FigureKind kind) {
  switch (kind) {
    case FigureKind::kTtftCdf:
      return "ttft-cdf";
    case FigureKind::kItlCdf:
      return "itl-cdf";
    case FigureKind::kThroughputLatency:
      return "throughput-latency";
    case FigureKind::kStageBreakdown:
      return "stage-breakdown";
    case FigureKind::kLatencyByContext:
      return "latency-by-context";
    case FigureKind::kTimeline:
      break;
  }
  return "timeline";
}

FigureKind figure_kind_from_string(const std::string& text) {
  for (FigureKind k : all_figure_kinds())
    if (figure_name(k) == text) return k;
  throw std::invalid_argument(fmt::format(
      "unknown figure '{}' (expected ttft-cdf, itl-cdf, throughput-latency, stage-breakdown, "
      "latency-by-context or timeline)",
      text));
}

std::string run_label(const Run& run) {
  std::string label = target_display_name(run.target) + " / " + workload_display_name(run.workload);
  if (run.configuration.is_object()) {
    for (const char* key : {"rate", "rate_per_s", "request_rate"}) {
      if (auto it = run.configuration.find(key); it != run.configuration.end() && it->is_number()) {
        label += fmt::format(" @ {:g} req/s", it->get<double>());
        break;
      }
    }
  }
  return label;
}

std::vector<std::pair<std::string, double>> stage_times_ms(const json& stages) {
  std::vector<std::pair<std::string, double>> out;
  if (stages.is_null()) return out;
  if (stages.is_object()) {
    for (const char* nest : {"breakdown", "stages"}) {
      if (auto it = stages.find(nest); it != stages.end() && (it->is_object() || it->is_array()))
        return stage_times_ms(*it);
    }
    if (auto it = stages.find("totals"); it != stages.end() && it->is_array())
      return stage_times_ms(*it);
    for (const auto& [name, value] : stages.items()) {
      const double ms = stage_value_ms(value);
      if (!std::isnan(ms)) out.emplace_back(name, ms);
    }
    return out;
  }
  if (stages.is_array()) {
    for (const auto& item : stages) {
      if (!item.is_object()) continue;
      std::string name;
      for (const char* key : {"stage", "name"})
        if (auto it = item.find(key); it != item.end() && it->is_string())
          name = it->get<std::string>();
      const double ms = stage_value_ms(item);
      if (!name.empty() && !std::isnan(ms)) out.emplace_back(name, ms);
    }
  }
  return out;
}

std::vector<Figure> write_figures(std::span<const Run> runs, const std::string& dir,
                                  const PlotOptions& options) {
  if (!options.svg && !options.png) throw PlotError("no figure format selected (svg or png)");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw PlotError(fmt::format("{}: cannot create directory: {}", dir, ec.message()));
  std::vector<RunSamples> samples;
  for (const auto& run : runs) samples.push_back(collect_samples(run.observations));
  std::vector<Figure> figures;
  for (FigureKind kind : options.kinds) {
    std::optional<Figure> f;
    switch (kind) {
      case FigureKind::kTtftCdf:
        f = cdf_figure(runs, samples, Quantity::kTtft, dir, options);
        break;
      case FigureKind::kItlCdf:
        f = cdf_figure(runs, samples, Quantity::kItl, dir, options);
        break;
      case FigureKind::kThroughputLatency:
        f = throughput_latency_figure(runs, samples, dir, options);
        break;
      case FigureKind::kStageBreakdown:
        f = stage_figure(runs, dir, options);
        break;
      case FigureKind::kLatencyByContext:
        f = context_figure(runs, samples, dir, options);
        break;
      case FigureKind::kTimeline:
        f = timeline_figure(runs, dir, options);
        break;
    }
    if (f) figures.push_back(std::move(*f));
  }
  return figures;
}

}  // namespace prism::results
