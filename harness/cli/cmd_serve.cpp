// prism serve: the reference engine as an OpenAI-compatible HTTP server.
#include <pthread.h>
#include <signal.h>

#include <cmath>
#include <iostream>
#include <memory>

#include <fmt/core.h>

#include "commands.h"
#include "prism/engine/engine.h"
#include "prism/engine/openai_server.h"
#include "prism/kernels/threading.h"

namespace prism::cli {

void add_serve_command(CLI::App& app, int& exit_code) {
  struct Options {
    std::string model = "small";
    std::string host = "127.0.0.1";
    int port = 8000;
    std::string served_name;
    int max_batched_tokens = 512;
    int max_seqs = 64;
    bool no_chunked_prefill = false;
    bool no_prefix_caching = false;
    bool no_preemption = false;
    double kv_cache_gib = 1.0;
    std::size_t max_queue = 256;
    int http_threads = 128;
    int threads = 0;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "serve",
      "Serve the reference engine over an OpenAI-compatible HTTP API (/v1/completions, "
      "/v1/chat/completions, /v1/models, /health, /tokenize, /metrics)");
  cmd->add_option(
         "--model", o->model,
         "Built-in model (tiny, small, llama-3.2-1b, qwen2.5-0.5b, llama-3.1-8b), a config "
         "JSON, or a directory / .safetensors file with config.json")
      ->capture_default_str();
  cmd->add_option("--host", o->host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", o->port, "Port (0: any free port, printed at start)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("--served-model-name", o->served_name,
                  "Model id in the API (default: the config name)");
  cmd->add_option("--max-num-batched-tokens", o->max_batched_tokens, "Token budget per engine step")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--max-num-seqs", o->max_seqs, "Running sequences at most")
      ->check(CLI::Range(1, 1 << 16))
      ->capture_default_str();
  cmd->add_flag(
      "--no-chunked-prefill", o->no_chunked_prefill,
      "Prefill whole prompts in steps of their own (vLLM v0) instead of chunks that share "
      "steps with decodes (Sarathi-Serve)");
  cmd->add_flag("--no-prefix-caching", o->no_prefix_caching, "Disable the prefix cache");
  cmd->add_flag(
      "--no-preemption", o->no_preemption,
      "Reserve KV for prompt + max_tokens at admission instead of preempting by recompute");
  cmd->add_option("--kv-cache-gib", o->kv_cache_gib, "KV cache size in GiB")
      ->check(CLI::Range(0.001, 4096.0))
      ->capture_default_str();
  cmd->add_option("--max-queue", o->max_queue, "Requests waiting for admission before 429")
      ->capture_default_str();
  cmd->add_option("--http-threads", o->http_threads, "Concurrent HTTP connections served")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  cmd->add_option("--threads", o->threads,
                  "Kernel threads (default: PRISM_KERNEL_THREADS or all cores)")
      ->check(CLI::Range(0, 4096));
  cmd->callback([o, &exit_code] {
    // Block the stop signals in every thread; this one waits for them.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    if (o->threads > 0) kernels::set_kernel_threads(o->threads);
    engine::EngineOptions eo;
    eo.kv_cache_bytes = static_cast<std::int64_t>(std::llround(o->kv_cache_gib * (1 << 30)));
    eo.scheduler.max_num_batched_tokens = o->max_batched_tokens;
    eo.scheduler.max_num_seqs = o->max_seqs;
    eo.scheduler.chunked_prefill = !o->no_chunked_prefill;
    eo.scheduler.prefix_caching = !o->no_prefix_caching;
    eo.scheduler.preemption = !o->no_preemption;
    eo.max_waiting_requests = o->max_queue;
    std::cerr << fmt::format("prism serve: loading model {}\n", o->model);
    engine::LoadedEngine loaded = engine::load_engine(o->model, eo);
    engine::ServerOptions so;
    so.host = o->host;
    so.port = o->port;
    so.model_name = o->served_name;
    so.http_threads = o->http_threads;
    engine::OpenAiServer server(*loaded.engine, so);
    const int port = server.start();
    const auto& c = loaded.engine->config();
    std::cout << fmt::format(
                     "prism serve: model {} ({:.1f}M parameters, context {}, tokenizer {}), KV "
                     "cache {} tokens, "
                     "{} kernel threads ({})\n"
                     "prism serve: listening on http://{}:{} (OpenAI API at /v1; Ctrl-C stops)\n",
                     server.model_name(), static_cast<double>(c.parameter_count()) / 1e6,
                     c.max_context, loaded.tokenizer->name(), loaded.engine->kv_capacity_tokens(),
                     kernels::kernel_threads(), kernels::kernel_isa(), o->host, port)
              << std::flush;
    int sig = 0;
    sigwait(&stop_signals, &sig);
    std::cerr << fmt::format("prism serve: signal {}, stopping\n", sig);
    loaded.engine->stop();  // in-flight requests end (503 / error event) so handlers return
    server.stop();
    exit_code = kExitOk;
  });
}

}  // namespace prism::cli
