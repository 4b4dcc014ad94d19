// Per-iteration CSV/JSON, the terminal report and the output directory.
#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "prism/analysis/export.h"
#include "prism/results/atomic_file.h"

namespace prism::analysis {
namespace {

double ms(uint64_t ns) {
  return static_cast<double>(ns) / 1e6;
}
double us(uint64_t ns) {
  return static_cast<double>(ns) / 1e3;
}

uint64_t percentile(std::vector<uint64_t> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const auto index = static_cast<size_t>(q * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(index, values.size() - 1)];
}

}  // namespace

std::string iterations_csv(const Breakdown& b) {
  fmt::memory_buffer out;
  fmt::format_to(std::back_inserter(out), "iteration,start_ns,end_ns,duration_ns");
  for (const auto& stage : b.stages) fmt::format_to(std::back_inserter(out), ",{}_ns", stage);
  for (const auto& stage : b.stages) fmt::format_to(std::back_inserter(out), ",{}_gpu_ns", stage);
  fmt::format_to(std::back_inserter(out), ",gpu_busy_ns,gpu_idle_ns,launch_queue_ns,kernels\n");
  for (const Iteration& it : b.iterations) {
    fmt::format_to(std::back_inserter(out), "{},{},{},{}", it.index, it.start_ns, it.end_ns,
                   it.duration());
    for (uint64_t v : it.stage_ns) fmt::format_to(std::back_inserter(out), ",{}", v);
    for (uint64_t v : it.stage_gpu_ns) fmt::format_to(std::back_inserter(out), ",{}", v);
    fmt::format_to(std::back_inserter(out), ",{},{},{},{}\n", it.gpu_busy_ns, it.gpu_idle_ns,
                   it.launch_queue_ns, it.kernels);
  }
  return fmt::to_string(out);
}

std::string breakdown_json(const Breakdown& b) {
  nlohmann::json j;
  j["version"] = 1;
  j["complete"] = b.complete;
  if (!b.complete) j["partial_reason"] = b.partial_reason;
  j["events"] = b.events;
  j["dropped"] = b.dropped;
  j["begin_ns"] = b.begin_ns;
  j["end_ns"] = b.end_ns;
  j["iteration_rule"] = b.iteration_rule;
  j["iteration_detected"] = b.iteration_detected;
  j["stages"] = b.stages;
  j["unattributed_ranges"] = b.unattributed_ranges;
  j["gpu"] = {{"present", b.has_gpu},
              {"busy_ns", b.gpu_busy_ns},
              {"idle_ns", b.gpu_idle_ns},
              {"launch_queue_ns", b.launch_queue_ns},
              {"kernels", b.kernels}};
  auto& totals = j["totals"] = nlohmann::json::array();
  for (const StageTotal& t : b.totals) {
    totals.push_back({{"stage", t.stage},
                      {"count", t.count},
                      {"host_ns", t.host_ns},
                      {"gpu_ns", t.gpu_ns},
                      {"max_ns", t.max_ns}});
  }
  auto& iterations = j["iterations"] = nlohmann::json::array();
  for (const Iteration& it : b.iterations) {
    iterations.push_back({{"index", it.index},
                          {"start_ns", it.start_ns},
                          {"end_ns", it.end_ns},
                          {"thread", it.thread},
                          {"stage_ns", it.stage_ns},
                          {"stage_gpu_ns", it.stage_gpu_ns},
                          {"gpu_busy_ns", it.gpu_busy_ns},
                          {"gpu_idle_ns", it.gpu_idle_ns},
                          {"launch_queue_ns", it.launch_queue_ns},
                          {"kernels", it.kernels}});
  }
  auto& requests = j["requests"] = nlohmann::json::array();
  for (const RequestBreakdown& r : b.requests) {
    requests.push_back({{"name", r.name},
                        {"start_ns", r.start_ns},
                        {"end_ns", r.end_ns},
                        {"iterations", r.iterations},
                        {"stage_ns", r.stage_ns}});
  }
  return j.dump(1) + "\n";
}

std::string breakdown_report(const Breakdown& b, size_t slowest) {
  fmt::memory_buffer out;
  auto line = [&](fmt::string_view format, auto&&... args) {
    fmt::vformat_to(std::back_inserter(out), format, fmt::make_format_args(args...));
    out.push_back('\n');
  };
  if (!b.complete) line("PARTIAL TRACE: {}", b.partial_reason);
  if (b.dropped > 0)
    line("warning: {} events were dropped by the agent (buffers full); totals are low", b.dropped);
  line("{} events, {:.3f} ms captured, {} iterations ({}{})", b.events, ms(b.end_ns - b.begin_ns),
       b.iterations.size(), b.iteration_detected ? "detected from range " : "rule ",
       b.iteration_rule);
  std::vector<uint64_t> durations;
  for (const Iteration& it : b.iterations) durations.push_back(it.duration());
  uint64_t iteration_total = 0;
  for (uint64_t d : durations) iteration_total += d;
  if (!durations.empty()) {
    line("iteration time: mean {:.1f} us, p50 {:.1f} us, p99 {:.1f} us, max {:.1f} us",
         us(iteration_total / durations.size()), us(percentile(durations, 0.5)),
         us(percentile(durations, 0.99)), us(percentile(durations, 1.0)));
  }
  line("");
  line("{:<14} {:>9} {:>12} {:>12} {:>10} {:>12}{}", "stage", "count", "host ms", "per iter us",
       "share", "max us", b.has_gpu ? fmt::format(" {:>12}", "gpu ms") : std::string());
  for (const StageTotal& t : b.totals) {
    if (t.count == 0 && t.gpu_ns == 0) continue;
    const double share = iteration_total == 0 ? 0.0
                                              : 100.0 * static_cast<double>(t.host_ns) /
                                                    static_cast<double>(iteration_total);
    line("{:<14} {:>9} {:>12.3f} {:>12.1f} {:>9.1f}% {:>12.1f}{}", t.stage, t.count, ms(t.host_ns),
         b.iterations.empty() ? 0.0 : us(t.host_ns) / static_cast<double>(b.iterations.size()),
         share, us(t.max_ns), b.has_gpu ? fmt::format(" {:>12.3f}", ms(t.gpu_ns)) : std::string());
  }
  if (b.unattributed_ranges > 0) line("({} ranges matched no stage rule)", b.unattributed_ranges);
  if (b.has_gpu) {
    line("");
    line(
        "GPU: {} kernels, busy {:.3f} ms, idle {:.3f} ms, launch+queue {:.3f} ms total ({:.1f} us "
        "per kernel)",
        b.kernels, ms(b.gpu_busy_ns), ms(b.gpu_idle_ns), ms(b.launch_queue_ns),
        b.kernels == 0 ? 0.0 : us(b.launch_queue_ns) / static_cast<double>(b.kernels));
  }
  if (slowest > 0 && b.iterations.size() > 1) {
    std::vector<const Iteration*> order;
    for (const Iteration& it : b.iterations) order.push_back(&it);
    std::sort(order.begin(), order.end(),
              [](const Iteration* a, const Iteration* c) { return a->duration() > c->duration(); });
    line("");
    line("slowest iterations (spikes):");
    for (size_t i = 0; i < std::min(slowest, order.size()); ++i) {
      const Iteration& it = *order[i];
      size_t top = 0;
      for (size_t s = 1; s < it.stage_ns.size(); ++s) {
        if (it.stage_ns[s] > it.stage_ns[top]) top = s;
      }
      line("  #{:<6} {:>10.1f} us  largest stage: {} {:.1f} us", it.index, us(it.duration()),
           b.stages.empty() ? "-" : b.stages[top],
           it.stage_ns.empty() ? 0.0 : us(it.stage_ns[top]));
    }
  }
  if (!b.requests.empty())
    line("\n{} requests broken down (see breakdown.json)", b.requests.size());
  return fmt::to_string(out);
}

std::string write_trace_outputs(const std::string& dir, const Trace& trace,
                                const Breakdown& breakdown, const StageRules& rules,
                                const std::string& raw_bytes) {
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    throw TraceError(dir + ": cannot create directory: " + std::strerror(errno));
  }
  std::string written;
  auto write = [&](const std::string& name, const std::string& content) {
    const std::string path = dir + "/" + name;
    results::write_file_atomically(path, content);
    written += path + "\n";
  };
  if (!raw_bytes.empty()) write("trace.praw", raw_bytes);
  write("trace.json", to_chrome_trace(trace, &rules));
  write("iterations.csv", iterations_csv(breakdown));
  write("breakdown.json", breakdown_json(breakdown));
  write("report.txt", breakdown_report(breakdown));
  return written;
}

}  // namespace prism::analysis
