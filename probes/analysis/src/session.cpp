#include "prism/analysis/session.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "prism/analysis/export.h"

extern char** environ;

namespace prism::analysis {
namespace {

std::string timestamp() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof(buffer), "%Y%m%d-%H%M%S", &tm);
  return buffer;
}

void make_dir(const std::string& dir) {
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    throw TraceError(dir + ": cannot create directory: " + std::strerror(errno));
  }
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace

uint64_t parse_duration_ms(const std::string& text) {
  size_t digits = 0;
  while (digits < text.size() &&
         (std::isdigit(static_cast<unsigned char>(text[digits])) || text[digits] == '.')) {
    ++digits;
  }
  if (digits == 0 || digits > 12)
    throw std::invalid_argument("duration '" + text + "' must start with a number");
  double value = 0;
  try {
    value = std::stod(text.substr(0, digits));
  } catch (const std::exception&) {
    throw std::invalid_argument("duration '" + text + "' is not a number");
  }
  const std::string unit = text.substr(digits);
  double scale = 0;
  if (unit.empty() || unit == "s")
    scale = 1000;
  else if (unit == "ms")
    scale = 1;
  else if (unit == "m" || unit == "min")
    scale = 60000;
  else if (unit == "h")
    scale = 3600000;
  else
    throw std::invalid_argument("duration '" + text + "': unknown unit '" + unit +
                                "' (use ms, s, m or h)");
  const double ms = value * scale;
  if (ms > static_cast<double>(control::kMaxDurationMs))
    throw std::invalid_argument("duration '" + text + "' is longer than a day");
  return static_cast<uint64_t>(ms + 0.5);
}

TraceCommandResult trace_command(const TraceCommandOptions& options) {
  if (options.command.empty()) throw TraceError("no command to trace (give it after --)");
  const StageRules rules = StageRules::load(options.rules);
  TraceCommandResult result;
  result.output_dir =
      options.output_dir.empty() ? "prism-trace-" + timestamp() : options.output_dir;
  make_dir(result.output_dir);
  const std::string raw_dir = result.output_dir + "/raw";
  make_dir(raw_dir);
  // Traces from an earlier run in the same directory must not be mistaken for this one.
  if (DIR* d = opendir(raw_dir.c_str())) {
    while (dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (name.size() > 5 && name.substr(name.size() - 5) == ".praw")
        unlink((raw_dir + "/" + name).c_str());
    }
    closedir(d);
  }

  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry = *e;
    if (entry.rfind("PRISM_PROBE_", 0) == 0 ||
        (options.preload && entry.rfind("LD_PRELOAD=", 0) == 0))
      continue;
    env_storage.push_back(entry);
  }
  for (const auto& entry :
       control::agent_environment(control::agent_library_path(), options.preload)) {
    env_storage.push_back(entry);
  }
  env_storage.push_back("PRISM_PROBE_START=1");
  env_storage.push_back("PRISM_PROBE_OUTPUT=" + raw_dir);
  env_storage.push_back(std::string("PRISM_PROBE_ACTIVITIES=") +
                        (options.gpu ? "nvtx,gpu" : "nvtx"));
  std::vector<char*> env;
  for (auto& e : env_storage) env.push_back(e.data());
  env.push_back(nullptr);
  std::vector<char*> argv;
  for (const auto& a : options.command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, argv[0], nullptr, nullptr, argv.data(), env.data());
  if (rc != 0) throw TraceError("cannot start '" + options.command[0] + "': " + std::strerror(rc));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.signaled = WIFSIGNALED(status);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);

  // One raw file per traced process; the busiest one is the trace.
  std::vector<std::pair<uint64_t, std::string>> files;
  if (DIR* d = opendir(raw_dir.c_str())) {
    while (dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (name.size() <= 5 || name.substr(name.size() - 5) != ".praw") continue;
      struct stat st;
      const std::string path = raw_dir + "/" + name;
      if (stat(path.c_str(), &st) == 0) files.emplace_back(static_cast<uint64_t>(st.st_size), path);
    }
    closedir(d);
  }
  if (files.empty()) {
    throw TraceError(
        "'" + options.command[0] + "' exited (status " + std::to_string(result.exit_code) +
        ") without recording any NVTX range: it made no NVTX calls, or loads NVTX in a way the "
        "injection does not reach (try --preload)");
  }
  std::sort(files.rbegin(), files.rend());
  for (size_t i = 1; i < files.size(); ++i)
    result.notes.push_back("also traced: " + files[i].second);
  const std::string raw = read_all(files[0].second);
  Trace trace = read_raw_trace(raw, files[0].second);
  if (!trace.complete && result.signaled) {
    trace.partial_reason = "the target was killed by signal " +
                           std::to_string(result.exit_code - 128) +
                           " before the trace was closed; " + trace.partial_reason;
  }
  if (!trace.complete) result.notes.push_back("partial trace: " + trace.partial_reason);
  result.breakdown = analyze(trace, rules);
  result.files = write_trace_outputs(result.output_dir, trace, result.breakdown, rules, raw);
  return result;
}

AttachResult attach_and_capture(const AttachOptions& options) {
  const StageRules rules = StageRules::load(options.rules);
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed_ms = [&] {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };
  control::ProbeClient client = control::ProbeClient::connect(options.pid);
  client.load_rules(rules.text());
  const uint32_t activities = control::kActivityNvtx | (options.gpu ? control::kActivityGpu : 0u);
  client.start(options.duration_ms, activities);
  AttachResult result;
  result.output_dir = options.output_dir.empty()
                          ? "prism-attach-" + std::to_string(options.pid) + "-" + timestamp()
                          : options.output_dir;
  std::string last_snapshot;
  const double capture_start = elapsed_ms();
  // Poll quickly until the first data arrives (that is what "attach latency" means), then per
  // interval.
  double next_report = capture_start;
  try {
    for (;;) {
      const double now = elapsed_ms();
      const bool done = (options.duration_ms != 0 &&
                         now - capture_start >= static_cast<double>(options.duration_ms)) ||
                        (options.stop_requested && options.stop_requested());
      if (done) break;
      if (result.first_data_ms < 0) {
        const auto status = client.status();
        const auto events = status.find("events");
        if (events != status.end() && events->second != "0") result.first_data_ms = elapsed_ms();
      }
      if (now >= next_report) {
        const control::Stats stats = client.stats();
        if (options.on_stats) options.on_stats(stats, (now - capture_start) / 1000.0);
        // Keep the latest snapshot so a target that dies mid-capture still leaves a trace.
        last_snapshot = client.snapshot();
        if (options.on_snapshot) {
          // A live consumer that fails (a snapshot it cannot read, a callback that throws) must
          // not cost the capture: it is counted and said once, and the capture goes on.
          try {
            options.on_snapshot(analyze(read_raw_trace(last_snapshot, "live snapshot"), rules),
                                (now - capture_start) / 1000.0);
          } catch (const std::exception& e) {
            if (result.live_errors++ == 0) result.live_error = e.what();
          }
        }
        next_report = now + static_cast<double>(options.interval_ms);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(result.first_data_ms < 0 ? 2 : 20));
    }
    client.stop();
    last_snapshot = client.snapshot();
  } catch (const control::ProbeError& e) {
    if (last_snapshot.empty()) {
      throw control::ProbeError(std::string("the target went away before any data was captured: ") +
                                e.what());
    }
    result.partial = true;
  }
  Trace trace = read_raw_trace(last_snapshot, "snapshot of pid " + std::to_string(options.pid));
  if (result.partial) {
    trace.complete = false;
    trace.partial_reason = "the target exited mid-capture; the trace ends at the last snapshot";
  }
  result.breakdown = analyze(trace, rules);
  result.files =
      write_trace_outputs(result.output_dir, trace, result.breakdown, rules, last_snapshot);
  return result;
}

std::string format_stats_table(const control::Stats& stats, double elapsed_s) {
  auto field = [&](const char* key) {
    const auto it = stats.status.find(key);
    return it == stats.status.end() ? std::string("?") : it->second;
  };
  std::vector<control::StatsRow> rows = stats.rows;
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.total_ns > b.total_ns; });
  uint64_t iteration_total = 0;
  for (const auto& row : rows) {
    if (row.name == "iteration") iteration_total = row.total_ns;
  }
  std::string out =
      fmt::format("pid {}  capturing {:.1f}s  events {}  dropped {}  cupti {}\n", field("pid"),
                  elapsed_s, field("events"), field("dropped"), field("cupti"));
  out += fmt::format("{:<16} {:>10} {:>12} {:>12} {:>12} {:>8}\n", "stage", "count", "total ms",
                     "mean us", "max us", "share");
  for (const auto& row : rows) {
    const double share =
        iteration_total == 0 || row.name == "iteration"
            ? 0.0
            : 100.0 * static_cast<double>(row.total_ns) / static_cast<double>(iteration_total);
    out += fmt::format(
        "{:<16} {:>10} {:>12.3f} {:>12.1f} {:>12.1f} {:>7.1f}%\n", row.name, row.count,
        static_cast<double>(row.total_ns) / 1e6,
        row.count == 0 ? 0.0
                       : static_cast<double>(row.total_ns) / 1e3 / static_cast<double>(row.count),
        static_cast<double>(row.max_ns) / 1e3, share);
  }
  return out;
}

}  // namespace prism::analysis
