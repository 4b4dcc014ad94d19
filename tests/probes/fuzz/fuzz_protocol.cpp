// libFuzzer target: the agent's control request parser and the stage rules
// parser, both of which read untrusted bytes inside someone else's process.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "prism/control/protocol.h"
#include "prism/control/stage_rules.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* text = reinterpret_cast<const char*>(data);
  prism::control::Request request;
  char error[160];
  if (prism::control::parse_request(text, size, &request, error, sizeof(error))) {
    // Whatever parses must format and parse back to the same request.
    char line[256];
    const size_t n = prism::control::format_request(request, line, sizeof(line));
    prism::control::Request again;
    if (n == 0 || !prism::control::parse_request(line, n - 1, &again, error, sizeof(error)) ||
        again.verb != request.verb || again.duration_ms != request.duration_ms) {
      __builtin_trap();
    }
  } else if (strnlen(error, sizeof(error)) == 0) {
    __builtin_trap();  // a rejection always says why
  }
  static prism::control::StageRuleSet rules;
  if (prism::control::parse_stage_rules(text, size, &rules, error, sizeof(error))) {
    for (uint32_t i = 0; i < rules.count; ++i) {
      prism::control::match_rule(rules, rules.rules[i].target, text, size < 256 ? size : 256);
    }
  }
  return 0;
}
