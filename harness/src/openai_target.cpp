#include "prism/harness/openai_target.h"

#include <curl/curl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_set>

#include <fmt/core.h>

#include "prism/harness/clock.h"
#include "prism/harness/http1.h"
#include "prism/harness/receive_stamp.h"
#include "prism/harness/sse_parser.h"

namespace prism::harness {

using results::ErrorClass;

std::string synthetic_text(std::span<const std::int32_t> tokens) {
  std::string text;
  text.reserve(tokens.size() * 5);
  for (std::int32_t id : tokens) {
    // Base-20 consonant/vowel syllables: short, pronounceable, one BPE token
    // or two for most tokenizers, and the same ids always give the same text.
    static constexpr char kConsonants[] = "bdfgklmnprstvz";
    static constexpr char kVowels[] = "aeiou";
    auto v = static_cast<std::uint32_t>(id);
    if (!text.empty()) text.push_back(' ');
    do {
      text.push_back(kConsonants[v % 14]);
      v /= 14;
      text.push_back(kVowels[v % 5]);
      v /= 5;
    } while (v != 0);
  }
  return text;
}

std::string parse_openai_target_spec(const std::string& spec) {
  std::string url = spec;
  if (url.rfind("openai:", 0) == 0) url = url.substr(7);
  if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) {
    throw std::invalid_argument(fmt::format(
        "target '{}': expected openai:http://HOST:PORT or openai:https://HOST[/v1]", spec));
  }
  return url;
}

namespace {

void global_curl_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_ALL); });
}

std::string endpoint_base(std::string url) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  if (url.size() < 3 || url.compare(url.size() - 3, 3, "/v1") != 0) url += "/v1";
  return url;
}

// Prism's own client for plain http:// without a proxy (libcurl reads the
// proxy variables; this client does not) and without HTTP/2.
bool proxy_configured() {
  for (const char* name : {"http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"}) {
    const char* value = std::getenv(name);
    if (value != nullptr && *value != '\0') return true;
  }
  return false;
}

bool use_native_http(const OpenAiTargetOptions& o) {
  const bool plain = o.url.size() >= 7 && o.url.compare(0, 7, "http://") == 0;
  if (o.http_client == HttpClient::kCurl) return false;
  if (o.http_client == HttpClient::kNative) {
    if (!plain || o.http2) {
      throw std::invalid_argument(
          "http client 'native' speaks plain http:// HTTP/1.1 only; use 'curl' or 'auto' for " +
          o.url + (o.http2 ? " with HTTP/2" : ""));
    }
    return true;
  }
  return plain && !o.http2 && !proxy_configured() && !parse_http_url(endpoint_base(o.url)).userinfo;
}

const char* role_name(Role role) {
  switch (role) {
    case Role::kSystem:
      return "system";
    case Role::kAssistant:
      return "assistant";
    case Role::kUser:
      break;
  }
  return "user";
}

// The server's error message from an error body: {"error": {"message": ...}},
// {"message": ...}, {"detail": ...} or the raw text.
std::string error_message_from_body(const std::string& body) {
  const auto doc = nlohmann::json::parse(body, nullptr, false);
  if (!doc.is_discarded() && doc.is_object()) {
    if (doc.contains("error")) {
      const auto& e = doc["error"];
      if (e.is_object() && e.contains("message") && e["message"].is_string()) {
        return e["message"].get<std::string>();
      }
      if (e.is_string()) return e.get<std::string>();
    }
    for (const char* key : {"message", "detail"}) {
      if (doc.contains(key) && doc[key].is_string()) return doc[key].get<std::string>();
    }
  }
  std::string text = body.substr(0, 512);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return text;
}

}  // namespace

// How a transfer ended on the wire; complete() turns it, with the status and
// what the stream said, into done or an error of its class.
struct Outcome {
  bool ok = true;  // the response arrived whole
  ErrorClass error_class = ErrorClass::kOther;
  std::string message;
};

// Prism's own client: where a request is on its connection.
enum class Phase : std::uint8_t { kConnecting, kSending, kReceiving };

struct Transfer {
  void* impl = nullptr;  // the owning OpenAiTarget::Impl
  CURL* easy = nullptr;  // libcurl only
  curl_slist* header_list = nullptr;
  TargetRequest request;  // prompt kept until the status is known: a 400 may resend it as text
  std::string body;
  bool token_ids = false;
  SseParser parser;
  long status = 0;
  bool first_token = false;
  bool done_marker = false;
  Usage usage;
  std::uint32_t usage_tokens_seen = 0;  // continuous usage: completion tokens accounted so far
  ErrorClass pending_error = ErrorClass::kNone;
  std::string pending_message;
  std::string error_body;
  std::size_t received = 0;
  std::int64_t last_arrival_ns = 0;  // stamp of the last bytes received
  int fd = -1;                       // its socket (libcurl: as curl last registered it)
  bool released_request = false;     // body and prompt freed once the status was 200
  std::uint64_t epoch = 0;           // cancel_all() generation it belongs to
  // Prism's own client.
  Phase phase = Phase::kConnecting;
  bool reused = false;   // sent on a kept-alive connection
  bool retried = false;  // resent once on a fresh connection after a stale kept-alive one
  std::size_t addresses_tried = 0;       // of this connection attempt
  std::size_t address = 0;               // the one being tried
  std::string head;                      // request head, kept with the body until the status is 200
  std::size_t sent = 0;                  // bytes of head + body written
  bool request_written = false;          // all of it: only then may the connection carry another
  std::int64_t deadline_ns = 0;          // whole request
  std::int64_t connect_deadline_ns = 0;  // while connecting
  Http1ResponseParser http;
};

struct OpenAiTarget::Impl {
  OpenAiTargetOptions options;
  std::string base;
  ResponseSink* sink = nullptr;
  CURLM* multi = nullptr;
  int epoll_fd = -1;
  int wake_fd = -1;
  int timer_fd = -1;
  std::thread io;
  std::atomic<bool> quit{false};
  bool timeout_due = false;
  std::int64_t batch_ns = 0;  // when epoll last reported readiness
  // The socket curl is serving an epoll event of, and the stamp of its bytes.
  int stamped_fd = -1;
  std::int64_t stamped_ns = 0;
  bool stamped_by_kernel = false;
  std::int64_t peek_ns = 0;
  ReceiveStamper stamper;  // the peek, and which bytes read after it its stamp covers
  std::int64_t realtime_minus_monotonic_ns = 0;  // kernel stamps are CLOCK_REALTIME
  std::atomic<std::uint64_t> kernel_stamps{0};
  std::atomic<std::uint64_t> epoll_stamps{0};
  std::atomic<std::uint64_t> read_stamps{0};
  std::atomic<bool> io_thread_pinned{false};
  std::atomic<pid_t> io_tid{0};
  std::atomic<bool> io_thread_realtime{false};
  std::atomic<std::int64_t> longest_round_ns{0};  // one epoll round's work, the longest

  // Prism's own HTTP/1.1 client (native): one read buffer for every socket,
  // the sockets' owners by fd, kept-alive connections waiting for a request.
  bool native = false;
  HttpUrl origin;
  std::vector<std::pair<std::string, std::string>> default_headers;
  // Every address the host resolved to, tried in order until one accepts
  // (localhost may be ::1 first while the server listens on 127.0.0.1 only);
  // the one that last accepted is tried first.
  struct Address {
    sockaddr_storage storage{};
    socklen_t length = 0;
  };
  std::vector<Address> addresses;
  std::size_t preferred_address = 0;
  // Per fd, bumped whenever a native socket is closed: an event queued for a
  // closed socket whose number a new socket took in the same epoll batch
  // carries the old generation and is dropped.
  std::vector<std::uint32_t> fd_generation;
  std::string resolve_error;  // the host did not resolve: every request is a connect error
  int native_timer_fd = -1;   // the earliest request or connect deadline
  std::int64_t native_timer_due = std::numeric_limits<std::int64_t>::max();
  std::vector<Transfer*> fd_owner;  // by fd: the request a native socket carries
  std::vector<int> idle_connections;
  static constexpr std::size_t kMaxIdleConnections = 4096;
  static constexpr std::size_t kReadBufferBytes = 65536;
  std::unique_ptr<char[]> read_buffer;
  std::atomic<std::uint64_t> connections{0};
  std::atomic<std::uint64_t> reused_connections{0};

  std::mutex mutex;
  std::condition_variable cancelled_cv;
  // Encoded on the submitting thread, so that building a long prompt's body
  // never delays the I/O thread's timestamps of other streams.
  struct Submission {
    TargetRequest request;
    Wire wire;
    std::string encode_error;  // the body could not be built (e.g. an id outside the vocabulary)
  };
  std::deque<Submission> submitted;
  std::uint64_t cancel_requested = 0;  // generations, guarded by mutex
  std::uint64_t cancel_done = 0;

  std::unordered_set<Transfer*> active;
  std::vector<Transfer*> pool;
  std::atomic<bool> token_ids_refused{false};
  bool token_ids_accepted =
      false;  // a token-id prompt got 200: a later 400 is about something else
  std::atomic<std::uint64_t> chunks{0};
  std::atomic<std::uint64_t> bytes{0};
  std::atomic<std::uint64_t> in_flight{0};

  explicit Impl(OpenAiTargetOptions o)
      : options(std::move(o)), base(endpoint_base(options.url)), native(use_native_http(options)) {
    if (!options.detokenize) options.detokenize = synthetic_text;
    if (options.api_key.find_first_of("\r\n") != std::string::npos) {
      throw std::invalid_argument("API key: CR or LF inside it");
    }
    if (native) {
      origin = parse_http_url(base);
      default_headers = {{"Content-Type", "application/json"}, {"Accept", "text/event-stream"}};
      if (!options.api_key.empty()) {
        default_headers.emplace_back("Authorization", "Bearer " + options.api_key);
      }
      // A bad header line is the caller's error now, not every request's later.
      http1_request_head("/", origin.authority, default_headers, options.headers, 0);
    }
  }

  // ---- wire format -------------------------------------------------------
  bool use_chat(const TargetRequest& r) const {
    if (options.api == ApiKind::kChat) return true;
    if (options.api == ApiKind::kCompletions) return false;
    if (r.turn > 0) return true;
    for (const auto& m : r.messages) {
      if (m.role == Role::kAssistant) return true;
    }
    return false;
  }

  std::string message_text(const Message& m) const {
    return m.has_tokens() ? options.detokenize(m.tokens) : m.text;
  }

  Wire encode(const TargetRequest& r, bool allow_token_ids) const {
    Wire wire;
    wire.chat = use_chat(r);
    bool splice_ids = false;  // the token ids are written into the body after dump()
    nlohmann::json body = nlohmann::json::object();
    body["model"] = options.model;
    if (wire.chat) {
      wire.url = base + "/chat/completions";
      auto messages = nlohmann::json::array();
      for (const auto& m : r.messages) {
        messages.push_back({{"role", role_name(m.role)}, {"content", message_text(m)}});
      }
      body["messages"] = std::move(messages);
    } else {
      wire.url = base + "/completions";
      bool all_tokens = true;
      for (const auto& m : r.messages) all_tokens = all_tokens && m.has_tokens();
      wire.token_ids = allow_token_ids && all_tokens &&
                       options.prompt_format != PromptFormat::kText &&
                       !(options.prompt_format == PromptFormat::kAuto && token_ids_refused.load());
      const bool prompt_in_extra =
          options.extra_body.is_object() && options.extra_body.contains("prompt");
      if (wire.token_ids && !prompt_in_extra) {
        splice_ids = true;
      } else {
        std::string text;
        for (const auto& m : r.messages) {
          if (!text.empty()) text.push_back('\n');
          text += message_text(m);
        }
        body["prompt"] = std::move(text);
      }
    }
    body["max_tokens"] = r.max_output_tokens;
    body["stream"] = true;
    if (options.include_usage || options.continuous_usage_stats) {
      body["stream_options"] = {{"include_usage", true}};
      if (options.continuous_usage_stats) body["stream_options"]["continuous_usage_stats"] = true;
    }
    if (options.send_ignore_eos && r.ignore_eos) {
      body["ignore_eos"] = true;
      body["min_tokens"] = r.max_output_tokens;
    }
    if (options.extra_body.is_object()) {
      for (const auto& [key, value] : options.extra_body.items()) body[key] = value;
    }
    // Replies and detokenized prompts may hold invalid UTF-8 (a byte-level
    // BPE token can be half a character): replace it rather than throw.
    wire.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (splice_ids) splice_token_ids(wire.body, r.messages);
    return wire;
  }

  // A 128K-token prompt is a JSON array of 128K numbers: written straight
  // from the messages with to_chars into the dumped body rather than built
  // as a json array of 128K nodes, so a long context is cheap to encode.
  static void splice_token_ids(std::string& body, const std::vector<Message>& messages) {
    std::size_t count = 0;
    for (const auto& m : messages) count += m.tokens.size();
    std::string prompt = "\"prompt\":[";
    prompt.reserve(prompt.size() + count * 7 + 2);
    char digits[16];
    bool first = true;
    for (const auto& m : messages) {
      for (std::int32_t id : m.tokens) {
        if (!first) prompt.push_back(',');
        first = false;
        const auto r = std::to_chars(digits, digits + sizeof digits, id);
        prompt.append(digits, r.ptr);
      }
    }
    prompt += body.size() > 2 ? "]," : "]";
    body.insert(1, prompt);  // after the opening brace
  }

  // ---- I/O thread ----------------------------------------------------------
  void open() {
    global_curl_init();
    multi = curl_multi_init();
    epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (multi == nullptr || epoll_fd < 0 || wake_fd < 0 || timer_fd < 0) {
      throw std::runtime_error(
          "openai target: cannot create curl multi, epoll, eventfd or timerfd");
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = wake_fd;
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, wake_fd, &ev);
    ev.data.fd = timer_fd;
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, timer_fd, &ev);
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, &Impl::on_socket);
    curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, &Impl::on_timer);
    curl_multi_setopt(multi, CURLMOPT_TIMERDATA, this);
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, 4096L);
    if (options.http2) curl_multi_setopt(multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    if (native) {
      open_native();
    } else if (!options.resolve.empty()) {
      // host:port:addr[,addr...], IPv6 addresses in brackets.
      std::string entry;
      for (const auto& address : options.resolve) {
        entry += entry.empty() ? "" : ",";
        entry += address.find(':') != std::string::npos && address.front() != '['
                     ? "[" + address + "]"
                     : address;
      }
      const auto host = curl_url_host_port();
      curl_resolve = curl_slist_append(
          nullptr, fmt::format("{}:{}:{}", host.first, host.second, entry).c_str());
    }
  }

  // The URL's host (without IPv6 brackets) and port, as libcurl resolves them.
  std::pair<std::string, long> curl_url_host_port() const {
    std::pair<std::string, long> out{"", 0};
    CURLU* u = curl_url();
    if (u != nullptr && curl_url_set(u, CURLUPART_URL, options.url.c_str(), 0) == CURLUE_OK) {
      char* host = nullptr;
      char* port = nullptr;
      if (curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        out.first = host;
        if (out.first.size() > 2 && out.first.front() == '[') {
          out.first = out.first.substr(1, out.first.size() - 2);
        }
      }
      if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
        out.second = std::strtol(port, nullptr, 10);
      }
      curl_free(host);
      curl_free(port);
    }
    curl_url_cleanup(u);
    return out;
  }

  void open_native() {
    native_timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (native_timer_fd < 0) throw std::runtime_error("openai target: cannot create a timerfd");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = native_timer_fd;
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, native_timer_fd, &ev);
    read_buffer.reset(new char[kReadBufferBytes]);
    // Resolved once, here: a run talks to one server (libcurl caches it a minute).
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    const std::string port = std::to_string(origin.port);
    auto add = [&](const std::string& host) {
      addrinfo* found = nullptr;
      const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
      if (rc != 0 || found == nullptr) {
        resolve_error = fmt::format("cannot resolve host '{}': {}", host, gai_strerror(rc));
      } else {
        for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
          Address address;
          std::memcpy(&address.storage, a->ai_addr, a->ai_addrlen);
          address.length = a->ai_addrlen;
          addresses.push_back(address);
        }
      }
      if (found != nullptr) freeaddrinfo(found);
    };
    if (options.resolve.empty()) {
      add(origin.host);
    } else {
      hints.ai_flags |= AI_NUMERICHOST;  // addresses, never names
      for (const auto& address : options.resolve) add(address);
    }
  }

  curl_slist* curl_resolve = nullptr;  // CURLOPT_RESOLVE for options.resolve

  void close_all() {
    for (Transfer* t : pool) {
      curl_easy_cleanup(t->easy);
      delete t;
    }
    pool.clear();
    if (multi != nullptr) curl_multi_cleanup(multi);
    if (curl_resolve != nullptr) curl_slist_free_all(curl_resolve);
    curl_resolve = nullptr;
    for (int fd : idle_connections) ::close(fd);
    idle_connections.clear();
    for (int fd : {epoll_fd, wake_fd, timer_fd, native_timer_fd}) {
      if (fd >= 0) ::close(fd);
    }
    multi = nullptr;
  }

  void wake() {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(wake_fd, &one, sizeof one);
  }

  static int on_socket(CURL* easy, curl_socket_t s, int what, void* userp, void* socketp) {
    auto* self = static_cast<Impl*>(userp);
    Transfer* t = nullptr;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &t);
    // The socket this transfer reads (HTTP/1: its own; HTTP/2: the shared one).
    if (t != nullptr) t->fd = what != CURL_POLL_REMOVE ? s : (t->fd == s ? -1 : t->fd);
    epoll_event ev{};
    ev.data.fd = s;
    if (what == CURL_POLL_REMOVE) {
      // Curl closes it next, and its number may come back as another socket
      // in the same call: neither it nor its stamp may be used again.
      if (s == self->stamped_fd) self->stamped_fd = -1;
      self->stamper.forget(s);
      if (socketp != nullptr) {
        epoll_ctl(self->epoll_fd, EPOLL_CTL_DEL, s, nullptr);
        curl_multi_assign(self->multi, s, nullptr);
      }
      return 0;
    }
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0u) | (what & CURL_POLL_OUT ? EPOLLOUT : 0u);
    if (socketp == nullptr) {
      epoll_ctl(self->epoll_fd, EPOLL_CTL_ADD, s, &ev);
      curl_multi_assign(self->multi, s, self);  // any non-null marker: "registered"
    } else {
      epoll_ctl(self->epoll_fd, EPOLL_CTL_MOD, s, &ev);
    }
    return 0;
  }

  static int on_timer(CURLM*, long timeout_ms, void* userp) {
    auto* self = static_cast<Impl*>(userp);
    itimerspec spec{};
    if (timeout_ms == 0) {
      self->timeout_due = true;  // socket_action may not be called from here
    } else if (timeout_ms > 0) {
      spec.it_value.tv_sec = timeout_ms / 1000;
      spec.it_value.tv_nsec = (timeout_ms % 1000) * 1'000'000;
    }
    timerfd_settime(self->timer_fd, 0, &spec, nullptr);  // zero spec disarms
    return 0;
  }

  static int on_sockopt(void*, curl_socket_t fd, curlsocktype purpose) {
    if (purpose == CURLSOCKTYPE_IPCXN) ReceiveStamper::enable(fd);  // best effort
    return CURL_SOCKOPT_OK;
  }

  // Peeks `fd` and sets the stamp of the bytes waiting there: when they
  // reached the TCP stack, on the monotonic clock. The peek walks every
  // waiting segment and the kernel reports the last one's stamp, so when
  // several chunks of one stream wait, the older ones are stamped late, never
  // early; bytes that come after the peek are not covered by it (arrival_of).
  // Without a kernel stamp (none given, or nothing waited): the time just
  // after the peek, which no covered byte can follow. Not epoll's return: the
  // socket's bytes may have come while this batch was being served. A kernel
  // stamp is never later than that, and a wild one (the two clocks stepped
  // apart) is not used.
  void stamp_waiting_bytes(int fd) {
    const auto peek = stamper.peek(fd);
    peek_ns = monotonic_ns();
    stamped_by_kernel = false;
    stamped_ns = peek_ns;
    if (peek.realtime_ns < 0) return;
    const std::int64_t stamp = peek.realtime_ns - realtime_minus_monotonic_ns;
    // The two clocks are read a few ns apart: a stamp a hair after now is now.
    if (stamp <= peek_ns + 1000 && stamp > peek_ns - std::int64_t{60'000'000'000}) {
      stamped_by_kernel = true;
      stamped_ns = std::min(stamp, peek_ns);
    }
  }

  // The arrival stamp of the bytes curl hands over for transfer t now. While
  // curl serves its socket's epoll event, bytes it read that were waiting at
  // the peek carry the stamp taken there (kernel, else the peek's time); one
  // read can give several callbacks (one per HTTP chunk, headers first).
  // Bytes that arrived after the peek (curl reads again in the same call, or
  // serves timers of other transfers for milliseconds and reads this socket
  // there) are stamped now, when curl hands them over: late, never early. The
  // socket's byte counters tell which is which (ReceiveStamper::covers).
  // User-space stamps (kernel_rx_timestamps off) keep the old rule: epoll's
  // return, for bytes handed over within kStampWindowNs of the event.
  static constexpr std::int64_t kStampWindowNs = 50'000;
  std::int64_t arrival_of(const Transfer& t) {
    if (t.fd >= 0 && t.fd == stamped_fd) {
      const bool covered = options.kernel_rx_timestamps ? stamper.covers(t.fd)
                                                        : monotonic_ns() - peek_ns < kStampWindowNs;
      if (covered) {
        (stamped_by_kernel ? kernel_stamps : epoll_stamps).fetch_add(1, std::memory_order_relaxed);
        return stamped_ns;
      }
      stamped_fd = -1;
    }
    read_stamps.fetch_add(1, std::memory_order_relaxed);
    return monotonic_ns();
  }

  // Response headers: once the status is 200 the request body and prompt are
  // no longer needed (no resend as text, no retry by curl): an open stream
  // keeps only what it receives.
  static size_t on_header(char*, size_t size, size_t count, void* userp) {
    auto* t = static_cast<Transfer*>(userp);
    auto* self = static_cast<Impl*>(t->impl);
    if (!t->released_request) {
      long status = 0;
      curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
      if (status == 200) self->release_request(*t);
    }
    return size * count;
  }

  void release_request(Transfer& t) {
    t.released_request = true;
    std::string().swap(t.body);
    std::string().swap(t.head);
    std::vector<Message>().swap(t.request.messages);
  }

  static int on_prereq(void* clientp, char*, char*, int, int) {
    auto* t = static_cast<Transfer*>(clientp);
    static_cast<Impl*>(t->impl)->sink->on_sent(t->request.id, monotonic_ns());
    return CURL_PREREQFUNC_OK;
  }

  static size_t on_write(char* data, size_t size, size_t count, void* userp) {
    auto* t = static_cast<Transfer*>(userp);
    auto* self = static_cast<Impl*>(t->impl);
    if (t->status == 0) curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->status);
    return self->receive(*t, std::string_view(data, size * count), self->arrival_of(*t))
               ? size * count
               : 0;
  }

  // Body bytes of t's response that arrived at `now`. Returns false to abort
  // the transfer (its error class is already set).
  bool receive(Transfer& t, std::string_view bytes_in, std::int64_t now) {
    t.last_arrival_ns = now;
    t.received += bytes_in.size();
    bytes.fetch_add(bytes_in.size(), std::memory_order_relaxed);
    if (t.received > options.max_response_bytes) {
      t.pending_error = ErrorClass::kOversized;
      t.pending_message = fmt::format("response exceeded {} bytes", options.max_response_bytes);
      return false;
    }
    if (t.status == 200 && t.token_ids) token_ids_accepted = true;
    if (t.status != 200) {
      const std::size_t room = options.max_error_body_bytes -
                               std::min(options.max_error_body_bytes, t.error_body.size());
      t.error_body.append(bytes_in.substr(0, room));
      return true;
    }
    const auto status =
        t.parser.feed(bytes_in, [&](std::string_view data) { return on_event(t, data, now); });
    if (status == SseParser::Status::kOversized) {
      t.pending_error = ErrorClass::kOversized;
      t.pending_message = fmt::format("an SSE event exceeded {} bytes", options.max_event_bytes);
      return false;
    }
    return status == SseParser::Status::kOk;
  }

  bool on_event(Transfer& t, std::string_view data, std::int64_t now) {
    chunks.fetch_add(1, std::memory_order_relaxed);
    if (data == "[DONE]") {
      t.done_marker = true;
      return true;
    }
    if (t.done_marker) return true;  // trailing noise after [DONE] is harmless
    const auto doc = nlohmann::json::parse(data, nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) {
      t.pending_error = ErrorClass::kMalformedSse;
      t.pending_message =
          fmt::format("SSE data is not a JSON object: '{}'", std::string(data.substr(0, 80)));
      return false;
    }
    if (auto e = doc.find("error"); e != doc.end() && !e->is_null()) {
      t.pending_error = ErrorClass::kOther;
      t.pending_message = "error event in stream: " + error_message_from_body(std::string(data));
      return false;
    }
    std::uint32_t usage_delta = 0;
    bool usage_counts = false;
    if (auto u = doc.find("usage"); u != doc.end() && u->is_object()) {
      t.usage.reported = true;
      t.usage.prompt_tokens = u->value("prompt_tokens", 0u);
      t.usage.completion_tokens = u->value("completion_tokens", 0u);
      if (auto d = u->find("prompt_tokens_details"); d != u->end() && d->is_object()) {
        const auto c = d->find("cached_tokens");
        if (c != d->end() && c->is_number_unsigned())
          t.usage.cached_tokens = c->get<std::uint32_t>();
      }
      if (options.continuous_usage_stats && t.usage.completion_tokens >= t.usage_tokens_seen) {
        usage_delta = t.usage.completion_tokens - t.usage_tokens_seen;
        t.usage_tokens_seen = t.usage.completion_tokens;
        usage_counts = true;
      }
    }
    std::string_view text;
    const auto choices = doc.find("choices");
    if (choices != doc.end() && choices->is_array() && !choices->empty()) {
      const auto& c = (*choices)[0];
      const nlohmann::json* field = nullptr;
      if (auto d = c.find("delta"); d != c.end() && d->is_object()) {
        if (auto x = d->find("content");
            x != d->end() && x->is_string() && !x->get_ref<const std::string&>().empty()) {
          field = &*x;
        } else if (auto r = d->find("reasoning_content"); r != d->end() && r->is_string()) {
          field = &*r;
        }
      } else if (auto x = c.find("text"); x != c.end() && x->is_string()) {
        field = &*x;
      }
      if (field != nullptr) text = field->get_ref<const std::string&>();
    }
    std::uint32_t tokens = 0;
    bool exact = false;
    if (usage_counts) {
      tokens = usage_delta;
      exact = true;
    } else if (!text.empty()) {
      if (options.count_tokens) {
        tokens = options.count_tokens(text);
        exact = true;
      } else {
        tokens = 1;
      }
    }
    if (tokens == 0 && text.empty()) return true;
    if (!t.first_token) {
      t.first_token = true;
      sink->on_first_token(t.request.id, now, tokens, exact, text);
    } else {
      sink->on_tokens(t.request.id, now, tokens, exact, text);
    }
    return true;
  }

  // ---- Prism's own HTTP/1.1 client -----------------------------------------
  // epoll data: the fd in the low 32 bits, what it is in the high ones (0:
  // the wake, timer and libcurl sockets).
  static constexpr std::uint64_t kNativeActive = 1;
  static constexpr std::uint64_t kNativeIdle = 2;

  // epoll data of a native socket: fd (bits 0-31), kind (32-39), the fd's
  // generation (40-63).
  void watch(int fd, std::uint64_t kind, std::uint32_t events, bool add) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = (std::uint64_t{generation_of(fd) & 0xffffffu} << 40) | (kind << 32) |
                  static_cast<std::uint32_t>(fd);
    epoll_ctl(epoll_fd, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev);
  }

  std::uint32_t& generation_of(int fd) {
    if (fd_generation.size() <= static_cast<std::size_t>(fd)) {
      fd_generation.resize(static_cast<std::size_t>(fd) + 1, 0);
    }
    return fd_generation[static_cast<std::size_t>(fd)];
  }

  void close_native_socket(int fd) {
    epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, nullptr);
    ++generation_of(fd);
    ::close(fd);
  }

  // A queued event of a socket closed since (its number maybe taken again).
  bool stale(std::uint64_t data) {
    const int fd = static_cast<int>(data & 0xffffffffu);
    return static_cast<std::uint32_t>(data >> 40) != (generation_of(fd) & 0xffffffu);
  }

  void own(int fd, Transfer* t) {
    if (fd_owner.size() <= static_cast<std::size_t>(fd)) {
      fd_owner.resize(static_cast<std::size_t>(fd) + 1, nullptr);
    }
    fd_owner[static_cast<std::size_t>(fd)] = t;
    t->fd = fd;
  }

  // The transfer lets go of its socket: kept for the next request when the
  // response ended cleanly on a kept-alive connection, else closed.
  void drop_connection(Transfer* t, bool keep) {
    const int fd = t->fd;
    if (fd < 0) return;
    fd_owner[static_cast<std::size_t>(fd)] = nullptr;
    t->fd = -1;
    if (keep && idle_connections.size() < kMaxIdleConnections) {
      // Watched while idle: a server that closes it is noticed and it is closed here.
      watch(fd, kNativeIdle, EPOLLIN | EPOLLRDHUP, false);
      idle_connections.push_back(fd);
      return;
    }
    close_native_socket(fd);
  }

  void on_idle_event(int fd) {
    // Nothing is due on an idle connection: data or a close both end it.
    const auto it = std::find(idle_connections.begin(), idle_connections.end(), fd);
    if (it == idle_connections.end()) return;
    idle_connections.erase(it);
    close_native_socket(fd);
  }

  void arm_native_timer(std::int64_t due) {
    if (due >= native_timer_due) return;
    native_timer_due = due;
    itimerspec spec{};
    spec.it_value.tv_sec = due / 1'000'000'000;
    spec.it_value.tv_nsec = due % 1'000'000'000;
    if (spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0) spec.it_value.tv_nsec = 1;
    timerfd_settime(native_timer_fd, TFD_TIMER_ABSTIME, &spec, nullptr);
  }

  void launch_native(Transfer* t, const std::string& url) {
    const std::int64_t now = monotonic_ns();
    t->deadline_ns = now + s_to_ns(options.request_timeout_s);
    t->http = Http1ResponseParser();
    auto headers = default_headers;
    headers.emplace_back("X-Request-Id", fmt::format("prism-{}", t->request.id));
    t->head = http1_request_head(parse_http_url(url).path, origin.authority, headers,
                                 options.headers, t->body.size());
    active.insert(t);
    in_flight.fetch_add(1, std::memory_order_relaxed);
    arm_native_timer(t->deadline_ns);
    connect_native(t, now);
  }

  // Puts t on a kept-alive connection, or opens one.
  void connect_native(Transfer* t, std::int64_t now) {
    t->sent = 0;
    t->request_written = false;
    t->http = Http1ResponseParser();
    if (!idle_connections.empty() && !t->retried) {
      const int fd = idle_connections.back();
      idle_connections.pop_back();
      own(fd, t);
      t->reused = true;
      reused_connections.fetch_add(1, std::memory_order_relaxed);
      watch(fd, kNativeActive, EPOLLIN | EPOLLOUT | EPOLLRDHUP, false);
      start_sending(t);
      return;
    }
    t->reused = false;
    if (!resolve_error.empty()) {
      fail_native(t, ErrorClass::kConnect, resolve_error);
      return;
    }
    t->addresses_tried = 0;
    t->address = preferred_address;
    connect_address(t, now);
  }

  // Opens a socket to t's current address; a refusal moves on to the next.
  void connect_address(Transfer* t, std::int64_t now) {
    const Address& address = addresses[t->address];
    ++t->addresses_tried;
    const int fd =
        ::socket(address.storage.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {  // e.g. no IPv6 here: the next address
      connect_failed(t, errno, now);
      return;
    }
    connections.fetch_add(1, std::memory_order_relaxed);
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (options.kernel_rx_timestamps) ReceiveStamper::enable(fd);
    own(fd, t);
    watch(fd, kNativeActive, EPOLLIN | EPOLLOUT | EPOLLRDHUP, true);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&address.storage), address.length) == 0) {
      connected(t);
      return;
    }
    if (errno != EINPROGRESS) {
      connect_failed(t, errno, now);
      return;
    }
    t->phase = Phase::kConnecting;
    t->connect_deadline_ns = now + s_to_ns(options.connect_timeout_s);
    arm_native_timer(t->connect_deadline_ns);
  }

  void connected(Transfer* t) {
    preferred_address = t->address;
    start_sending(t);
  }

  // This address refused (or did not answer in time): the next one, else the error.
  void connect_failed(Transfer* t, int error, std::int64_t now) {
    if (t->addresses_tried < addresses.size()) {
      drop_connection(t, false);
      t->address = (t->address + 1) % addresses.size();
      connect_address(t, now);
      return;
    }
    // As with libcurl, a connect timeout is a timeout.
    fail_native(t, error == ETIMEDOUT ? ErrorClass::kTimeout : ErrorClass::kConnect,
                error == ETIMEDOUT ? fmt::format("no connection to {} within {} s",
                                                 origin.authority, options.connect_timeout_s)
                                   : connect_message(error));
  }

  std::string connect_message(int error) const {
    return fmt::format("cannot connect to {}: {}", origin.authority, std::strerror(error));
  }

  void start_sending(Transfer* t) {
    t->phase = Phase::kSending;
    sink->on_sent(t->request.id, monotonic_ns());
    send_more(t);
  }

  // Writes what the socket takes; false when the request ended (an error).
  bool send_more(Transfer* t) {
    const std::size_t total = t->head.size() + t->body.size();
    while (t->sent < total) {
      iovec iov[2];
      int count = 0;
      if (t->sent < t->head.size()) {
        iov[count++] = {t->head.data() + t->sent, t->head.size() - t->sent};
        iov[count++] = {t->body.data(), t->body.size()};
      } else {
        const std::size_t at = t->sent - t->head.size();
        iov[count++] = {t->body.data() + at, t->body.size() - at};
      }
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = static_cast<std::size_t>(count);
      const ssize_t n = ::sendmsg(t->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return true;  // EPOLLOUT resumes it
        const int error = errno;
        // The server may have answered (413, 400) and closed before taking
        // the whole body: what it said is the outcome, as with libcurl.
        if (read_native(t)) return false;
        if (t->http.bytes_seen() > 0) {
          // Its answer has begun: stop writing and read the rest of it.
          t->phase = Phase::kReceiving;
          watch(t->fd, kNativeActive, EPOLLIN | EPOLLRDHUP, false);
          return false;
        }
        if (retry_on_fresh_connection(t)) return false;
        fail_native(t, ErrorClass::kConnect,
                    fmt::format("cannot send the request: {}", std::strerror(error)));
        return false;
      }
      t->sent += static_cast<std::size_t>(n);
    }
    t->phase = Phase::kReceiving;
    t->request_written = true;
    watch(t->fd, kNativeActive, EPOLLIN | EPOLLRDHUP, false);
    if (t->status == 200) release_request(*t);  // the 200 came while it was being sent
    return true;
  }

  // A kept-alive connection the server had closed (or closes as the request
  // goes out) fails before any response byte: the request is sent again on
  // a new connection, once, as libcurl does. True when it was.
  bool retry_on_fresh_connection(Transfer* t) {
    if (!t->reused || t->retried || t->http.bytes_seen() > 0) return false;
    drop_connection(t, false);
    t->retried = true;
    connect_native(t, monotonic_ns());
    return true;
  }

  void fail_native(Transfer* t, ErrorClass error_class, std::string message) {
    drop_connection(t, false);
    complete(t, Outcome{false, error_class, std::move(message)});
  }

  void on_native_event(Transfer* t, std::uint32_t ev) {
    if (t->phase == Phase::kConnecting) {
      if ((ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) return;
      int error = 0;
      socklen_t length = sizeof error;
      if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) error = errno;
      if (error != 0) {
        connect_failed(t, error, monotonic_ns());
        return;
      }
      connected(t);
      if (t->fd < 0) return;  // ended while sending
    } else if (t->phase == Phase::kSending && (ev & EPOLLOUT) != 0) {
      if (!send_more(t)) return;
    }
    if ((ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) read_native(t);
  }

  // The stamp of bytes a recvmsg() just returned: the kernel's for the
  // newest segment read (never after `read_ns`), else `read_ns`.
  std::int64_t stamp_of_read(msghdr& msg, std::int64_t read_ns) {
    if (!options.kernel_rx_timestamps) {
      epoll_stamps.fetch_add(1, std::memory_order_relaxed);
      return read_ns;
    }
    const std::int64_t realtime = receive_stamp_of(msg);
    if (realtime >= 0) {
      const std::int64_t stamp = realtime - realtime_minus_monotonic_ns;
      if (stamp <= read_ns + 1000 && stamp > read_ns - std::int64_t{60'000'000'000}) {
        kernel_stamps.fetch_add(1, std::memory_order_relaxed);
        return std::min(stamp, read_ns);
      }
    }
    read_stamps.fetch_add(1, std::memory_order_relaxed);
    return read_ns;
  }

  // Reads what waits on t's socket; true when the request ended or was resent.
  // At most kReadsPerEvent full buffers: a stream the server writes as fast
  // as it can must not keep the thread from every other socket and from new
  // requests (level-triggered epoll reports the rest again).
  static constexpr int kReadsPerEvent = 4;
  bool read_native(Transfer* t) {
    for (int reads = 0; reads < kReadsPerEvent; ++reads) {
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(timespec))];
      iovec iov{read_buffer.get(), kReadBufferBytes};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      const ssize_t n = ::recvmsg(t->fd, &msg, MSG_DONTWAIT);
      const std::int64_t read_ns = monotonic_ns();
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
        end_of_stream(t, fmt::format("receive failed: {}", std::strerror(errno)));
        return true;
      }
      if (n == 0) {
        end_of_stream(t, {});
        return true;
      }
      const std::int64_t stamp = stamp_of_read(msg, read_ns);
      std::string_view input(read_buffer.get(), static_cast<std::size_t>(n));
      if (!parse_native(t, input, stamp)) return true;                   // the request ended
      if (static_cast<std::size_t>(n) < kReadBufferBytes) return false;  // drained
    }
    return false;
  }

  // Feeds what was read to the response parser and the stream; false when
  // the request ended.
  bool parse_native(Transfer* t, std::string_view input, std::int64_t stamp) {
    while (true) {
      std::string_view body;
      switch (t->http.next(input, body)) {
        case Http1ResponseParser::Event::kNeedMore:
          return true;
        case Http1ResponseParser::Event::kHead:
          t->status = t->http.status();
          // Not while the request is still going out: it is written from there.
          if (t->status == 200 && t->phase == Phase::kReceiving) release_request(*t);
          break;
        case Http1ResponseParser::Event::kBody:
          if (!receive(*t, body, stamp)) {  // the stream refused it (its error is set)
            drop_connection(t, false);
            complete(t, Outcome{});
            return false;
          }
          break;
        case Http1ResponseParser::Event::kDone: {
          // Reused only when the whole request went out and nothing follows.
          const bool keep = t->http.keep_alive() && input.empty() && t->request_written;
          drop_connection(t, keep);
          complete(t, Outcome{});
          return false;
        }
        case Http1ResponseParser::Event::kError:
          if (t->http.failure() == Http1ResponseParser::Failure::kOversizedHead) {
            fail_native(t, ErrorClass::kOversized, t->http.error());
          } else {
            fail_native(t, ErrorClass::kOther, "malformed HTTP response: " + t->http.error());
          }
          return false;
      }
    }
  }

  // The server closed the connection (error: a reset or other receive error).
  void end_of_stream(Transfer* t, std::string error) {
    if (retry_on_fresh_connection(t)) return;
    const auto event = t->http.at_eof();
    if (event == Http1ResponseParser::Event::kDone && error.empty()) {
      drop_connection(t, false);
      complete(t, Outcome{});
      return;
    }
    std::string message = error.empty() ? t->http.error() : error;
    // As with libcurl: closed while the request was still going out, with
    // no answer, the request could not be sent (connect); a cut before or
    // inside a 200 response is a cut stream; inside an error response it is
    // that status.
    ErrorClass error_class =
        t->status == 0 || t->status == 200 ? ErrorClass::kStreamCut : ErrorClass::kHttpStatus;
    if (t->phase == Phase::kSending && t->http.bytes_seen() == 0) {
      error_class = ErrorClass::kConnect;
      message = "the server closed the connection while the request was sent: " + message;
    }
    fail_native(t, error_class, std::move(message));
  }

  void on_native_timer() {
    std::uint64_t expirations;
    [[maybe_unused]] const auto r = ::read(native_timer_fd, &expirations, sizeof expirations);
    native_timer_due = std::numeric_limits<std::int64_t>::max();
    const std::int64_t now = monotonic_ns();
    std::int64_t next = std::numeric_limits<std::int64_t>::max();
    std::vector<Transfer*> expired;
    for (Transfer* t : active) {
      const std::int64_t due = t->phase == Phase::kConnecting
                                   ? std::min(t->deadline_ns, t->connect_deadline_ns)
                                   : t->deadline_ns;
      if (due <= now) {
        expired.push_back(t);
      } else {
        next = std::min(next, due);
      }
    }
    for (Transfer* t : expired) {
      if (t->phase == Phase::kConnecting && t->connect_deadline_ns <= now && t->deadline_ns > now) {
        connect_failed(t, ETIMEDOUT, now);  // the next address, else a timeout
      } else {
        fail_native(t, ErrorClass::kTimeout,
                    fmt::format("no complete response within {} s", options.request_timeout_s));
      }
    }
    if (next != std::numeric_limits<std::int64_t>::max()) arm_native_timer(next);
  }

  Transfer* acquire() {
    Transfer* t;
    if (!pool.empty()) {
      t = pool.back();
      pool.pop_back();
      if (t->easy != nullptr) curl_easy_reset(t->easy);
    } else {
      t = new Transfer;
      t->impl = this;
      if (!native) t->easy = curl_easy_init();
    }
    return t;
  }

  void release(Transfer* t) {
    if (native) drop_connection(t, false);  // normally let go of already
    if (t->header_list != nullptr) curl_slist_free_all(t->header_list);
    CURL* easy = t->easy;
    *t = Transfer{};
    t->impl = this;
    t->easy = easy;
    pool.push_back(t);
  }

  void launch(TargetRequest request, Wire wire) {
    Transfer* t = acquire();
    t->parser = SseParser(options.max_event_bytes);
    t->request = std::move(request);
    t->body = std::move(wire.body);
    t->token_ids = wire.token_ids;
    t->epoch = cancel_done;
    if (native) {
      launch_native(t, wire.url);
      return;
    }
    CURL* e = t->easy;
    curl_easy_setopt(e, CURLOPT_URL, wire.url.c_str());
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->body.data());
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(t->body.size()));
    t->header_list = curl_slist_append(t->header_list, "Content-Type: application/json");
    t->header_list = curl_slist_append(t->header_list, "Accept: text/event-stream");
    t->header_list = curl_slist_append(t->header_list, "Expect:");
    t->header_list = curl_slist_append(
        t->header_list, fmt::format("X-Request-Id: prism-{}", t->request.id).c_str());
    if (!options.api_key.empty()) {
      t->header_list =
          curl_slist_append(t->header_list, ("Authorization: Bearer " + options.api_key).c_str());
    }
    for (const auto& h : options.headers)
      t->header_list = curl_slist_append(t->header_list, h.c_str());
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->header_list);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &Impl::on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &Impl::on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, &Impl::on_prereq);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, t);
    curl_easy_setopt(e, CURLOPT_PRIVATE, t);
    if (curl_resolve != nullptr) curl_easy_setopt(e, CURLOPT_RESOLVE, curl_resolve);
    if (options.kernel_rx_timestamps) {
      curl_easy_setopt(e, CURLOPT_SOCKOPTFUNCTION, &Impl::on_sockopt);
    }
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, options.receive_buffer_bytes);
    // A long prompt is uploaded through this buffer: curl's minimum, not its 64 KB default.
    curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(options.request_timeout_s * 1000));
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(options.connect_timeout_s * 1000));
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, options.verify_tls ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, options.verify_tls ? 2L : 0L);
    if (!options.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, options.ca_file.c_str());
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                     options.http2 ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_1_1);
    active.insert(t);
    in_flight.fetch_add(1, std::memory_order_relaxed);
    curl_multi_add_handle(multi, e);
  }

  // libcurl's end of a transfer, as an outcome.
  void finish(Transfer* t, CURLcode code) {
    curl_multi_remove_handle(multi, t->easy);
    if (t->status == 0) curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->status);
    Outcome outcome;
    if (code != CURLE_OK) {
      outcome.ok = false;
      switch (code) {
        case CURLE_OPERATION_TIMEDOUT:
          outcome.error_class = ErrorClass::kTimeout;
          break;
        case CURLE_COULDNT_CONNECT:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
          outcome.error_class = ErrorClass::kConnect;
          break;
        case CURLE_PARTIAL_FILE:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_HTTP2_STREAM:
        case CURLE_HTTP2:
          outcome.error_class =
              t->status == 0 || t->status == 200 ? ErrorClass::kStreamCut : ErrorClass::kHttpStatus;
          break;
        case CURLE_SEND_ERROR:
          outcome.error_class = t->status == 0 ? ErrorClass::kConnect : ErrorClass::kStreamCut;
          break;
        default:
          outcome.error_class = ErrorClass::kOther;
          break;
      }
      outcome.message =
          code == CURLE_OPERATION_TIMEDOUT
              ? fmt::format("no complete response within {} s", options.request_timeout_s)
              : curl_easy_strerror(code);
    }
    complete(t, std::move(outcome));
  }

  // The end of a transfer (its connection already let go): done, resent as
  // text, or an error of its class.
  void complete(Transfer* t, Outcome outcome) {
    active.erase(t);
    in_flight.fetch_sub(1, std::memory_order_relaxed);
    const std::int64_t now = batch_ns;
    TargetError error;
    error.http_status = static_cast<int>(t->status);
    if (t->pending_error != ErrorClass::kNone) {
      error.error_class = t->pending_error;
      error.message = t->pending_message;
    } else if (outcome.ok) {
      if (t->status != 200) {
        if (t->token_ids && options.prompt_format == PromptFormat::kAuto &&
            (t->status == 400 || t->status == 422) && !token_ids_accepted) {
          // The server refuses token-id prompts: from now on send text, and
          // resend this request as text (its schedule time is unchanged).
          token_ids_refused.store(true);
          Wire wire;
          try {
            wire = encode(t->request, true);
          } catch (const std::exception& e) {
            error.error_class = ErrorClass::kOther;
            error.message = fmt::format("cannot resend the prompt as text: {}", e.what());
            sink->on_error(t->request.id, now, t->usage, error);
            release(t);
            return;
          }
          TargetRequest again = std::move(t->request);
          release(t);
          launch(std::move(again), std::move(wire));
          return;
        }
        error.error_class = ErrorClass::kHttpStatus;
        error.message =
            fmt::format("HTTP {}: {}", t->status, error_message_from_body(t->error_body));
      } else if (!t->done_marker) {
        error.error_class = ErrorClass::kStreamCut;
        error.message = t->parser.has_partial_event()
                            ? "stream ended inside an event, before [DONE]"
                            : "stream ended before [DONE]";
      } else {
        // Done when the bytes that ended it ([DONE], the last chunk) arrived.
        sink->on_done(t->request.id, t->last_arrival_ns > 0 ? t->last_arrival_ns : now, t->usage);
        release(t);
        return;
      }
    } else {
      error.error_class = outcome.error_class;
      error.message = std::move(outcome.message);
    }
    sink->on_error(t->request.id, now, t->usage, error);
    release(t);
  }

  void cancel_active() {
    const std::int64_t now = monotonic_ns();
    std::vector<Transfer*> victims(active.begin(), active.end());
    for (Transfer* t : victims) {
      if (native) {
        drop_connection(t, false);
      } else {
        curl_multi_remove_handle(multi, t->easy);
      }
      active.erase(t);
      in_flight.fetch_sub(1, std::memory_order_relaxed);
      TargetError error;
      error.cancelled = true;
      error.error_class = ErrorClass::kOther;
      error.message = "cancelled";
      error.http_status = static_cast<int>(t->status);
      sink->on_error(t->request.id, now, t->usage, error);
      release(t);
    }
  }

  void drain_done() {
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      Transfer* t = nullptr;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &t);
      const CURLcode code = msg->data.result;
      finish(t, code);
    }
  }

  void take_submissions() {
    std::deque<Submission> batch;
    bool cancel = false;
    std::uint64_t generation = 0;
    {
      std::lock_guard lock(mutex);
      batch.swap(submitted);
      cancel = cancel_requested > cancel_done;
      generation = cancel_requested;
    }
    if (cancel) {
      cancel_active();
      {
        std::lock_guard lock(mutex);
        cancel_done = generation;
      }
      cancelled_cv.notify_all();
    }
    for (auto& s : batch) {
      if (!s.encode_error.empty()) {
        TargetError error;
        error.error_class = ErrorClass::kOther;
        error.message = "cannot build the request body: " + s.encode_error;
        sink->on_error(s.request.id, monotonic_ns(), Usage{}, error);
        continue;
      }
      launch(std::move(s.request), std::move(s.wire));
    }
  }

  void loop() {
    io_tid.store(static_cast<pid_t>(::gettid()));
    minimize_timer_slack();
    io_thread_pinned.store(pin_current_thread_to_cpu(options.io_cpu));
    io_thread_realtime.store(make_current_thread_realtime(options.io_realtime_priority));
    std::vector<epoll_event> events(512);
    int running = 0;
    while (!quit.load(std::memory_order_relaxed)) {
      const int n = epoll_wait(epoll_fd, events.data(), static_cast<int>(events.size()),
                               timeout_due || options.io_busy_poll ? 0 : 200);
      batch_ns = monotonic_ns();
      if (options.kernel_rx_timestamps && n > 0) {
        realtime_minus_monotonic_ns = prism::harness::realtime_minus_monotonic_ns();
      }
      if (timeout_due) {
        timeout_due = false;
        curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
      }
      for (int i = 0; i < n; ++i) {
        const std::uint64_t data = events[static_cast<std::size_t>(i)].data.u64;
        const int fd = static_cast<int>(data & 0xffffffffu);
        const std::uint32_t ev = events[static_cast<std::size_t>(i)].events;
        const std::uint64_t kind = (data >> 32) & 0xffu;
        if (kind == kNativeActive) {
          // Events of a socket closed earlier in this batch are stale.
          Transfer* t = static_cast<std::size_t>(fd) < fd_owner.size()
                            ? fd_owner[static_cast<std::size_t>(fd)]
                            : nullptr;
          if (t != nullptr && !stale(data)) on_native_event(t, ev);
        } else if (kind == kNativeIdle) {
          if (!stale(data)) on_idle_event(fd);
        } else if (fd == native_timer_fd) {
          on_native_timer();
        } else if (fd == wake_fd) {
          std::uint64_t value;
          [[maybe_unused]] const auto r = ::read(wake_fd, &value, sizeof value);
          take_submissions();
        } else if (fd == timer_fd) {
          std::uint64_t expirations;
          [[maybe_unused]] const auto r = ::read(timer_fd, &expirations, sizeof expirations);
          curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
        } else {
          int flags = 0;
          if (ev & (EPOLLIN | EPOLLHUP | EPOLLRDHUP)) flags |= CURL_CSELECT_IN;
          if (ev & EPOLLOUT) flags |= CURL_CSELECT_OUT;
          if (ev & EPOLLERR) flags |= CURL_CSELECT_ERR;
          stamped_fd = fd;
          if (options.kernel_rx_timestamps) {
            // No EPOLLIN, no peek: whatever curl reads is stamped when handed over.
            if (ev & EPOLLIN) {
              stamp_waiting_bytes(fd);
              if (options.between_peek_and_read) options.between_peek_and_read(fd);
            } else {
              stamped_fd = -1;
            }
          } else {
            peek_ns = monotonic_ns();
            stamped_by_kernel = false;
            stamped_ns = batch_ns;  // the user-space stamp: when epoll returned
          }
          curl_multi_socket_action(multi, fd, flags, &running);
          stamped_fd = -1;
        }
        drain_done();
      }
      drain_done();
      if (n > 0) {
        const std::int64_t round = monotonic_ns() - batch_ns;
        if (round > longest_round_ns.load(std::memory_order_relaxed)) {
          longest_round_ns.store(round, std::memory_order_relaxed);
        }
      }
    }
    cancel_active();
    {
      std::lock_guard lock(mutex);
      cancel_done = cancel_requested;
      // Requests submitted but never launched still owe the sink an answer.
      for (const auto& s : submitted) {
        TargetError error;
        error.cancelled = true;
        error.message = "cancelled: target shut down";
        sink->on_error(s.request.id, monotonic_ns(), Usage{}, error);
      }
      submitted.clear();
    }
    cancelled_cv.notify_all();
  }
};

OpenAiTarget::OpenAiTarget(OpenAiTargetOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

OpenAiTarget::~OpenAiTarget() {
  if (impl_->io.joinable()) {
    impl_->quit.store(true);
    impl_->wake();
    impl_->io.join();
  }
  impl_->close_all();
}

void OpenAiTarget::start(ResponseSink& sink) {
  if (impl_->io.joinable()) throw std::logic_error("OpenAiTarget::start called twice");
  impl_->sink = &sink;
  raise_open_file_limit();
  impl_->open();
  impl_->io = std::thread([this] { impl_->loop(); });
}

void OpenAiTarget::submit(TargetRequest request) {
  if (!impl_->io.joinable()) throw std::logic_error("OpenAiTarget::submit before start");
  Impl::Submission s;
  try {
    s.wire = impl_->encode(request, true);
  } catch (const std::exception& e) {
    s.encode_error = e.what();
  }
  s.request = std::move(request);
  {
    std::lock_guard lock(impl_->mutex);
    impl_->submitted.push_back(std::move(s));
  }
  impl_->wake();
}

void OpenAiTarget::cancel_all() {
  if (!impl_->io.joinable()) return;
  std::unique_lock lock(impl_->mutex);
  const std::uint64_t generation = ++impl_->cancel_requested;
  // Requests not yet launched are cancelled too: move them to the I/O thread
  // first so that every one ends through the same path.
  lock.unlock();
  impl_->wake();
  lock.lock();
  impl_->cancelled_cv.wait(lock, [&] { return impl_->cancel_done >= generation; });
}

nlohmann::json OpenAiTarget::description() const {
  const auto& o = impl_->options;
  const char* api = o.api == ApiKind::kChat          ? "chat"
                    : o.api == ApiKind::kCompletions ? "completions"
                                                     : "auto";
  const char* prompt = o.prompt_format == PromptFormat::kText       ? "text"
                       : o.prompt_format == PromptFormat::kTokenIds ? "token_ids"
                                                                    : "auto";
  nlohmann::json d = {{"kind", "openai"},
                      {"url", o.url},
                      {"model", o.model},
                      {"api", api},
                      {"prompt_format", prompt},
                      {"ignore_eos", o.send_ignore_eos},
                      {"continuous_usage_stats", o.continuous_usage_stats},
                      {"http2", o.http2},
                      {"http_client", impl_->native ? "prism" : "libcurl"},
                      {"token_ids_refused", impl_->token_ids_refused.load()},
                      {"arrival_stamps", o.kernel_rx_timestamps ? "kernel" : "epoll"}};
  // Whether --io-cpu took effect: a run file should not claim an isolation it did not have.
  if (o.io_cpu >= 0) {
    d["io_cpu"] = o.io_cpu;
    d["io_thread_pinned"] = impl_->io_thread_pinned.load();
  }
  if (o.io_busy_poll) d["io_busy_poll"] = true;
  if (o.io_realtime_priority > 0) {
    d["io_realtime_priority"] = o.io_realtime_priority;
    d["io_thread_realtime"] = impl_->io_thread_realtime.load();
  }
  return d;
}

OpenAiTarget::Wire OpenAiTarget::encode(const TargetRequest& request) const {
  return impl_->encode(request, true);
}

bool OpenAiTarget::native_http() const {
  return impl_->native;
}

OpenAiTarget::Stats OpenAiTarget::stats() const {
  Stats s;
  s.chunks = impl_->chunks.load();
  s.bytes = impl_->bytes.load();
  s.in_flight = impl_->in_flight.load();
  s.token_ids_refused = impl_->token_ids_refused.load();
  s.kernel_stamps = impl_->kernel_stamps.load();
  s.epoll_stamps = impl_->epoll_stamps.load();
  s.read_stamps = impl_->read_stamps.load();
  s.io_thread_pinned = impl_->io_thread_pinned.load();
  s.io_thread_realtime = impl_->io_thread_realtime.load();
  s.longest_round_s = ns_to_s(impl_->longest_round_ns.load());
  s.connections = impl_->connections.load();
  s.reused = impl_->reused_connections.load();
  if (const pid_t tid = impl_->io_tid.load(); tid > 0) {
    std::ifstream status(fmt::format("/proc/self/task/{}/status", tid));
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("nonvoluntary_ctxt_switches:", 0) == 0) {
        s.io_thread_preemptions = std::stoll(line.substr(27));
      }
    }
  }
  if (impl_->io.joinable()) {
    clockid_t clock;
    timespec ts{};
    if (pthread_getcpuclockid(impl_->io.native_handle(), &clock) == 0 &&
        clock_gettime(clock, &ts) == 0) {
      s.io_thread_cpu_s = static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
    }
  }
  return s;
}

}  // namespace prism::harness
