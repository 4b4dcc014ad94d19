#include "prism/workloads/validation.h"

#include <cmath>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "prism/workloads/workload_json.h"

namespace prism::workloads {
namespace {

[[noreturn]] void fail(const std::string& source, const std::string& path, const std::string& why) {
  throw WorkloadError(source + ": " + path + ": " + why);
}

std::string at(const std::string& path, std::size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

}  // namespace

void validate_arrival(const ArrivalSpec& a, const std::string& where) {
  const auto positive = [&](double v, const char* field) {
    if (!std::isfinite(v) || v <= 0)
      fail(where, std::string("arrival.") + field,
           "must be a positive number (got " + std::to_string(v) + ")");
  };
  positive(a.time_scale, "time_scale");
  if (a.kind == ArrivalKind::kPoisson || a.kind == ArrivalKind::kGamma)
    positive(a.rate_per_s, "rate_per_s");
  if (a.kind == ArrivalKind::kGamma) positive(a.burstiness, "burstiness");
  if (a.kind == ArrivalKind::kClosedLoop && a.concurrency == 0)
    fail(where, "arrival.concurrency", "closed loop needs a concurrency of at least 1");
  for (std::size_t i = 0; i < a.sweep_rates_per_s.size(); ++i) {
    const double r = a.sweep_rates_per_s[i];
    if (!std::isfinite(r) || r <= 0)
      fail(where, at("arrival.sweep_rates_per_s", i),
           "rates must be positive (got " + std::to_string(r) + ")");
  }
}

void validate_workload(const Workload& w, const std::string& source) {
  if (w.name.empty()) fail(source, "name", "must not be empty");
  if (w.kind.empty()) fail(source, "kind", "must not be empty");
  if (w.tokenizer.empty()) fail(source, "tokenizer", "must not be empty");
  validate_arrival(w.arrival, source);
  if (w.request_count() == 0) fail(source, "sessions", "the workload has no requests");

  std::unordered_set<std::uint64_t> session_ids, request_ids;
  std::unordered_map<std::string_view, const std::vector<std::int32_t>*> contents;
  for (std::size_t si = 0; si < w.sessions.size(); ++si) {
    const auto& session = w.sessions[si];
    const std::string sp = at("sessions", si);
    if (!session_ids.insert(session.id).second)
      fail(source, sp + ".id", "duplicate session id " + std::to_string(session.id));
    if (session.requests.empty())
      fail(source, sp + ".requests", "a session needs at least one request");
    for (std::size_t ri = 0; ri < session.requests.size(); ++ri) {
      const auto& r = session.requests[ri];
      const std::string rp = at(sp + ".requests", ri);
      if (!request_ids.insert(r.id).second)
        fail(source, rp + ".id", "duplicate request id " + std::to_string(r.id));
      if (r.session != session.id)
        fail(source, rp + ".session",
             "request names session " + std::to_string(r.session) + " but sits in session " +
                 std::to_string(session.id));
      if (r.turn != ri)
        fail(source, rp + ".turn",
             "turns must count 0, 1, 2, ... in order (expected " + std::to_string(ri) + ", got " +
                 std::to_string(r.turn) + ")");
      if (!std::isfinite(r.arrival_offset_s) || r.arrival_offset_s < 0)
        fail(source, rp + ".arrival_offset_s",
             "must be a non-negative number of seconds (got " + std::to_string(r.arrival_offset_s) +
                 ")");
      if (r.output_tokens == 0) fail(source, rp + ".output_tokens", "must be at least 1");
      if (r.segments.empty())
        fail(source, rp + ".segments", "a request needs at least one segment");
      std::size_t prompt = 0;
      for (std::size_t gi = 0; gi < r.segments.size(); ++gi) {
        const auto& g = r.segments[gi];
        const std::string gp = at(rp + ".segments", gi);
        if (g.content_id.empty()) fail(source, gp + ".content_id", "must not be empty");
        if (g.tokens.empty()) fail(source, gp + ".tokens", "a segment needs at least one token");
        auto [it, inserted] = contents.emplace(g.content_id, &g.tokens);
        if (inserted) {
          for (std::size_t t = 0; t < g.tokens.size(); ++t)
            if (g.tokens[t] < 0)
              fail(source, at(gp + ".tokens", t), "token ids must not be negative");
        } else if (*it->second != g.tokens) {
          fail(source, gp + ".content_id",
               "content id \"" + g.content_id + "\" names different tokens in different segments");
        }
        prompt += g.tokens.size();
      }
      if (w.max_context_tokens != 0 && prompt + r.output_tokens > w.max_context_tokens)
        fail(source, rp,
             "prompt (" + std::to_string(prompt) + ") + output (" +
                 std::to_string(r.output_tokens) + ") tokens exceed max_context_tokens " +
                 std::to_string(w.max_context_tokens));
    }
  }
}

void validate_tokens(const Workload& w, const Tokenizer& tokenizer, const std::string& source) {
  std::unordered_set<std::string_view> checked;
  const auto vocab = static_cast<std::int64_t>(tokenizer.vocab_size());
  for (std::size_t si = 0; si < w.sessions.size(); ++si) {
    const auto& requests = w.sessions[si].requests;
    for (std::size_t ri = 0; ri < requests.size(); ++ri) {
      const auto& segments = requests[ri].segments;
      for (std::size_t gi = 0; gi < segments.size(); ++gi) {
        const auto& g = segments[gi];
        if (!checked.insert(g.content_id).second) continue;
        const std::string gp = at(at(at("sessions", si) + ".requests", ri) + ".segments", gi);
        for (std::size_t t = 0; t < g.tokens.size(); ++t) {
          const auto id = g.tokens[t];
          if (id >= vocab)
            fail(source, at(gp + ".tokens", t),
                 "token id " + std::to_string(id) + " is outside the " + tokenizer.name() +
                     " vocabulary (size " + std::to_string(vocab) + ")");
          if (tokenizer.is_special(id))
            fail(source, at(gp + ".tokens", t),
                 "token id " + std::to_string(id) + " is a special token of " + tokenizer.name());
        }
      }
    }
  }
}

}  // namespace prism::workloads
