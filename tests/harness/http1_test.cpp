// Prism's own HTTP/1.1 client: the URL, the request head, the response
// parser (at every split of its input), and the client against a scripted
// raw server: keep-alive reuse, a stale kept-alive connection, framings, and
// responses it must refuse.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "harness_test_support.h"
#include "prism/harness/http1.h"
#include "prism/harness/load_generator.h"
#include "prism/harness/mock_server.h"
#include "prism/harness/openai_target.h"

using prism::harness::Http1ResponseParser;
using prism::harness::HttpClient;
using prism::harness::OpenAiTarget;
using prism::harness::OpenAiTargetOptions;
using prism::results::ErrorClass;
using prism::results::RequestStatus;
using Event = Http1ResponseParser::Event;

namespace {

struct Parsed {
  std::vector<Event> events;  // kHead, kDone, kError in order (kBody and kNeedMore left out)
  std::string body;
  int status = 0;
  bool keep_alive = false;
  std::size_t left = 0;  // input bytes after kDone
  std::string error;
  Http1ResponseParser::Failure failure = Http1ResponseParser::Failure::kNone;
};

// Feeds `response` in pieces cut at `cuts` (offsets), then EOF if `eof`.
Parsed parse(std::string_view response, const std::vector<std::size_t>& cuts, bool eof = false,
             std::size_t max_head = 64 << 10) {
  Http1ResponseParser p(max_head);
  Parsed out;
  std::size_t from = 0;
  auto pieces = cuts;
  pieces.push_back(response.size());
  bool ended = false;
  for (std::size_t to : pieces) {
    std::string_view input = response.substr(from, to - from);
    from = to;
    while (!ended) {
      std::string_view body;
      const Event e = p.next(input, body);
      if (e == Event::kNeedMore) break;
      if (e == Event::kBody) {
        out.body.append(body);
        continue;
      }
      out.events.push_back(e);
      if (e == Event::kDone || e == Event::kError) {
        ended = true;
        out.left = input.size() + (response.size() - from);
      }
    }
  }
  if (eof && !ended) out.events.push_back(p.at_eof());
  out.status = p.status();
  out.keep_alive = p.keep_alive();
  out.error = p.error();
  out.failure = p.failure();
  return out;
}

constexpr std::string_view kChunked =
    "HTTP/1.1 100 Continue\r\n\r\n"
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    "9;ext=\"a\"\r\ndata: 1\n\n\r\n"
    "A\ndata: 22\n\n\n"
    "0\r\nX-Trailer: t\r\n\r\n";

}  // namespace

TEST_CASE("An http URL gives host, port, authority and path, and a bad one is named") {
  auto u = prism::harness::parse_http_url("http://127.0.0.1:8000/v1");
  REQUIRE(u.host == "127.0.0.1");
  REQUIRE(u.port == 8000);
  REQUIRE(u.authority == "127.0.0.1:8000");
  REQUIRE(u.path == "/v1");
  u = prism::harness::parse_http_url("http://example.org");
  REQUIRE(u.port == 80);
  REQUIRE(u.path == "/");
  REQUIRE_FALSE(u.userinfo);
  u = prism::harness::parse_http_url("http://[::1]:9/x/y");
  REQUIRE(u.host == "::1");
  REQUIRE(u.port == 9);
  REQUIRE(u.authority == "[::1]:9");
  REQUIRE(u.path == "/x/y");
  REQUIRE(prism::harness::parse_http_url("http://user:pw@h:1/").userinfo);
  REQUIRE(prism::harness::parse_http_url("http://h:1/v1#frag").path == "/v1");
  for (const char* bad :
       {"https://h/v1", "http://", "http://h:0", "http://h:70000", "http://h:8x", "http://[::1",
        "http://:80/", "http://h:1/a b", "http://h:1/x\r\nEvil: 1"}) {
    INFO(bad);
    REQUIRE_THROWS_WITH(prism::harness::parse_http_url(bad), Catch::Contains(bad));
  }
}

TEST_CASE("The request head carries the defaults, user headers replace or remove them") {
  const std::vector<std::pair<std::string, std::string>> defaults = {
      {"Content-Type", "application/json"}, {"Accept", "text/event-stream"}};
  const auto head = prism::harness::http1_request_head(
      "/v1/completions", "h:8000", defaults,
      {"accept: application/x-ndjson", "X-Extra:  1 ", "Content-Type:"}, 42);
  REQUIRE(head ==
          "POST /v1/completions HTTP/1.1\r\nHost: h:8000\r\naccept: application/x-ndjson\r\n"
          "X-Extra: 1\r\nContent-Length: 42\r\n\r\n");
  // A user Host replaces the URL's (virtual hosts); repeated user names are all sent, the
  // first replacing the default.
  const auto own = prism::harness::http1_request_head(
      "/", "h", defaults, {"Host: other", "X-A: 1", "X-A: 2", "Accept: a", "Accept: b"}, 0);
  REQUIRE(own ==
          "POST / HTTP/1.1\r\nHost: other\r\nContent-Type: application/json\r\nAccept: a\r\n"
          "X-A: 1\r\nX-A: 2\r\nAccept: b\r\nContent-Length: 0\r\n\r\n");
  // The body's framing is the client's.
  for (const char* framing : {"Content-Length: 5", "transfer-encoding: chunked"}) {
    REQUIRE_THROWS_WITH(prism::harness::http1_request_head("/", "h", {}, {framing}, 0),
                        Catch::Contains("framing"));
  }
  REQUIRE_THROWS_WITH(prism::harness::http1_request_head("/", "h", {}, {"NoColon"}, 0),
                      Catch::Contains("NoColon"));
  REQUIRE_THROWS_WITH(prism::harness::http1_request_head("/", "h", {}, {"A: b\r\nEvil: 1"}, 0),
                      Catch::Contains("CR or LF"));
}

TEST_CASE("A chunked response parses the same at every split, with interim, extension, trailer") {
  for (std::size_t cut = 0; cut <= kChunked.size(); ++cut) {
    CAPTURE(cut);
    const auto p = parse(kChunked, {cut});
    REQUIRE(p.events == std::vector<Event>{Event::kHead, Event::kDone});
    REQUIRE(p.status == 200);
    REQUIRE(p.body == "data: 1\n\ndata: 22\n\n");
    REQUIRE(p.keep_alive);
    REQUIRE(p.left == 0);
  }
  // Byte by byte.
  std::vector<std::size_t> every;
  for (std::size_t i = 1; i < kChunked.size(); ++i) every.push_back(i);
  const auto p = parse(kChunked, every);
  REQUIRE(p.body == "data: 1\n\ndata: 22\n\n");
  REQUIRE(p.events.back() == Event::kDone);
}

TEST_CASE("Content-Length, close-delimited and bodiless responses end where they should") {
  SECTION("Content-Length: done at the last byte, what follows is left over") {
    const std::string r = "HTTP/1.1 400 Bad Request\nContent-Length: 5\n\nabcdeXYZ";
    for (std::size_t cut = 0; cut <= r.size(); ++cut) {
      CAPTURE(cut);
      const auto p = parse(r, {cut});
      REQUIRE(p.events == std::vector<Event>{Event::kHead, Event::kDone});
      REQUIRE(p.status == 400);
      REQUIRE(p.body == "abcde");
      REQUIRE(p.left == 3);
    }
  }
  SECTION("HTTP/1.0 without a length: the body runs to the close") {
    const auto p = parse("HTTP/1.0 200 OK\r\n\r\ndata: x\n\n", {}, true);
    REQUIRE(p.events == std::vector<Event>{Event::kHead, Event::kDone});
    REQUIRE(p.body == "data: x\n\n");
    REQUIRE_FALSE(p.keep_alive);
  }
  SECTION("Connection: close is not reused; HTTP/1.0 keep-alive is") {
    REQUIRE_FALSE(parse("HTTP/1.1 200 OK\r\nConnection: x, Close\r\nContent-Length: 0\r\n\r\n", {})
                      .keep_alive);
    REQUIRE(parse("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", {})
                .keep_alive);
  }
  SECTION("204 has no body") {
    const auto p = parse("HTTP/1.1 204 No Content\r\n\r\n", {});
    REQUIRE(p.events == std::vector<Event>{Event::kHead, Event::kDone});
    REQUIRE(p.body.empty());
  }
  SECTION("Transfer-Encoding wins over Content-Length, and the connection is not trusted after") {
    const auto p = parse(
        "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
        "2\r\nok\r\n0\r\n\r\n",
        {});
    REQUIRE(p.body == "ok");
    REQUIRE(p.events.back() == Event::kDone);
    REQUIRE_FALSE(p.keep_alive);
  }
}

TEST_CASE("Responses that cannot be framed are refused with what is wrong") {
  using Failure = Http1ResponseParser::Failure;
  struct Case {
    std::string response;
    bool eof;
    Failure failure;
    const char* says;
  };
  const std::vector<Case> cases = {
      {"hello\r\n\r\n", false, Failure::kMalformed, "not an HTTP/1.x status line"},
      {"HTTP/1.1 2x0 OK\r\n\r\n", false, Failure::kMalformed, "bad status code"},
      {"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", false, Failure::kMalformed, "without a name"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", false,
       Failure::kMalformed, "conflicting Content-Length"},
      {"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false, Failure::kMalformed,
       "bad Content-Length"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false, Failure::kMalformed,
       "bad chunk size"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n", false,
       Failure::kMalformed, "chunk size too large"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokX", false, Failure::kMalformed,
       "not followed by CRLF"},
      {"HTTP/1.1 101 Switching Protocols\r\n\r\n", false, Failure::kMalformed, "101"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", true, Failure::kCut,
       "before the body's end"},
      {"HTTP/1.1 200 OK\r\nContent-Len", true, Failure::kCut, "inside the headers"},
      {"", true, Failure::kCut, "without a response"},
  };
  for (const auto& c : cases) {
    INFO(c.response);
    const auto p = parse(c.response, {}, c.eof);
    REQUIRE_FALSE(p.events.empty());
    REQUIRE(p.events.back() == Event::kError);
    REQUIRE(p.failure == c.failure);
    REQUIRE_THAT(p.error, Catch::Contains(c.says));
  }
  // Headers past the limit: refused, not buffered without bound.
  const std::string big = "HTTP/1.1 200 OK\r\nX: " + std::string(5000, 'a') + "\r\n\r\n";
  const auto p = parse(big, {100, 2000}, false, 4096);
  REQUIRE(p.failure == Failure::kOversizedHead);
  REQUIRE_THAT(p.error, Catch::Contains("4096"));
}

namespace {

// What the raw server answers a request with; no bytes: it closes the
// connection without answering.
struct Answer {
  Answer(std::string b, bool close = false) : bytes(std::move(b)), close_after(close) {}
  std::string bytes;
  bool close_after = false;  // close the connection once the answer is written
};

// A raw HTTP server driven by a handler: for connection c's request r it
// returns the answer. Keeps every request head it read.
class RawHttpServer {
 public:
  using Handler = std::function<Answer(int connection, int request)>;
  // answer_before_body: answers as soon as the head is read and closes
  // without reading the body (a server refusing an upload, 413).
  explicit RawHttpServer(Handler handler, bool answer_before_body = false)
      : handler_(std::move(handler)), answer_before_body_(answer_before_body) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(listener_, 16) == 0);
    socklen_t len = sizeof addr;
    getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~RawHttpServer() {
    ::shutdown(listener_, SHUT_RDWR);
    ::close(listener_);
    acceptor_.join();
    for (auto& t : connections_) t.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<std::string> heads() {
    std::lock_guard lock(mutex_);
    return heads_;
  }
  int accepted() const { return accepted_.load(); }

 private:
  void accept_loop() {
    while (true) {
      const int fd = ::accept(listener_, nullptr, nullptr);
      if (fd < 0) return;
      const int index = accepted_.fetch_add(1);
      connections_.emplace_back([this, fd, index] { serve(fd, index); });
    }
  }
  void serve(int fd, int connection) {
    std::string buffer;
    char chunk[4096];
    for (int request = 0;; ++request) {
      std::size_t end;
      while ((end = buffer.find("\r\n\r\n")) == std::string::npos) {
        const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0) {
          ::close(fd);
          return;
        }
        buffer.append(chunk, static_cast<std::size_t>(n));
      }
      const std::string head = buffer.substr(0, end + 4);
      std::size_t length = 0;
      if (const auto at = head.find("Content-Length: "); at != std::string::npos) {
        length = std::stoul(head.substr(at + 16));
      }
      if (answer_before_body_) {
        {
          std::lock_guard lock(mutex_);
          heads_.push_back(head);
        }
        const Answer answer = handler_(connection, request);
        [[maybe_unused]] const auto n =
            ::send(fd, answer.bytes.data(), answer.bytes.size(), MSG_NOSIGNAL);
        ::close(fd);
        return;
      }
      while (buffer.size() < end + 4 + length) {
        const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0) {
          ::close(fd);
          return;
        }
        buffer.append(chunk, static_cast<std::size_t>(n));
      }
      buffer.erase(0, end + 4 + length);
      {
        std::lock_guard lock(mutex_);
        heads_.push_back(head);
      }
      const Answer answer = handler_(connection, request);
      // Written in small pieces, so the client sees the framing cut anywhere.
      for (std::size_t at = 0; at < answer.bytes.size(); at += 7) {
        const auto piece = answer.bytes.substr(at, 7);
        if (::send(fd, piece.data(), piece.size(), MSG_NOSIGNAL) < 0) break;
      }
      if (answer.bytes.empty() || answer.close_after) {
        ::close(fd);
        return;
      }
    }
  }

  Handler handler_;
  bool answer_before_body_ = false;
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::thread acceptor_;
  std::vector<std::thread> connections_;  // only the acceptor adds, joined after it ends
  std::atomic<int> accepted_{0};
  std::mutex mutex_;
  std::vector<std::string> heads_;
};

std::string sse_events(int tokens) {
  std::string body;
  for (int i = 0; i < tokens; ++i) {
    body += "data: {\"choices\":[{\"index\":0,\"text\":\"t" + std::to_string(i) + "\"}]}\n\n";
  }
  body += "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":" +
          std::to_string(tokens) + "}}\n\ndata: [DONE]\n\n";
  return body;
}

std::string chunked_sse(int tokens) {
  const std::string body = sse_events(tokens);
  char size[32];
  std::snprintf(size, sizeof size, "%zx", body.size());
  return std::string(
             "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
             "Transfer-Encoding: chunked\r\n\r\n") +
         size + ";x=1\r\n" + body + "\r\n0\r\n\r\n";
}

prism::harness::LoadResult run_native(const std::string& url, std::size_t requests,
                                      std::uint32_t concurrency, OpenAiTarget::Stats* stats,
                                      std::vector<std::string> headers = {},
                                      std::vector<std::string> resolve = {},
                                      HttpClient client = HttpClient::kNative,
                                      std::size_t prompt = 8) {
  OpenAiTargetOptions o;
  o.url = url;
  o.model = "m";
  o.request_timeout_s = 5;
  o.http_client = client;
  o.api_key = "k";
  o.headers = std::move(headers);
  o.resolve = std::move(resolve);
  OpenAiTarget target(o);
  prism::harness::LoadOptions load;
  load.concurrency = concurrency;
  auto result = prism::harness::run_load(prism::test::open_loop_workload(requests, 0.0, 3, prompt),
                                         target, load);
  if (stats != nullptr) *stats = target.stats();
  return result;
}

}  // namespace

TEST_CASE("Prism's client keeps connections alive and reuses them, one request at a time") {
  RawHttpServer server([](int, int) { return chunked_sse(3); });
  OpenAiTarget::Stats stats;
  const auto result = run_native(server.url(), 5, 1, &stats);
  REQUIRE(result.observations.size() == 5);
  for (const auto& o : result.observations) {
    REQUIRE(o.status == RequestStatus::kOk);
    REQUIRE(o.completion_tokens == 3);
    REQUIRE(o.token_times_s.size() == 3);
  }
  REQUIRE(stats.connections == 1);
  REQUIRE(stats.reused == 4);
  REQUIRE(server.accepted() == 1);
  // What went on the wire: the head the target builds, with the key and the request id.
  const auto heads = server.heads();
  REQUIRE(heads.size() == 5);
  REQUIRE_THAT(heads[0], Catch::StartsWith("POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:"));
  REQUIRE_THAT(heads[0], Catch::Contains("\r\nAuthorization: Bearer k\r\n"));
  REQUIRE_THAT(heads[0], Catch::Contains("\r\nAccept: text/event-stream\r\n"));
  REQUIRE_THAT(heads[0], Catch::Contains("\r\nX-Request-Id: prism-"));
}

TEST_CASE("A kept-alive connection the server drops is retried once on a new one, not an error") {
  // Connection 0 answers its first request, then closes on the second
  // without answering: the client resends that request on a new connection.
  RawHttpServer server([](int connection, int request) {
    return connection == 0 && request == 1 ? Answer("") : Answer(chunked_sse(2));
  });
  OpenAiTarget::Stats stats;
  const auto result = run_native(server.url(), 3, 1, &stats);
  REQUIRE(result.observations.size() == 3);
  for (const auto& o : result.observations) REQUIRE(o.status == RequestStatus::kOk);
  REQUIRE(stats.connections == 2);
  REQUIRE(server.heads().size() == 4);  // one request was sent twice
}

TEST_CASE("A fresh connection closed without a response is a stream cut, not retried") {
  RawHttpServer server([](int, int) { return Answer(""); });
  OpenAiTarget::Stats stats;
  const auto result = run_native(server.url(), 2, 1, &stats);
  REQUIRE(result.observations.size() == 2);
  for (const auto& o : result.observations) {
    REQUIRE(o.error == ErrorClass::kStreamCut);
    REQUIRE_THAT(o.error_message, Catch::Contains("without a response"));
  }
  REQUIRE(server.heads().size() == 2);
}

TEST_CASE("Prism's client takes Content-Length and close-delimited bodies, refuses bad framing") {
  SECTION("Content-Length") {
    RawHttpServer server([](int, int) {
      const auto body = sse_events(3);
      return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
             body;
    });
    OpenAiTarget::Stats stats;
    const auto result = run_native(server.url(), 3, 1, &stats);
    for (const auto& o : result.observations) REQUIRE(o.completion_tokens == 3);
    REQUIRE(stats.connections == 1);
  }
  SECTION("HTTP/1.0, the body ends at the close: a new connection per request") {
    RawHttpServer server(
        [](int, int) { return Answer("HTTP/1.0 200 OK\r\n\r\n" + sse_events(3), true); });
    OpenAiTarget::Stats stats;
    const auto result = run_native(server.url(), 3, 1, &stats);
    for (const auto& o : result.observations) {
      REQUIRE(o.status == RequestStatus::kOk);
      REQUIRE(o.completion_tokens == 3);
    }
    REQUIRE(stats.connections == 3);
    REQUIRE(stats.reused == 0);
  }
  SECTION("an error status with a Content-Length body keeps the connection") {
    RawHttpServer server([](int, int) {
      const std::string body = R"({"error":{"message":"no such model"}})";
      return "HTTP/1.1 404 Not Found\r\nContent-Length: " + std::to_string(body.size()) +
             "\r\n\r\n" + body;
    });
    OpenAiTarget::Stats stats;
    const auto result = run_native(server.url(), 2, 1, &stats);
    for (const auto& o : result.observations) {
      REQUIRE(o.error == ErrorClass::kHttpStatus);
      REQUIRE(o.http_status == 404);
      REQUIRE_THAT(o.error_message, Catch::Contains("no such model"));
    }
    REQUIRE(stats.connections == 1);
  }
  SECTION("a reply that is not HTTP") {
    RawHttpServer server([](int, int) { return Answer("SSH-2.0-OpenSSH\r\n\r\n"); });
    const auto result = run_native(server.url(), 1, 1, nullptr);
    REQUIRE(result.observations.at(0).error == ErrorClass::kOther);
    REQUIRE_THAT(result.observations.at(0).error_message,
                 Catch::Contains("malformed HTTP response"));
  }
  SECTION("headers without end") {
    RawHttpServer server([](int, int) {
      return "HTTP/1.1 200 OK\r\nX-Big: " + std::string(100 << 10, 'a') + "\r\n\r\n";
    });
    const auto result = run_native(server.url(), 1, 1, nullptr);
    REQUIRE(result.observations.at(0).error == ErrorClass::kOversized);
  }
}

TEST_CASE("Prism's own client is refused where it cannot speak, and chosen where it can") {
  // auto leaves a proxied run to libcurl: clear the proxy variables (restored after).
  std::vector<std::pair<std::string, std::string>> saved;
  for (const char* name : {"http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"}) {
    if (const char* v = std::getenv(name)) saved.emplace_back(name, v);
    ::unsetenv(name);
  }
  struct Restore {
    std::vector<std::pair<std::string, std::string>>& saved;
    ~Restore() {
      for (const auto& [name, value] : saved) ::setenv(name.c_str(), value.c_str(), 1);
    }
  } restore{saved};
  OpenAiTargetOptions o;
  o.model = "m";
  o.url = "https://example.org";
  o.http_client = HttpClient::kNative;
  REQUIRE_THROWS_WITH(OpenAiTarget(o), Catch::Contains("plain http://"));
  o.http_client = HttpClient::kAuto;
  REQUIRE_FALSE(OpenAiTarget(o).native_http());
  o.url = "http://127.0.0.1:1";
  REQUIRE(OpenAiTarget(o).native_http());
  o.http_client = HttpClient::kCurl;
  REQUIRE_FALSE(OpenAiTarget(o).native_http());
  o.http_client = HttpClient::kNative;
  o.headers = {"broken header"};
  REQUIRE_THROWS_WITH(OpenAiTarget(o), Catch::Contains("broken header"));
  o.headers.clear();
  o.api_key = "k\r\nEvil: 1";
  REQUIRE_THROWS_WITH(OpenAiTarget(o), Catch::Contains("API key"));
  o.api_key.clear();
  ::setenv("http_proxy", "http://proxy.invalid:3128", 1);
  o.http_client = HttpClient::kAuto;
  REQUIRE_FALSE(OpenAiTarget(o).native_http());
  ::unsetenv("http_proxy");
}

TEST_CASE("Addresses are tried in order until one accepts, and the one that did is kept") {
  // 127.0.0.2 is loopback too, but nothing listens there: refused, then 127.0.0.1.
  RawHttpServer server([](int, int) { return Answer(chunked_sse(2), true); });
  const auto client = GENERATE(HttpClient::kNative, HttpClient::kCurl);
  INFO((client == HttpClient::kCurl ? "libcurl" : "prism's client"));
  OpenAiTarget::Stats stats;
  const auto result =
      run_native(server.url(), 3, 1, &stats, {}, {"127.0.0.2", "127.0.0.1"}, client);
  REQUIRE(result.observations.size() == 3);
  for (const auto& o : result.observations) REQUIRE(o.status == RequestStatus::kOk);
  if (client == HttpClient::kNative) {
    REQUIRE(stats.connections == 4);  // one refused, then one per request (the server closes)
  }
  const auto refused = run_native(server.url(), 1, 1, nullptr, {}, {"127.0.0.2"}, client);
  REQUIRE(refused.observations.at(0).error == ErrorClass::kConnect);
}

TEST_CASE(
    "A server that refuses an upload before reading it is heard: its status, not a send error") {
  // About 20 MB of prompt, more than the loopback socket buffers hold: the
  // server answers 413 after the head and closes, the client's send fails.
  const std::string body = R"({"error":{"message":"prompt too large"}})";
  RawHttpServer server(
      [&](int, int) {
        return Answer("HTTP/1.1 413 Payload Too Large\r\nContent-Length: " +
                      std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
      },
      true);
  const auto result =
      run_native(server.url(), 1, 1, nullptr, {}, {}, HttpClient::kNative, 6'000'000);
  const auto& o = result.observations.at(0);
  INFO(o.error_message);
  REQUIRE(o.error == ErrorClass::kHttpStatus);
  REQUIRE(o.http_status == 413);
  REQUIRE_THAT(o.error_message, Catch::Contains("prompt too large"));
}
