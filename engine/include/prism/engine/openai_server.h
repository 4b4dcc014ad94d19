// The engine as an OpenAI-compatible HTTP server (cpp-httplib):
//   POST /v1/completions        prompt as text or token ids; SSE when "stream"
//   POST /v1/chat/completions   messages through the chat template; SSE when "stream"
//   GET  /v1/models             the served model
//   GET  /health                200 while the engine runs, 503 once it stops
//   POST /tokenize              {"prompt": text} or {"messages": [...]} -> token ids
//   POST /detokenize            {"tokens": [...]} -> text
//   GET  /metrics               Prometheus text: queue, running, KV usage,
//                               prefix-cache hit rate, step latency histogram
// Usage follows OpenAI: prompt_tokens, completion_tokens, total_tokens and
// prompt_tokens_details.cached_tokens (prefix-cache hits); when streaming, a
// final usage chunk is sent if stream_options.include_usage is true.
// Non-standard request fields (as in vLLM): ignore_eos, min_tokens is not
// supported, seed is honoured.
//
// Bad input never crashes the server: malformed JSON and wrong field types
// answer 400 naming the problem, a prompt longer than the context 400 naming
// the limit, a full engine queue 429 (bounded by EngineOptions::
// max_waiting_requests), more generation requests in progress than HTTP
// threads for them 503, a stopping engine 503 (429 and 503 carry Retry-After).
// A client that disconnects has its request aborted (its KV freed) at once:
// a streaming one at the next write or idle poll (50 ms), a non-streaming one
// within 20 ms (its connection is watched for EOF).
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "prism/engine/engine.h"

namespace prism::engine {

inline constexpr int kReservedHttpThreads = 2;

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;         // 0: any free port (see port())
  std::string model_name;  // id served; the model config's name by default
  // Concurrent connections served. Generation requests may hold all but
  // kReservedHttpThreads of them; beyond that they are answered 503, so
  // /health and /metrics stay answerable under overload.
  int http_threads = 128;
  std::size_t max_body_bytes = std::size_t{64} << 20;
};

class OpenAiServer {
 public:
  // The engine must outlive the server; the server starts the engine's thread
  // if it is not running.
  OpenAiServer(Engine& engine, ServerOptions options);
  ~OpenAiServer();
  OpenAiServer(const OpenAiServer&) = delete;
  OpenAiServer& operator=(const OpenAiServer&) = delete;

  // Binds and starts listening on a background thread; returns the port.
  // Throws std::runtime_error when the address cannot be bound.
  int start();
  // Blocks until stop() is called (from another thread or a signal handler's helper).
  void wait();
  void stop();
  int port() const;
  const std::string& model_name() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Prometheus text exposition of the engine's statistics.
std::string prometheus_metrics(const EngineStats& stats, const std::string& model_name);

}  // namespace prism::engine
