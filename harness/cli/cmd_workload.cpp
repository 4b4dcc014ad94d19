// `prism workload gen|inspect|validate`: thin wrappers over prism_workloads.
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "prism/results/atomic_file.h"
#include "prism/workloads/generators.h"
#include "prism/workloads/stats.h"
#include "prism/workloads/tokenizer.h"
#include "prism/workloads/validation.h"
#include "prism/workloads/workload_json.h"

namespace prism::cli {
namespace {

namespace wl = prism::workloads;

struct CommonArgs {
  std::uint64_t seed = 0;
  std::string name;
  std::string tokenizer = "bytes";
  std::string arrival;  // empty: the kind's default
  double rate = 1.0;
  double burstiness = 1.0;
  std::uint32_t concurrency = 1;
  std::vector<double> sweep;
  std::uint64_t max_context = wl::kDefaultMaxContextTokens;
  std::string corpus;
  bool no_ignore_eos = false;
  std::string output;
};

void add_common(CLI::App* cmd, CommonArgs& a) {
  cmd->add_option("--seed", a.seed, "Seed: same seed, same workload byte for byte")
      ->capture_default_str();
  cmd->add_option("--name", a.name, "Workload name (default KIND-seedN)");
  cmd->add_option("--tokenizer", a.tokenizer,
                  "bytes | cl100k_base | o200k_base | r50k_base | p50k_base | llama3 | PATH "
                  "(.tiktoken or tokenizer.json)")
      ->capture_default_str();
  cmd->add_option("--arrival", a.arrival,
                  "closed-loop | poisson | gamma | trace (default poisson; trace for KIND trace)")
      ->check(CLI::IsMember({"closed-loop", "poisson", "gamma", "trace"}));
  cmd->add_option("--rate", a.rate, "Mean arrival rate, requests (sessions) per second")
      ->capture_default_str();
  cmd->add_option("--burstiness", a.burstiness,
                  "Gamma shape: < 1 burstier than Poisson, > 1 smoother")
      ->capture_default_str();
  cmd->add_option("--concurrency", a.concurrency, "Closed-loop concurrency")->capture_default_str();
  cmd->add_option("--sweep", a.sweep, "Rates to sweep, comma separated (recorded for the harness)")
      ->delimiter(',');
  cmd->add_option("--max-context", a.max_context,
                  "Reject prompts + outputs longer than this (tokens)")
      ->capture_default_str();
  cmd->add_option("--corpus", a.corpus,
                  "Draw prompt text from this text file instead of word tokens");
  cmd->add_flag("--no-ignore-eos", a.no_ignore_eos,
                "Let requests stop at EOS (default: force the output length)");
  cmd->add_option("-o,--output", a.output, "Spec file to write")->required();
}

wl::CommonOptions to_common(const CommonArgs& a, const std::string& default_arrival) {
  wl::CommonOptions c;
  c.seed = a.seed;
  c.name = a.name;
  c.max_context_tokens = a.max_context;
  c.corpus_path = a.corpus;
  c.ignore_eos = !a.no_ignore_eos;
  c.arrival.kind = wl::parse_arrival_kind(a.arrival.empty() ? default_arrival : a.arrival);
  c.arrival.rate_per_s = a.rate;
  c.arrival.burstiness = a.burstiness;
  c.arrival.concurrency = a.concurrency;
  c.arrival.sweep_rates_per_s = a.sweep;
  return c;
}

wl::Distribution dist(const std::string& text, const char* what) {
  return wl::Distribution::parse(text, what);
}

// Generates with `make`, writes the spec atomically, prints a summary. On any
// error nothing is written.
void emit(const CommonArgs& a, const std::function<wl::Workload(const wl::Tokenizer&)>& make,
          int& exit_code) {
  try {
    const auto tokenizer = wl::load_tokenizer(a.tokenizer);
    const wl::Workload w = make(*tokenizer);
    results::write_file_atomically(a.output, wl::serialize_workload(w));
    const auto st = wl::compute_stats(w);
    std::cout << "wrote " << a.output << ": " << st.requests << " requests in " << st.sessions
              << " sessions, " << st.prompt_tokens << " prompt tokens, " << st.output_tokens
              << " output tokens, reuse ratio " << st.reuse_ratio << "\n";
    exit_code = kExitOk;
  } catch (const std::exception& e) {
    std::cerr << "prism workload gen: error: " << e.what() << "\n";
    exit_code = kExitFailure;
  }
}

void add_gen(CLI::App* workload, int& exit_code) {
  CLI::App* gen = workload->add_subcommand(
      "gen", "Generate a workload spec: prism workload gen KIND [options] -o FILE");
  gen->require_subcommand(1);

  {  // long-context
    struct Args {
      CommonArgs common;
      std::vector<std::uint32_t> lengths = {4096, 8192, 16384, 32768, 65536, 131072};
      std::vector<double> depths = {0.5};
      std::string shared = "none";
      std::uint32_t queries = 4, query_tokens = 32;
      std::string output_tokens = "64";
      double think = 0.0;
    };
    auto a = std::make_shared<Args>();
    CLI::App* cmd =
        gen->add_subcommand("long-context",
                            "Needle-in-context prompts over a sweep of context lengths; "
                            "--shared-context for SCBench-style context reuse");
    add_common(cmd, a->common);
    cmd->add_option("--lengths", a->lengths, "Context lengths in tokens, comma separated")
        ->delimiter(',')
        ->capture_default_str();
    cmd->add_option("--depths", a->depths, "Needle depths in [0, 1], comma separated")
        ->delimiter(',')
        ->capture_default_str();
    cmd->add_option("--shared-context", a->shared, "none | multi-turn | multi-request")
        ->check(CLI::IsMember({"none", "multi-turn", "multi-request"}))
        ->capture_default_str();
    cmd->add_option("--queries", a->queries, "Queries per shared context")->capture_default_str();
    cmd->add_option("--query-tokens", a->query_tokens, "Tokens per query (shared context)")
        ->capture_default_str();
    cmd->add_option("--output-tokens", a->output_tokens, "Output length distribution")
        ->capture_default_str();
    cmd->add_option("--think-time", a->think, "Seconds between turns (multi-turn shared context)")
        ->capture_default_str();
    cmd->callback([a, &exit_code] {
      emit(
          a->common,
          [&](const wl::Tokenizer& t) {
            wl::LongContextOptions o;
            o.context_lengths = a->lengths;
            o.needle_depths = a->depths;
            o.shared_context = a->shared == "none"         ? wl::SharedContextMode::kNone
                               : a->shared == "multi-turn" ? wl::SharedContextMode::kMultiTurn
                                                           : wl::SharedContextMode::kMultiRequest;
            o.queries = a->queries;
            o.query_tokens = a->query_tokens;
            o.output_tokens = dist(a->output_tokens, "--output-tokens");
            o.think_time_s = a->think;
            return wl::generate_long_context(o, to_common(a->common, "poisson"), t);
          },
          exit_code);
    });
  }
  {  // rag
    struct Args {
      CommonArgs common;
      wl::RagOptions o;
      std::string question = "48", output = "128";
    };
    auto a = std::make_shared<Args>();
    CLI::App* cmd =
        gen->add_subcommand("rag", "System prompt + top-k Zipf-popular corpus chunks + question");
    add_common(cmd, a->common);
    cmd->add_option("--requests", a->o.requests, "Requests")->capture_default_str();
    cmd->add_option("--chunks", a->o.chunks, "Corpus size N in chunks")->capture_default_str();
    cmd->add_option("--chunk-tokens", a->o.chunk_tokens, "Tokens per chunk")->capture_default_str();
    cmd->add_option("--top-k", a->o.top_k, "Chunks retrieved per request (k <= N)")
        ->capture_default_str();
    cmd->add_option("--zipf", a->o.zipf_s, "Zipf exponent s of chunk popularity")
        ->capture_default_str();
    cmd->add_option("--system-tokens", a->o.system_tokens, "Shared system prompt tokens (0: none)")
        ->capture_default_str();
    cmd->add_option("--question-tokens", a->question, "Question length distribution")
        ->capture_default_str();
    cmd->add_option("--output-tokens", a->output, "Output length distribution")
        ->capture_default_str();
    cmd->callback([a, &exit_code] {
      emit(
          a->common,
          [&](const wl::Tokenizer& t) {
            wl::RagOptions o = a->o;
            o.question_tokens = dist(a->question, "--question-tokens");
            o.output_tokens = dist(a->output, "--output-tokens");
            return wl::generate_rag(o, to_common(a->common, "poisson"), t);
          },
          exit_code);
    });
  }
  {  // multi-turn
    struct Args {
      CommonArgs common;
      std::uint32_t sessions = 32, system_tokens = 256;
      std::string turns = "uniform:2:6", user = "lognormal:128:0.5", answer = "lognormal:128:0.5",
                  think = "exponential:2";
    };
    auto a = std::make_shared<Args>();
    CLI::App* cmd = gen->add_subcommand("multi-turn",
                                        "Chat sessions: turn n = system + history + new user text");
    add_common(cmd, a->common);
    cmd->add_option("--sessions", a->sessions, "Sessions")->capture_default_str();
    cmd->add_option("--turns", a->turns, "Turns per session distribution")->capture_default_str();
    cmd->add_option("--user-tokens", a->user, "User text length distribution")
        ->capture_default_str();
    cmd->add_option("--answer-tokens", a->answer, "Answer (output) length distribution")
        ->capture_default_str();
    cmd->add_option("--think-time", a->think, "Think time between turns, seconds")
        ->capture_default_str();
    cmd->add_option("--system-tokens", a->system_tokens, "Shared system prompt tokens (0: none)")
        ->capture_default_str();
    cmd->callback([a, &exit_code] {
      emit(
          a->common,
          [&](const wl::Tokenizer& t) {
            wl::MultiTurnOptions o;
            o.sessions = a->sessions;
            o.system_tokens = a->system_tokens;
            o.turns = dist(a->turns, "--turns");
            o.user_tokens = dist(a->user, "--user-tokens");
            o.answer_tokens = dist(a->answer, "--answer-tokens");
            o.think_time_s = dist(a->think, "--think-time");
            return wl::generate_multi_turn(o, to_common(a->common, "poisson"), t);
          },
          exit_code);
    });
  }
  {  // trace
    struct Args {
      CommonArgs common;
      wl::TraceOptions o;
    };
    auto a = std::make_shared<Args>();
    CLI::App* cmd = gen->add_subcommand(
        "trace", "Replay an Azure LLM CSV or Mooncake JSONL trace (format from content)");
    add_common(cmd, a->common);
    cmd->add_option("--file", a->o.path, "Trace file")->required();
    cmd->add_option("--time-scale", a->o.time_scale, "Multiply the gaps between requests by this")
        ->capture_default_str();
    cmd->add_option("--max-requests", a->o.max_requests,
                    "Replay only the first N requests (0: all)")
        ->capture_default_str();
    cmd->callback([a, &exit_code] {
      emit(
          a->common,
          [&](const wl::Tokenizer& t) {
            wl::TraceOptions o = a->o;
            o.use_trace_arrivals = a->common.arrival.empty() || a->common.arrival == "trace";
            wl::CommonOptions c = to_common(a->common, "trace");
            if (o.use_trace_arrivals) c.arrival.kind = wl::ArrivalKind::kTrace;
            return wl::generate_trace(o, c, t);
          },
          exit_code);
    });
  }
  {  // synthetic
    struct Args {
      CommonArgs common;
      std::uint32_t requests = 100, prefix = 0;
      std::string input = "512", output = "128";
    };
    auto a = std::make_shared<Args>();
    CLI::App* cmd =
        gen->add_subcommand("synthetic", "Independent requests with fixed or distributed lengths");
    add_common(cmd, a->common);
    cmd->add_option("--requests", a->requests, "Requests")->capture_default_str();
    cmd->add_option("--input-tokens", a->input,
                    "Input length: N, uniform:A:B, normal:M:SD, lognormal:MEDIAN:SIGMA, "
                    "empirical:TRACE[:input]")
        ->capture_default_str();
    cmd->add_option("--output-tokens", a->output, "Output length distribution (same syntax)")
        ->capture_default_str();
    cmd->add_option("--shared-prefix-tokens", a->prefix, "Prefix shared by every request")
        ->capture_default_str();
    cmd->callback([a, &exit_code] {
      emit(
          a->common,
          [&](const wl::Tokenizer& t) {
            wl::SyntheticOptions o;
            o.requests = a->requests;
            o.shared_prefix_tokens = a->prefix;
            o.input_tokens = dist(a->input, "--input-tokens");
            o.output_tokens = dist(a->output, "--output-tokens");
            return wl::generate_synthetic(o, to_common(a->common, "poisson"), t);
          },
          exit_code);
    });
  }
}

nlohmann::json summary_json(const wl::LengthSummary& s) {
  return {{"count", s.count}, {"min", s.min},   {"max", s.max},
          {"total", s.total}, {"mean", s.mean}, {"p50", s.p50},
          {"p90", s.p90},     {"p99", s.p99},   {"histogram_pow2", s.histogram.counts}};
}

}  // namespace

void add_workload_command(CLI::App& app, int& exit_code) {
  CLI::App* workload =
      app.add_subcommand("workload", "Generate, inspect and validate workload specs");
  workload->require_subcommand(1);
  add_gen(workload, exit_code);

  auto inspect_file = std::make_shared<std::string>();
  auto inspect_json = std::make_shared<bool>(false);
  CLI::App* inspect = workload->add_subcommand(
      "inspect", "Requests, sessions, token totals, length histograms, reuse ratio");
  inspect->add_option("FILE", *inspect_file, "Workload spec")->required();
  inspect->add_flag("--json", *inspect_json, "Print the figures as JSON");
  inspect->callback([inspect_file, inspect_json, &exit_code] {
    try {
      const auto w = wl::read_workload_file(*inspect_file);
      const auto st = wl::compute_stats(w);
      if (*inspect_json) {
        nlohmann::json j = {{"name", w.name},
                            {"kind", w.kind},
                            {"sessions", st.sessions},
                            {"requests", st.requests},
                            {"distinct_segments", st.distinct_segments},
                            {"prompt_tokens", st.prompt_tokens},
                            {"output_tokens", st.output_tokens},
                            {"distinct_prompt_tokens", st.distinct_prompt_tokens},
                            {"reused_prompt_tokens", st.reused_prompt_tokens},
                            {"reuse_ratio", st.reuse_ratio},
                            {"prefix_reuse_ratio", st.prefix_reuse_ratio},
                            {"prompt_lengths", summary_json(st.prompt_lengths)},
                            {"output_lengths", summary_json(st.output_lengths)},
                            {"session_depth", summary_json(st.session_depth)},
                            {"tokens_by_provenance", st.tokens_by_provenance}};
        std::cout << j.dump(2) << "\n";
      } else {
        std::cout << wl::format_stats(w, st);
      }
      exit_code = kExitOk;
    } catch (const std::exception& e) {
      std::cerr << "prism workload inspect: error: " << e.what() << "\n";
      exit_code = kExitFailure;
    }
  });

  auto validate_file = std::make_shared<std::string>();
  auto check_tokens = std::make_shared<bool>(false);
  CLI::App* validate = workload->add_subcommand(
      "validate", "Check a workload spec; exit 1 naming the first problem");
  validate->add_option("FILE", *validate_file, "Workload spec")->required();
  validate->add_flag(
      "--check-tokens", *check_tokens,
      "Also load the workload's tokenizer and check every token id against its vocabulary");
  validate->callback([validate_file, check_tokens, &exit_code] {
    try {
      const auto w = wl::read_workload_file(*validate_file);
      if (*check_tokens) wl::validate_tokens(w, *wl::load_tokenizer(w.tokenizer), *validate_file);
      std::cout << *validate_file << ": valid (spec version " << wl::Workload::kSpecVersion << ", "
                << w.request_count() << " requests in " << w.sessions.size() << " sessions)\n";
      exit_code = kExitOk;
    } catch (const std::exception& e) {
      std::cerr << "prism workload validate: error: " << e.what() << "\n";
      exit_code = kExitFailure;
    }
  });
}

}  // namespace prism::cli
