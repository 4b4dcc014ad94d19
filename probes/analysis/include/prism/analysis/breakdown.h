// Stage attribution: from a Trace and a set of stage rules to per-iteration,
// per-request and whole-run stage times, GPU busy/idle and launch+queue time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "prism/analysis/trace.h"
#include "prism/control/stage_rules.h"

namespace prism::analysis {

// Stage rules with their text kept (shared with the agent: control/stage_rules.h).
class StageRules {
 public:
  StageRules();
  // Parses rule text; throws TraceError("<origin>: line N: ...").
  static StageRules parse(const std::string& text, const std::string& origin);
  // A built-in set by name: prism, vllm, sglang, trtllm. Throws on an unknown name.
  static StageRules builtin(const std::string& name);
  static std::vector<std::string> builtin_names();
  // A built-in name or a path to a rules file.
  static StageRules load(const std::string& name_or_path);

  const control::StageRuleSet& set() const { return *set_; }
  const std::string& text() const { return text_; }
  // Stage names in the order the rules first mention them (iteration and request excluded).
  std::vector<std::string> stage_names() const;

 private:
  std::shared_ptr<control::StageRuleSet> set_;
  std::string text_;
};

// The text of a built-in rule set (documented in probes/README.md).
const std::string& builtin_rules_text(const std::string& name);

struct Iteration {
  uint64_t index = 0;
  uint64_t start_ns = 0;
  uint64_t end_ns = 0;
  uint32_t thread = 0;
  std::vector<uint64_t> stage_ns;      // host time per stage (Breakdown::stages order)
  std::vector<uint64_t> stage_gpu_ns;  // GPU time per stage
  uint64_t gpu_busy_ns = 0;            // union of GPU activity inside the iteration
  uint64_t gpu_idle_ns = 0;            // duration - busy (0 when the trace has no GPU activity)
  uint64_t launch_queue_ns = 0;        // sum over kernels of kernel start - launch call start
  uint64_t kernels = 0;
  bool open = false;  // its range was still open when the capture ended: cut short
  uint64_t duration() const { return end_ns - start_ns; }
};

struct RequestBreakdown {
  std::string name;  // the request range's name
  uint64_t start_ns = 0;
  uint64_t end_ns = 0;
  uint64_t iterations = 0;         // iterations that overlap the request
  std::vector<uint64_t> stage_ns;  // stage time inside the request's span
};

struct StageTotal {
  std::string stage;
  uint64_t count = 0;  // ranges (host) attributed
  uint64_t host_ns =
      0;  // union of the stage's ranges per thread (nested same-stage not double counted)
  uint64_t gpu_ns = 0;  // GPU activity attributed to the stage
  uint64_t max_ns = 0;  // longest single range
};

struct Breakdown {
  std::vector<std::string> stages;
  std::vector<StageTotal> totals;  // same order as stages
  std::vector<Iteration> iterations;
  std::vector<RequestBreakdown> requests;
  std::string iteration_rule;       // pattern used, or the detected range name
  bool iteration_detected = false;  // true when no rule matched and a name was inferred
  uint64_t begin_ns = 0;
  uint64_t end_ns = 0;
  uint64_t gpu_busy_ns = 0;
  uint64_t gpu_idle_ns = 0;
  uint64_t launch_queue_ns = 0;
  uint64_t kernels = 0;
  bool has_gpu = false;
  uint64_t unattributed_ranges = 0;  // ranges no rule matched
  // Copied from the trace so a breakdown is self-describing.
  bool complete = true;
  std::string partial_reason;
  uint64_t dropped = 0;
  uint64_t events = 0;
};

Breakdown analyze(const Trace& trace, const StageRules& rules);

}  // namespace prism::analysis
