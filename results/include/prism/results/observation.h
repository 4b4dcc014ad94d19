// What the harness observed about one request. Lives in results/ because both
// the harness (producer) and results/ (consumer) need it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace prism::results {

enum class RequestStatus { kOk, kError, kCancelled };

// Error classes the harness distinguishes (issue: harness, "error counts by class").
enum class ErrorClass {
  kNone,
  kConnect,
  kHttpStatus,
  kTimeout,
  kStreamCut,
  kMalformedSse,
  kOversized,
  kOther
};

// All times are seconds on the monotonic clock, relative to the run's start.
struct Observation {
  std::uint64_t request_id = 0;
  std::uint64_t session = 0;
  std::uint32_t turn = 0;
  bool warmup = false;
  double scheduled_s = 0.0;           // when the schedule said it was due
  double sent_s = 0.0;                // when its first byte was handed to the transport
  std::vector<double> token_times_s;  // arrival time of each output token
  double completed_s = 0.0;
  std::uint32_t prompt_tokens = 0;  // as reported by the server (usage)
  std::uint32_t completion_tokens = 0;
  std::uint32_t cached_tokens = 0;
  RequestStatus status = RequestStatus::kOk;
  ErrorClass error = ErrorClass::kNone;
  int http_status = 0;
  std::string error_message;
};

}  // namespace prism::results
