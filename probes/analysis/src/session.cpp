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
#include <deque>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "prism/analysis/export.h"
#include "prism/analysis/live.h"

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

// The events the live path received, kept as a raw trace (strings and thread names whole, event
// records for the last window_ns), for a target that exits before its final snapshot.
class ReceivedStream {
 public:
  explicit ReceivedStream(uint64_t window_ns) : window_ns_(window_ns) {}

  void add(const std::string& bytes, const RawBatch& batch) {
    if (header_.empty()) header_ = bytes.substr(0, sizeof(agent::prism_raw_header));
    for (const auto& [id, text] : batch.strings) {
      const uint32_t head[3] = {agent::PRISM_RAW_STRING, static_cast<uint32_t>(text.size() + 4),
                                id};
      names_.append(reinterpret_cast<const char*>(head), sizeof(head));
      names_.append(text);
    }
    for (const auto& [tid, name] : batch.thread_names) {
      const uint32_t record[4] = {agent::PRISM_RAW_THREAD_NAME, 8, tid, name};
      names_.append(reinterpret_cast<const char*>(record), sizeof(record));
    }
    if (batch.events.empty()) return;
    const size_t bytes_of_events = batch.events.size() * sizeof(agent::prism_raw_event);
    std::string chunk;
    const uint32_t head[2] = {agent::PRISM_RAW_EVENTS, static_cast<uint32_t>(bytes_of_events)};
    chunk.append(reinterpret_cast<const char*>(head), sizeof(head));
    chunk.append(reinterpret_cast<const char*>(batch.events.data()), bytes_of_events);
    uint64_t last = 0;
    for (const auto& e : batch.events) last = std::max(last, e.t0);
    chunks_.emplace_back(last, std::move(chunk));
    newest_ = std::max(newest_, last);
    while (chunks_.size() > 1 && chunks_.front().first + window_ns_ < newest_) chunks_.pop_front();
  }

  // A raw trace with no END record: read back, it is marked partial.
  std::string bytes() const {
    std::string out = header_ + names_;
    for (const auto& chunk : chunks_) out += chunk.second;
    return out;
  }
  bool empty() const { return header_.empty(); }

 private:
  uint64_t window_ns_;
  std::string header_, names_;
  std::deque<std::pair<uint64_t, std::string>> chunks_;  // (newest event, EVENTS record)
  uint64_t newest_ = 0;
};

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
  const bool live = static_cast<bool>(options.on_iterations);
  uint64_t window_ns = 30'000'000'000ull;
  if (live) {
    const auto status = client.status();
    const auto window = status.find("window_s");
    if (window != status.end()) window_ns = std::stoull(window->second) * 1'000'000'000ull;
  }
  ReceivedStream received(window_ns);
  LiveBreakdown live_breakdown(rules);
  control::EventsCursor cursor;
  const double capture_start = elapsed_ms();
  // Fetches what arrived since the last poll and passes on the iterations it completes.
  auto poll_live = [&](double now) {
    for (;;) {
      const control::EventsReply reply = client.events(cursor);
      ++result.live_polls;
      result.live_lost += reply.lost;
      try {
        const RawBatch batch = read_raw_batch(reply.bytes, "live events");
        received.add(reply.bytes, batch);
        live_breakdown.add(batch);
        const Breakdown done = live_breakdown.take();
        result.live_iterations += done.iterations.size();
        if (!done.iterations.empty()) options.on_iterations(done, (now - capture_start) / 1000.0);
      } catch (const std::exception& e) {
        // As for snapshots: a live consumer that fails must not cost the capture.
        if (result.live_errors++ == 0) result.live_error = e.what();
      }
      if (reply.pending == 0) break;
    }
  };
  // Poll quickly until the first data arrives (that is what "attach latency" means), then per
  // interval; the live path polls every live_poll_ms.
  double next_report = capture_start;
  double next_poll = capture_start;
  const double poll_ms = static_cast<double>(std::max<uint64_t>(1, options.live_poll_ms));
  try {
    for (;;) {
      double now = elapsed_ms();
      const bool done = (options.duration_ms != 0 &&
                         now - capture_start >= static_cast<double>(options.duration_ms)) ||
                        (options.stop_requested && options.stop_requested());
      if (done) break;
      if (result.first_data_ms < 0) {
        const auto status = client.status();
        const auto events = status.find("events");
        if (events != status.end() && events->second != "0") result.first_data_ms = elapsed_ms();
      }
      if (live && now >= next_poll) {
        poll_live(now);
        // The next poll is a period after this one was due; one that came late is not made up
        // with a burst of empty polls.
        next_poll = next_poll + poll_ms > now ? next_poll + poll_ms : now + poll_ms;
      }
      if (now >= next_report) {
        const control::Stats stats = client.stats();
        if (options.on_stats) options.on_stats(stats, (now - capture_start) / 1000.0);
        if (!live) {
          // Keep the latest snapshot so a target that dies mid-capture still leaves a trace.
          last_snapshot = client.snapshot();
          if (options.on_snapshot) {
            // A live consumer that fails (a snapshot it cannot read, a callback that throws)
            // must not cost the capture: it is counted and said once, and the capture goes on.
            try {
              options.on_snapshot(analyze(read_raw_trace(last_snapshot, "live snapshot"), rules),
                                  (now - capture_start) / 1000.0);
            } catch (const std::exception& e) {
              if (result.live_errors++ == 0) result.live_error = e.what();
            }
          }
        }
        next_report = now + static_cast<double>(options.interval_ms);
      }
      now = elapsed_ms();
      double wait_ms = result.first_data_ms < 0 ? 2.0 : 20.0;
      if (live) wait_ms = std::min(wait_ms, next_poll - now);
      wait_ms = std::min(wait_ms, next_report - now);
      if (wait_ms > 0)
        std::this_thread::sleep_for(std::chrono::microseconds(static_cast<int64_t>(wait_ms * 1e3)));
    }
    client.stop();
    last_snapshot = client.snapshot();
  } catch (const control::ProbeError& e) {
    if (live && last_snapshot.empty() && !received.empty()) last_snapshot = received.bytes();
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
