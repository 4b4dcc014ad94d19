// The reference engine as an in-process Target: no sockets, no HTTP, the
// engine's own thread produces tokens and calls the sink directly. This is
// the embedded default target of `prism run` (the `small` model).
//
// How requests map to the engine:
// - the prompt is the concatenation of the messages' tokens in order (reply
//   messages without token ids are encoded with the model's tokenizer); no
//   chat template, so turn n+1's prompt starts with turn n's prompt and the
//   prefix cache sees the reuse the workload intends. Token ids must be below
//   the model's vocabulary: run workloads made with the model's tokenizer
//   (cl100k_base for `small`, bytes for `tiny`), else requests fail with
//   ErrorClass::kHttpStatus / 400.
// - max_output_tokens -> max_tokens; ignore_eos as given; greedy sampling
//   unless EngineTargetOptions says otherwise.
// Callbacks: on_sent comes from the submitting thread before the request is
// queued (so it happens before any other callback of the request); every
// later callback comes from the engine thread. Each output token is exact
// (tokens = 1, exact = true); on_done's usage carries prompt, completion and
// prefix-cached tokens.
#pragma once

#include <memory>
#include <string>

#include "prism/engine/engine.h"
#include "prism/harness/target.h"

namespace prism::harness {

struct EngineTargetOptions {
  engine::EngineOptions engine;  // KV size, scheduling policies, stage clock
  float temperature = 0.0f;      // 0: greedy
  float top_p = 1.0f;
  std::uint64_t seed = 0;  // per-request seeds are seed + request id
  int kernel_threads = 0;  // 0: leave the kernels' default
};

class EngineTarget final : public Target {
 public:
  // Loads a built-in model name ("tiny", "small", ...), a config file, or a
  // model directory / safetensors file, and starts the engine thread.
  explicit EngineTarget(const std::string& model, EngineTargetOptions options = {});
  ~EngineTarget() override;  // cancels what is in flight
  EngineTarget(const EngineTarget&) = delete;
  EngineTarget& operator=(const EngineTarget&) = delete;

  void start(ResponseSink& sink) override;
  void submit(TargetRequest request) override;
  void cancel_all() override;
  nlohmann::json description() const override;

  engine::Engine& engine();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The factory `prism run` uses: make_engine_target("small").
std::unique_ptr<Target> make_engine_target(const std::string& model = "small",
                                           EngineTargetOptions options = {});

}  // namespace prism::harness
