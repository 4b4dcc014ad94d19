#include "prism/harness/http1.h"

#include <algorithm>
#include <charconv>
#include <stdexcept>

#include <fmt/core.h>

namespace prism::harness {

namespace {

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// True when the comma-separated list holds `token` (case-insensitive).
bool has_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    const std::size_t comma = list.find(',');
    if (iequals(trim(list.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

// The last element of a comma-separated list.
std::string_view last_token(std::string_view list) {
  const std::size_t comma = list.rfind(',');
  return trim(comma == std::string_view::npos ? list : list.substr(comma + 1));
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

HttpUrl parse_http_url(std::string_view url) {
  for (const char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      throw std::invalid_argument(
          fmt::format("URL '{}': a space or control character is not allowed", url));
    }
  }
  if (const std::size_t hash = url.find('#'); hash != std::string_view::npos) {
    url = url.substr(0, hash);  // a fragment is not sent
  }
  constexpr std::string_view kScheme = "http://";
  if (url.size() < kScheme.size() || !iequals(url.substr(0, kScheme.size()), kScheme)) {
    throw std::invalid_argument(fmt::format("URL '{}': expected http://HOST[:PORT][/PATH]", url));
  }
  std::string_view rest = url.substr(kScheme.size());
  const std::size_t slash = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, slash);
  HttpUrl out;
  out.path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (!out.path.empty() && out.path.front() != '/') out.path.insert(0, "/");
  if (const std::size_t at = authority.rfind('@'); at != std::string_view::npos) {
    out.userinfo = true;
    authority.remove_prefix(at + 1);
  }
  out.authority = std::string(authority);
  std::string_view host = authority;
  std::string_view port;
  if (!host.empty() && host.front() == '[') {
    const std::size_t close = host.find(']');
    if (close == std::string_view::npos) {
      throw std::invalid_argument(fmt::format("URL '{}': unterminated IPv6 address", url));
    }
    if (close + 1 < host.size()) {
      if (host[close + 1] != ':') {
        throw std::invalid_argument(fmt::format("URL '{}': junk after the IPv6 address", url));
      }
      port = host.substr(close + 2);
    }
    host = host.substr(1, close - 1);
  } else if (const std::size_t colon = host.rfind(':'); colon != std::string_view::npos) {
    port = host.substr(colon + 1);
    host = host.substr(0, colon);
  }
  if (host.empty()) throw std::invalid_argument(fmt::format("URL '{}': no host", url));
  out.host = std::string(host);
  if (!port.empty()) {
    unsigned value = 0;
    const auto r = std::from_chars(port.data(), port.data() + port.size(), value);
    if (r.ec != std::errc() || r.ptr != port.data() + port.size() || value == 0 || value > 65535) {
      throw std::invalid_argument(fmt::format("URL '{}': port '{}' is not 1-65535", url, port));
    }
    out.port = static_cast<std::uint16_t>(value);
  }
  return out;
}

std::string http1_request_head(std::string_view path, std::string_view authority,
                               const std::vector<std::pair<std::string, std::string>>& defaults,
                               const std::vector<std::string>& user_headers,
                               std::size_t content_length) {
  // name, value; an empty name marks a removed default. A user line replaces
  // a default of its name, not an earlier user line: repeated names are sent
  // as given.
  std::vector<std::pair<std::string, std::string>> headers = defaults;
  std::vector<bool> taken(defaults.size(), false);  // a default a user line replaced
  std::string host(authority);
  for (const auto& line : user_headers) {
    if (line.find_first_of("\r\n") != std::string::npos) {
      throw std::invalid_argument(fmt::format("header '{}': CR or LF inside a header", line));
    }
    const std::size_t colon = line.find(':');
    if (colon == std::string::npos || colon == 0) {
      throw std::invalid_argument(fmt::format("header '{}': expected 'Name: value'", line));
    }
    const std::string name(trim(std::string_view(line).substr(0, colon)));
    const std::string value(trim(std::string_view(line).substr(colon + 1)));
    if (iequals(name, "Content-Length") || iequals(name, "Transfer-Encoding")) {
      throw std::invalid_argument(
          fmt::format("header '{}': the body's framing is the client's to set", line));
    }
    if (iequals(name, "Host")) {  // virtual hosts: the user's Host replaces the URL's
      if (!value.empty()) host = value;
      continue;
    }
    bool replaced = false;
    for (std::size_t i = 0; i < defaults.size(); ++i) {
      auto& h = headers[i];
      if (taken[i] || h.first.empty() || !iequals(h.first, name)) continue;
      if (value.empty()) {
        h.first.clear();
      } else if (!replaced) {
        h = {name, value};  // the user's line as written
        taken[i] = replaced = true;
      }
    }
    if (!replaced && !value.empty()) headers.emplace_back(name, value);
  }
  std::string head = fmt::format("POST {} HTTP/1.1\r\nHost: {}\r\n", path, host);
  for (const auto& [name, value] : headers) {
    if (name.empty() || iequals(name, "Host") || iequals(name, "Content-Length")) continue;
    head += name;
    head += ": ";
    head += value;
    head += "\r\n";
  }
  head += fmt::format("Content-Length: {}\r\n\r\n", content_length);
  return head;
}

Http1ResponseParser::Event Http1ResponseParser::fail(Failure failure, std::string message) {
  state_ = State::kError;
  failure_ = failure;
  error_ = std::move(message);
  std::string().swap(head_);
  return Event::kError;
}

std::string_view Http1ResponseParser::take_counted(std::string_view& input) {
  const auto take = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, input.size()));
  const std::string_view piece = input.substr(0, take);
  input.remove_prefix(take);
  bytes_seen_ += take;
  remaining_ -= take;
  return piece;
}

Http1ResponseParser::Event Http1ResponseParser::next(std::string_view& input,
                                                     std::string_view& body) {
  while (true) {
    if (state_ == State::kDone) return Event::kDone;
    if (state_ == State::kError) return Event::kError;
    if (input.empty()) return Event::kNeedMore;
    switch (state_) {
      case State::kHead: {
        // Append up to the blank line that ends the head (CRLF CRLF or bare LF LF).
        std::size_t take = input.size();
        bool complete = false;
        std::size_t line_start = line_start_;
        for (std::size_t i = 0; i < input.size(); ++i) {
          if (input[i] != '\n') continue;
          const std::size_t end = head_.size() + i;  // the LF's offset in the head
          std::size_t length = end - line_start;
          if (length > 0) {
            // The line's last byte is a CR when it is in head_ or in input.
            const char last =
                end - 1 >= head_.size() ? input[end - 1 - head_.size()] : head_[end - 1];
            if (last == '\r') --length;
          }
          if (length == 0) {
            take = i + 1;
            complete = true;
            break;
          }
          line_start = end + 1;
        }
        if (head_.size() + take > max_head_bytes_) {
          return fail(Failure::kOversizedHead,
                      fmt::format("response headers exceed {} bytes", max_head_bytes_));
        }
        head_.append(input.substr(0, take));
        input.remove_prefix(take);
        bytes_seen_ += take;
        line_start_ = line_start;
        if (!complete) return Event::kNeedMore;
        std::string head;
        head.swap(head_);
        line_start_ = 0;
        const Event e = parse_head(head);
        if (e != Event::kNeedMore) return e;  // kHead or kError
        break;                                // an interim 1xx response: the next head follows
      }
      case State::kChunkSize: {
        const char c = input.front();
        const int v = hex_value(c);
        if (v >= 0) {
          if (size_digits_ >= 15) return fail(Failure::kMalformed, "chunk size too large");
          remaining_ = remaining_ * 16 + static_cast<std::uint64_t>(v);
          ++size_digits_;
          input.remove_prefix(1);
          ++bytes_seen_;
          break;
        }
        if (size_digits_ == 0) {
          return fail(Failure::kMalformed,
                      fmt::format("bad chunk size: byte 0x{:02x}", static_cast<unsigned char>(c)));
        }
        state_ = State::kChunkExtension;  // ";ext", whitespace, CR: up to the LF
        break;
      }
      case State::kChunkExtension: {
        const std::size_t lf = input.find('\n');
        const std::size_t take = lf == std::string_view::npos ? input.size() : lf + 1;
        input.remove_prefix(take);
        bytes_seen_ += take;
        if (lf == std::string_view::npos) return Event::kNeedMore;
        size_digits_ = 0;
        state_ = remaining_ == 0 ? State::kTrailer : State::kChunkData;
        trailer_line_ = 0;
        break;
      }
      case State::kChunkData:
        body = take_counted(input);
        if (remaining_ == 0) state_ = State::kChunkDataEnd;
        return Event::kBody;
      case State::kChunkDataEnd: {
        const char c = input.front();
        input.remove_prefix(1);
        ++bytes_seen_;
        if (c == '\n') {
          state_ = State::kChunkSize;
        } else if (c != '\r') {
          return fail(Failure::kMalformed, "chunk data not followed by CRLF");
        }
        break;
      }
      case State::kTrailer: {
        const char c = input.front();
        input.remove_prefix(1);
        ++bytes_seen_;
        if (++trailer_bytes_ > max_head_bytes_) {
          return fail(Failure::kOversizedHead,
                      fmt::format("response trailers exceed {} bytes", max_head_bytes_));
        }
        if (c == '\n') {
          if (trailer_line_ == 0) state_ = State::kDone;
          trailer_line_ = 0;
        } else if (c != '\r') {
          ++trailer_line_;
        }
        break;
      }
      case State::kLength:
        body = take_counted(input);
        if (remaining_ == 0) state_ = State::kDone;
        return Event::kBody;
      case State::kUntilClose:
        body = input;
        bytes_seen_ += input.size();
        input = {};
        return Event::kBody;
      case State::kDone:
      case State::kError:
        break;
    }
  }
}

Http1ResponseParser::Event Http1ResponseParser::parse_head(std::string_view head) {
  // Status line: HTTP/1.x SSS[ reason]
  const std::size_t eol = head.find('\n');
  const std::string_view status_line = trim(head.substr(0, eol));
  if (status_line.size() < 12 || status_line.substr(0, 7) != "HTTP/1." ||
      (status_line[7] != '0' && status_line[7] != '1') || status_line[8] != ' ') {
    return fail(Failure::kMalformed,
                fmt::format("not an HTTP/1.x status line: '{}'", status_line.substr(0, 80)));
  }
  int status = 0;
  const auto r = std::from_chars(status_line.data() + 9, status_line.data() + 12, status);
  if (r.ec != std::errc() || r.ptr != status_line.data() + 12 || status < 100 || status > 599 ||
      (status_line.size() > 12 && status_line[12] != ' ')) {
    return fail(Failure::kMalformed,
                fmt::format("bad status code in '{}'", status_line.substr(0, 80)));
  }
  const bool http10 = status_line[7] == '0';
  bool keep_alive = !http10;
  bool chunked = false;
  bool transfer_encoding = false;
  bool has_length = false;
  std::uint64_t length = 0;
  std::string_view rest = eol == std::string_view::npos ? std::string_view{} : head.substr(eol + 1);
  while (!rest.empty()) {
    const std::size_t lf = rest.find('\n');
    std::string_view line = rest.substr(0, lf);
    rest = lf == std::string_view::npos ? std::string_view{} : rest.substr(lf + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      return fail(Failure::kMalformed,
                  fmt::format("header line without a name: '{}'", line.substr(0, 80)));
    }
    const std::string_view name = line.substr(0, colon);
    const std::string_view value = trim(line.substr(colon + 1));
    if (iequals(name, "content-length")) {
      std::uint64_t v = 0;
      const auto c = std::from_chars(value.data(), value.data() + value.size(), v);
      if (value.empty() || c.ec != std::errc() || c.ptr != value.data() + value.size()) {
        return fail(Failure::kMalformed, fmt::format("bad Content-Length '{}'", value));
      }
      if (has_length && v != length) {
        return fail(Failure::kMalformed, "conflicting Content-Length headers");
      }
      has_length = true;
      length = v;
    } else if (iequals(name, "transfer-encoding")) {
      transfer_encoding = true;
      chunked = iequals(last_token(value), "chunked");
    } else if (iequals(name, "connection")) {
      if (has_token(value, "close")) keep_alive = false;
      if (has_token(value, "keep-alive") && http10) keep_alive = true;
    }
  }
  if (status < 200) {
    if (status == 101) return fail(Failure::kMalformed, "unexpected 101 Switching Protocols");
    return Event::kNeedMore;  // interim (100 Continue, 103 Early Hints): the real head follows
  }
  status_ = status;
  keep_alive_ = keep_alive;
  if (status == 204 || status == 304) {
    state_ = State::kDone;
  } else if (transfer_encoding) {
    // Transfer-Encoding wins over Content-Length (RFC 9112 6.3); a coding
    // other than chunked last is delimited by the close.
    if (chunked) {
      state_ = State::kChunkSize;
      remaining_ = 0;
      size_digits_ = 0;
    } else {
      state_ = State::kUntilClose;
      keep_alive_ = false;
    }
    if (has_length) keep_alive_ = false;  // both framings: do not trust the connection after
  } else if (has_length) {
    remaining_ = length;
    state_ = length == 0 ? State::kDone : State::kLength;
  } else {
    state_ = State::kUntilClose;
    keep_alive_ = false;
  }
  return Event::kHead;
}

Http1ResponseParser::Event Http1ResponseParser::at_eof() {
  keep_alive_ = false;
  switch (state_) {
    case State::kDone:
      return Event::kDone;
    case State::kError:
      return Event::kError;
    case State::kUntilClose:
      state_ = State::kDone;
      return Event::kDone;
    case State::kHead:
      return fail(Failure::kCut, bytes_seen_ == 0
                                     ? "the server closed the connection without a response"
                                     : "the server closed the connection inside the headers");
    default:
      return fail(Failure::kCut, "the server closed the connection before the body's end");
  }
}

}  // namespace prism::harness
