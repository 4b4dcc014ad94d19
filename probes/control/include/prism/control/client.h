// Client side of the probe control protocol: find a process's agent socket,
// connect, and speak PRISM/1. Used by `prism attach`, `prism trace` and tests.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "prism/control/protocol.h"

namespace prism::control {

// Every failure to talk to an agent; the message says what to do about it.
class ProbeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct StatsRow {
  std::string name;  // stage (when rules are loaded) or range name
  uint64_t count = 0;
  uint64_t total_ns = 0;
  uint64_t max_ns = 0;
};

struct Stats {
  std::map<std::string, std::string> status;  // the status fields sent with the rows
  std::vector<StatsRow> rows;
};

// The live path's cursors and one reply (protocol.h, verb "events").
struct EventsCursor {
  uint64_t next = 0;     // ring index to ask for next
  uint64_t strings = 0;  // string ids below this are known
  uint64_t threads = 0;  // thread names already received
};
struct EventsReply {
  std::string bytes;     // raw trace: header, new strings and thread names, events; no END
  uint64_t lost = 0;     // events the flight recorder overwrote before they were asked for
  uint64_t pending = 0;  // events left for the next call
  bool active = false;   // the capture is still running
};

// Where an agent in process pid would listen, in the order the client tries them.
std::vector<std::string> candidate_socket_paths(int pid);

// Path of libprism_probe.so: $PRISM_PROBE_LIBRARY, the build tree, or beside the prism binary.
std::string agent_library_path();

// The environment that loads the agent into a program started with it.
std::vector<std::string> agent_environment(const std::string& library, bool preload);

// Parses "ok verb k=v k=v" into its fields (the verb is stored under "verb").
std::map<std::string, std::string> parse_reply_fields(const std::string& line);

class ProbeClient {
 public:
  // Connects to the agent in process pid; throws ProbeError saying how to start
  // the process with the agent when none is listening.
  static ProbeClient connect(int pid, int timeout_ms = 10000);
  static ProbeClient connect_path(const std::string& path, int timeout_ms = 10000);

  ProbeClient(ProbeClient&& other) noexcept;
  ProbeClient& operator=(ProbeClient&& other) noexcept;
  ProbeClient(const ProbeClient&) = delete;
  ProbeClient& operator=(const ProbeClient&) = delete;
  ~ProbeClient();

  std::map<std::string, std::string> status();
  std::map<std::string, std::string> start(uint64_t duration_ms, uint32_t activities);
  void stop();
  Stats stats();
  std::string snapshot();  // raw trace bytes (prism/agent/raw_format.h)
  // What arrived since the cursor (advanced in place): the live path, O(new events).
  EventsReply events(EventsCursor& cursor);
  void load_rules(const std::string& text);

  // Sends bytes as they are and returns the first reply line (tests, fuzzing by hand).
  std::string send_raw(const std::string& bytes);
  const std::string& path() const { return path_; }

 private:
  ProbeClient(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  void send_all(const std::string& bytes);
  std::string read_line();
  std::string read_bytes(size_t n);
  std::string request(const Request& request);  // returns the reply line, throws on "err"

  int fd_ = -1;
  std::string path_;
  std::string buffer_;  // bytes received beyond the last line
};

}  // namespace prism::control
