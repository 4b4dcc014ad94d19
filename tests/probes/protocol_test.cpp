#include <catch2/catch.hpp>
#include <cstring>
#include <string>

#include "prism/control/protocol.h"
#include "prism/control/stage_rules.h"

using prism::control::parse_request;
using prism::control::Request;
using prism::control::Verb;

namespace {

bool parses(const std::string& line, Request* out = nullptr, std::string* error = nullptr) {
  Request request;
  char buffer[160] = {};
  const bool ok = parse_request(line.data(), line.size(), &request, buffer, sizeof(buffer));
  if (out != nullptr) *out = request;
  if (error != nullptr) *error = buffer;
  return ok;
}

}  // namespace

TEST_CASE("The control parser accepts every verb of protocol version 1", "[probes][protocol]") {
  Request r;
  REQUIRE(parses("PRISM/1 status", &r));
  CHECK(r.verb == Verb::kStatus);
  REQUIRE(parses("PRISM/1 start duration_ms=2500 activities=nvtx,gpu", &r));
  CHECK(r.verb == Verb::kStart);
  CHECK(r.duration_ms == 2500);
  CHECK(r.activities == (prism::control::kActivityNvtx | prism::control::kActivityGpu));
  REQUIRE(parses("PRISM/1 start", &r));
  CHECK(r.duration_ms == 0);
  CHECK(r.activities == prism::control::kActivityNvtx);
  REQUIRE(parses("PRISM/1 stop", &r));
  CHECK(r.verb == Verb::kStop);
  REQUIRE(parses("PRISM/1 snapshot", &r));
  REQUIRE(parses("PRISM/1 stats", &r));
  REQUIRE(parses("PRISM/1 rules bytes=12", &r));
  CHECK(r.rules_bytes == 12);
  REQUIRE(parses("PRISM/1 quit\r", &r));
  CHECK(r.verb == Verb::kQuit);
}

TEST_CASE("The control parser rejects malformed requests and says why", "[probes][protocol]") {
  std::string error;
  CHECK_FALSE(parses("", nullptr, &error));
  CHECK(error == "empty request");
  CHECK_FALSE(parses("PRISM/2 status", nullptr, &error));
  CHECK(error.find("version") != std::string::npos);
  CHECK_FALSE(parses("PRISM/1", nullptr, &error));
  CHECK_FALSE(parses("PRISM/1 launch", nullptr, &error));
  CHECK(error == "unknown verb");
  CHECK_FALSE(parses("PRISM/1  status", nullptr, &error));
  CHECK_FALSE(parses("PRISM/1 status ", nullptr, &error));
  CHECK_FALSE(parses("PRISM/1 start duration_ms=-5", nullptr, &error));
  CHECK_FALSE(parses("PRISM/1 start duration_ms=86400001", nullptr, &error));
  CHECK_FALSE(parses("PRISM/1 start duration_ms=1 duration_ms=2", nullptr, &error));
  CHECK(error.find("duplicate") != std::string::npos);
  CHECK_FALSE(parses("PRISM/1 start activities=nvtx,nvtx", nullptr, &error));
  CHECK_FALSE(parses("PRISM/1 start activities=", nullptr, &error));
  CHECK_FALSE(parses("PRISM/1 start activities=cpu", nullptr, &error));
  CHECK_FALSE(parses("PRISM/1 status verbose=1", nullptr, &error));
  CHECK(error == "unknown key for this verb");
  CHECK_FALSE(parses("PRISM/1 rules", nullptr, &error));
  CHECK_FALSE(parses("PRISM/1 rules bytes=0", nullptr, &error));
  CHECK_FALSE(parses("PRISM/1 rules bytes=65537", nullptr, &error));
  CHECK_FALSE(parses("PRISM/1 start duration_ms=99999999999999999999", nullptr, &error));
  CHECK_FALSE(parses(std::string("PRISM/1 st\0atus", 15), nullptr, &error));
  CHECK(error.find("control") != std::string::npos);
  CHECK_FALSE(parses("PRISM/1 status \xff", nullptr, &error));
  CHECK_FALSE(parses(std::string(2000, 'a'), nullptr, &error));
  CHECK(error == "line too long");
  CHECK_FALSE(parses("PRISM/1 start a b c d e f g h", nullptr, &error));
}

TEST_CASE("The events verb takes its three cursors, each once and in range", "[probes][protocol]") {
  Request r;
  REQUIRE(parses("PRISM/1 events", &r));
  CHECK(r.verb == Verb::kEvents);
  CHECK(r.since == 0);
  CHECK(r.strings == 0);
  CHECK(r.threads == 0);
  REQUIRE(parses("PRISM/1 events since=123456789012345678 strings=1048576 threads=7", &r));
  CHECK(r.since == 123456789012345678ull);
  CHECK(r.strings == 1048576);
  CHECK(r.threads == 7);
  std::string error;
  CHECK_FALSE(parses("PRISM/1 events since=1234567890123456789", nullptr, &error));
  CHECK(error.find("since") != std::string::npos);
  CHECK_FALSE(parses("PRISM/1 events strings=1048577", nullptr, &error));
  CHECK_FALSE(parses("PRISM/1 events threads=-1", nullptr, &error));
  CHECK_FALSE(parses("PRISM/1 events since=1 since=2", nullptr, &error));
  CHECK(error == "duplicate key since");
  CHECK_FALSE(parses("PRISM/1 events bytes=3", nullptr, &error));
  CHECK(error == "unknown key for this verb");
  CHECK_FALSE(parses("PRISM/1 snapshot since=3", nullptr, &error));

  Request events;
  events.verb = Verb::kEvents;
  events.since = 987654321;
  events.strings = 12;
  events.threads = 3;
  char line[128];
  const size_t n = prism::control::format_request(events, line, sizeof(line));
  REQUIRE(n > 0);
  Request back;
  REQUIRE(parses(std::string(line, n - 1), &back));
  CHECK(back.verb == Verb::kEvents);
  CHECK(back.since == 987654321);
  CHECK(back.strings == 12);
  CHECK(back.threads == 3);
}

TEST_CASE("Formatted requests parse back to the same request", "[probes][protocol]") {
  Request start;
  start.verb = Verb::kStart;
  start.duration_ms = 1234;
  start.activities = prism::control::kActivityGpu | prism::control::kActivityNvtx;
  char line[128];
  const size_t n = prism::control::format_request(start, line, sizeof(line));
  REQUIRE(n > 0);
  REQUIRE(line[n - 1] == '\n');
  Request back;
  REQUIRE(parses(std::string(line, n - 1), &back));
  CHECK(back.verb == Verb::kStart);
  CHECK(back.duration_ms == 1234);
  CHECK(back.activities == start.activities);
  CHECK(prism::control::format_request(start, line, 8) == 0);  // too small: nothing written
}

TEST_CASE("Stage rules parse, match whole names case-insensitively, first rule wins",
          "[probes][rules]") {
  const std::string text =
      "prism-rules 1\n# comment\niteration step\nrange attention* attention  # trailing comment\n"
      "range *attn* attention2\nkernel *GEMM* mlp\nrequest req*\n";
  prism::control::StageRuleSet rules;
  char error[160] = {};
  REQUIRE(
      prism::control::parse_stage_rules(text.data(), text.size(), &rules, error, sizeof(error)));
  REQUIRE(rules.count == 5);
  using prism::control::match_rule;
  using prism::control::RuleTarget;
  CHECK(match_rule(rules, RuleTarget::kIteration, "step", 4) == 0);
  CHECK(match_rule(rules, RuleTarget::kIteration, "step2", 5) == -1);
  CHECK(match_rule(rules, RuleTarget::kRange, "Attention_layer3", 16) == 1);
  CHECK(match_rule(rules, RuleTarget::kRange, "flash_attn", 10) == 2);
  CHECK(match_rule(rules, RuleTarget::kKernel, "sm90_xmma_gemm_bf16", 19) == 3);
  CHECK(match_rule(rules, RuleTarget::kRange, "sm90_xmma_gemm_bf16", 19) == -1);
  CHECK(prism::control::glob_match("a?c", "abc", 3));
  CHECK_FALSE(prism::control::glob_match("a?c", "ac", 2));
  CHECK(prism::control::glob_match("**", "", 0));
}

TEST_CASE("Bad stage rules are rejected with the line number", "[probes][rules]") {
  prism::control::StageRuleSet rules;
  char error[160] = {};
  auto fails_with = [&](const std::string& text, const std::string& expected) {
    const bool ok =
        prism::control::parse_stage_rules(text.data(), text.size(), &rules, error, sizeof(error));
    CHECK_FALSE(ok);
    CHECK(std::string(error).find(expected) != std::string::npos);
  };
  fails_with("range a\n", "line 1: expected");
  fails_with("\n\nstage a b\n", "line 3: unknown rule kind");
  fails_with("prism-rules 2\n", "line 1: unsupported rules version");
  fails_with("range a b\nprism-rules 1\n", "line 2: header must come first");
  fails_with("range a bad/stage\n", "stage name");
  fails_with("range " + std::string(300, 'x') + " s\n", "pattern too long");
  fails_with("range a b c d e\n", "too many fields");
  std::string many;
  for (int i = 0; i < 300; ++i) many += "range a" + std::to_string(i) + " s\n";
  fails_with(many, "line 257: too many rules");
}
