// The HTTP/1.1 pieces of the OpenAI target's own client (plain http://):
// the URL, the request head, and an incremental response parser.
//
// Why a client of our own: libcurl keeps about 12 KB of heap per transfer
// (its easy handle, connection and buffers), which is most of an idle open
// stream's cost, and it reads the socket itself, so a receive stamp has to be
// taken with a peek beside it. This client reads every socket into one buffer
// shared by the I/O thread, so an idle stream costs its small state only,
// and each recvmsg() returns the kernel's receive stamp of exactly the bytes
// it read. TLS, HTTP/2 and proxies stay with libcurl.
//
// The parser is a pull parser: next() consumes input and returns one event
// (the head, a piece of decoded body, the end of the message), so the caller
// stamps and hands over each piece where it is, with no callbacks and no
// copy of the body. It accepts what RFC 9112 says a recipient must (chunked
// with extensions and trailers, Content-Length, a body delimited by the
// connection's close, 1xx interim responses, bare LF line ends) and refuses
// what it cannot frame safely (conflicting lengths, a bad chunk size,
// oversized headers) with a message naming what is wrong.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace prism::harness {

struct HttpUrl {
  std::string host;  // without brackets for an IPv6 literal
  std::uint16_t port = 80;
  std::string authority;  // the Host header's value: host[:port] as written
  std::string path;       // "/..." (at least "/")
  bool userinfo = false;  // user:password@ present (left to libcurl)
};

// Parses http://host[:port][/path] (a #fragment is dropped); throws
// std::invalid_argument naming what is wrong, also for a space or control
// character anywhere in it. Not https: TLS is libcurl's.
HttpUrl parse_http_url(std::string_view url);

// The request head for a POST with a body of `content_length` bytes. Default
// headers come first; a user header ("Name: value") replaces a default of the
// same name (case-insensitive), "Name:" with no value removes it, "Host: x"
// replaces the URL's authority, and repeated user names are all sent, as with
// libcurl's CURLOPT_HTTPHEADER. Throws std::invalid_argument for a header
// line without a colon, with a CR/LF in it, or setting Content-Length or
// Transfer-Encoding (the client frames the body).
std::string http1_request_head(std::string_view path, std::string_view authority,
                               const std::vector<std::pair<std::string, std::string>>& defaults,
                               const std::vector<std::string>& user_headers,
                               std::size_t content_length);

class Http1ResponseParser {
 public:
  enum class Event {
    kNeedMore,  // every input byte consumed; feed more (or call at_eof)
    kHead,      // the final (non-1xx) response head was parsed: status() etc.
    kBody,      // `body` is the next piece of decoded body
    kDone,      // the message is complete; what is left in the input is not part of it
    kError,     // error() says why; the connection cannot be used again
  };
  enum class Failure { kNone, kMalformed, kOversizedHead, kCut };

  Http1ResponseParser() = default;
  explicit Http1ResponseParser(std::size_t max_head_bytes) : max_head_bytes_(max_head_bytes) {}

  // Consumes bytes from the front of `input` and returns the next event.
  Event next(std::string_view& input, std::string_view& body);
  // The connection was closed by the peer: kDone when the body runs to the
  // close, else kError (kCut: the message was not complete).
  Event at_eof();

  bool head_done() const { return state_ > State::kHead; }
  bool done() const { return state_ == State::kDone; }
  int status() const { return status_; }
  // The connection may carry another request once this message is done.
  bool keep_alive() const { return keep_alive_; }
  Failure failure() const { return failure_; }
  const std::string& error() const { return error_; }
  // Bytes received so far, head included (a stale keep-alive connection
  // closes before sending any).
  std::uint64_t bytes_seen() const { return bytes_seen_; }

 private:
  enum class State {
    kHead,
    kChunkSize,
    kChunkExtension,
    kChunkData,
    kChunkDataEnd,
    kTrailer,
    kLength,
    kUntilClose,
    kDone,
    kError,
  };
  Event fail(Failure failure, std::string message);
  Event parse_head(std::string_view head);
  // Up to remaining_ bytes of counted body (a chunk's data, a Content-Length body).
  std::string_view take_counted(std::string_view& input);

  std::size_t max_head_bytes_ = std::size_t{64} << 10;
  State state_ = State::kHead;
  std::string head_;            // the head's bytes until its blank line (freed after)
  std::size_t line_start_ = 0;  // head_: where the current line starts
  int status_ = 0;
  bool keep_alive_ = true;
  std::uint64_t remaining_ = 0;  // of the current chunk, or of a Content-Length body
  int size_digits_ = 0;
  std::size_t trailer_line_ = 0;   // bytes on the current trailer line (CR aside)
  std::size_t trailer_bytes_ = 0;  // all trailers, held to the head's limit
  std::uint64_t bytes_seen_ = 0;
  Failure failure_ = Failure::kNone;
  std::string error_;
};

}  // namespace prism::harness
