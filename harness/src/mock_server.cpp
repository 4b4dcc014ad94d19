#include "prism/harness/mock_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <queue>
#include <random>
#include <stdexcept>
#include <string_view>
#include <thread>

#include <fmt/core.h>

#include "prism/harness/clock.h"

namespace prism::harness {

std::string to_string(MockFault fault) {
  switch (fault) {
    case MockFault::kNone:
      return "none";
    case MockFault::kHttpError:
      return "error";
    case MockFault::kCut:
      return "cut";
    case MockFault::kStall:
      return "stall";
    case MockFault::kMalformed:
      return "malformed";
    case MockFault::kOversized:
      return "oversized";
    case MockFault::kSlowHeaders:
      return "slow-headers";
  }
  return "none";
}

MockFault mock_fault_from_string(const std::string& text) {
  for (auto f : {MockFault::kNone, MockFault::kHttpError, MockFault::kCut, MockFault::kStall,
                 MockFault::kMalformed, MockFault::kOversized, MockFault::kSlowHeaders}) {
    if (to_string(f) == text) return f;
  }
  throw std::invalid_argument(
      fmt::format("unknown mock fault '{}' (none, error, cut, stall, malformed, oversized, "
                  "slow-headers)",
                  text));
}

nlohmann::json to_json(const MockRecord& r) {
  return {{"request_id", r.request_id},
          {"path", r.path},
          {"fault", to_string(r.fault)},
          {"prompt_tokens", r.prompt_tokens},
          {"max_tokens", r.max_tokens},
          {"received_ns", r.received_ns},
          {"headers_sent_ns", r.headers_sent_ns},
          {"chunk_sent_ns", r.chunk_sent_ns},
          {"chunk_due_ns", r.chunk_due_ns},
          {"chunk_tokens", r.chunk_tokens},
          {"completed", r.completed}};
}

namespace {

constexpr std::int64_t kMs = 1'000'000;

enum class ConnState {
  kReading,      // waiting for (the rest of) a request
  kWaitHeaders,  // slow-headers fault: headers are due at next_due
  kStreaming,    // chunks due at next_due
  kWaitReply,    // non-streaming request: the whole reply is due at next_due
  kStalled,      // stall fault: nothing more will be sent
  kFlushClose,   // write what is queued, then close
};

struct Conn {
  int fd = -1;
  std::uint64_t generation = 0;  // invalidates timer entries of earlier states
  ConnState state = ConnState::kReading;
  std::string in;
  std::string out;
  std::size_t out_offset = 0;
  bool want_write = false;
  // The request being served.
  MockRecord record;
  bool chat = false;
  bool include_usage = false;
  bool continuous_usage = false;
  std::uint32_t tokens_sent = 0;
  std::uint32_t fault_after = 0;  // tokens sent before the fault strikes
  std::int64_t next_due = 0;      // on the schedule, not when it was actually sent
  double ttft_ms = 0;
  double itl_ms = 0;
  std::size_t oversized_left = 0;
  std::uint64_t serial = 0;
  bool stream_active = false;  // counted in active_streams
  bool fault_fired = false;
};

struct TimerEntry {
  std::int64_t due;
  int fd;
  std::uint64_t generation;
  bool operator>(const TimerEntry& o) const { return due > o.due; }
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::uint32_t count_words(std::string_view text) {
  std::uint32_t n = 0;
  bool in_word = false;
  for (char c : text) {
    const bool space = c == ' ' || c == '\n' || c == '\t' || c == '\r';
    if (!space && !in_word) ++n;
    in_word = !space;
  }
  return n;
}

std::uint32_t count_prompt_tokens(const nlohmann::json& body) {
  std::uint32_t n = 0;
  if (auto p = body.find("prompt"); p != body.end()) {
    if (p->is_string()) return count_words(p->get_ref<const std::string&>());
    if (p->is_array()) {
      for (const auto& x : *p) {
        n += x.is_string() ? count_words(x.get_ref<const std::string&>()) : 1;
      }
    }
    return n;
  }
  if (auto m = body.find("messages"); m != body.end() && m->is_array()) {
    for (const auto& msg : *m) {
      if (msg.is_object() && msg.contains("content") && msg["content"].is_string()) {
        n += count_words(msg["content"].get_ref<const std::string&>());
      }
    }
  }
  return n;
}

void append_chunk(std::string& out, std::string_view payload) {
  out += fmt::format("{:x}\r\n", payload.size());
  out.append(payload);
  out += "\r\n";
}

}  // namespace

struct MockServer::Impl {
  MockServerOptions options;
  int listen_fd = -1;
  int epoll_fd = -1;
  int timer_fd = -1;
  int stop_fd = -1;
  std::uint16_t bound_port = 0;
  std::atomic<bool> stopping{false};
  std::thread thread;
  std::vector<std::unique_ptr<Conn>> conns;  // indexed by fd
  std::priority_queue<TimerEntry, std::vector<TimerEntry>, std::greater<>> timers;
  std::int64_t armed_due = -1;
  std::mt19937_64 rng;
  std::uint64_t serial = 0;

  mutable std::mutex records_mutex;
  std::vector<MockRecord> finished;
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> chunks{0};
  std::atomic<std::uint64_t> open_connections{0};
  std::atomic<std::uint64_t> active_streams{0};

  std::string model_json;  // the model name as a JSON string

  explicit Impl(MockServerOptions o)
      : options(std::move(o)),
        rng(options.seed),
        model_json(nlohmann::json(options.model).dump()) {}

  ~Impl() {
    for (auto& c : conns) {
      if (c) ::close(c->fd);
    }
    for (int fd : {listen_fd, epoll_fd, timer_fd, stop_fd}) {
      if (fd >= 0) ::close(fd);
    }
  }

  void bind_and_listen() {
    raise_open_file_limit();
    listen_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    // Accepted sockets inherit it.
    if (!options.tcp_congestion.empty() &&
        setsockopt(listen_fd, IPPROTO_TCP, TCP_CONGESTION, options.tcp_congestion.data(),
                   static_cast<socklen_t>(options.tcp_congestion.size())) != 0) {
      const int error = errno;
      std::string hint;
      if (error == EPERM) {
        hint = fmt::format(
            " (without CAP_NET_ADMIN only those in "
            "/proc/sys/net/ipv4/tcp_allowed_congestion_control may be set; {} is)",
            unpaced_tcp_congestion().empty() ? "none" : unpaced_tcp_congestion());
      }
      throw std::runtime_error(fmt::format("mock server: TCP congestion control '{}': {}{}",
                                           options.tcp_congestion, std::strerror(error), hint));
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(options.port);
    if (inet_pton(AF_INET, options.host.c_str(), &addr.sin_addr) != 1) {
      throw std::runtime_error(
          fmt::format("mock server: '{}' is not an IPv4 address", options.host));
    }
    if (::bind(listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listen_fd, 4096) != 0) {
      throw std::runtime_error(fmt::format("mock server: cannot listen on {}:{}: {}", options.host,
                                           options.port, std::strerror(errno)));
    }
    socklen_t len = sizeof addr;
    getsockname(listen_fd, reinterpret_cast<sockaddr*>(&addr), &len);
    bound_port = ntohs(addr.sin_port);
    epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    for (int fd : {listen_fd, timer_fd, stop_fd}) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.fd = fd;
      epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev);
    }
  }

  // ---- connections ---------------------------------------------------------
  void accept_all() {
    for (;;) {
      const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;  // EAGAIN, or out of descriptors: the client will see a refusal
      const int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (static_cast<std::size_t>(fd) >= conns.size())
        conns.resize(static_cast<std::size_t>(fd) + 1);
      auto c = std::make_unique<Conn>();
      c->fd = fd;
      conns[static_cast<std::size_t>(fd)] = std::move(c);
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP;
      ev.data.fd = fd;
      epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev);
      open_connections.fetch_add(1, std::memory_order_relaxed);
    }
  }

  void finish_record(Conn& c) {
    if (c.stream_active) {
      c.stream_active = false;
      active_streams.fetch_sub(1, std::memory_order_relaxed);
    }
    if (c.record.received_ns == 0) return;
    if (options.record) {
      std::lock_guard lock(records_mutex);
      finished.push_back(std::move(c.record));
    }
    c.record = MockRecord{};
  }

  void close_conn(Conn& c) {
    finish_record(c);
    epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
    open_connections.fetch_sub(1, std::memory_order_relaxed);
    conns[static_cast<std::size_t>(c.fd)].reset();
  }

  void schedule(Conn& c, std::int64_t due) {
    c.next_due = due;
    timers.push({due, c.fd, ++c.generation});
  }

  void set_write_interest(Conn& c, bool want) {
    if (c.want_write == want) return;
    c.want_write = want;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0u);
    ev.data.fd = c.fd;
    epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c.fd, &ev);
  }

  // Writes what is queued; false when the connection died.
  bool flush(Conn& c) {
    while (c.out_offset < c.out.size() || c.oversized_left > 0) {
      if (c.out_offset == c.out.size()) {
        // Refill with the next piece of the endless data line.
        c.out.clear();
        c.out_offset = 0;
        const std::size_t piece = std::min<std::size_t>(c.oversized_left, 64 * 1024);
        append_chunk(c.out, std::string(piece, 'x'));
        c.oversized_left -= piece;
        if (c.oversized_left == 0) c.state = ConnState::kFlushClose;
      }
      const ssize_t n =
          ::send(c.fd, c.out.data() + c.out_offset, c.out.size() - c.out_offset, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          set_write_interest(c, true);
          return true;
        }
        close_conn(c);
        return false;
      }
      c.out_offset += static_cast<std::size_t>(n);
    }
    c.out.clear();
    c.out_offset = 0;
    set_write_interest(c, false);
    if (c.state == ConnState::kFlushClose) {
      close_conn(c);
      return false;
    }
    return true;
  }

  void on_readable(Conn& c) {
    char buffer[16384];
    for (;;) {
      const ssize_t n = ::recv(c.fd, buffer, sizeof buffer, 0);
      if (n > 0) {
        c.in.append(buffer, static_cast<std::size_t>(n));
        if (c.in.size() > options.max_request_bytes + 65536) {
          respond_error(c, 413, "request too large", true);
          return;
        }
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
        close_conn(c);  // the client went away (or cancelled)
        return;
      }
      break;
    }
    if (c.state == ConnState::kReading) try_parse(c);
  }

  void try_parse(Conn& c) {
    const std::size_t header_end = c.in.find("\r\n\r\n");
    if (header_end == std::string::npos) return;
    const std::string_view head(c.in.data(), header_end);
    const std::size_t line_end = head.find("\r\n");
    const std::string_view request_line = head.substr(0, line_end);
    const std::size_t sp1 = request_line.find(' ');
    const std::size_t sp2 = request_line.find(' ', sp1 + 1);
    if (sp1 == std::string_view::npos || sp2 == std::string_view::npos) {
      respond_error(c, 400, "malformed request line", true);
      return;
    }
    const std::string method(request_line.substr(0, sp1));
    const std::string path(request_line.substr(sp1 + 1, sp2 - sp1 - 1));
    std::size_t content_length = 0;
    std::string request_id;
    std::string fault_header;
    double ttft_override = -1;
    double itl_override = -1;
    bool expect_continue = false;
    std::size_t pos = line_end == std::string_view::npos ? head.size() : line_end + 2;
    while (pos < head.size()) {
      std::size_t next = head.find("\r\n", pos);
      if (next == std::string_view::npos) next = head.size();
      const std::string_view line = head.substr(pos, next - pos);
      pos = next + 2;
      const std::size_t colon = line.find(':');
      if (colon == std::string_view::npos) continue;
      const std::string_view name = trim(line.substr(0, colon));
      const std::string_view value = trim(line.substr(colon + 1));
      if (iequals(name, "content-length")) {
        content_length = std::strtoull(std::string(value).c_str(), nullptr, 10);
      } else if (iequals(name, "x-request-id")) {
        request_id = value;
      } else if (iequals(name, "x-mock-fault")) {
        fault_header = value;
      } else if (iequals(name, "x-mock-ttft-ms")) {
        ttft_override = std::strtod(std::string(value).c_str(), nullptr);
      } else if (iequals(name, "x-mock-itl-ms")) {
        itl_override = std::strtod(std::string(value).c_str(), nullptr);
      } else if (iequals(name, "expect") && iequals(value, "100-continue")) {
        expect_continue = true;
      }
    }
    if (content_length > options.max_request_bytes) {
      respond_error(c, 413, "request too large", true);
      return;
    }
    const std::size_t total = header_end + 4 + content_length;
    if (c.in.size() < total) {
      if (expect_continue && c.in.size() == header_end + 4) {
        c.out += "HTTP/1.1 100 Continue\r\n\r\n";
        flush(c);
      }
      return;
    }
    const std::string body = c.in.substr(header_end + 4, content_length);
    c.in.erase(0, total);
    requests.fetch_add(1, std::memory_order_relaxed);
    handle(c, method, path, body, request_id, fault_header, ttft_override, itl_override);
  }

  void respond(Conn& c, int status, std::string_view reason, std::string_view content_type,
               std::string_view body, bool close_after) {
    c.out += fmt::format(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
        status, reason, content_type, body.size(), close_after ? "close" : "keep-alive");
    c.out.append(body);
    if (close_after) c.state = ConnState::kFlushClose;
    flush(c);
  }

  void respond_error(Conn& c, int status, std::string_view message, bool close_after) {
    const nlohmann::json body = {
        {"error",
         {{"message", message},
          {"type", status >= 500 ? "server_error" : "invalid_request_error"},
          {"code", status}}}};
    const char* reason = status == 400   ? "Bad Request"
                         : status == 404 ? "Not Found"
                         : status == 413 ? "Payload Too Large"
                         : status == 429 ? "Too Many Requests"
                         : status == 503 ? "Service Unavailable"
                                         : "Internal Server Error";
    respond(c, status, reason, "application/json", body.dump(), close_after);
  }

  MockFault draw_fault() {
    std::uniform_real_distribution<double> u(0.0, 1.0);
    const std::pair<double, MockFault> rates[] = {
        {options.error_rate, MockFault::kHttpError},
        {options.cut_rate, MockFault::kCut},
        {options.stall_rate, MockFault::kStall},
        {options.malformed_rate, MockFault::kMalformed},
        {options.oversized_rate, MockFault::kOversized},
        {options.slow_header_rate, MockFault::kSlowHeaders}};
    for (const auto& [rate, fault] : rates) {
      if (rate > 0 && u(rng) < rate) return fault;
    }
    return MockFault::kNone;
  }

  std::int64_t jittered(double ms) {
    if (options.jitter_ms > 0) {
      std::uniform_real_distribution<double> u(-options.jitter_ms, options.jitter_ms);
      ms = std::max(0.0, ms + u(rng));
    }
    return static_cast<std::int64_t>(ms * kMs);
  }

  void handle(Conn& c, const std::string& method, const std::string& path, const std::string& body,
              const std::string& request_id, const std::string& fault_header, double ttft_override,
              double itl_override) {
    const std::int64_t now = monotonic_ns();
    if (method == "GET" && (path == "/health" || path == "/v1/health")) {
      respond(c, 200, "OK", "text/plain", "ok\n", false);
      return;
    }
    if (method == "GET" && path == "/v1/models") {
      const nlohmann::json models = {
          {"object", "list"},
          {"data", {{{"id", options.model}, {"object", "model"}, {"owned_by", "prism"}}}}};
      respond(c, 200, "OK", "application/json", models.dump(), false);
      return;
    }
    const bool chat = path == "/v1/chat/completions";
    if (method != "POST" || (!chat && path != "/v1/completions")) {
      respond_error(c, 404, fmt::format("no route for {} {}", method, path), false);
      return;
    }
    const auto doc = nlohmann::json::parse(body, nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) {
      respond_error(c, 400, "request body is not a JSON object", false);
      return;
    }
    if (!options.accept_token_ids) {
      if (auto p = doc.find("prompt");
          p != doc.end() && p->is_array() && !p->empty() && p->front().is_number_integer()) {
        respond_error(c, 400, "prompt must be a string", false);
        return;
      }
    }
    MockFault fault = MockFault::kNone;
    if (!fault_header.empty()) {
      try {
        fault = mock_fault_from_string(fault_header);
      } catch (const std::invalid_argument& e) {
        respond_error(c, 400, e.what(), false);
        return;
      }
    } else {
      fault = draw_fault();
    }
    MockRecord& r = c.record;
    r = MockRecord{};
    r.request_id = request_id;
    r.path = path;
    r.fault = fault;
    r.received_ns = now;
    r.prompt_tokens = count_prompt_tokens(doc);
    r.max_tokens = options.default_max_tokens;
    for (const char* key : {"max_tokens", "max_completion_tokens"}) {
      if (auto m = doc.find(key); m != doc.end() && m->is_number_unsigned()) {
        r.max_tokens = m->get<std::uint32_t>();
      }
    }
    c.chat = chat;
    c.tokens_sent = 0;
    c.serial = ++serial;
    c.ttft_ms = ttft_override >= 0 ? ttft_override : options.ttft_ms;
    c.itl_ms = itl_override >= 0 ? itl_override : options.itl_ms;
    c.fault_after = r.max_tokens / 2;
    c.include_usage = false;
    c.continuous_usage = false;
    if (auto so = doc.find("stream_options"); so != doc.end() && so->is_object()) {
      c.include_usage = so->value("include_usage", false);
      c.continuous_usage = so->value("continuous_usage_stats", false);
    }
    c.fault_fired = false;
    if (fault == MockFault::kHttpError) {
      r.headers_sent_ns = monotonic_ns();
      const int status = options.error_status;
      if (options.record) {
        std::lock_guard lock(records_mutex);
        finished.push_back(std::move(r));
      }
      r = MockRecord{};
      respond_error(c, status, fmt::format("mock: injected HTTP {}", status), false);
      return;
    }
    c.stream_active = true;
    active_streams.fetch_add(1, std::memory_order_relaxed);
    const bool stream = doc.value("stream", false);
    if (!stream) {
      c.state = ConnState::kWaitReply;
      schedule(c, now + jittered(c.ttft_ms + c.itl_ms * std::max<std::uint32_t>(r.max_tokens, 1) -
                                 c.itl_ms));
      return;
    }
    if (fault == MockFault::kSlowHeaders) {
      c.state = ConnState::kWaitHeaders;
      schedule(c, now + static_cast<std::int64_t>(options.slow_header_ms * kMs));
      return;
    }
    c.state = ConnState::kStreaming;
    if (!send_stream_headers(c)) return;
    schedule(c, now + jittered(c.ttft_ms));
  }

  // False when the connection died (and `c` is gone).
  bool send_stream_headers(Conn& c) {
    c.out +=
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        "Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n";
    c.record.headers_sent_ns = monotonic_ns();
    return flush(c);
  }

  std::string token_text(std::uint32_t count) const {
    std::string text;
    for (std::uint32_t i = 0; i < count; ++i) text += " tok";
    return text;
  }

  // Written with fmt rather than a JSON library: at 50,000 chunks/s the mock
  // must stay cheaper than the harness it measures. The text is always
  // " tok" runs and the model name is escaped once, so no escaping is needed here.
  std::string event_json(const Conn& c, std::string_view text, const char* finish_reason,
                         bool first, bool with_usage) {
    const std::string finish =
        finish_reason == nullptr ? std::string("null") : fmt::format("\"{}\"", finish_reason);
    std::string usage;
    if (with_usage) {
      usage = fmt::format(
          R"(,"usage":{{"prompt_tokens":{},"completion_tokens":{},"total_tokens":{}}})",
          c.record.prompt_tokens, c.tokens_sent, c.record.prompt_tokens + c.tokens_sent);
    }
    if (c.chat) {
      return fmt::format(
          R"(data: {{"id":"cmpl-mock-{}","object":"chat.completion.chunk","created":0,"model":{},)"
          R"("choices":[{{"index":0,"delta":{{{}"content":"{}"}},"finish_reason":{}}}]{}}})"
          "\n\n",
          c.serial, model_json, first ? R"("role":"assistant",)" : "", text, finish, usage);
    }
    return fmt::format(
        R"(data: {{"id":"cmpl-mock-{}","object":"text_completion","created":0,"model":{},)"
        R"("choices":[{{"index":0,"text":"{}","logprobs":null,"finish_reason":{}}}]{}}})"
        "\n\n",
        c.serial, model_json, text, finish, usage);
  }

  nlohmann::json usage_json(const Conn& c) const {
    return {{"prompt_tokens", c.record.prompt_tokens},
            {"completion_tokens", c.tokens_sent},
            {"total_tokens", c.record.prompt_tokens + c.tokens_sent}};
  }

  // A timer fired for this connection.
  void on_due(Conn& c) {
    switch (c.state) {
      case ConnState::kWaitHeaders:
        c.state = ConnState::kStreaming;
        if (!send_stream_headers(c)) return;
        schedule(c, std::max(monotonic_ns(), c.record.received_ns + jittered(c.ttft_ms)));
        return;
      case ConnState::kWaitReply:
        send_whole_reply(c);
        return;
      case ConnState::kStreaming:
        send_next_chunk(c);
        return;
      default:
        return;
    }
  }

  void send_whole_reply(Conn& c) {
    c.tokens_sent = c.record.max_tokens;
    nlohmann::json reply = {{"id", fmt::format("cmpl-mock-{}", c.serial)},
                            {"created", 0},
                            {"model", options.model},
                            {"usage", usage_json(c)}};
    const std::string text = token_text(c.tokens_sent);
    if (c.chat) {
      reply["object"] = "chat.completion";
      reply["choices"] = {{{"index", 0},
                           {"message", {{"role", "assistant"}, {"content", text}}},
                           {"finish_reason", "length"}}};
    } else {
      reply["object"] = "text_completion";
      reply["choices"] = {{{"index", 0}, {"text", text}, {"finish_reason", "length"}}};
    }
    c.record.headers_sent_ns = monotonic_ns();
    c.record.chunk_sent_ns.push_back(c.record.headers_sent_ns);
    c.record.chunk_due_ns.push_back(c.next_due);
    c.record.chunk_tokens.push_back(c.tokens_sent);
    c.record.completed = true;
    finish_record(c);
    c.state = ConnState::kReading;
    respond(c, 200, "OK", "application/json", reply.dump(), false);
  }

  void send_next_chunk(Conn& c) {
    MockRecord& r = c.record;
    const MockFault fault = r.fault;
    if (c.tokens_sent >= c.fault_after && c.tokens_sent < r.max_tokens) {
      if (fault == MockFault::kCut) {
        // Abrupt close inside the chunked body: the client sees a cut stream.
        close_conn(c);
        return;
      }
      if (fault == MockFault::kStall) {
        c.state = ConnState::kStalled;
        return;
      }
      if (fault == MockFault::kOversized) {
        append_chunk(c.out, "data: ");
        c.oversized_left = options.oversized_bytes;
        c.state = ConnState::kStalled;  // no more timers; flush() streams the rest
        chunks.fetch_add(1, std::memory_order_relaxed);
        flush(c);
        return;
      }
      if (fault == MockFault::kMalformed && !c.fault_fired) {
        c.fault_fired = true;
        append_chunk(c.out, "data: {\"choices\": [{\"text\": \"unterminated\n\n");
      }
    }
    const std::uint32_t remaining = r.max_tokens - c.tokens_sent;
    const std::uint32_t count =
        std::min(remaining, std::max<std::uint32_t>(options.tokens_per_chunk, 1));
    const bool first = c.tokens_sent == 0;
    c.tokens_sent += count;
    const bool last = c.tokens_sent >= r.max_tokens;
    std::string payload;
    if (count > 0) {
      payload =
          event_json(c, token_text(count), last ? "length" : nullptr, first, c.continuous_usage);
    }
    if (last) {
      if (c.include_usage || c.continuous_usage) {
        nlohmann::json u = {{"id", fmt::format("cmpl-mock-{}", c.serial)},
                            {"object", c.chat ? "chat.completion.chunk" : "text_completion"},
                            {"created", 0},
                            {"model", options.model},
                            {"choices", nlohmann::json::array()},
                            {"usage", usage_json(c)}};
        payload += "data: " + u.dump() + "\n\n";
      }
      payload += "data: [DONE]\n\n";
    }
    append_chunk(c.out, payload);
    if (last) c.out += "0\r\n\r\n";
    const std::int64_t sent = monotonic_ns();  // just before send(): the actual write time
    if (count > 0) {
      r.chunk_sent_ns.push_back(sent);
      r.chunk_due_ns.push_back(c.next_due);
      r.chunk_tokens.push_back(count);
      chunks.fetch_add(1, std::memory_order_relaxed);
    }
    if (last) {
      r.completed = true;
      finish_record(c);
      c.state = ConnState::kReading;
    }
    if (!flush(c)) return;
    if (!last) {
      schedule(c, c.next_due + jittered(c.itl_ms * count));
    } else if (!c.in.empty()) {
      try_parse(c);  // a pipelined request
    }
  }

  // ---- loop ----------------------------------------------------------------
  // At most the timers already due when it starts: a server that has fallen
  // behind its schedule (a busy machine) re-schedules chunks that are due at
  // once, and looping until none is due would starve reading new requests
  // for as long as any stream lasts. The loop comes back through epoll.
  void fire_due_timers() {
    for (std::size_t budget = timers.size(); budget > 0; --budget) {
      if (timers.empty()) return;
      const TimerEntry top = timers.top();
      if (top.due > monotonic_ns()) return;
      timers.pop();
      if (static_cast<std::size_t>(top.fd) >= conns.size()) continue;
      Conn* c = conns[static_cast<std::size_t>(top.fd)].get();
      if (c == nullptr || c->generation != top.generation) continue;
      on_due(*c);
    }
  }

  void arm_timer() {
    const std::int64_t due = timers.empty() ? -1 : timers.top().due;
    if (due == armed_due) return;
    armed_due = due;
    itimerspec spec{};
    if (due > 0) {
      spec.it_value.tv_sec = due / 1'000'000'000;
      spec.it_value.tv_nsec = due % 1'000'000'000;
    }
    timerfd_settime(timer_fd, TFD_TIMER_ABSTIME, &spec, nullptr);
  }

  void loop() {
    minimize_timer_slack();
    pin_current_thread_to_cpu(options.cpu);
    std::vector<epoll_event> events(1024);
    while (!stopping.load(std::memory_order_relaxed)) {
      fire_due_timers();
      arm_timer();
      const int n = epoll_wait(epoll_fd, events.data(), static_cast<int>(events.size()), 500);
      for (int i = 0; i < n; ++i) {
        const epoll_event& ev = events[static_cast<std::size_t>(i)];
        const int fd = ev.data.fd;
        if (fd == stop_fd) return;
        if (fd == timer_fd) {
          std::uint64_t expirations;
          [[maybe_unused]] const auto r = ::read(timer_fd, &expirations, sizeof expirations);
          armed_due = -1;
          fire_due_timers();
          continue;
        }
        if (fd == listen_fd) {
          accept_all();
          continue;
        }
        if (static_cast<std::size_t>(fd) >= conns.size() || !conns[static_cast<std::size_t>(fd)])
          continue;
        Conn& c = *conns[static_cast<std::size_t>(fd)];
        if (ev.events & EPOLLOUT) {
          if (!flush(c)) continue;
        }
        if (ev.events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) on_readable(c);
      }
    }
  }
};

MockServer::MockServer(MockServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

MockServer::~MockServer() {
  stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

void MockServer::start() {
  impl_->bind_and_listen();
  impl_->thread = std::thread([this] { impl_->loop(); });
}

void MockServer::run() {
  impl_->bind_and_listen();
  impl_->loop();
}

void MockServer::stop() {
  impl_->stopping.store(true);
  if (impl_->stop_fd >= 0) {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(impl_->stop_fd, &one, sizeof one);
  }
}

std::uint16_t MockServer::port() const {
  return impl_->bound_port;
}

std::string MockServer::url() const {
  return fmt::format("http://{}:{}", impl_->options.host, impl_->bound_port);
}

std::vector<MockRecord> MockServer::records() const {
  std::lock_guard lock(impl_->records_mutex);
  return impl_->finished;
}

void MockServer::clear_records() {
  std::lock_guard lock(impl_->records_mutex);
  impl_->finished.clear();
}

MockServer::Stats MockServer::stats() const {
  Stats s;
  s.requests = impl_->requests.load();
  s.chunks = impl_->chunks.load();
  s.open_connections = impl_->open_connections.load();
  s.active_streams = impl_->active_streams.load();
  return s;
}

std::string unpaced_tcp_congestion() {
  for (const char* name : {"cubic", "reno"}) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return "";
    const bool ok = setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name,
                               static_cast<socklen_t>(std::strlen(name))) == 0;
    ::close(fd);
    if (ok) return name;
  }
  return "";
}

}  // namespace prism::harness
