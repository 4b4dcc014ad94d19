// The calibrated mock server: an OpenAI-compatible streaming endpoint whose
// token schedule is known, so the harness can be measured against the truth.
// One thread, epoll and a timerfd armed to the next due chunk (nanosecond
// resolution, timer slack minimized): it holds a thousand concurrent streams
// on one core. It records when it wrote every chunk on the system-wide
// monotonic clock (clock.h), and misbehaves on demand, per request through the
// `X-Mock-Fault` header or at random with the configured rates.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace prism::harness {

enum class MockFault {
  kNone,
  kHttpError,    // error status with a JSON error body
  kCut,          // connection closed mid-stream, after half the tokens
  kStall,        // stops sending after half the tokens; the connection stays open
  kMalformed,    // a data line that is not JSON, mid-stream
  kOversized,    // one endless data line of oversized_bytes
  kSlowHeaders,  // response headers only after slow_header_ms
};
std::string to_string(MockFault fault);
MockFault mock_fault_from_string(const std::string& text);  // throws std::invalid_argument

struct MockServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;  // 0: an ephemeral port, see MockServer::port()
  double ttft_ms = 20.0;   // request received -> first chunk written
  double itl_ms = 5.0;     // per token between chunks
  double jitter_ms = 0.0;  // every delay gets uniform noise in [-jitter, +jitter], floored at 0
  std::uint32_t tokens_per_chunk = 1;
  std::uint32_t default_max_tokens = 16;
  // Probability that a request gets each fault (checked in this order).
  double error_rate = 0.0;
  double cut_rate = 0.0;
  double stall_rate = 0.0;
  double malformed_rate = 0.0;
  double oversized_rate = 0.0;
  double slow_header_rate = 0.0;
  int error_status = 500;
  double slow_header_ms = 1000.0;
  std::size_t oversized_bytes = std::size_t{8} << 20;
  std::size_t max_request_bytes = std::size_t{64} << 20;
  std::uint64_t seed = 1;
  std::string model = "prism-mock";
  int cpu = -1;  // >= 0: the serving thread is pinned to this CPU
  // TCP congestion control of its sockets ("" = the system's). BBR paces
  // sends with a timer: a chunk written with send() can sit in the mock's
  // socket until a later send, after the mock stamped it as written. "cubic"
  // or "reno" send at once, so the write stamps stay the truth. Without
  // CAP_NET_ADMIN only those in net.ipv4.tcp_allowed_congestion_control may be
  // set ("reno" always is): see unpaced_tcp_congestion().
  std::string tcp_congestion;
  bool record = true;            // keep a MockRecord per request
  bool accept_token_ids = true;  // false: a token-id prompt gets HTTP 400, like OpenAI's own API
};

// The truth about one request, on the monotonic clock (nanoseconds).
struct MockRecord {
  std::string request_id;  // the X-Request-Id header, if any
  std::string path;
  MockFault fault = MockFault::kNone;
  std::uint32_t prompt_tokens = 0;
  std::uint32_t max_tokens = 0;
  std::int64_t received_ns = 0;             // request fully read
  std::int64_t headers_sent_ns = 0;         // response headers written
  std::vector<std::int64_t> chunk_sent_ns;  // content chunks, when write() was called
  // When each chunk was due on the nominal schedule (received + ttft, then
  // + itl per token, plus jitter): chunk_sent_ns - chunk_due_ns is the
  // mock's own lateness, which a busy machine adds to what the harness sees.
  std::vector<std::int64_t> chunk_due_ns;
  std::vector<std::uint32_t> chunk_tokens;  // tokens in each
  bool completed = false;                   // [DONE] written
};
nlohmann::json to_json(const MockRecord& record);

// An unpaced congestion control this process may set on its sockets: "cubic"
// where allowed (root, or listed in net.ipv4.tcp_allowed_congestion_control),
// else "reno" (allowed by default), else "" (none may be set).
std::string unpaced_tcp_congestion();

class MockServer {
 public:
  explicit MockServer(MockServerOptions options = {});
  ~MockServer();
  MockServer(const MockServer&) = delete;
  MockServer& operator=(const MockServer&) = delete;

  // Binds and listens (throws std::runtime_error naming host and port), then
  // serves on a thread of its own.
  void start();
  // Binds and serves on the calling thread until stop().
  void run();
  // Async-signal-safe: may be called from a signal handler.
  void stop();

  std::uint16_t port() const;
  std::string url() const;  // http://host:port

  std::vector<MockRecord> records() const;  // finished requests, in finishing order
  void clear_records();

  struct Stats {
    std::uint64_t requests = 0;
    std::uint64_t chunks = 0;
    std::uint64_t open_connections = 0;
    std::uint64_t active_streams = 0;
  };
  Stats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace prism::harness
