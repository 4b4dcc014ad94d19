#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <iostream>

#include <fmt/core.h>
#include <fmt/format.h>

#include "commands.h"
#include "prism/harness/clock.h"
#include "prism/harness/engine_target.h"
#include "prism/harness/probe_join.h"
#include "prism/harness/runner.h"
#include "prism/harness/suite.h"
#include "prism/workloads/workload_json.h"

namespace prism::cli {

namespace {

std::atomic<int> g_interrupt{0};

extern "C" void on_interrupt(int sig) {
  g_interrupt.store(sig);
}

// Prints progress: a redrawn bar on a terminal, a log line every 5 s otherwise.
class ProgressPrinter {
 public:
  ProgressPrinter() : tty_(isatty(STDERR_FILENO) != 0) {}

  void operator()(const harness::LoadProgress& p) {
    const double dt = p.elapsed_s - last_elapsed_;
    if (!tty_ && dt < 5.0 && p.done < p.planned) return;
    const double tok_rate = dt > 0 ? static_cast<double>(p.output_tokens - last_tokens_) / dt : 0.0;
    const double req_rate = dt > 0 ? static_cast<double>(p.done - last_done_) / dt : 0.0;
    last_elapsed_ = p.elapsed_s;
    last_tokens_ = p.output_tokens;
    last_done_ = p.done;
    if (tty_) {
      drawn_ = true;
      constexpr int kWidth = 30;
      const double fraction = p.planned > 0 ? static_cast<double>(p.done) / p.planned : 0.0;
      const int filled = static_cast<int>(fraction * kWidth);
      fmt::print(
          stderr,
          "\r[{}{}] {}/{} done, {} errors, {} in flight, {:.1f} req/s, {:.0f} tok/s, {:.1f} s  ",
          std::string(static_cast<std::size_t>(filled), '#'),
          std::string(static_cast<std::size_t>(kWidth - filled), '.'), p.done, p.planned, p.errors,
          p.in_flight, req_rate, tok_rate, p.elapsed_s);
    } else {
      fmt::print(
          stderr,
          "prism run: {:.1f} s: {}/{} done, {} errors, {} in flight, {:.1f} req/s, {:.0f} tok/s\n",
          p.elapsed_s, p.done, p.planned, p.errors, p.in_flight, req_rate, tok_rate);
    }
  }

  void finish() {
    if (tty_ && drawn_) fmt::print(stderr, "\n");
    drawn_ = false;
  }

  // A new run starts (the main job runs several): its clock starts at zero.
  void restart() {
    finish();
    last_elapsed_ = 0;
    last_tokens_ = 0;
    last_done_ = 0;
  }

 private:
  bool tty_;
  bool drawn_ = false;
  double last_elapsed_ = 0;
  std::uint64_t last_tokens_ = 0;
  std::uint64_t last_done_ = 0;
};

// Installs SIGINT/SIGTERM handlers that set g_interrupt, restoring the old ones on scope exit.
class InterruptScope {
 public:
  InterruptScope() {
    g_interrupt.store(0);
    struct sigaction action {};
    action.sa_handler = on_interrupt;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, &old_int_);
    sigaction(SIGTERM, &action, &old_term_);
  }
  ~InterruptScope() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  InterruptScope(const InterruptScope&) = delete;
  InterruptScope& operator=(const InterruptScope&) = delete;

 private:
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
};

// `prism run` with no workload: the standard suite on the in-process engine.
template <typename Options>
int run_main_job(const Options& o) {
  const bool engine = o.target == "engine" || o.target.rfind("engine:", 0) == 0;
  if (!engine) {
    std::cerr << "prism run: --workload is required with an openai: target (the main job "
                 "without --workload runs the in-process engine)\n";
    return kExitUsage;
  }
  std::vector<std::string> per_workload;
  if (o.rate > 0) per_workload.push_back("--rate");
  if (o.concurrency > 0) per_workload.push_back("--concurrency");
  if (!o.output.empty()) per_workload.push_back("--output");
  if (o.max_requests > 0) per_workload.push_back("--max-requests");
  if (o.duration > 0) per_workload.push_back("--duration");
  if (o.warmup > 0) per_workload.push_back("--warmup");
  if (!per_workload.empty()) {
    std::cerr << "prism run: " << fmt::format("{}", fmt::join(per_workload, ", "))
              << " apply to --workload runs; the main job's workloads fix their own load "
                 "(use --out-dir for its files)\n";
    return kExitUsage;
  }
  harness::SuiteOptions suite;
  suite.model = o.target.size() > 7 ? o.target.substr(7) : "small";
  suite.size = harness::suite_size_from_string(o.size);
  suite.seed = o.seed;
  suite.only = o.only;
  suite.output_dir = o.out_dir;
  suite.store_path = o.db;
  suite.report = !o.no_report;
  suite.figures = !o.no_figures;
  suite.measure_environment = true;
  try {
    if (!o.slo.empty()) suite.metrics.slo = harness::parse_slo(o.slo);
  } catch (const std::exception& e) {
    std::cerr << "prism run: " << e.what() << "\n";
    return kExitUsage;
  }
  suite.interrupt = &g_interrupt;
  auto progress = std::make_shared<ProgressPrinter>();
  if (!o.quiet) {
    suite.on_progress = [progress](const std::string&, const harness::LoadProgress& p) {
      (*progress)(p);
    };
    suite.log = [progress](const std::string& line) {
      progress->restart();
      std::cerr << "prism run: " << line << "\n";
    };
  }
  harness::SuiteOutcome outcome;
  {
    InterruptScope interrupts;
    try {
      outcome = harness::run_suite(suite);
    } catch (const std::exception& e) {
      progress->finish();
      std::cerr << "prism run: " << e.what() << "\n";
      return kExitFailure;
    }
  }
  progress->finish();
  for (std::size_t i = 0; i < outcome.runs.size(); ++i) {
    std::cout << "== " << outcome.runs[i].run.workload.value("name", std::string()) << " ("
              << outcome.run_files[i] << ")\n"
              << harness::format_summary(outcome.runs[i].metrics) << "\n";
  }
  std::cout << outcome.table << "\n";
  if (outcome.report)
    std::cout << "Report: " << outcome.report->markdown_path << ", " << outcome.report->html_path
              << "\n";
  for (const auto& w : outcome.warnings) std::cerr << "prism run: warning: " << w << "\n";
  if (!outcome.complete) {
    std::cerr << "prism run: incomplete: " << outcome.incomplete_reason
              << "; what was measured is in " << o.out_dir << "\n";
    const int sig = g_interrupt.load();
    return sig != 0 ? 128 + sig : kExitFailure;
  }
  std::size_t failed = 0;
  for (const auto& r : outcome.runs) failed += r.metrics.failed;
  if (failed > 0) {
    std::cerr << "prism run: " << failed << " requests failed (see the run files)\n";
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace

void add_run_command(CLI::App& app, int& exit_code) {
  struct Options {
    std::string target;
    std::string model;
    std::string workload;
    double rate = 0;
    std::uint32_t concurrency = 0;
    std::string slo;
    std::string output;
    std::uint64_t warmup = 0;
    std::uint64_t max_requests = 0;
    double duration = 0;
    double timeout = 600;
    std::string api = "auto";
    std::string prompt_format = "auto";
    std::string api_key;
    std::vector<std::string> headers;
    bool insecure = false;
    std::string ca_file;
    bool no_ignore_eos = false;
    bool continuous_usage = false;
    bool http2 = false;
    std::string http_client = "auto";
    std::vector<std::string> resolve;
    int io_cpu = -1;
    bool io_busy_poll = false;
    int io_realtime = 0;
    bool user_space_stamps = false;
    std::string extra_body;
    std::uint64_t seed = 0;
    bool measure_environment = false;
    bool quiet = false;
    std::string probe;  // --probe[=PID]: "auto" or a pid
    // The main job (no --workload).
    std::string size = "standard";
    std::vector<std::string> only;
    std::string out_dir = "results/main";
    std::string db = "results/prism.db";
    bool no_report = false;
    bool no_figures = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("run",
                                     "Run a workload against an OpenAI-compatible server and "
                                     "measure TTFT, TPOT, ITL, E2E, throughput and goodput");
  o->target = "engine:small";
  cmd->add_option(
         "--target", o->target,
         "openai:http://HOST:PORT (or https://..., with or without /v1), or engine[:MODEL] for "
         "the in-process reference engine")
      ->capture_default_str();
  cmd->add_option("--model", o->model, "Model name sent in every request (required for openai:)");
  cmd->add_option("--workload", o->workload,
                  "Workload spec file (JSON, see workloads/README.md); without it, the main job: "
                  "the standard long-context, RAG and multi-turn suite on the engine target");
  cmd->add_option("--rate", o->rate, "Open loop: Poisson session starts at R per second")
      ->check(CLI::PositiveNumber);
  cmd->add_option(
         "--concurrency", o->concurrency,
         "Cap on requests in flight (with a closed-loop workload: C virtual users); waiting "
         "for a slot counts in TTFT and E2E")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--slo", o->slo, "Goodput objectives, e.g. ttft=500ms,tpot=50ms,e2e=10s");
  cmd->add_option("-o,--output", o->output, "Result file (schema prism.run v1)");
  cmd->add_option("--warmup", o->warmup, "Requests sent first and left out of metrics");
  cmd->add_option("--max-requests", o->max_requests, "Stop after this many measured requests");
  cmd->add_option("--duration", o->duration, "Stop sending after this many seconds")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--timeout", o->timeout,
                  "Per-request timeout in seconds (a stalled stream fails with 'timeout')")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--api", o->api, "auto (chat for multi-turn), completions or chat")
      ->check(CLI::IsMember({"auto", "completions", "chat"}));
  cmd->add_option("--prompt-format", o->prompt_format,
                  "auto (token ids, text if refused), token-ids or text")
      ->check(CLI::IsMember({"auto", "token-ids", "text"}));
  cmd->add_option("--api-key", o->api_key, "Bearer token (default: $OPENAI_API_KEY)");
  cmd->add_option("-H,--header", o->headers, "Extra header 'Name: value' (repeatable)");
  cmd->add_flag("--insecure", o->insecure, "Do not verify TLS certificates");
  cmd->add_option("--ca-file", o->ca_file, "PEM bundle of trusted CAs");
  cmd->add_flag("--no-ignore-eos", o->no_ignore_eos, "Do not send ignore_eos/min_tokens");
  cmd->add_flag(
      "--continuous-usage", o->continuous_usage,
      "Ask for per-chunk usage (vLLM continuous_usage_stats): exact token counts per chunk");
  cmd->add_flag("--http2", o->http2, "Use HTTP/2 over TLS");
  cmd->add_option("--http-client", o->http_client,
                  "auto (Prism's own for plain http://, libcurl for https://, HTTP/2 or a proxy), "
                  "prism or curl")
      ->check(CLI::IsMember({"auto", "prism", "curl"}));
  cmd->add_option("--resolve", o->resolve,
                  "Connect to these numeric addresses (comma-separated, tried in order) instead "
                  "of resolving the URL's host, which stays in the Host header")
      ->delimiter(',');
  cmd->add_option("--io-cpu", o->io_cpu,
                  "Pin the I/O thread to this CPU (keep the server under test off it)");
  cmd->add_flag("--io-busy-poll", o->io_busy_poll,
                "The I/O thread polls without sleeping (a whole CPU; with --io-cpu): on a VM an "
                "idle vCPU can take milliseconds to wake");
  cmd->add_option("--io-realtime", o->io_realtime,
                  "Run the I/O thread SCHED_FIFO at this priority (1-99) where allowed")
      ->check(CLI::Range(1, 99));
  cmd->add_flag("--user-space-stamps", o->user_space_stamps,
                "Stamp chunks when epoll returns instead of with the kernel's receive time");
  cmd->add_option("--extra-body", o->extra_body, "JSON object merged into every request body");
  cmd->add_option("--seed", o->seed, "Seed of --rate arrivals");
  cmd->add_flag("--measure-environment", o->measure_environment,
                "Measure memory bandwidth and sgemm peak for the environment record (about 2 s)");
  cmd->add_flag("-q,--quiet", o->quiet, "No progress output");
  cmd->add_flag("--probe{auto}", o->probe,
                "Wake the probe agent in the local target (--probe: the process on the target's "
                "port, or prism itself for engine:; --probe=PID) and join its stage breakdown to "
                "the requests (result file 'stages')");
  cmd->add_option("--size", o->size, "Main job: smoke (seconds, for tests) or standard (minutes)")
      ->check(CLI::IsMember({"smoke", "standard"}))
      ->capture_default_str();
  cmd->add_option("--only", o->only, "Main job: only these workloads (long-context,rag,multi-turn)")
      ->delimiter(',')
      ->check(CLI::IsMember({"long-context", "rag", "multi-turn"}));
  cmd->add_option("--out-dir", o->out_dir, "Main job: run files and report go here")
      ->capture_default_str();
  cmd->add_option("--db", o->db, "Main job: result store the runs are added to ('' for none)")
      ->capture_default_str();
  cmd->add_flag("--no-report", o->no_report, "Main job: do not write report.md / report.html");
  cmd->add_flag("--no-figures", o->no_figures, "Main job: report without gnuplot figures");
  cmd->callback([o, &exit_code] {
    if (o->workload.empty()) {
      exit_code = run_main_job(*o);
      return;
    }
    harness::RunSpec spec;
    const bool engine = o->target == "engine" || o->target.rfind("engine:", 0) == 0;
    try {
      if (engine) {
        const std::string model = o->target.size() > 7 ? o->target.substr(7) : "small";
        spec.make_target = [model] { return harness::make_engine_target(model); };
      } else {
        spec.target.url = harness::parse_openai_target_spec(o->target);
        if (o->model.empty())
          throw std::invalid_argument("--model is required with an openai: target");
      }
      if (!o->slo.empty()) spec.metrics.slo = harness::parse_slo(o->slo);
      if (!o->extra_body.empty()) {
        spec.target.extra_body = nlohmann::json::parse(o->extra_body);
        if (!spec.target.extra_body.is_object())
          throw std::invalid_argument("--extra-body must be a JSON object");
      }
    } catch (const std::exception& e) {
      std::cerr << "prism run: " << e.what() << "\n";
      exit_code = kExitUsage;
      return;
    }
    try {
      spec.workload = workloads::read_workload_file(o->workload);
    } catch (const std::exception& e) {
      std::cerr << "prism run: " << e.what() << "\n";
      exit_code = kExitFailure;
      return;
    }
    spec.workload_source = o->workload;
    spec.target.model = o->model;
    spec.target.api = o->api == "chat"          ? harness::ApiKind::kChat
                      : o->api == "completions" ? harness::ApiKind::kCompletions
                                                : harness::ApiKind::kAuto;
    spec.target.prompt_format = o->prompt_format == "text"        ? harness::PromptFormat::kText
                                : o->prompt_format == "token-ids" ? harness::PromptFormat::kTokenIds
                                                                  : harness::PromptFormat::kAuto;
    spec.target.api_key = o->api_key;
    if (spec.target.api_key.empty()) {
      if (const char* key = std::getenv("OPENAI_API_KEY")) spec.target.api_key = key;
    }
    spec.target.headers = o->headers;
    spec.target.verify_tls = !o->insecure;
    spec.target.ca_file = o->ca_file;
    spec.target.send_ignore_eos = !o->no_ignore_eos;
    spec.target.continuous_usage_stats = o->continuous_usage;
    spec.target.http2 = o->http2;
    spec.target.resolve = o->resolve;
    spec.target.http_client = o->http_client == "prism"  ? harness::HttpClient::kNative
                              : o->http_client == "curl" ? harness::HttpClient::kCurl
                                                         : harness::HttpClient::kAuto;
    spec.target.io_cpu = o->io_cpu;
    spec.target.io_busy_poll = o->io_busy_poll;
    spec.target.io_realtime_priority = o->io_realtime;
    spec.target.kernel_rx_timestamps = !o->user_space_stamps;
    spec.target.request_timeout_s = o->timeout;
    if (o->rate > 0) spec.load.rate_per_s = o->rate;
    if (o->concurrency > 0) spec.load.concurrency = o->concurrency;
    spec.load.warmup_requests = o->warmup;
    if (o->max_requests > 0) spec.load.max_requests = o->max_requests;
    if (o->duration > 0) spec.load.max_duration_s = o->duration;
    spec.load.seed = o->seed;
    spec.load.interrupt = &g_interrupt;
    spec.output_path = o->output;
    spec.measure_environment = o->measure_environment;
    spec.configuration = {{"target", o->target},
                          {"model", o->model},
                          {"workload", o->workload},
                          {"api", o->api},
                          {"prompt_format", o->prompt_format},
                          {"ignore_eos", !o->no_ignore_eos}};
    auto progress = std::make_shared<ProgressPrinter>();
    if (!o->quiet)
      spec.load.on_progress = [progress](const harness::LoadProgress& p) { (*progress)(p); };
    std::unique_ptr<harness::RunProbe> probe;
    if (!o->probe.empty()) {
      try {
        probe = harness::RunProbe::start(o->probe, engine ? "" : spec.target.url);
        probe->watch(spec.load);
        spec.configuration["probe_pid"] = probe->pid();
      } catch (const std::exception& e) {
        std::cerr << "prism run: --probe: " << e.what() << "\n";
        exit_code = kExitFailure;
        return;
      }
    }

    harness::RunOutcome outcome;
    {
      InterruptScope interrupts;
      try {
        outcome = harness::execute_run(std::move(spec));
      } catch (const std::exception& e) {
        progress->finish();
        std::cerr << "prism run: " << e.what() << "\n";
        exit_code = kExitFailure;
        return;
      }
    }
    progress->finish();
    if (probe) {
      try {
        outcome.run.stages = probe->finish(outcome.run.observations);
        if (!o->output.empty()) results::write_run_file(o->output, outcome.run);
        std::cout << probe->summary() << "\n";
      } catch (const std::exception& e) {
        std::cerr << "prism run: --probe: " << e.what() << "\n";
      }
    }
    if (!outcome.tokenizer_note.empty())
      std::cerr << "prism run: note: " << outcome.tokenizer_note << "\n";
    std::cout << harness::format_summary(outcome.metrics);
    if (!o->output.empty())
      std::cout << "\nResults: " << o->output << " (run " << outcome.run.run_id << ")\n";
    if (!outcome.run.complete) {
      std::cerr << "prism run: incomplete: " << outcome.run.incomplete_reason
                << (o->output.empty() ? "" : "; what was measured is in " + o->output) << "\n";
      const int sig = g_interrupt.load();
      exit_code = sig != 0 ? 128 + sig : kExitFailure;
      return;
    }
    exit_code = kExitOk;
  });
}

}  // namespace prism::cli
