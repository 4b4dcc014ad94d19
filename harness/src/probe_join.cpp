#include "prism/harness/probe_join.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>

#include "prism/analysis/trace.h"
#include "prism/harness/clock.h"

namespace prism::harness {
namespace {

// Socket inodes listening on `port` in one /proc/net/tcp{,6} table.
void listening_inodes(const std::string& table, int port, std::set<std::string>& inodes) {
  std::ifstream in(table);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
    if (!(fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >>
          timeout >> inode)) {
      continue;
    }
    const auto colon = local.rfind(':');
    if (colon == std::string::npos || state != "0A") continue;  // 0A: TCP_LISTEN
    const long local_port = std::strtol(local.c_str() + colon + 1, nullptr, 16);
    if (local_port == port && inode != "0") inodes.insert(inode);
  }
}

bool is_number(const char* text) {
  if (*text == '\0') return false;
  for (; *text != '\0'; ++text) {
    if (*text < '0' || *text > '9') return false;
  }
  return true;
}

// Processes holding one of the socket inodes open.
std::vector<int> socket_owners(const std::set<std::string>& inodes) {
  std::vector<int> pids;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return pids;
  while (dirent* entry = readdir(proc)) {
    if (!is_number(entry->d_name)) continue;
    const std::string fd_dir = std::string("/proc/") + entry->d_name + "/fd";
    DIR* fds = opendir(fd_dir.c_str());
    if (fds == nullptr) continue;  // another user's process, or gone
    bool owns = false;
    while (dirent* fd = readdir(fds)) {
      if (!is_number(fd->d_name)) continue;
      char target[128];
      const ssize_t n = readlink((fd_dir + "/" + fd->d_name).c_str(), target, sizeof(target) - 1);
      if (n <= 9) continue;
      target[n] = '\0';
      const std::string link(target);
      if (link.rfind("socket:[", 0) == 0 && inodes.count(link.substr(8, link.size() - 9)) != 0) {
        owns = true;
        break;
      }
    }
    closedir(fds);
    if (owns) pids.push_back(std::atoi(entry->d_name));
  }
  closedir(proc);
  std::sort(pids.begin(), pids.end());
  return pids;
}

bool has_agent_socket(int pid) {
  for (const auto& path : control::candidate_socket_paths(pid)) {
    struct stat st;
    if (stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) return true;
  }
  return false;
}

double percentile(std::vector<double> values, double q) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  const double rank = q * static_cast<double>(values.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(rank));
  const auto hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (values[hi] - values[lo]) * (rank - static_cast<double>(lo));
}

}  // namespace

int find_listener_pid(int port) {
  if (port <= 0 || port > 65535) throw std::runtime_error(fmt::format("bad TCP port {}", port));
  std::set<std::string> inodes;
  listening_inodes("/proc/net/tcp", port, inodes);
  listening_inodes("/proc/net/tcp6", port, inodes);
  if (inodes.empty())
    throw std::runtime_error(fmt::format("no local process is listening on TCP port {}", port));
  const std::vector<int> pids = socket_owners(inodes);
  if (pids.empty()) {
    throw std::runtime_error(fmt::format(
        "port {} is listening but its process is not visible to this user; pass --probe PID",
        port));
  }
  // Forked servers share the listening socket: prefer a process that runs the agent.
  for (int pid : pids) {
    if (has_agent_socket(pid)) return pid;
  }
  return pids.front();
}

int find_local_target_pid(const std::string& url) {
  std::string rest = url;
  int default_port = 80;
  if (const auto scheme = rest.find("://"); scheme != std::string::npos) {
    if (rest.compare(0, scheme, "https") == 0) default_port = 443;
    rest = rest.substr(scheme + 3);
  }
  rest = rest.substr(0, rest.find('/'));
  std::string host = rest;
  int port = default_port;
  if (!rest.empty() && rest.front() == '[') {  // [::1]:8000
    const auto close = rest.find(']');
    if (close == std::string::npos) throw std::runtime_error("bad URL '" + url + "'");
    host = rest.substr(1, close - 1);
    if (close + 1 < rest.size() && rest[close + 1] == ':')
      port = std::atoi(rest.c_str() + close + 2);
  } else if (const auto colon = rest.rfind(':'); colon != std::string::npos) {
    host = rest.substr(0, colon);
    port = std::atoi(rest.c_str() + colon + 1);
  }
  const bool local = host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
  if (!local) {
    throw std::runtime_error("--probe needs a local target to attach to; '" + url +
                             "' is not on this machine (pass --probe PID for a local process)");
  }
  return find_listener_pid(port);
}

ProbeAttachment ProbeAttachment::attach(const ProbeOptions& options) {
  analysis::StageRules rules = analysis::StageRules::load(options.rules);
  control::ProbeClient client = control::ProbeClient::connect(options.pid);
  client.load_rules(rules.text());
  const std::int64_t before_start = monotonic_ns();
  client.start(0, control::kActivityNvtx | (options.gpu ? control::kActivityGpu : 0u));
  ProbeAttachment attachment(std::move(client), std::move(rules), options.pid);
  attachment.started_ns_ = before_start;
  return attachment;
}

analysis::Breakdown ProbeAttachment::finish() {
  covered_begin_ns_ = covered_end_ns_ = 0;
  try {
    client_.stop();
    covered_end_ns_ = monotonic_ns();
    raw_ = client_.snapshot();
  } catch (const control::ProbeError& e) {
    analysis::Breakdown empty;
    empty.complete = false;
    empty.partial_reason =
        std::string("the target went away before the capture ended: ") + e.what();
    return empty;
  }
  const analysis::Trace trace =
      analysis::read_raw_trace(raw_, "snapshot of pid " + std::to_string(pid_));
  analysis::Breakdown breakdown = analysis::analyze(trace, rules_);
  covered_begin_ns_ =
      trace.dropped_window > 0 ? static_cast<std::int64_t>(breakdown.begin_ns) : started_ns_;
  return breakdown;
}

void RunOriginTracker::observe(double elapsed_s) {
  // Progress reports elapsed_s measured from the origin, just before calling us: the
  // earliest estimate is the closest (later ones only add callback latency).
  const std::int64_t estimate = monotonic_ns() - s_to_ns(elapsed_s);
  if (!origin_ns_ || estimate < *origin_ns_) origin_ns_ = estimate;
}

ProbeJoin join_requests(const analysis::Breakdown& breakdown,
                        const std::vector<results::Observation>& observations,
                        std::int64_t origin_ns, std::optional<CaptureWindow> window) {
  if (!window) {
    window = CaptureWindow{static_cast<std::int64_t>(breakdown.begin_ns),
                           static_cast<std::int64_t>(breakdown.end_ns)};
  }
  ProbeJoin join;
  join.stages = breakdown.stages;
  const std::size_t stage_count = breakdown.stages.size();
  const auto& its = breakdown.iterations;  // sorted by start
  struct Window {
    std::int64_t begin;
    std::int64_t end;
    std::size_t first;  // iterations [first, last) overlap the window
    std::size_t last;
  };
  std::vector<Window> windows;
  windows.reserve(observations.size());
  // Requests in flight during each iteration (a difference array over iteration indices).
  std::vector<std::int64_t> in_flight_delta(its.size() + 1, 0);
  for (const auto& o : observations) {
    Window w{origin_ns + s_to_ns(o.sent_s), origin_ns + s_to_ns(o.completed_s), 0, 0};
    if (w.end > w.begin && !its.empty()) {
      // First iteration that ends after the request was sent; then all that start before it ends.
      w.first = static_cast<std::size_t>(std::partition_point(its.begin(), its.end(),
                                                              [&](const analysis::Iteration& it) {
                                                                return static_cast<std::int64_t>(
                                                                           it.end_ns) <= w.begin;
                                                              }) -
                                         its.begin());
      w.last = w.first;
      while (w.last < its.size() && static_cast<std::int64_t>(its[w.last].start_ns) < w.end)
        ++w.last;
      if (w.last > w.first) {
        ++in_flight_delta[w.first];
        --in_flight_delta[w.last];
      }
    }
    windows.push_back(w);
  }
  std::vector<std::int64_t> in_flight(its.size(), 0);
  std::int64_t running = 0;
  for (std::size_t i = 0; i < its.size(); ++i) {
    running += in_flight_delta[i];
    in_flight[i] = running;
  }
  for (std::size_t r = 0; r < observations.size(); ++r) {
    const Window& w = windows[r];
    RequestStages rs;
    rs.request_id = observations[r].request_id;
    rs.wall_ms.assign(stage_count, 0.0);
    rs.share_ms.assign(stage_count, 0.0);
    rs.covered = w.end > w.begin && window->end_ns > window->begin_ns &&
                 w.begin >= window->begin_ns && w.end <= window->end_ns;
    rs.iterations = w.last - w.first;
    for (std::size_t i = w.first; i < w.last; ++i) {
      const analysis::Iteration& it = its[i];
      const auto start = static_cast<std::int64_t>(it.start_ns);
      const auto end = static_cast<std::int64_t>(it.end_ns);
      const std::int64_t overlap = std::min(end, w.end) - std::max(start, w.begin);
      if (overlap <= 0 || end <= start) continue;
      const double fraction = static_cast<double>(overlap) / static_cast<double>(end - start);
      const double sharers = static_cast<double>(std::max<std::int64_t>(1, in_flight[i]));
      for (std::size_t s = 0; s < stage_count && s < it.stage_ns.size(); ++s) {
        const double ms = static_cast<double>(it.stage_ns[s]) * 1e-6 * fraction;
        rs.wall_ms[s] += ms;
        rs.share_ms[s] += ms / sharers;
      }
    }
    if (rs.covered) ++join.covered;
    join.requests.push_back(std::move(rs));
  }
  return join;
}

nlohmann::json probe_stages_json(const analysis::Breakdown& breakdown, const ProbeJoin& join,
                                 int pid) {
  nlohmann::json j;
  j["source"] = "probe";
  j["pid"] = pid;
  j["complete"] = breakdown.complete;
  if (!breakdown.complete) j["partial_reason"] = breakdown.partial_reason;
  j["events"] = breakdown.events;
  j["dropped"] = breakdown.dropped;
  j["window_ns"] = {breakdown.begin_ns, breakdown.end_ns};
  j["iteration_rule"] = breakdown.iteration_rule;
  std::vector<double> durations_ms;
  for (const auto& it : breakdown.iterations)
    durations_ms.push_back(static_cast<double>(it.duration()) * 1e-6);
  double sum = 0.0;
  for (double d : durations_ms) sum += d;
  j["iterations"] = {
      {"count", durations_ms.size()},
      {"mean_ms", durations_ms.empty() ? 0.0 : sum / static_cast<double>(durations_ms.size())},
      {"p50_ms", percentile(durations_ms, 0.5)},
      {"p99_ms", percentile(durations_ms, 0.99)},
      {"max_ms",
       durations_ms.empty() ? 0.0 : *std::max_element(durations_ms.begin(), durations_ms.end())}};
  // "totals" is the shape results/ plots read (stage + host_ns).
  auto& totals = j["totals"] = nlohmann::json::array();
  for (const auto& t : breakdown.totals) {
    totals.push_back({{"stage", t.stage},
                      {"count", t.count},
                      {"host_ns", t.host_ns},
                      {"gpu_ns", t.gpu_ns},
                      {"max_ns", t.max_ns}});
  }
  j["gpu"] = {{"present", breakdown.has_gpu},
              {"busy_ns", breakdown.gpu_busy_ns},
              {"idle_ns", breakdown.gpu_idle_ns},
              {"launch_queue_ns", breakdown.launch_queue_ns}};
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& r : join.requests) {
    rows.push_back({{"id", r.request_id},
                    {"covered", r.covered},
                    {"iterations", r.iterations},
                    {"wall_ms", r.wall_ms},
                    {"share_ms", r.share_ms}});
  }
  j["requests"] = {{"join", "by time: iterations overlapping each request's send..completion"},
                   {"stage_names", join.stages},
                   {"total", join.requests.size()},
                   {"covered", join.covered},
                   {"rows", std::move(rows)}};
  return j;
}

std::unique_ptr<RunProbe> RunProbe::start(const std::string& probe, const std::string& target_url,
                                          const std::string& rules) {
  int pid = 0;
  if (probe.empty() || probe == "auto") {
    pid = target_url.empty() ? static_cast<int>(getpid()) : find_local_target_pid(target_url);
  } else {
    char* end = nullptr;
    const long value = std::strtol(probe.c_str(), &end, 10);
    if (end == probe.c_str() || *end != '\0' || value <= 0 || value > 4194304)
      throw std::runtime_error("--probe takes a pid or 'auto', not '" + probe + "'");
    pid = static_cast<int>(value);
  }
  return std::unique_ptr<RunProbe>(new RunProbe(ProbeAttachment::attach({pid, rules, true})));
}

RunProbe::~RunProbe() {
  if (finished_) return;
  try {
    attachment_.finish();
  } catch (...) {
    // The run already failed; a capture that cannot be stopped ends with its duration or process.
  }
}

void RunProbe::watch(LoadOptions& load) {
  auto chained = std::move(load.on_progress);
  auto origin = origin_;
  load.on_progress = [origin, chained](const LoadProgress& p) {
    origin->observe(p.elapsed_s);
    if (chained) chained(p);
  };
}

nlohmann::json RunProbe::finish(const std::vector<results::Observation>& observations) {
  finished_ = true;
  const analysis::Breakdown breakdown = attachment_.finish();
  // Without a progress report the run never started: nothing can be placed in time.
  const std::int64_t origin = origin_->origin_ns().value_or(0);
  const CaptureWindow window{attachment_.covered_begin_ns(), attachment_.covered_end_ns()};
  const ProbeJoin join = origin_->origin_ns()
                             ? join_requests(breakdown, observations, origin, window)
                             : join_requests(breakdown, {}, 0, window);
  nlohmann::json stages = probe_stages_json(breakdown, join, attachment_.pid());
  std::string text = fmt::format(
      "Probe (pid {}): {} iterations, {} events{}{}; {} of {} requests inside the "
      "captured window\n",
      attachment_.pid(), breakdown.iterations.size(), breakdown.events,
      breakdown.dropped > 0 ? fmt::format(", {} dropped", breakdown.dropped) : "",
      breakdown.complete ? "" : ", partial: " + breakdown.partial_reason, join.covered,
      observations.size());
  for (const auto& t : breakdown.totals) {
    if (t.count == 0) continue;
    text += fmt::format("  {:<14} {:>10.3f} ms in {} ranges\n", t.stage,
                        static_cast<double>(t.host_ns) * 1e-6, t.count);
  }
  summary_ = std::move(text);
  return stages;
}

}  // namespace prism::harness
