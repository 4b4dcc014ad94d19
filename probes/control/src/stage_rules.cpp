// libc only: compiled into the agent as well as the analysis library.
#include "prism/control/stage_rules.h"

#include <stdio.h>
#include <string.h>

namespace prism::control {
namespace {

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool is_space(char c) {
  return c == ' ' || c == '\t';
}

bool valid_stage_name(const char* text, size_t length) {
  if (length == 0 || length >= kMaxStageName) return false;
  for (size_t i = 0; i < length; ++i) {
    const char c = text[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool fail(char* error, size_t error_size, size_t line, const char* reason) {
  if (error != nullptr && error_size > 0) snprintf(error, error_size, "line %zu: %s", line, reason);
  return false;
}

}  // namespace

bool glob_match(const char* pattern, const char* text, size_t text_length) {
  size_t p = 0;
  size_t t = 0;
  size_t star_p = static_cast<size_t>(-1);
  size_t star_t = 0;
  const size_t pattern_length = strlen(pattern);
  while (t < text_length) {
    if (p < pattern_length && (pattern[p] == '?' || lower(pattern[p]) == lower(text[t]))) {
      ++p;
      ++t;
    } else if (p < pattern_length && pattern[p] == '*') {
      star_p = p++;
      star_t = t;
    } else if (star_p != static_cast<size_t>(-1)) {
      p = star_p + 1;
      t = ++star_t;
    } else {
      return false;
    }
  }
  while (p < pattern_length && pattern[p] == '*') ++p;
  return p == pattern_length;
}

int match_rule(const StageRuleSet& rules, RuleTarget target, const char* name, size_t length) {
  for (uint32_t i = 0; i < rules.count; ++i) {
    if (rules.rules[i].target == target && glob_match(rules.rules[i].pattern, name, length)) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

bool parse_stage_rules(const char* text, size_t length, StageRuleSet* out, char* error,
                       size_t error_size) {
  if (out == nullptr || (text == nullptr && length > 0))
    return fail(error, error_size, 0, "no input");
  out->count = 0;
  size_t line_number = 0;
  size_t position = 0;
  bool seen_content = false;
  while (position < length) {
    ++line_number;
    size_t end = position;
    while (end < length && text[end] != '\n') ++end;
    const char* line = text + position;
    size_t line_length = end - position;
    position = end + 1;
    for (size_t i = 0; i < line_length; ++i) {
      if (line[i] == '#') {
        line_length = i;
        break;
      }
      const unsigned char c = static_cast<unsigned char>(line[i]);
      if ((c < 0x20 && c != '\t' && c != '\r') || c > 0x7e) {
        return fail(error, error_size, line_number, "control or non-ASCII byte");
      }
    }
    // Split into up to 4 fields.
    const char* fields[4];
    size_t field_lengths[4];
    size_t count = 0;
    size_t i = 0;
    while (i < line_length) {
      while (i < line_length && (is_space(line[i]) || line[i] == '\r')) ++i;
      if (i >= line_length) break;
      size_t start = i;
      while (i < line_length && !is_space(line[i]) && line[i] != '\r') ++i;
      if (count == 4) return fail(error, error_size, line_number, "too many fields");
      fields[count] = line + start;
      field_lengths[count] = i - start;
      ++count;
    }
    if (count == 0) continue;
    auto is = [&](size_t k, const char* word) {
      return strlen(word) == field_lengths[k] && memcmp(fields[k], word, field_lengths[k]) == 0;
    };
    if (is(0, "prism-rules")) {
      if (seen_content) return fail(error, error_size, line_number, "header must come first");
      if (count != 2 || !is(1, "1")) {
        return fail(error, error_size, line_number, "unsupported rules version (expected 1)");
      }
      seen_content = true;
      continue;
    }
    seen_content = true;
    StageRule rule;
    size_t expected = 3;
    if (is(0, "range")) {
      rule.target = RuleTarget::kRange;
    } else if (is(0, "kernel")) {
      rule.target = RuleTarget::kKernel;
    } else if (is(0, "iteration")) {
      rule.target = RuleTarget::kIteration;
      expected = 2;
    } else if (is(0, "request")) {
      rule.target = RuleTarget::kRequest;
      expected = 2;
    } else {
      return fail(error, error_size, line_number,
                  "unknown rule kind (expected range, kernel, iteration or request)");
    }
    if (count != expected) {
      return fail(error, error_size, line_number,
                  expected == 3 ? "expected: <kind> <glob> <stage>" : "expected: <kind> <glob>");
    }
    if (field_lengths[1] >= kMaxPattern)
      return fail(error, error_size, line_number, "pattern too long");
    memcpy(rule.pattern, fields[1], field_lengths[1]);
    rule.pattern[field_lengths[1]] = '\0';
    if (expected == 3) {
      if (!valid_stage_name(fields[2], field_lengths[2])) {
        return fail(error, error_size, line_number,
                    "stage name must be 1-31 chars of [A-Za-z0-9_.-]");
      }
      memcpy(rule.stage, fields[2], field_lengths[2]);
      rule.stage[field_lengths[2]] = '\0';
    } else {
      snprintf(rule.stage, sizeof(rule.stage), "%s",
               rule.target == RuleTarget::kIteration ? "iteration" : "request");
    }
    if (out->count == kMaxRules)
      return fail(error, error_size, line_number, "too many rules (max 256)");
    out->rules[out->count++] = rule;
  }
  return true;
}

}  // namespace prism::control
