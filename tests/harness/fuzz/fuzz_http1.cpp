// libFuzzer target: the HTTP/1.1 response parser of Prism's own client, which
// reads whatever a server (or anything listening on the port) sends. The
// first byte picks where the input is cut in two; the parser must give the
// same events and the same body whole and cut (it keeps state across reads),
// never return more body than it was given, stay done once done, and say why
// whenever it refuses.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "prism/harness/http1.h"

namespace {

using prism::harness::Http1ResponseParser;
using Event = Http1ResponseParser::Event;

struct Result {
  std::vector<Event> events;
  std::string body;
  int status = 0;
};

Result parse(std::string_view input, std::size_t cut) {
  Http1ResponseParser parser(4096);
  Result r;
  const std::string_view pieces[2] = {input.substr(0, cut), input.substr(cut)};
  bool ended = false;
  for (std::string_view piece : pieces) {
    while (!ended) {
      std::string_view body;
      const std::size_t before = piece.size();
      const Event e = parser.next(piece, body);
      if (piece.size() > before) __builtin_trap();
      if (e == Event::kNeedMore) break;
      if (e == Event::kBody) {
        if (body.size() > before) __builtin_trap();
        r.body.append(body);
        continue;
      }
      r.events.push_back(e);
      if (e == Event::kError && parser.error().empty()) __builtin_trap();
      ended = e == Event::kDone || e == Event::kError;
    }
  }
  if (!ended) {
    r.events.push_back(parser.at_eof());
    if (r.events.back() == Event::kError && parser.error().empty()) __builtin_trap();
  }
  // Done stays done.
  std::string_view rest = "more";
  std::string_view body;
  if (parser.done() && parser.next(rest, body) != Event::kDone) __builtin_trap();
  r.status = parser.status();
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::size_t cut = input.empty() ? 0 : data[0] % (input.size() + 1);
  const Result whole = parse(input, input.size());
  const Result split = parse(input, cut);
  if (whole.events != split.events || whole.body != split.body || whole.status != split.status) {
    __builtin_trap();
  }
  if (whole.body.size() > input.size()) __builtin_trap();
  return 0;
}
