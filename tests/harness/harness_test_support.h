// Small workloads built in code for harness tests.
#pragma once

#include <string>
#include <vector>

#include "prism/workloads/workload.h"

namespace prism::test {

// `sessions` single-request sessions, due every `gap_s` seconds (open loop).
inline workloads::Workload open_loop_workload(std::size_t sessions, double gap_s,
                                              std::uint32_t output_tokens, std::size_t prompt = 8) {
  workloads::Workload w;
  w.name = "test-open-loop";
  w.kind = "synthetic";
  w.tokenizer = "bytes";
  w.arrival.kind = workloads::ArrivalKind::kTrace;
  for (std::size_t s = 0; s < sessions; ++s) {
    workloads::Session session;
    session.id = s;
    workloads::Request r;
    r.id = s;
    r.session = s;
    r.arrival_offset_s = gap_s * static_cast<double>(s);
    r.output_tokens = output_tokens;
    workloads::Segment seg;
    seg.content_id = "user-" + std::to_string(s);
    seg.provenance = workloads::Provenance::kUser;
    for (std::size_t i = 0; i < prompt; ++i)
      seg.tokens.push_back(static_cast<std::int32_t>(97 + (i + s) % 26));
    r.segments.push_back(seg);
    session.requests.push_back(r);
    w.sessions.push_back(session);
  }
  return w;
}

// Closed-loop sessions of `turns` turns: system prompt, then per turn the
// history (as the generator writes it) and new user text; think time between.
inline workloads::Workload multi_turn_workload(std::size_t sessions, std::size_t turns,
                                               double think_s, std::uint32_t output_tokens) {
  workloads::Workload w;
  w.name = "test-multi-turn";
  w.kind = "multi-turn";
  w.tokenizer = "bytes";
  w.arrival.kind = workloads::ArrivalKind::kClosedLoop;
  w.arrival.concurrency = static_cast<std::uint32_t>(sessions);
  std::uint64_t id = 0;
  for (std::size_t s = 0; s < sessions; ++s) {
    workloads::Session session;
    session.id = 100 + s;
    workloads::Segment system{"system", workloads::Provenance::kSystem, {83, 89, 83}};
    std::vector<workloads::Segment> history;
    for (std::size_t t = 0; t < turns; ++t) {
      workloads::Request r;
      r.id = id++;
      r.session = session.id;
      r.turn = static_cast<std::uint32_t>(t);
      r.arrival_offset_s = t == 0 ? 0.0 : think_s;
      r.output_tokens = output_tokens;
      r.segments.push_back(system);
      for (const auto& h : history) r.segments.push_back(h);
      workloads::Segment user{
          "s" + std::to_string(s) + "-user-" + std::to_string(t),
          workloads::Provenance::kUser,
          {static_cast<std::int32_t>(65 + t), static_cast<std::int32_t>(48 + s)}};
      r.segments.push_back(user);
      session.requests.push_back(r);
      // What the generator imagines the reply to be; the harness must replace it.
      history.push_back(user);
      history.push_back({"s" + std::to_string(s) + "-reply-" + std::to_string(t),
                         workloads::Provenance::kHistory,
                         {120, 120}});
    }
    w.sessions.push_back(session);
  }
  return w;
}

}  // namespace prism::test
