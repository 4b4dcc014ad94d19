// What requests are sent to. In the style of MLPerf LoadGen's SystemUnderTest:
// the scheduler hands a request to submit() and learns what happened through
// a ResponseSink; it never knows whether HTTP, an in-process engine or a
// kernel replay is behind the interface.
//
// Contract for implementations:
// - submit() is thread-safe, returns quickly and never blocks on the network.
//   Every submitted request ends in exactly one on_done() or on_error(), also
//   when the target is cancelled or destroyed.
// - Callbacks for one request come from one thread, in order:
//   on_sent, on_first_token (at most once), on_tokens*, then on_done | on_error.
//   A request that fails before sending may skip on_sent.
// - Every timestamp is monotonic_ns() (clock.h) taken where the bytes (or the
//   tokens) arrive, before parsing or logging. Sinks must be fast and must not
//   block: they run on the target's I/O thread.
// - `tokens` in token callbacks is the target's best knowledge of how many
//   output tokens arrived together; `exact` says whether it is a count (usage
//   or token ids) or an assumption of one token per chunk. on_done's Usage is
//   the server's final word, which the sink uses to re-attribute (see
//   token_attribution.h).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "prism/results/observation.h"

namespace prism::harness {

enum class Role { kSystem, kUser, kAssistant };

// One message of a conversation. Prompts from the workload carry token ids;
// replies carried into history carry the text the target returned (and the
// token ids when the target knows them).
struct Message {
  Role role = Role::kUser;
  std::vector<std::int32_t> tokens;
  std::string text;  // when non-empty, the content as text (replies)
  bool has_tokens() const { return text.empty(); }
};

struct TargetRequest {
  std::uint64_t id = 0;
  std::uint64_t session = 0;
  std::uint32_t turn = 0;
  // A single-turn request is [system?, user]; turn n of a session is
  // [system?, user_0, assistant_0, ..., user_n] with the actual replies.
  std::vector<Message> messages;
  std::uint32_t max_output_tokens = 0;
  bool ignore_eos = true;  // ask for exactly max_output_tokens where supported
};

struct Usage {
  bool reported = false;
  std::uint32_t prompt_tokens = 0;
  std::uint32_t completion_tokens = 0;
  std::uint32_t cached_tokens = 0;
};

struct TargetError {
  results::ErrorClass error_class = results::ErrorClass::kOther;
  bool cancelled = false;  // stopped by cancel_all(), not a failure of the target
  int http_status = 0;
  std::string message;
};

class ResponseSink {
 public:
  virtual ~ResponseSink() = default;
  virtual void on_sent(std::uint64_t id, std::int64_t t_ns) = 0;
  virtual void on_first_token(std::uint64_t id, std::int64_t t_ns, std::uint32_t tokens, bool exact,
                              std::string_view text) = 0;
  virtual void on_tokens(std::uint64_t id, std::int64_t t_ns, std::uint32_t tokens, bool exact,
                         std::string_view text) = 0;
  virtual void on_done(std::uint64_t id, std::int64_t t_ns, const Usage& usage) = 0;
  virtual void on_error(std::uint64_t id, std::int64_t t_ns, const Usage& usage,
                        const TargetError& error) = 0;
};

class Target {
 public:
  virtual ~Target() = default;
  // Binds the sink that receives every later callback. Called once, before submit().
  virtual void start(ResponseSink& sink) = 0;
  virtual void submit(TargetRequest request) = 0;
  // Ends every in-flight request with on_error(cancelled) and waits until
  // their callbacks have returned. Requests submitted afterwards still run.
  virtual void cancel_all() = 0;
  // What is measured, for the result file ("kind", "url", "model", ...).
  virtual nlohmann::json description() const = 0;
};

}  // namespace prism::harness
