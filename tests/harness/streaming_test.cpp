#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "prism/harness/sse_parser.h"
#include "prism/harness/token_attribution.h"

using prism::harness::ChunkArrival;
using prism::harness::SseParser;

namespace {

std::vector<std::string> feed_all(SseParser& parser, const std::vector<std::string>& pieces,
                                  SseParser::Status* last = nullptr) {
  std::vector<std::string> events;
  for (const auto& piece : pieces) {
    const auto status = parser.feed(piece, [&](std::string_view data) {
      events.emplace_back(data);
      return true;
    });
    if (last != nullptr) *last = status;
  }
  return events;
}

}  // namespace

TEST_CASE("SSE events split across arbitrary byte boundaries are reassembled") {
  const std::string stream =
      "data: {\"a\":1}\n\ndata: {\"b\":2}\r\n\r\n: ping\n\nevent: x\ndata: [DONE]\n\n";
  for (std::size_t split = 1; split < stream.size(); ++split) {
    SseParser parser;
    const auto events = feed_all(parser, {stream.substr(0, split), stream.substr(split)});
    REQUIRE(events == std::vector<std::string>{"{\"a\":1}", "{\"b\":2}", "[DONE]"});
  }
}

TEST_CASE("SSE byte-at-a-time feeding with CR line endings gives the same events") {
  const std::string stream = "data: one\r\rdata:two\r\n\r\n";
  SseParser parser;
  std::vector<std::string> pieces;
  for (char c : stream) pieces.emplace_back(1, c);
  REQUIRE(feed_all(parser, pieces) == std::vector<std::string>{"one", "two"});
}

TEST_CASE("SSE multi-line data fields are joined with newlines and comments are ignored") {
  SseParser parser;
  const auto events = feed_all(parser, {": keep-alive\ndata: a\ndata: b\nid: 7\n\n"});
  REQUIRE(events == std::vector<std::string>{"a\nb"});
}

TEST_CASE("SSE parser refuses an event larger than its limit instead of buffering it") {
  SseParser parser(1024);
  SseParser::Status status = SseParser::Status::kOk;
  const auto events = feed_all(parser, {"data: " + std::string(4096, 'x')}, &status);
  REQUIRE(events.empty());
  REQUIRE(status == SseParser::Status::kOversized);
}

TEST_CASE("SSE parser reports an unfinished event at the end of input") {
  SseParser parser;
  feed_all(parser, {"data: {\"partial\""});
  REQUIRE(parser.has_partial_event());
  SseParser complete;
  feed_all(complete, {"data: x\n\n"});
  REQUIRE_FALSE(complete.has_partial_event());
}

TEST_CASE("Token attribution keeps chunk counts when the server reports no usage") {
  const std::vector<ChunkArrival> chunks = {{10, 1, false, 3}, {20, 1, false, 3}};
  REQUIRE(prism::harness::attribute_tokens(chunks, std::nullopt) ==
          std::vector<std::uint32_t>{1, 1});
}

TEST_CASE("Token attribution spreads the surplus of reported tokens over chunks by text length") {
  // Five tokens reported in three chunks, the second carrying most text.
  const std::vector<ChunkArrival> chunks = {
      {10, 1, false, 4}, {20, 1, false, 12}, {30, 1, false, 4}};
  const auto counts = prism::harness::attribute_tokens(chunks, 5u);
  REQUIRE(counts == std::vector<std::uint32_t>{1, 3, 1});
}

TEST_CASE("Token attribution trusts exact per-chunk counts over assumptions") {
  const std::vector<ChunkArrival> chunks = {{10, 3, true, 4}, {20, 1, false, 4}, {30, 1, false, 4}};
  REQUIRE(prism::harness::attribute_tokens(chunks, 7u) == std::vector<std::uint32_t>{3, 2, 2});
  // Exact counts already account for everything: loose chunks carry nothing.
  REQUIRE(prism::harness::attribute_tokens(chunks, 3u) == std::vector<std::uint32_t>{3, 0, 0});
}

TEST_CASE(
    "Token attribution with fewer reported tokens than chunks gives the first chunks one each") {
  const std::vector<ChunkArrival> chunks = {
      {10, 1, false, 4}, {20, 1, false, 4}, {30, 1, false, 4}};
  REQUIRE(prism::harness::attribute_tokens(chunks, 2u) == std::vector<std::uint32_t>{1, 1, 0});
}

TEST_CASE("Token times repeat a chunk's arrival for each token it carries") {
  const std::vector<ChunkArrival> chunks = {{1'000'000'000, 1, true, 1},
                                            {1'500'000'000, 2, true, 2}};
  const std::vector<std::uint32_t> counts = {1, 2};
  const auto times = prism::harness::token_times(chunks, counts, 500'000'000);
  REQUIRE(times == std::vector<double>{0.5, 1.0, 1.0});
}
