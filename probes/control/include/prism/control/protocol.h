// The probe control protocol, version 1: one request per line over the
// agent's Unix socket. This parser is shared by the agent (libc only: no
// allocation, no exceptions, no STL) and by the client library.
//
// Request  := "PRISM/1" SP verb *(SP key "=" value) LF     (at most kMaxLine bytes)
// verbs    := status | start | stop | snapshot | stats | rules | events | quit
//   start     duration_ms=<0..86400000> activities=<nvtx[,gpu]>   (both optional; 0 = until stop)
//   rules     bytes=<1..kMaxRulesBytes>    followed by exactly that many bytes of rule text
//   events    since=<ring index> strings=<n> threads=<n>          (all optional, default 0)
// Response := "ok" SP verb *(SP key "=" value) LF [payload]   |   "err" SP code SP message LF
//   snapshot: "ok snapshot bytes=N" then N bytes of raw trace (raw_format.h)
//   stats:    "ok stats lines=K ..." then K lines "row <name> count=<n> total_ns=<t> max_ns=<m>"
//   events:   "ok events bytes=N next=<index> strings=<n> threads=<n> lost=<n> pending=<n>
//             active=<0|1>" then N bytes of raw trace without an END record: the strings with
//             ids >= strings=, the thread names after the first threads=, and the capture's
//             events from ring index since= on (at most kMaxEventsPerReply; pending= says how
//             many more are waiting). next=, strings= and threads= are the cursors to send
//             back; lost= counts events the flight recorder overwrote before they were asked
//             for. This is the live path: each poll costs the agent O(new events), not
//             O(capture) like a snapshot.
//
// Input is untrusted: the parser accepts only the grammar above, rejects
// unknown verbs and keys, duplicate keys, out-of-range numbers, control bytes
// and over-long lines, and says why in a short message.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace prism::control {

inline constexpr const char* kProtocolTag = "PRISM/1";
inline constexpr int kProtocolVersion = 1;
inline constexpr size_t kMaxLine = 1024;
inline constexpr size_t kMaxRulesBytes = 64 * 1024;
inline constexpr uint64_t kMaxDurationMs = 86400000;  // one day
inline constexpr uint64_t kMaxEventsPerReply = 65536;

enum class Verb : uint8_t { kStatus, kStart, kStop, kSnapshot, kStats, kRules, kQuit, kEvents };

enum Activity : uint32_t {
  kActivityNvtx = 1u << 0,  // host ranges and marks
  kActivityGpu = 1u << 1,   // CUPTI kernels, copies, API records
};

struct Request {
  Verb verb = Verb::kStatus;
  uint64_t duration_ms = 0;             // start: 0 = until stop
  uint32_t activities = kActivityNvtx;  // start
  uint64_t rules_bytes = 0;             // rules: payload size that follows the line
  uint64_t since = 0;                   // events: first ring index wanted
  uint64_t strings = 0;                 // events: string ids below this are known
  uint64_t threads = 0;                 // events: this many thread names are known
};

// Parses one request line (without its trailing '\n'). Returns true on
// success; on failure writes a short reason into error (always NUL terminated).
bool parse_request(const char* line, size_t length, Request* out, char* error, size_t error_size);

// Formats a request line (with the trailing '\n') into buffer; returns its
// length, or 0 when the buffer is too small.
size_t format_request(const Request& request, char* buffer, size_t buffer_size);

const char* verb_name(Verb verb);

}  // namespace prism::control
