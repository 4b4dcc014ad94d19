// libc only: compiled into the agent as well as the client library.
#include "prism/control/protocol.h"

#include <stdio.h>
#include <string.h>

namespace prism::control {
namespace {

void set_error(char* error, size_t error_size, const char* message) {
  if (error == nullptr || error_size == 0) return;
  snprintf(error, error_size, "%s", message);
}

bool token_equals(const char* token, size_t length, const char* word) {
  return strlen(word) == length && memcmp(token, word, length) == 0;
}

// Parses a decimal number of at most 12 digits with no sign and no leading '+'.
bool parse_number(const char* text, size_t length, uint64_t max_value, uint64_t* out) {
  if (length == 0 || length > 12) return false;
  uint64_t value = 0;
  for (size_t i = 0; i < length; ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
    value = value * 10 + static_cast<uint64_t>(text[i] - '0');
  }
  if (value > max_value) return false;
  *out = value;
  return true;
}

// A ring index: up to 18 digits, so no value can overflow 64 bits.
bool parse_long_number(const char* text, size_t length, uint64_t* out) {
  if (length == 0 || length > 18) return false;
  uint64_t value = 0;
  for (size_t i = 0; i < length; ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
    value = value * 10 + static_cast<uint64_t>(text[i] - '0');
  }
  *out = value;
  return true;
}

constexpr uint64_t kMaxCursorNames = 1u << 20;

bool parse_activities(const char* text, size_t length, uint32_t* out) {
  uint32_t mask = 0;
  size_t start = 0;
  while (start <= length) {
    size_t end = start;
    while (end < length && text[end] != ',') ++end;
    const char* item = text + start;
    const size_t item_length = end - start;
    uint32_t bit = 0;
    if (token_equals(item, item_length, "nvtx")) {
      bit = kActivityNvtx;
    } else if (token_equals(item, item_length, "gpu")) {
      bit = kActivityGpu;
    } else {
      return false;
    }
    if ((mask & bit) != 0) return false;  // listed twice
    mask |= bit;
    start = end + 1;
  }
  *out = mask;
  return mask != 0;
}

}  // namespace

const char* verb_name(Verb verb) {
  switch (verb) {
    case Verb::kStatus:
      return "status";
    case Verb::kStart:
      return "start";
    case Verb::kStop:
      return "stop";
    case Verb::kSnapshot:
      return "snapshot";
    case Verb::kStats:
      return "stats";
    case Verb::kRules:
      return "rules";
    case Verb::kQuit:
      return "quit";
    case Verb::kEvents:
      return "events";
  }
  return "status";
}

bool parse_request(const char* line, size_t length, Request* out, char* error, size_t error_size) {
  if (line == nullptr || out == nullptr) {
    set_error(error, error_size, "no request");
    return false;
  }
  if (length > kMaxLine) {
    set_error(error, error_size, "line too long");
    return false;
  }
  if (length > 0 && line[length - 1] == '\r') --length;  // tolerate CRLF from a terminal
  for (size_t i = 0; i < length; ++i) {
    const unsigned char c = static_cast<unsigned char>(line[i]);
    if (c < 0x20 || c > 0x7e) {
      set_error(error, error_size, "control or non-ASCII byte in request");
      return false;
    }
  }
  // Split into at most 8 space-separated tokens; empty tokens (double spaces) are errors.
  constexpr size_t kMaxTokens = 8;
  const char* tokens[kMaxTokens];
  size_t lengths[kMaxTokens];
  size_t count = 0;
  size_t position = 0;
  while (position < length) {
    size_t end = position;
    while (end < length && line[end] != ' ') ++end;
    if (end == position) {
      set_error(error, error_size, "empty field (double or leading space)");
      return false;
    }
    if (count == kMaxTokens) {
      set_error(error, error_size, "too many fields");
      return false;
    }
    tokens[count] = line + position;
    lengths[count] = end - position;
    ++count;
    position = end + 1;
    if (end + 1 == length && line[end] == ' ') {
      set_error(error, error_size, "trailing space");
      return false;
    }
  }
  if (count < 2) {
    set_error(error, error_size, count == 0 ? "empty request" : "missing verb");
    return false;
  }
  if (!token_equals(tokens[0], lengths[0], kProtocolTag)) {
    set_error(error, error_size, "unsupported protocol version (expected PRISM/1)");
    return false;
  }
  Request request;
  const char* verb = tokens[1];
  const size_t verb_length = lengths[1];
  if (token_equals(verb, verb_length, "status")) {
    request.verb = Verb::kStatus;
  } else if (token_equals(verb, verb_length, "start")) {
    request.verb = Verb::kStart;
  } else if (token_equals(verb, verb_length, "stop")) {
    request.verb = Verb::kStop;
  } else if (token_equals(verb, verb_length, "snapshot")) {
    request.verb = Verb::kSnapshot;
  } else if (token_equals(verb, verb_length, "stats")) {
    request.verb = Verb::kStats;
  } else if (token_equals(verb, verb_length, "rules")) {
    request.verb = Verb::kRules;
  } else if (token_equals(verb, verb_length, "quit")) {
    request.verb = Verb::kQuit;
  } else if (token_equals(verb, verb_length, "events")) {
    request.verb = Verb::kEvents;
  } else {
    set_error(error, error_size, "unknown verb");
    return false;
  }
  bool seen_duration = false;
  bool seen_activities = false;
  bool seen_bytes = false;
  bool seen_since = false;
  bool seen_strings = false;
  bool seen_threads = false;
  for (size_t i = 2; i < count; ++i) {
    const char* token = tokens[i];
    const char* equals = static_cast<const char*>(memchr(token, '=', lengths[i]));
    if (equals == nullptr || equals == token) {
      set_error(error, error_size, "argument is not key=value");
      return false;
    }
    const size_t key_length = static_cast<size_t>(equals - token);
    const char* value = equals + 1;
    const size_t value_length = lengths[i] - key_length - 1;
    if (request.verb == Verb::kStart && token_equals(token, key_length, "duration_ms")) {
      if (seen_duration) {
        set_error(error, error_size, "duplicate key duration_ms");
        return false;
      }
      seen_duration = true;
      if (!parse_number(value, value_length, kMaxDurationMs, &request.duration_ms)) {
        set_error(error, error_size, "duration_ms must be an integer in [0, 86400000]");
        return false;
      }
    } else if (request.verb == Verb::kStart && token_equals(token, key_length, "activities")) {
      if (seen_activities) {
        set_error(error, error_size, "duplicate key activities");
        return false;
      }
      seen_activities = true;
      if (!parse_activities(value, value_length, &request.activities)) {
        set_error(error, error_size, "activities must be a list of nvtx,gpu without repeats");
        return false;
      }
    } else if (request.verb == Verb::kRules && token_equals(token, key_length, "bytes")) {
      if (seen_bytes) {
        set_error(error, error_size, "duplicate key bytes");
        return false;
      }
      seen_bytes = true;
      if (!parse_number(value, value_length, kMaxRulesBytes, &request.rules_bytes) ||
          request.rules_bytes == 0) {
        set_error(error, error_size, "bytes must be an integer in [1, 65536]");
        return false;
      }
    } else if (request.verb == Verb::kEvents && token_equals(token, key_length, "since")) {
      if (seen_since) {
        set_error(error, error_size, "duplicate key since");
        return false;
      }
      seen_since = true;
      if (!parse_long_number(value, value_length, &request.since)) {
        set_error(error, error_size, "since must be an integer of at most 18 digits");
        return false;
      }
    } else if (request.verb == Verb::kEvents && token_equals(token, key_length, "strings")) {
      if (seen_strings) {
        set_error(error, error_size, "duplicate key strings");
        return false;
      }
      seen_strings = true;
      if (!parse_number(value, value_length, kMaxCursorNames, &request.strings)) {
        set_error(error, error_size, "strings must be an integer in [0, 1048576]");
        return false;
      }
    } else if (request.verb == Verb::kEvents && token_equals(token, key_length, "threads")) {
      if (seen_threads) {
        set_error(error, error_size, "duplicate key threads");
        return false;
      }
      seen_threads = true;
      if (!parse_number(value, value_length, kMaxCursorNames, &request.threads)) {
        set_error(error, error_size, "threads must be an integer in [0, 1048576]");
        return false;
      }
    } else {
      set_error(error, error_size, "unknown key for this verb");
      return false;
    }
  }
  if (request.verb == Verb::kRules && !seen_bytes) {
    set_error(error, error_size, "rules needs bytes=<n>");
    return false;
  }
  *out = request;
  return true;
}

size_t format_request(const Request& request, char* buffer, size_t buffer_size) {
  int written = 0;
  switch (request.verb) {
    case Verb::kStart: {
      const char* activities =
          (request.activities & kActivityGpu) != 0
              ? ((request.activities & kActivityNvtx) != 0 ? "nvtx,gpu" : "gpu")
              : "nvtx";
      written =
          snprintf(buffer, buffer_size, "%s start duration_ms=%llu activities=%s\n", kProtocolTag,
                   static_cast<unsigned long long>(request.duration_ms), activities);
      break;
    }
    case Verb::kRules:
      written = snprintf(buffer, buffer_size, "%s rules bytes=%llu\n", kProtocolTag,
                         static_cast<unsigned long long>(request.rules_bytes));
      break;
    case Verb::kEvents:
      written = snprintf(buffer, buffer_size, "%s events since=%llu strings=%llu threads=%llu\n",
                         kProtocolTag, static_cast<unsigned long long>(request.since),
                         static_cast<unsigned long long>(request.strings),
                         static_cast<unsigned long long>(request.threads));
      break;
    default:
      written = snprintf(buffer, buffer_size, "%s %s\n", kProtocolTag, verb_name(request.verb));
      break;
  }
  if (written <= 0 || static_cast<size_t>(written) >= buffer_size) return 0;
  return static_cast<size_t>(written);
}

}  // namespace prism::control
