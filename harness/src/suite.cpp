#include "prism/harness/suite.h"

#include <algorithm>
#include <filesystem>
#include <stdexcept>

#include <fmt/core.h>

#include "prism/engine/model_config.h"
#include "prism/harness/engine_target.h"
#include "prism/results/run_source.h"
#include "prism/results/store.h"
#include "prism/results/table.h"
#include "prism/workloads/generators.h"

namespace prism::harness {

namespace {

using WDist = workloads::Distribution;

// The table the main job prints: latency at the median and the tail, decode
// speed and output throughput for each workload.
const std::vector<std::string>& suite_table_metrics() {
  static const std::vector<std::string> metrics{"ttft.p50", "ttft.p99", "tpot.p50", "e2e.p50",
                                                "throughput.output_tps"};
  return metrics;
}

workloads::CommonOptions common(const std::string& name, std::uint64_t seed,
                                std::uint64_t max_context, std::uint32_t concurrency) {
  workloads::CommonOptions c;
  c.seed = seed;
  c.name = name;
  c.max_context_tokens = max_context;
  c.arrival.kind = workloads::ArrivalKind::kClosedLoop;
  c.arrival.concurrency = concurrency;
  return c;
}

}  // namespace

SuiteSize suite_size_from_string(const std::string& text) {
  if (text == "smoke") return SuiteSize::kSmoke;
  if (text == "standard") return SuiteSize::kStandard;
  throw std::invalid_argument(fmt::format("unknown suite size '{}' (smoke or standard)", text));
}

std::string to_string(SuiteSize size) {
  return size == SuiteSize::kSmoke ? "smoke" : "standard";
}

std::vector<SuiteWorkload> standard_suite(const workloads::Tokenizer& tokenizer, SuiteSize size,
                                          std::uint64_t seed, std::uint64_t max_context) {
  const bool smoke = size == SuiteSize::kSmoke;
  std::vector<SuiteWorkload> suite;

  // Long context, SCBench style: one context per length, followed by separate
  // requests that share it, one at a time, so the second query onwards shows
  // what context reuse saves.
  workloads::LongContextOptions lc;
  lc.context_lengths =
      smoke ? std::vector<std::uint32_t>{256, 512} : std::vector<std::uint32_t>{2048, 4096, 8192};
  lc.shared_context = workloads::SharedContextMode::kMultiRequest;
  lc.queries = 2;
  lc.query_tokens = smoke ? 8 : 32;
  lc.output_tokens = WDist::fixed(smoke ? 8 : 32);
  suite.push_back(
      {"long-context", workloads::generate_long_context(
                           lc, common("long-context", seed, max_context, 1), tokenizer)});

  // RAG: k chunks of a corpus by Zipf popularity, so chunks recur at
  // non-prefix positions; four requests in flight.
  workloads::RagOptions rag;
  rag.requests = smoke ? 4 : 12;
  rag.chunks = smoke ? 16 : 64;
  rag.chunk_tokens = smoke ? 32 : 256;
  rag.top_k = smoke ? 2 : 4;
  rag.system_tokens = smoke ? 16 : 128;
  rag.question_tokens = WDist::fixed(smoke ? 8 : 48);
  rag.output_tokens = WDist::fixed(smoke ? 8 : 32);
  suite.push_back({"rag", workloads::generate_rag(
                              rag, common("rag", seed, max_context, smoke ? 2 : 4), tokenizer)});

  // Multi-turn chat: a shared system prompt, growing history, think time.
  // Every session is in flight at once (the cap counts requests, so a
  // smaller one would make turns queue behind other sessions' turns).
  workloads::MultiTurnOptions mt;
  mt.sessions = smoke ? 2 : 6;
  mt.turns = WDist::parse(smoke ? "fixed:2" : "uniform:3:4", "turns");
  mt.user_tokens = WDist::parse(smoke ? "fixed:16" : "lognormal:128:0.5", "user tokens");
  mt.answer_tokens = WDist::parse(smoke ? "fixed:8" : "lognormal:64:0.3", "answer tokens");
  mt.think_time_s = WDist::parse(smoke ? "fixed:0" : "exponential:0.5", "think time");
  mt.system_tokens = smoke ? 16 : 256;
  suite.push_back(
      {"multi-turn", workloads::generate_multi_turn(
                         mt, common("multi-turn", seed, max_context, mt.sessions), tokenizer)});
  return suite;
}

SuiteOutcome run_suite(const SuiteOptions& options) {
  const auto log = [&](const std::string& line) {
    if (options.log) options.log(line);
  };
  const engine::ModelConfig config = engine::load_model_config(options.model);
  const auto tokenizer = workloads::load_tokenizer(config.tokenizer);
  auto suite = standard_suite(*tokenizer, options.size, options.seed,
                              static_cast<std::uint64_t>(config.max_context));
  if (!options.only.empty()) {
    for (const auto& name : options.only) {
      if (std::none_of(suite.begin(), suite.end(), [&](const auto& w) { return w.name == name; }))
        throw std::invalid_argument(
            fmt::format("unknown suite workload '{}' (long-context, rag or multi-turn)", name));
    }
    std::erase_if(suite, [&](const SuiteWorkload& w) {
      return std::find(options.only.begin(), options.only.end(), w.name) == options.only.end();
    });
  }

  std::error_code ec;
  std::filesystem::create_directories(options.output_dir, ec);
  if (ec)
    throw std::runtime_error(
        fmt::format("cannot create output directory {}: {}", options.output_dir, ec.message()));

  SuiteOutcome outcome;
  nlohmann::json environment;
  for (std::size_t i = 0; i < suite.size(); ++i) {
    const SuiteWorkload& entry = suite[i];
    log(fmt::format("[{}/{}] {}: {} sessions on engine:{}", i + 1, suite.size(), entry.name,
                    entry.workload.sessions.size(), config.name));
    RunSpec spec;
    spec.workload = entry.workload;
    spec.workload_source = fmt::format("suite:{}:{}", to_string(options.size), entry.name);
    if (options.make_target) {
      spec.make_target = options.make_target;
    } else {
      const std::string model = options.model;
      spec.make_target = [model] { return make_engine_target(model); };
    }
    spec.load.interrupt = options.interrupt;
    if (options.on_progress) {
      const std::string name = entry.name;
      spec.load.on_progress = [name, &options](const LoadProgress& p) {
        options.on_progress(name, p);
      };
    }
    spec.metrics = options.metrics;
    spec.measure_environment = options.measure_environment && i == 0;
    spec.configuration = {{"target", "engine:" + options.model},
                          {"model", config.name},
                          {"suite", to_string(options.size)},
                          {"suite_workload", entry.name},
                          {"seed", options.seed}};
    RunOutcome run = execute_run(std::move(spec));
    // One environment record for the whole suite: measured once, so the runs
    // are comparable and the peaks are not measured three times.
    if (i == 0) {
      environment = run.run.environment;
    } else {
      run.run.environment = environment;
    }
    const std::string path =
        (std::filesystem::path(options.output_dir) / (entry.name + ".json")).string();
    results::write_run_file(path, run.run);
    outcome.run_files.push_back(path);
    const bool interrupted = !run.run.complete;
    if (interrupted) {
      outcome.complete = false;
      outcome.incomplete_reason = fmt::format("{}: {}", entry.name, run.run.incomplete_reason);
    }
    outcome.runs.push_back(std::move(run));
    if (interrupted) break;
  }

  if (!options.store_path.empty()) {
    try {
      const auto parent = std::filesystem::path(options.store_path).parent_path();
      if (!parent.empty()) std::filesystem::create_directories(parent);
      results::Store store(options.store_path);
      for (const auto& run : outcome.runs) store.put_run(run.run);
      log(fmt::format("stored {} runs in {}", outcome.runs.size(), options.store_path));
    } catch (const std::exception& e) {
      outcome.warnings.push_back(fmt::format("result store not updated: {}", e.what()));
    }
  }

  // The comparison table, from the run files just written (no store needed).
  results::RunLoader loader(options.store_path);
  std::vector<results::TableRun> table_runs;
  for (const auto& path : outcome.run_files)
    table_runs.push_back(loader.table_run(loader.resolve(path), suite_table_metrics()));
  results::TableOptions table_options;
  table_options.metrics = suite_table_metrics();
  outcome.table = results::render_table(results::build_table(table_runs, table_options),
                                        results::TableFormat::kMarkdown);

  if (options.report && !outcome.runs.empty()) {
    std::vector<results::Run> runs;
    for (const auto& run : outcome.runs) runs.push_back(run.run);
    results::ReportOptions report_options;
    report_options.title =
        fmt::format("Prism main job: engine:{} ({} suite)", config.name, to_string(options.size));
    report_options.figures = options.figures;
    try {
      outcome.report = results::write_report(runs, options.output_dir, report_options);
      for (const auto& w : outcome.report->warnings) outcome.warnings.push_back(w);
    } catch (const std::exception& e) {
      outcome.warnings.push_back(fmt::format("report not written: {}", e.what()));
    }
  }
  return outcome;
}

}  // namespace prism::harness
