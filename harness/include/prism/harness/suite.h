// Prism's main job: `prism run` with no workload runs the standard suite —
// long-context (SCBench shared context), RAG (Zipf chunks at non-prefix
// positions) and multi-turn chat — against a target (by default the reference
// engine's `small` model in process), writes one run file per workload, adds
// them to the result store, prints one comparison table and writes a report.
//
// Sizes are CPU scale: the standard suite takes a few minutes on 2 cores; the
// smoke suite (tests, `--size smoke`) a few seconds with the `tiny` model.
// Each workload gets a fresh target, so one workload's prefix cache never
// helps the next.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "prism/harness/runner.h"
#include "prism/results/report.h"
#include "prism/workloads/tokenizer.h"
#include "prism/workloads/workload.h"

namespace prism::harness {

enum class SuiteSize { kSmoke, kStandard };
SuiteSize suite_size_from_string(
    const std::string& text);  // smoke|standard; throws invalid_argument
std::string to_string(SuiteSize size);

struct SuiteWorkload {
  std::string name;  // long-context, rag, multi-turn
  workloads::Workload workload;
};

// The suite's workloads, generated with `tokenizer` (the model's), every
// prompt plus output within `max_context_tokens`. Pure function of the
// arguments: same seed, same bytes.
std::vector<SuiteWorkload> standard_suite(const workloads::Tokenizer& tokenizer, SuiteSize size,
                                          std::uint64_t seed, std::uint64_t max_context_tokens);

struct SuiteOptions {
  std::string model = "small";  // engine model: built-in name, config file or weights
  SuiteSize size = SuiteSize::kStandard;
  std::uint64_t seed = 0;
  std::vector<std::string> only;  // run only these workloads (names); empty: all
  std::string output_dir = "results/main";
  std::string store_path = "results/prism.db";  // empty: do not store
  bool report = true;
  bool figures = true;  // gnuplot figures in the report
  MetricsOptions metrics;
  bool measure_environment = true;  // once, for the first run; later runs reuse the record
  const std::atomic<int>* interrupt = nullptr;
  std::function<void(const std::string& workload, const LoadProgress&)> on_progress;
  std::function<void(const std::string& line)> log;  // one line per step
  // Overrides the target (tests); default: an in-process engine for `model`.
  std::function<std::unique_ptr<Target>()> make_target;
};

struct SuiteOutcome {
  std::vector<RunOutcome> runs;        // in suite order; fewer when interrupted
  std::vector<std::string> run_files;  // one per run, under output_dir
  std::string table;                   // Markdown comparison table of the runs
  std::optional<results::ReportResult> report;
  std::vector<std::string> warnings;  // store or report problems (the runs are still written)
  bool complete = true;
  std::string incomplete_reason;
};

// Runs the suite. Throws for a model or tokenizer that cannot be loaded or an
// output directory that cannot be written; a failed workload (all requests
// errors) still gives a run file. An interrupt stops the current workload,
// keeps what it measured (marked incomplete) and skips the rest.
SuiteOutcome run_suite(const SuiteOptions& options);

}  // namespace prism::harness
