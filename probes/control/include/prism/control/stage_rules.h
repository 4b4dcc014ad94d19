// Stage rules: which NVTX range names and GPU kernel names belong to which
// pipeline stage. Shared by the agent (live per-stage stats; libc only, fixed
// capacity, no allocation) and the analysis library (offline breakdown).
//
// Text format, one rule per line, first match wins, '#' starts a comment:
//   prism-rules 1                 optional header; a different version is an error
//   iteration <glob>              ranges that delimit one engine step (one batch)
//   request <glob>                ranges that span one request
//   range <glob> <stage>          host NVTX ranges (push/pop and start/end) -> stage
//   kernel <glob> <stage>         GPU kernel names -> stage
// Globs match the whole name, ASCII case-insensitively: '*' any run, '?' one char.
// Stage names are 1-31 characters of [A-Za-z0-9_.-].
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace prism::control {

enum class RuleTarget : uint8_t { kRange, kKernel, kIteration, kRequest };

inline constexpr size_t kMaxRules = 256;
inline constexpr size_t kMaxPattern = 160;
inline constexpr size_t kMaxStageName = 32;

struct StageRule {
  RuleTarget target = RuleTarget::kRange;
  char pattern[kMaxPattern] = {};
  char stage[kMaxStageName] = {};
};

struct StageRuleSet {
  uint32_t count = 0;
  StageRule rules[kMaxRules];
};

// Parses rule text. On failure writes "line N: reason" into error.
bool parse_stage_rules(const char* text, size_t length, StageRuleSet* out, char* error,
                       size_t error_size);

// Whole-string, ASCII case-insensitive glob match.
bool glob_match(const char* pattern, const char* text, size_t text_length);

// Index of the first rule of this target whose pattern matches name, or -1.
int match_rule(const StageRuleSet& rules, RuleTarget target, const char* name, size_t length);

}  // namespace prism::control
