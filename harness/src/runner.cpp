#include "prism/harness/runner.h"

#include <fmt/core.h>

#include "prism/build_sha.h"
#include "prism/harness/environment.h"
#include "prism/workloads/tokenizer.h"
#include "prism/workloads/workload_json.h"

namespace prism::harness {

nlohmann::json workload_summary(const workloads::Workload& w, const std::string& source) {
  std::size_t requests = 0;
  std::uint64_t prompt_tokens = 0;
  std::uint64_t output_tokens = 0;
  for (const auto& s : w.sessions) {
    requests += s.requests.size();
    for (const auto& r : s.requests) {
      prompt_tokens += r.prompt_tokens();
      output_tokens += r.output_tokens;
    }
  }
  std::uint64_t hash = 1469598103934665603ULL;
  for (unsigned char c : workloads::serialize_workload(w)) {
    hash ^= c;
    hash *= 1099511628211ULL;
  }
  return {{"name", w.name},
          {"kind", w.kind},
          {"seed", w.seed},
          {"tokenizer", w.tokenizer},
          {"source", source},
          {"sessions", w.sessions.size()},
          {"requests", requests},
          {"prompt_tokens", prompt_tokens},
          {"output_tokens", output_tokens},
          {"arrival",
           {{"kind", std::string(workloads::arrival_kind_name(w.arrival.kind))},
            {"rate_per_s", w.arrival.rate_per_s},
            {"burstiness", w.arrival.burstiness},
            {"concurrency", w.arrival.concurrency}}},
          {"hash", fmt::format("fnv1a64:{:016x}", hash)}};
}

RunOutcome execute_run(RunSpec spec) {
  RunOutcome outcome;
  results::Run& run = outcome.run;
  run.run_id = results::new_run_id();
  run.started_at = results::utc_timestamp_now();
  run.prism_version = PRISM_VERSION;
  run.prism_git_sha = PRISM_GIT_SHA;
  EnvironmentOptions env_options;
  env_options.measure = spec.measure_environment;
  run.environment = collect_environment(env_options);

  // Text prompts are decoded with the workload's own tokenizer when it is
  // available, so the server re-tokenizes to about the same lengths.
  std::shared_ptr<workloads::Tokenizer> tokenizer;
  if (spec.use_workload_tokenizer && !spec.make_target && !spec.target.detokenize &&
      !spec.workload.tokenizer.empty()) {
    try {
      tokenizer = workloads::load_tokenizer(spec.workload.tokenizer);
      spec.target.detokenize = [tokenizer](std::span<const std::int32_t> ids) {
        return tokenizer->decode(ids);
      };
    } catch (const std::exception& e) {
      outcome.tokenizer_note =
          fmt::format("tokenizer '{}' unavailable ({}); text prompts use synthetic words",
                      spec.workload.tokenizer, e.what());
    }
  }

  run.configuration = spec.configuration;
  run.configuration["slo"] = to_string(spec.metrics.slo);
  if (spec.load.rate_per_s) run.configuration["rate_per_s"] = *spec.load.rate_per_s;
  if (spec.load.concurrency) run.configuration["concurrency"] = *spec.load.concurrency;
  run.configuration["warmup_requests"] = spec.load.warmup_requests;
  if (spec.load.max_requests) run.configuration["max_requests"] = *spec.load.max_requests;
  if (spec.load.max_duration_s) run.configuration["max_duration_s"] = *spec.load.max_duration_s;
  if (!spec.make_target) run.configuration["request_timeout_s"] = spec.target.request_timeout_s;
  run.workload = workload_summary(spec.workload, spec.workload_source);

  std::unique_ptr<Target> target =
      spec.make_target ? spec.make_target() : std::make_unique<OpenAiTarget>(spec.target);
  LoadResult load = run_load(spec.workload, *target, spec.load);
  run.target = target->description();
  if (!outcome.tokenizer_note.empty()) run.target["prompt_text"] = outcome.tokenizer_note;
  run.complete = load.complete;
  run.incomplete_reason = load.incomplete_reason;
  run.finished_at = results::utc_timestamp_now();
  outcome.metrics = compute_metrics(load.observations, spec.metrics);
  run.metrics = to_json(outcome.metrics);
  run.metrics["sessions_ended_by_error"] = load.sessions_ended_by_error;
  run.observations = std::move(load.observations);
  if (!spec.output_path.empty()) results::write_run_file(spec.output_path, run);
  return outcome;
}

}  // namespace prism::harness
