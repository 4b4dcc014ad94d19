#include "prism/analysis/live.h"

#include <algorithm>
#include <limits>

namespace prism::analysis {
namespace {

bool host_event(uint16_t kind) {
  return kind >= agent::PRISM_EV_PUSH && kind <= agent::PRISM_EV_MARK;
}

// A name can go into a rule line as a glob only if it is one token without comment marks.
bool usable_as_pattern(const std::string& name) {
  if (name.empty() || name.size() >= control::kMaxPattern) return false;
  for (const char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == '#') return false;
  }
  return true;
}

}  // namespace

LiveBreakdown::LiveBreakdown(StageRules rules) : rules_(std::move(rules)) {}

void LiveBreakdown::add(const RawBatch& batch) {
  pid_ = batch.pid;
  for (const auto& [id, text] : batch.strings) {
    if (id >= strings_.size()) strings_.resize(id + 1);
    strings_[id] = text;
  }
  pending_.reserve(pending_.size() + batch.events.size());
  for (const agent::prism_raw_event& e : batch.events)
    if (host_event(e.kind)) pending_.push_back(e);
  if (pending_.size() > kMaxPending) {
    // No iteration ever completed to let the oldest events go (a program without an iteration
    // structure): give up the oldest half rather than grow without bound.
    const size_t drop = pending_.size() / 2;
    pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(drop));
    dropped_ += drop;
  }
}

bool LiveBreakdown::relevant(uint32_t name) {
  if (name >= relevant_.size()) relevant_.resize(std::max<size_t>(name + 1, strings_.size()), -1);
  int8_t& r = relevant_[name];
  if (r < 0) {
    const std::string& text = name < strings_.size() ? strings_[name] : strings_[0];
    const auto& set = rules_.set();
    r = control::match_rule(set, control::RuleTarget::kIteration, text.data(), text.size()) >= 0 ||
                (control::match_rule(set, control::RuleTarget::kRequest, text.data(), text.size()) <
                     0 &&
                 control::match_rule(set, control::RuleTarget::kRange, text.data(), text.size()) >=
                     0)
            ? 1
            : 0;
  }
  return r == 1;
}

void LiveBreakdown::fix_detected_iteration(const std::string& name) {
  // The offline breakdown guesses the engine step as the most frequent top-level range; in a
  // window of a few iterations that guess could change from poll to poll, so the first one
  // made is kept as a rule.
  if (!usable_as_pattern(name)) return;
  try {
    std::string text = rules_.text();
    if (!text.empty() && text.back() != '\n') text += '\n';
    rules_ = StageRules::parse(text + "iteration " + name + "\n", "live rules");
    detected_ = name;
    relevant_.clear();
  } catch (const TraceError&) {
    // The rule set is full: detection goes on every poll.
  }
}

Breakdown LiveBreakdown::take() {
  Breakdown out;
  out.stages = rules_.stage_names();
  out.totals.resize(out.stages.size());
  for (size_t i = 0; i < out.stages.size(); ++i) out.totals[i].stage = out.stages[i];
  if (pending_.empty()) return out;

  std::vector<RangeEvents> owners;
  Trace trace = trace_from_raw_events(pending_, strings_, pid_, &owners);
  Breakdown b = analyze(trace, rules_);
  if (b.iteration_detected && detected_.empty()) {
    fix_detected_iteration(b.iteration_rule);
    if (!detected_.empty()) b = analyze(trace, rules_);
  }
  out.stages = b.stages;
  out.totals.assign(b.stages.size(), StageTotal{});
  for (size_t i = 0; i < out.stages.size(); ++i) out.totals[i].stage = out.stages[i];
  out.iteration_rule = b.iteration_rule;
  out.iteration_detected = b.iteration_detected;

  // Nothing that begins before the earliest open iteration or stage range can be final.
  uint64_t horizon = std::numeric_limits<uint64_t>::max();
  for (const Span& s : trace.ranges)
    if (s.open && relevant(s.name)) horizon = std::min(horizon, s.start_ns);

  // Iterations from ranges (a breakdown with none makes one of the whole window: not one).
  const bool real = !(b.iterations.size() == 1 && b.iterations[0].thread == 0 &&
                      b.iterations[0].start_ns == b.begin_ns && b.iterations[0].end_ns == b.end_ns);
  uint64_t cut = real ? horizon : 0;
  for (Iteration& it : b.iterations) {
    if (!real) break;
    const auto key = std::make_tuple(it.end_ns, it.start_ns, it.thread);
    if (taken_.count(key) != 0) continue;
    if (it.open || it.end_ns > horizon) {
      cut = std::min(cut, it.start_ns);  // still to come: keep everything from its start on
      continue;
    }
    taken_.insert(key);
    it.index = taken_count_++;
    for (size_t s = 0; s < it.stage_ns.size() && s < out.totals.size(); ++s) {
      out.totals[s].host_ns += it.stage_ns[s];
      out.totals[s].max_ns = std::max(out.totals[s].max_ns, it.stage_ns[s]);
      if (it.stage_ns[s] > 0) ++out.totals[s].count;
    }
    out.iterations.push_back(std::move(it));
  }
  if (!out.iterations.empty()) {
    out.begin_ns = out.iterations.front().start_ns;
    for (const Iteration& it : out.iterations) out.end_ns = std::max(out.end_ns, it.end_ns);
  }
  out.events = trace.event_count;

  // Forget what no pending iteration needs: ranges that ended by the cut (both their events)
  // and loose events (marks, ends whose beginning is gone) before it.
  if (cut > 0) {
    std::vector<int32_t> owner(pending_.size(), -1);
    for (size_t r = 0; r < owners.size(); ++r) {
      if (owners[r].begin != RangeEvents::kNoEvent)
        owner[owners[r].begin] = static_cast<int32_t>(r);
      if (owners[r].end != RangeEvents::kNoEvent) owner[owners[r].end] = static_cast<int32_t>(r);
    }
    size_t kept = 0;
    for (size_t i = 0; i < pending_.size(); ++i) {
      bool keep = false;
      if (owner[i] >= 0) {
        const Span& s = trace.ranges[static_cast<size_t>(owner[i])];
        keep = s.open || s.end_ns > cut;
      } else {
        keep = pending_[i].t0 >= cut;
      }
      if (keep) pending_[kept++] = pending_[i];
    }
    pending_.resize(kept);
    // Iterations ending by the cut are gone from the events: they cannot come back.
    taken_.erase(taken_.begin(), taken_.lower_bound(std::make_tuple(cut + 1, uint64_t{0}, 0u)));
  }
  return out;
}

}  // namespace prism::analysis
