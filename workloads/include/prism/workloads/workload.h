// The workload model shared by every Prism module: Workload -> Session ->
// Request -> Segment. One definition of each (DESIGN.md, "Core concepts").
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace prism::workloads {

// Where a run of prompt tokens came from. Provenance is what lets tables say
// "document chunks were reused at non-prefix positions" rather than guess.
enum class Provenance { kSystem, kDocument, kHistory, kUser, kNeedle, kContext };

// A run of tokens with a content id. Two segments with the same content_id
// hold identical tokens: prefix and KV reuse are computed from ids, not text.
struct Segment {
  std::string content_id;
  Provenance provenance = Provenance::kUser;
  std::vector<std::int32_t> tokens;
};

struct Request {
  std::uint64_t id = 0;
  std::uint64_t session = 0;
  std::uint32_t turn = 0;
  // Offset from the start of the run at which the request is due (open loop);
  // for turns > 0 of a session, the think time after the previous turn ends.
  double arrival_offset_s = 0.0;
  std::vector<Segment> segments;
  std::uint32_t output_tokens = 0;
  bool ignore_eos = true;

  std::size_t prompt_tokens() const {
    std::size_t n = 0;
    for (const auto& s : segments) n += s.tokens.size();
    return n;
  }
};

struct Session {
  std::uint64_t id = 0;
  std::vector<Request> requests;  // ordered turns
};

enum class ArrivalKind { kClosedLoop, kPoisson, kGamma, kTrace };

struct ArrivalSpec {
  ArrivalKind kind = ArrivalKind::kPoisson;
  double rate_per_s = 1.0;        // Poisson / Gamma mean rate
  double burstiness = 1.0;        // Gamma shape = burstiness; 1.0 is Poisson
  std::uint32_t concurrency = 1;  // closed loop
  double time_scale = 1.0;        // trace timestamps are multiplied by this
  // Rate sweep: the harness runs the workload once per rate (arrival offsets
  // re-drawn with assign_arrivals); empty means a single run at rate_per_s.
  std::vector<double> sweep_rates_per_s;
};

struct Workload {
  static constexpr int kSpecVersion = 1;
  std::string name;
  std::string kind;  // long-context | rag | multi-turn | trace | synthetic
  std::uint64_t seed = 0;
  std::string tokenizer;  // e.g. "cl100k_base", "llama3", "bytes"
  ArrivalSpec arrival;
  std::vector<Session> sessions;
  // Longest prompt + output the workload may contain (0: no limit). Specs
  // whose requests go beyond it are rejected by validation.
  std::uint64_t max_context_tokens = 0;
  std::string description;
  // The generator options that produced the workload, recorded as text so a
  // spec says how to regenerate it (sorted: serialization is deterministic).
  std::map<std::string, std::string> parameters;

  std::size_t request_count() const {
    std::size_t n = 0;
    for (const auto& s : sessions) n += s.requests.size();
    return n;
  }
};

}  // namespace prism::workloads
