// One `prism run`, as a library call the CLI and the tests share: run a
// workload against an OpenAI-compatible target, compute the metrics and write
// the result file (schema v1, results/run_file.h) atomically, also when the
// run was interrupted (then marked incomplete).
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "prism/harness/load_generator.h"
#include "prism/harness/metrics.h"
#include "prism/harness/openai_target.h"
#include "prism/results/run_file.h"
#include "prism/workloads/workload.h"

namespace prism::harness {

struct RunSpec {
  workloads::Workload workload;
  std::string workload_source;  // the file it came from, for the record
  OpenAiTargetOptions target;   // used unless make_target is set
  // Any other Target (the in-process engine, ...); built once, for this run.
  std::function<std::unique_ptr<Target>()> make_target;
  LoadOptions load;
  MetricsOptions metrics;
  std::string output_path;           // empty: no file
  bool measure_environment = false;  // the doctor's bandwidth and sgemm figures (about 2 s)
  bool use_workload_tokenizer =
      true;  // detokenize text prompts with workload.tokenizer when it loads
  nlohmann::json configuration = nlohmann::json::object();  // options as given, recorded verbatim
};

struct RunOutcome {
  results::Run run;
  Metrics metrics;
  std::string tokenizer_note;  // how text prompts were made, when it matters
};

RunOutcome execute_run(RunSpec spec);

// Summary and stable content hash (FNV-1a 64 of the canonical serialization).
nlohmann::json workload_summary(const workloads::Workload& workload, const std::string& source);

}  // namespace prism::harness
