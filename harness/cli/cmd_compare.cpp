// prism compare BASE CANDIDATE: the statistical CI gate. Exit 1 on a
// significant regression beyond --max-regression, else 0. One run per side:
// the per-request test; several per side (comma-separated): the run-level test.
#include <algorithm>
#include <iostream>

#include <fmt/core.h>

#include "commands.h"
#include "prism/results/atomic_file.h"
#include "prism/results/compare.h"
#include "prism/results/run_source.h"

namespace prism::cli {
namespace {

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    if (comma > start) out.push_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

}  // namespace

void add_compare_command(CLI::App& app, int& exit_code) {
  struct Options {
    std::string base;
    std::string candidate;
    std::vector<std::string> metrics;
    std::string max_regression = "0%";
    std::string same_within = "5%";
    double alpha = 0.05;
    bool force = false;
    bool unpaired = false;
    std::string junit;
    std::string markdown;
    std::string db = results::kDefaultStorePath;
    std::uint64_t seed = 1;
    std::size_t resamples = 2000;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "compare", "Decide with statistics whether CANDIDATE is slower than BASE (CI gate)");
  cmd->add_option("BASE", o->base,
                  "Baseline: run id, run file or baseline:NAME; several, comma-separated, for "
                  "the run-level test")
      ->required();
  cmd->add_option("CANDIDATE", o->candidate,
                  "Candidate: run id or run file; several, comma-separated, for the run-level "
                  "test (pair i is the i-th run of each side)")
      ->required();
  cmd->add_option("--metric", o->metrics,
                  "Metric to gate on (repeatable or comma-separated; default ttft/tpot/e2e p50 "
                  "and p99)")
      ->delimiter(',');
  cmd->add_option("--max-regression", o->max_regression,
                  "Fail only on significant slowdowns beyond this, e.g. 5%")
      ->capture_default_str();
  cmd->add_option("--same-within", o->same_within,
                  "Call a metric 'same' when its CI lies within +-this")
      ->capture_default_str();
  cmd->add_option("--alpha", o->alpha, "Family-wise significance level")
      ->capture_default_str()
      ->check(CLI::Range(1e-9, 0.5));
  cmd->add_flag("--force", o->force, "Compare runs of different workloads anyway");
  cmd->add_flag("--unpaired", o->unpaired,
                "Run-level test: Welch's t-test instead of pairing base[i] with candidate[i]");
  cmd->add_option("--junit", o->junit, "Write JUnit XML here");
  cmd->add_option("--markdown", o->markdown, "Write the Markdown summary here too");
  cmd->add_option("--db", o->db, "Result store")->capture_default_str();
  cmd->add_option("--seed", o->seed, "Bootstrap seed")->capture_default_str();
  cmd->add_option("--resamples", o->resamples, "Bootstrap resamples")
      ->capture_default_str()
      ->check(CLI::Range(100, 1000000));
  cmd->callback([o, &exit_code] {
    results::CompareOptions options;
    options.metrics = o->metrics;
    options.alpha = o->alpha;
    options.force = o->force;
    options.seed = o->seed;
    options.resamples = o->resamples;
    try {
      options.max_regression = results::parse_percentage(o->max_regression);
      options.same_within = results::parse_percentage(o->same_within);
      for (const auto& m : options.metrics) {
        const auto spec = results::parse_metric(m);
        if (!spec.quantity)
          throw std::invalid_argument(fmt::format("'{}' is not a per-request latency metric", m));
      }
    } catch (const std::invalid_argument& e) {
      throw CLI::ValidationError("compare", e.what());
    }
    const auto base_refs = split_list(o->base);
    const auto candidate_refs = split_list(o->candidate);
    if (base_refs.empty() || candidate_refs.empty())
      throw CLI::ValidationError("compare", "BASE and CANDIDATE each name at least one run");
    const bool by_run = base_refs.size() > 1 || candidate_refs.size() > 1;
    if (by_run && (base_refs.size() < 2 || candidate_refs.size() < 2)) {
      throw CLI::ValidationError(
          "compare", fmt::format("the run-level test needs at least two runs on each side (got {} "
                                 "base, {} candidate); give one run each for the per-request test",
                                 base_refs.size(), candidate_refs.size()));
    }
    options.paired = !o->unpaired;
    results::RunLoader loader(o->db);
    results::CompareReport report;
    if (!by_run) {
      const results::Run& base_run = loader.run(loader.resolve(base_refs.front()));
      const results::Run& candidate_run = loader.run(loader.resolve(candidate_refs.front()));
      report =
          results::compare_runs(base_run, collect_samples(base_run.observations), candidate_run,
                                collect_samples(candidate_run.observations), options);
    } else {
      auto load = [&](const std::vector<std::string>& refs, std::vector<results::Run>& runs,
                      std::vector<results::RunSamples>& samples) {
        for (const auto& ref : refs) {
          runs.push_back(loader.run(loader.resolve(ref)));
          samples.push_back(collect_samples(runs.back().observations));
        }
      };
      std::vector<results::Run> base_runs, candidate_runs;
      std::vector<results::RunSamples> base_samples, candidate_samples;
      load(base_refs, base_runs, base_samples);
      load(candidate_refs, candidate_runs, candidate_samples);
      report = results::compare_run_sets(base_runs, base_samples, candidate_runs, candidate_samples,
                                         options);
    }
    const std::string summary = results::compare_markdown(report);
    std::cout << summary;
    if (!o->markdown.empty()) results::write_file_atomically(o->markdown, summary);
    if (!o->junit.empty()) results::write_file_atomically(o->junit, results::compare_junit(report));
    exit_code = report.regression ? kExitFailure : kExitOk;
  });
}

}  // namespace prism::cli
