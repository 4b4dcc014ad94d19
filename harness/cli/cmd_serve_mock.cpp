#include <pthread.h>
#include <signal.h>

#include <ctime>
#include <iostream>

#include <fmt/core.h>

#include "commands.h"
#include "prism/harness/mock_server.h"
#include "prism/results/atomic_file.h"

namespace prism::cli {

void add_serve_mock_command(CLI::App& app, int& exit_code) {
  struct Options {
    harness::MockServerOptions server;
    std::string record;
    double duration = 0;
  };
  auto o = std::make_shared<Options>();
  o->server.port = 8000;
  CLI::App* cmd = app.add_subcommand(
      "serve-mock",
      "Serve a calibrated OpenAI-compatible mock: tokens on a known schedule, faults on demand");
  auto& s = o->server;
  cmd->add_option("--host", s.host, "IPv4 address to listen on")->capture_default_str();
  cmd->add_option("--port", s.port, "Port (0: pick a free one and print it)")
      ->capture_default_str();
  cmd->add_option("--ttft", s.ttft_ms, "Milliseconds from request to first token")
      ->capture_default_str();
  cmd->add_option("--itl", s.itl_ms, "Milliseconds between tokens")->capture_default_str();
  cmd->add_option("--jitter", s.jitter_ms, "Uniform noise in +-MS on every delay")
      ->capture_default_str();
  cmd->add_option("--tokens-per-chunk", s.tokens_per_chunk, "Tokens per SSE chunk")
      ->capture_default_str();
  cmd->add_option("--max-tokens", s.default_max_tokens, "Tokens when a request gives no max_tokens")
      ->capture_default_str();
  cmd->add_option("--error-rate", s.error_rate,
                  "Fraction answered with an HTTP error and a JSON body")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--error-status", s.error_status, "Status of injected errors")
      ->capture_default_str();
  cmd->add_option("--cut-rate", s.cut_rate, "Fraction whose connection is closed mid-stream")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--stall-rate", s.stall_rate, "Fraction that stop sending mid-stream and hang")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--malformed-rate", s.malformed_rate,
                  "Fraction with a non-JSON data line mid-stream")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--oversized-rate", s.oversized_rate, "Fraction that send one endless data line")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--oversized-bytes", s.oversized_bytes, "Length of that line")
      ->capture_default_str();
  cmd->add_option("--slow-header-rate", s.slow_header_rate, "Fraction whose headers are delayed")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--slow-header-ms", s.slow_header_ms, "Header delay")->capture_default_str();
  cmd->add_option("--seed", s.seed, "Seed of jitter and fault draws")->capture_default_str();
  cmd->add_option("--model", s.model, "Model name it reports")->capture_default_str();
  cmd->add_option("--cpu", s.cpu, "Pin the serving thread to this CPU");
  cmd->add_option("--tcp-congestion", s.tcp_congestion,
                  "TCP congestion control of its sockets, e.g. reno or cubic (BBR paces sends; "
                  "without root only net.ipv4.tcp_allowed_congestion_control)");
  cmd->add_option("--record", o->record,
                  "At exit, write every request's send times (the truth) to this JSON file");
  cmd->add_option("--duration", o->duration,
                  "Exit after this many seconds (default: until SIGINT/SIGTERM)");
  cmd->footer(
      "Per request, the header 'X-Mock-Fault: error|cut|stall|malformed|oversized|slow-headers' "
      "forces a "
      "fault, and 'X-Mock-Ttft-Ms' / 'X-Mock-Itl-Ms' override the schedule.");
  cmd->callback([o, &exit_code] {
    o->server.record = !o->record.empty();
    // Block the stop signals before the server thread exists, then wait for
    // them here: no handler runs inside the event loop.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    harness::MockServer server(o->server);
    try {
      server.start();
    } catch (const std::exception& e) {
      pthread_sigmask(SIG_UNBLOCK, &stop_signals, nullptr);
      std::cerr << "prism serve-mock: " << e.what() << "\n";
      exit_code = kExitFailure;
      return;
    }
    fmt::print("prism serve-mock: listening on {} (ttft {} ms, itl {} ms, jitter {} ms)\n",
               server.url(), o->server.ttft_ms, o->server.itl_ms, o->server.jitter_ms);
    std::fflush(stdout);
    if (o->duration > 0) {
      timespec wait{};
      wait.tv_sec = static_cast<time_t>(o->duration);
      wait.tv_nsec = static_cast<long>((o->duration - static_cast<double>(wait.tv_sec)) * 1e9);
      sigtimedwait(&stop_signals, nullptr, &wait);
    } else {
      int sig = 0;
      sigwait(&stop_signals, &sig);
    }
    server.stop();
    const auto stats = server.stats();
    fmt::print("prism serve-mock: stopped after {} requests, {} chunks\n", stats.requests,
               stats.chunks);
    exit_code = kExitOk;
    if (!o->record.empty()) {
      nlohmann::json records = nlohmann::json::array();
      for (const auto& r : server.records()) records.push_back(harness::to_json(r));
      try {
        results::write_file_atomically(o->record,
                                       nlohmann::json{{"records", records}}.dump() + "\n");
      } catch (const std::exception& e) {
        std::cerr << "prism serve-mock: " << e.what() << "\n";
        exit_code = kExitFailure;
      }
    }
    pthread_sigmask(SIG_UNBLOCK, &stop_signals, nullptr);
  });
}

}  // namespace prism::cli
