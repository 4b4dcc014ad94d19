// A trace in memory, whatever it came from: the agent's raw format, a Chrome
// trace (our own export, Kineto / PyTorch profiler) or an Nsight Systems
// SQLite export. Host ranges are closed intervals with a parent link on their
// thread; GPU activities and CUDA API calls are intervals on their tracks.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace prism::analysis {

// A trace that cannot be read; the message names the file, record or field.
class TraceError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class SpanKind : uint8_t {
  kRange,
  kMark,
  kKernel,
  kMemcpy,
  kMemset,
  kSync,
  kRuntime,
  kDriver
};

const char* span_kind_name(SpanKind kind);

struct Span {
  uint64_t start_ns = 0;
  uint64_t end_ns = 0;       // == start_ns for marks
  uint64_t arg = 0;          // bytes for copies, external id, payload
  uint32_t name = 0;         // string id in Trace::strings
  uint32_t track = 0;        // OS thread id (host, API) or stream id (GPU)
  uint32_t correlation = 0;  // CUDA correlation id (GPU and API spans)
  int32_t parent = -1;       // index of the enclosing range on the same thread (ranges only)
  uint32_t process = 0;      // pid (host) or device (GPU)
  SpanKind kind = SpanKind::kRange;
  bool open = false;  // a range still open when the capture ended, closed at its end (cut short)
  uint64_t duration() const { return end_ns - start_ns; }
};

struct Trace {
  std::string source;  // "prism-raw", "chrome", "kineto", "nsys-sqlite"
  uint32_t pid = 0;
  std::string process_name;
  std::vector<std::string> strings{""};  // id -> text; id 0 is the empty name
  std::vector<Span> ranges;              // host ranges in start order per thread (parents first)
  std::vector<Span> marks;
  std::vector<Span> gpu;  // kernels, copies, memsets
  std::vector<Span> api;  // CUDA runtime/driver calls, synchronizations
  std::unordered_map<uint32_t, uint64_t> external_ids;  // correlation -> NVTX range (external) id
  std::map<uint32_t, std::string> thread_names;
  std::vector<std::string> info;  // "key=value" notes from the agent (e.g. why CUPTI was off)

  bool complete = true;         // false: the capture was cut short
  std::string partial_reason;   // why, when !complete
  uint64_t dropped_host = 0;    // events lost in the agent's per-thread buffers
  uint64_t dropped_gpu = 0;     // CUPTI records lost
  uint64_t dropped_window = 0;  // events the flight recorder overwrote
  uint64_t unmatched_ends = 0;  // pops/ends without a start (begun before the capture)
  uint64_t unclosed = 0;        // ranges still open when the capture ended (closed at its end)
  uint64_t event_count = 0;     // events read

  uint32_t intern(std::string_view text);
  const std::string& name(uint32_t id) const {
    return id < strings.size() ? strings[id] : strings[0];
  }
  uint64_t begin_ns() const;
  uint64_t end_ns() const;

 private:
  std::unordered_map<std::string, uint32_t> index_;
};

// Reads any supported trace file, detected by content. Throws TraceError.
Trace load_trace(const std::string& path);

// The agent's raw format (.praw), from a file or from snapshot bytes.
Trace read_raw_trace(const std::string& bytes, const std::string& origin);
Trace read_raw_trace_file(const std::string& path);

// Chrome trace JSON (ours, Kineto, PyTorch profiler).
Trace read_chrome_trace(const std::string& json_text, const std::string& origin);

// Nsight Systems SQLite export (nsys export --type sqlite).
Trace read_nsys_sqlite(const std::string& path);

// Orders each thread's ranges by start (outer first) and fills parent links.
// Importers whose input is not already in push order call this.
void link_range_parents(Trace& trace);

}  // namespace prism::analysis
