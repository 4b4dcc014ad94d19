#include "prism/control/client.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <utility>

namespace prism::control {
namespace {

std::string process_comm(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  std::getline(in, name);
  return name;
}

bool process_has_agent_mapped(int pid) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find("libprism_probe") != std::string::npos) return true;
  }
  return false;
}

std::string self_directory() {
  char buffer[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buffer, sizeof(buffer) - 1);
  if (n <= 0) return {};
  std::string path(buffer, static_cast<size_t>(n));
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? std::string{} : path.substr(0, slash);
}

bool file_exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

}  // namespace

std::vector<std::string> candidate_socket_paths(int pid) {
  std::vector<std::string> dirs;
  struct stat st;
  const std::string proc = "/proc/" + std::to_string(pid);
  const unsigned uid = stat(proc.c_str(), &st) == 0 ? st.st_uid : geteuid();
  if (const char* configured = getenv("PRISM_PROBE_DIR"); configured != nullptr && *configured) {
    dirs.emplace_back(configured);
  }
  if (const char* runtime = getenv("XDG_RUNTIME_DIR");
      runtime != nullptr && *runtime == '/' && uid == geteuid()) {
    dirs.push_back(std::string(runtime) + "/prism");
  }
  dirs.push_back("/run/user/" + std::to_string(uid) + "/prism");
  dirs.push_back("/tmp/prism-" + std::to_string(uid));
  std::vector<std::string> paths;
  for (const auto& dir : dirs) {
    std::string path = dir + "/" + std::to_string(pid) + ".sock";
    bool seen = false;
    for (const auto& p : paths) seen |= p == path;
    if (!seen) paths.push_back(std::move(path));
  }
  return paths;
}

std::string agent_library_path() {
  if (const char* configured = getenv("PRISM_PROBE_LIBRARY");
      configured != nullptr && *configured) {
    return configured;
  }
#ifdef PRISM_PROBE_LIBRARY_PATH
  if (file_exists(PRISM_PROBE_LIBRARY_PATH)) return PRISM_PROBE_LIBRARY_PATH;
#endif
  const std::string dir = self_directory();
  for (const char* relative : {"/libprism_probe.so", "/../lib/libprism_probe.so",
                               "/../probes/libprism_probe.so", "/../../probes/libprism_probe.so"}) {
    const std::string candidate = dir + relative;
    if (file_exists(candidate)) {
      char resolved[PATH_MAX];
      if (realpath(candidate.c_str(), resolved) != nullptr) return resolved;
      return candidate;
    }
  }
  return "libprism_probe.so";
}

std::vector<std::string> agent_environment(const std::string& library, bool preload) {
  std::vector<std::string> env = {"NVTX_INJECTION64_PATH=" + library,
                                  "CUDA_INJECTION64_PATH=" + library};
  if (preload) {
    const char* existing = getenv("LD_PRELOAD");
    env.push_back("LD_PRELOAD=" + library +
                  (existing != nullptr && *existing ? std::string(":") + existing : std::string{}));
  }
  return env;
}

std::map<std::string, std::string> parse_reply_fields(const std::string& line) {
  std::map<std::string, std::string> fields;
  std::istringstream in(line);
  std::string word;
  in >> word;  // "ok"
  if (in >> word) fields["verb"] = word;
  while (in >> word) {
    const auto equals = word.find('=');
    if (equals == std::string::npos) continue;
    fields[word.substr(0, equals)] = word.substr(equals + 1);
  }
  return fields;
}

ProbeClient ProbeClient::connect(int pid, int timeout_ms) {
  if (pid <= 0 || (kill(pid, 0) != 0 && errno == ESRCH)) {
    throw ProbeError("no process with pid " + std::to_string(pid));
  }
  std::string tried;
  std::string last_error;
  for (const auto& path : candidate_socket_paths(pid)) {
    if (!file_exists(path)) {
      tried += "\n  " + path + " (absent)";
      continue;
    }
    try {
      return connect_path(path, timeout_ms);
    } catch (const ProbeError& e) {
      tried += "\n  " + path + " (" + e.what() + ")";
    }
  }
  const std::string library = agent_library_path();
  std::string message = "process " + std::to_string(pid) + " (" + process_comm(pid) + ") ";
  if (process_has_agent_mapped(pid)) {
    message +=
        "has the Prism probe agent loaded but no control socket answered; its stderr says why "
        "(look for lines starting with prism-probe). Tried:" +
        tried;
  } else {
    message +=
        "is not running the Prism probe agent. Restart it with the agent loaded (no code "
        "change needed):\n  NVTX_INJECTION64_PATH=" +
        library + " CUDA_INJECTION64_PATH=" + library + " <command>\nor LD_PRELOAD=" + library +
        " <command>, or launch it with `prism trace -- <command>`. Tried:" + tried;
  }
  throw ProbeError(message);
}

ProbeClient ProbeClient::connect_path(const std::string& path, int timeout_ms) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) throw ProbeError("socket path too long: " + path);
  memcpy(address.sun_path, path.c_str(), path.size() + 1);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw ProbeError(std::string("socket: ") + strerror(errno));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    const int error = errno;
    close(fd);
    throw ProbeError(error == ECONNREFUSED ? "stale socket, nobody listening"
                                           : std::string("connect: ") + strerror(error));
  }
  timeval timeout{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  return ProbeClient(fd, path);
}

ProbeClient::ProbeClient(ProbeClient&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      path_(std::move(other.path_)),
      buffer_(std::move(other.buffer_)) {}

ProbeClient& ProbeClient::operator=(ProbeClient&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    path_ = std::move(other.path_);
    buffer_ = std::move(other.buffer_);
  }
  return *this;
}

ProbeClient::~ProbeClient() {
  if (fd_ >= 0) close(fd_);
}

void ProbeClient::send_all(const std::string& bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw ProbeError("the agent closed the connection (the process may have exited)");
    sent += static_cast<size_t>(n);
  }
}

std::string ProbeClient::read_line() {
  for (;;) {
    const auto newline = buffer_.find('\n');
    if (newline != std::string::npos) {
      std::string line = buffer_.substr(0, newline);
      buffer_.erase(0, newline + 1);
      return line;
    }
    if (buffer_.size() > 1 << 20) throw ProbeError("reply line too long");
    char chunk[4096];
    const ssize_t n = recv(fd_, chunk, sizeof(chunk), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      throw ProbeError("the agent did not answer in time");
    if (n <= 0) throw ProbeError("the agent closed the connection (the process may have exited)");
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

std::string ProbeClient::read_bytes(size_t n) {
  std::string out;
  out.reserve(n);
  const size_t from_buffer = std::min(n, buffer_.size());
  out.append(buffer_, 0, from_buffer);
  buffer_.erase(0, from_buffer);
  while (out.size() < n) {
    char chunk[65536];
    const size_t want = std::min(sizeof(chunk), n - out.size());
    const ssize_t got = recv(fd_, chunk, want, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      throw ProbeError("the connection ended after " + std::to_string(out.size()) + " of " +
                       std::to_string(n) + " bytes (the process may have exited)");
    }
    out.append(chunk, static_cast<size_t>(got));
  }
  return out;
}

std::string ProbeClient::request(const Request& request) {
  char line[256];
  const size_t n = format_request(request, line, sizeof(line));
  send_all(std::string(line, n));
  std::string reply = read_line();
  if (reply.rfind("ok ", 0) != 0)
    throw ProbeError("agent refused " + std::string(verb_name(request.verb)) + ": " + reply);
  return reply;
}

std::string ProbeClient::send_raw(const std::string& bytes) {
  send_all(bytes);
  return read_line();
}

std::map<std::string, std::string> ProbeClient::status() {
  Request r;
  r.verb = Verb::kStatus;
  return parse_reply_fields(request(r));
}

std::map<std::string, std::string> ProbeClient::start(uint64_t duration_ms, uint32_t activities) {
  Request r;
  r.verb = Verb::kStart;
  r.duration_ms = duration_ms;
  r.activities = activities;
  return parse_reply_fields(request(r));
}

void ProbeClient::stop() {
  Request r;
  r.verb = Verb::kStop;
  request(r);
}

Stats ProbeClient::stats() {
  Request r;
  r.verb = Verb::kStats;
  Stats stats;
  stats.status = parse_reply_fields(request(r));
  const auto lines = stats.status.find("lines");
  const size_t count = lines == stats.status.end() ? 0 : std::stoul(lines->second);
  for (size_t i = 0; i < count; ++i) {
    const std::string line = read_line();
    std::istringstream in(line);
    std::string word;
    StatsRow row;
    in >> word >> row.name;
    while (in >> word) {
      const auto equals = word.find('=');
      if (equals == std::string::npos) continue;
      const uint64_t value = std::stoull(word.substr(equals + 1));
      const std::string key = word.substr(0, equals);
      if (key == "count") row.count = value;
      if (key == "total_ns") row.total_ns = value;
      if (key == "max_ns") row.max_ns = value;
    }
    stats.rows.push_back(std::move(row));
  }
  return stats;
}

std::string ProbeClient::snapshot() {
  Request r;
  r.verb = Verb::kSnapshot;
  const auto fields = parse_reply_fields(request(r));
  const auto bytes = fields.find("bytes");
  if (bytes == fields.end()) throw ProbeError("snapshot reply without bytes=");
  return read_bytes(std::stoull(bytes->second));
}

EventsReply ProbeClient::events(EventsCursor& cursor) {
  Request r;
  r.verb = Verb::kEvents;
  r.since = cursor.next;
  r.strings = cursor.strings;
  r.threads = cursor.threads;
  const auto fields = parse_reply_fields(request(r));
  auto number = [&](const char* key) -> uint64_t {
    const auto it = fields.find(key);
    if (it == fields.end()) throw ProbeError(std::string("events reply without ") + key + "=");
    try {
      return std::stoull(it->second);
    } catch (const std::exception&) {
      throw ProbeError(std::string("events reply: ") + key + "=" + it->second + " is not a number");
    }
  };
  EventsReply reply;
  const uint64_t bytes = number("bytes");
  cursor.next = number("next");
  cursor.strings = number("strings");
  cursor.threads = number("threads");
  reply.lost = number("lost");
  reply.pending = number("pending");
  reply.active = number("active") != 0;
  reply.bytes = read_bytes(bytes);
  return reply;
}

void ProbeClient::load_rules(const std::string& text) {
  if (text.empty() || text.size() > kMaxRulesBytes) {
    throw ProbeError("rules must be 1 to " + std::to_string(kMaxRulesBytes) + " bytes");
  }
  Request r;
  r.verb = Verb::kRules;
  r.rules_bytes = text.size();
  char line[256];
  const size_t n = format_request(r, line, sizeof(line));
  send_all(std::string(line, n) + text);
  const std::string reply = read_line();
  if (reply.rfind("ok ", 0) != 0) throw ProbeError("agent refused the rules: " + reply);
}

}  // namespace prism::control
