// From ranges and activities to stage times. One pass over the ranges (parents
// come before children, so "is this range nested in one of the same stage?" is
// a bit mask inherited from the parent), binary searches to place ranges and
// kernels in iterations, and a merge of GPU intervals for busy/idle time.
#include <algorithm>
#include <unordered_map>

#include "prism/analysis/breakdown.h"

namespace prism::analysis {
namespace {

constexpr int kUnknown = -2;
constexpr int kNone = -1;
constexpr int kIterationStage = -3;
constexpr int kRequestStage = -4;

class NameClassifier {
 public:
  NameClassifier(const Trace& trace, const StageRules& rules,
                 const std::vector<std::string>& stages)
      : trace_(trace),
        rules_(rules.set()),
        stages_(stages),
        range_(trace.strings.size(), kUnknown),
        kernel_(trace.strings.size(), kUnknown) {}

  int range_class(uint32_t name) {
    if (name >= range_.size()) return kNone;
    int& c = range_[name];
    if (c == kUnknown) {
      const std::string& text = trace_.name(name);
      if (control::match_rule(rules_, control::RuleTarget::kIteration, text.data(), text.size()) >=
          0) {
        c = kIterationStage;
      } else if (control::match_rule(rules_, control::RuleTarget::kRequest, text.data(),
                                     text.size()) >= 0) {
        c = kRequestStage;
      } else {
        c = stage_index(
            control::match_rule(rules_, control::RuleTarget::kRange, text.data(), text.size()));
      }
    }
    return c;
  }

  int kernel_stage(uint32_t name) {
    if (name >= kernel_.size()) return kNone;
    int& c = kernel_[name];
    if (c == kUnknown) {
      const std::string& text = trace_.name(name);
      c = stage_index(
          control::match_rule(rules_, control::RuleTarget::kKernel, text.data(), text.size()));
    }
    return c;
  }

  void force_iteration(uint32_t name) {
    if (name < range_.size()) range_[name] = kIterationStage;
  }

 private:
  int stage_index(int rule) const {
    if (rule < 0) return kNone;
    const char* stage = rules_.rules[rule].stage;
    for (size_t i = 0; i < stages_.size(); ++i) {
      if (stages_[i] == stage) return static_cast<int>(i);
    }
    return kNone;
  }

  const Trace& trace_;
  const control::StageRuleSet& rules_;
  const std::vector<std::string>& stages_;
  std::vector<int> range_;
  std::vector<int> kernel_;
};

// Index of the iteration whose window holds t, or -1.
int64_t iteration_at(const std::vector<Iteration>& iterations, uint64_t t) {
  auto it = std::upper_bound(iterations.begin(), iterations.end(), t,
                             [](uint64_t value, const Iteration& i) { return value < i.start_ns; });
  if (it == iterations.begin()) return -1;
  --it;
  return t < it->end_ns || (t == it->end_ns && it->start_ns == it->end_ns) ? it - iterations.begin()
                                                                           : -1;
}

uint64_t overlap(uint64_t a0, uint64_t a1, uint64_t b0, uint64_t b1) {
  const uint64_t lo = std::max(a0, b0);
  const uint64_t hi = std::min(a1, b1);
  return hi > lo ? hi - lo : 0;
}

}  // namespace

Breakdown analyze(const Trace& trace, const StageRules& rules) {
  Breakdown out;
  out.stages = rules.stage_names();
  const size_t stage_count = out.stages.size();
  out.totals.resize(stage_count);
  for (size_t i = 0; i < stage_count; ++i) out.totals[i].stage = out.stages[i];
  out.complete = trace.complete;
  out.partial_reason = trace.partial_reason;
  out.dropped = trace.dropped_host + trace.dropped_gpu + trace.dropped_window;
  out.events = trace.event_count;
  out.begin_ns = trace.begin_ns();
  out.end_ns = trace.end_ns();
  out.has_gpu = !trace.gpu.empty();

  NameClassifier classes(trace, rules, out.stages);
  const auto& ranges = trace.ranges;

  // ---- iterations: ranges matching an iteration rule, outermost only.
  std::vector<size_t> iteration_ranges;
  for (size_t i = 0; i < ranges.size(); ++i) {
    if (classes.range_class(ranges[i].name) == kIterationStage) iteration_ranges.push_back(i);
  }
  for (uint32_t r = 0; r < rules.set().count; ++r) {
    if (rules.set().rules[r].target == control::RuleTarget::kIteration) {
      out.iteration_rule = rules.set().rules[r].pattern;
      break;
    }
  }
  if (iteration_ranges.empty()) {
    // No rule matched: the most frequent top-level range name is the engine step.
    std::unordered_map<uint32_t, uint64_t> counts;
    for (const Span& s : ranges) {
      if (s.parent < 0) ++counts[s.name];
    }
    uint32_t best = 0;
    uint64_t best_count = 1;
    for (const auto& [name, count] : counts) {
      if (count > best_count || (count == best_count && best != 0 && name < best)) {
        best = name;
        best_count = count;
      }
    }
    if (best != 0) {
      classes.force_iteration(best);
      out.iteration_rule = trace.name(best);
      out.iteration_detected = true;
      for (size_t i = 0; i < ranges.size(); ++i) {
        if (ranges[i].name == best && ranges[i].parent < 0) iteration_ranges.push_back(i);
      }
    }
  }
  {
    std::vector<char> is_iteration(ranges.size(), 0);
    for (size_t i : iteration_ranges) is_iteration[i] = 1;
    std::vector<size_t> outer;
    for (size_t i : iteration_ranges) {
      bool nested = false;
      for (int32_t p = ranges[i].parent; p >= 0 && !nested;
           p = ranges[static_cast<size_t>(p)].parent) {
        nested = is_iteration[static_cast<size_t>(p)] != 0;
      }
      if (!nested) outer.push_back(i);
    }
    for (size_t i : outer) {
      Iteration it;
      it.start_ns = ranges[i].start_ns;
      it.end_ns = ranges[i].end_ns;
      it.thread = ranges[i].track;
      it.open = ranges[i].open;
      out.iterations.push_back(std::move(it));
    }
  }
  if (out.iterations.empty() && out.end_ns > out.begin_ns) {
    Iteration whole;  // no iteration structure at all: the whole capture is one
    whole.start_ns = out.begin_ns;
    whole.end_ns = out.end_ns;
    out.iterations.push_back(std::move(whole));
  }
  std::sort(out.iterations.begin(), out.iterations.end(),
            [](const Iteration& a, const Iteration& b) { return a.start_ns < b.start_ns; });
  for (size_t i = 0; i < out.iterations.size(); ++i) {
    out.iterations[i].index = i;
    out.iterations[i].stage_ns.assign(stage_count, 0);
    out.iterations[i].stage_gpu_ns.assign(stage_count, 0);
  }

  // ---- host stage time: count a range unless an ancestor has the same stage.
  std::vector<uint64_t> ancestor_stages(ranges.size(), 0);
  std::vector<int> stage_of(ranges.size(), kNone);
  struct Counted {
    uint64_t start;
    uint64_t end;
    int stage;
  };
  std::vector<Counted> counted;
  std::vector<size_t> request_ranges;
  for (size_t i = 0; i < ranges.size(); ++i) {
    const Span& s = ranges[i];
    const int c = classes.range_class(s.name);
    stage_of[i] = c;
    uint64_t mask = 0;
    if (s.parent >= 0) {
      const auto p = static_cast<size_t>(s.parent);
      mask = ancestor_stages[p];
      if (stage_of[p] >= 0 && stage_of[p] < 64) mask |= 1ull << stage_of[p];
    }
    ancestor_stages[i] = mask;
    if (c == kRequestStage) {
      request_ranges.push_back(i);
      continue;
    }
    if (c == kIterationStage) continue;
    if (c < 0) {
      ++out.unattributed_ranges;
      continue;
    }
    if (c < 64 && (mask & (1ull << c)) != 0) continue;  // nested in the same stage
    const uint64_t duration = s.duration();
    StageTotal& total = out.totals[static_cast<size_t>(c)];
    ++total.count;
    total.host_ns += duration;
    total.max_ns = std::max(total.max_ns, duration);
    const int64_t k = iteration_at(out.iterations, s.start_ns);
    if (k >= 0) {
      Iteration& it = out.iterations[static_cast<size_t>(k)];
      it.stage_ns[static_cast<size_t>(c)] +=
          std::min(s.end_ns, std::max(it.end_ns, s.start_ns)) - s.start_ns;
    }
  }

  // ---- GPU: busy/idle from merged intervals, stages via kernel rules or the launching range.
  if (!trace.gpu.empty()) {
    std::unordered_map<uint32_t, size_t> launch_of;  // correlation -> api index
    for (size_t i = 0; i < trace.api.size(); ++i) {
      const Span& a = trace.api[i];
      if (a.correlation != 0 && a.kind != SpanKind::kSync) launch_of.emplace(a.correlation, i);
    }
    std::unordered_map<uint32_t, std::vector<size_t>> thread_ranges;
    for (size_t i = 0; i < ranges.size(); ++i) thread_ranges[ranges[i].track].push_back(i);
    for (auto& [tid, list] : thread_ranges) {
      std::stable_sort(list.begin(), list.end(),
                       [&](size_t a, size_t b) { return ranges[a].start_ns < ranges[b].start_ns; });
    }
    auto enclosing_stage = [&](uint32_t tid, uint64_t t) -> int {
      const auto found = thread_ranges.find(tid);
      if (found == thread_ranges.end()) return kNone;
      const auto& list = found->second;
      auto it = std::upper_bound(list.begin(), list.end(), t, [&](uint64_t value, size_t i) {
        return value < ranges[i].start_ns;
      });
      if (it == list.begin()) return kNone;
      for (int64_t r = static_cast<int64_t>(*(it - 1)); r >= 0;
           r = ranges[static_cast<size_t>(r)].parent) {
        const Span& s = ranges[static_cast<size_t>(r)];
        if (s.end_ns >= t && stage_of[static_cast<size_t>(r)] >= 0)
          return stage_of[static_cast<size_t>(r)];
      }
      return kNone;
    };
    std::vector<std::pair<uint64_t, uint64_t>> intervals;
    intervals.reserve(trace.gpu.size());
    for (const Span& g : trace.gpu) {
      intervals.emplace_back(g.start_ns, g.end_ns);
      uint64_t when = g.start_ns;
      int stage = g.kind == SpanKind::kKernel ? classes.kernel_stage(g.name) : kNone;
      const auto launch = launch_of.find(g.correlation);
      if (launch != launch_of.end()) {
        const Span& a = trace.api[launch->second];
        when = a.start_ns;
        if (stage == kNone) stage = enclosing_stage(a.track, a.start_ns);
        if (g.kind == SpanKind::kKernel && g.start_ns >= a.start_ns) {
          const int64_t k = iteration_at(out.iterations, when);
          out.launch_queue_ns += g.start_ns - a.start_ns;
          if (k >= 0)
            out.iterations[static_cast<size_t>(k)].launch_queue_ns += g.start_ns - a.start_ns;
        }
      }
      const int64_t k = iteration_at(out.iterations, when);
      if (g.kind == SpanKind::kKernel) {
        ++out.kernels;
        if (k >= 0) ++out.iterations[static_cast<size_t>(k)].kernels;
      }
      if (stage >= 0) {
        out.totals[static_cast<size_t>(stage)].gpu_ns += g.duration();
        if (k >= 0)
          out.iterations[static_cast<size_t>(k)].stage_gpu_ns[static_cast<size_t>(stage)] +=
              g.duration();
      }
    }
    std::sort(intervals.begin(), intervals.end());
    std::vector<std::pair<uint64_t, uint64_t>> merged;
    for (const auto& iv : intervals) {
      if (!merged.empty() && iv.first <= merged.back().second) {
        merged.back().second = std::max(merged.back().second, iv.second);
      } else {
        merged.push_back(iv);
      }
    }
    for (const auto& m : merged) out.gpu_busy_ns += m.second - m.first;
    const uint64_t span = out.end_ns - out.begin_ns;
    out.gpu_idle_ns = span > out.gpu_busy_ns ? span - out.gpu_busy_ns : 0;
    size_t cursor = 0;
    for (Iteration& it : out.iterations) {
      while (cursor < merged.size() && merged[cursor].second <= it.start_ns) ++cursor;
      for (size_t m = cursor; m < merged.size() && merged[m].first < it.end_ns; ++m) {
        it.gpu_busy_ns += overlap(merged[m].first, merged[m].second, it.start_ns, it.end_ns);
      }
      it.gpu_idle_ns = it.duration() > it.gpu_busy_ns ? it.duration() - it.gpu_busy_ns : 0;
    }
  }

  // ---- requests: stage ranges that start inside a request's span.
  if (!request_ranges.empty()) {
    counted.clear();
    for (size_t i = 0; i < ranges.size(); ++i) {
      const int c = stage_of[i];
      if (c < 0 || (c < 64 && (ancestor_stages[i] & (1ull << c)) != 0)) continue;
      counted.push_back({ranges[i].start_ns, ranges[i].end_ns, c});
    }
    std::sort(counted.begin(), counted.end(),
              [](const Counted& a, const Counted& b) { return a.start < b.start; });
    for (size_t r : request_ranges) {
      const Span& s = ranges[r];
      RequestBreakdown request;
      request.name = trace.name(s.name);
      request.start_ns = s.start_ns;
      request.end_ns = s.end_ns;
      request.stage_ns.assign(stage_count, 0);
      auto it = std::lower_bound(counted.begin(), counted.end(), s.start_ns,
                                 [](const Counted& c, uint64_t t) { return c.start < t; });
      for (; it != counted.end() && it->start < s.end_ns; ++it) {
        request.stage_ns[static_cast<size_t>(it->stage)] += std::min(it->end, s.end_ns) - it->start;
      }
      // Iterations are sorted and disjoint: those overlapping form one run.
      const auto first =
          std::upper_bound(out.iterations.begin(), out.iterations.end(), s.start_ns,
                           [](uint64_t t, const Iteration& i) { return t < i.end_ns; });
      const auto last =
          std::lower_bound(out.iterations.begin(), out.iterations.end(), s.end_ns,
                           [](const Iteration& i, uint64_t t) { return i.start_ns < t; });
      request.iterations = last > first ? static_cast<uint64_t>(last - first) : 0;
      out.requests.push_back(std::move(request));
    }
  }
  return out;
}

}  // namespace prism::analysis
