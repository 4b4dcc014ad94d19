// The reference engine: a model, a paged KV cache, a scheduler and a sampler
// behind a thread-safe request API. One engine thread (start()) or the caller
// (step() / run_until_idle()) runs steps; outputs arrive through per-request
// callbacks on that thread, one per step that produced a token.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "prism/engine/block_manager.h"
#include "prism/engine/model.h"
#include "prism/engine/sampling.h"
#include "prism/engine/scheduler.h"
#include "prism/engine/stages.h"
#include "prism/engine/utf8_stream.h"
#include "prism/workloads/tokenizer.h"

namespace prism::engine {

struct EngineOptions {
  int block_size = 16;
  // KV cache size: kv_cache_blocks when > 0, else as many blocks as fit in
  // kv_cache_bytes.
  std::int64_t kv_cache_bytes = std::int64_t{1} << 30;
  int kv_cache_blocks = 0;
  SchedulerOptions scheduler;
  // Requests waiting for admission at most; add_request answers kQueueFull beyond.
  std::size_t max_waiting_requests = 256;
  bool stage_clock = false;  // record stage ground truth (StageClock)
};

enum class FinishReason { kNone, kStop, kLength, kAbort };
const char* finish_reason_name(FinishReason reason);  // "stop", "length", "abort", ""

struct RequestOutput {
  std::uint64_t request_id = 0;
  std::vector<std::int32_t> token_ids;  // generated this step
  std::string text;                     // new text; always valid UTF-8, may be empty
  bool finished = false;
  FinishReason finish_reason = FinishReason::kNone;
  std::string message;  // why an aborted request ended
  int prompt_tokens = 0;
  int completion_tokens = 0;  // generated so far, held-back bytes included
  int cached_tokens = 0;      // prompt tokens served from the prefix cache
  std::int64_t time_ns = 0;   // CLOCK_MONOTONIC when the step produced it
};
using OutputCallback = std::function<void(const RequestOutput&)>;

struct GenerateRequest {
  std::vector<std::int32_t> prompt;
  SamplingParams sampling;
};

enum class AdmitStatus { kAccepted, kInvalid, kTooLong, kQueueFull, kStopped };
struct AdmitResult {
  AdmitStatus status = AdmitStatus::kAccepted;
  std::uint64_t id = 0;
  std::string message;  // for rejections: what was wrong, naming the limit
  bool ok() const { return status == AdmitStatus::kAccepted; }
};

// Step latency histogram bucket upper bounds (seconds), Prometheus style.
inline constexpr double kStepLatencyBuckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                 0.1,   0.25,   0.5,   1.0,  2.5,   5.0};
inline constexpr int kStepLatencyBucketCount = 12;

struct EngineStats {
  std::size_t waiting = 0;
  std::size_t running = 0;
  int kv_blocks_total = 0;
  int kv_blocks_used = 0;         // referenced by a sequence
  int kv_blocks_cached_idle = 0;  // unreferenced, holding cached prefixes
  std::uint64_t prefix_queried_tokens = 0;
  std::uint64_t prefix_hit_tokens = 0;
  std::uint64_t steps = 0;
  std::uint64_t preemptions = 0;
  std::uint64_t prompt_tokens_total = 0;  // prompt tokens computed (cache hits excluded)
  std::uint64_t generation_tokens_total = 0;
  std::uint64_t requests_finished = 0;
  std::uint64_t requests_aborted = 0;
  std::uint64_t requests_rejected = 0;
  std::uint64_t step_latency_counts[kStepLatencyBucketCount + 1] = {};  // last: +Inf
  double step_latency_sum_s = 0.0;
  double kv_usage() const {
    return kv_blocks_total == 0 ? 0.0 : static_cast<double>(kv_blocks_used) / kv_blocks_total;
  }
  double prefix_hit_rate() const {
    return prefix_queried_tokens == 0 ? 0.0
                                      : static_cast<double>(prefix_hit_tokens) /
                                            static_cast<double>(prefix_queried_tokens);
  }
};

class Engine {
 public:
  Engine(std::shared_ptr<Model> model, std::shared_ptr<const workloads::Tokenizer> tokenizer,
         EngineOptions options = {});
  ~Engine();  // stops the loop; unfinished requests end with kAbort
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const ModelConfig& config() const { return model_->config(); }
  const workloads::Tokenizer& tokenizer() const { return *tokenizer_; }
  const EngineOptions& options() const { return options_; }
  Model& model() { return *model_; }
  int max_context() const { return model_->config().max_context; }
  int kv_capacity_tokens() const { return blocks_.num_blocks() * blocks_.block_size(); }

  // Validates and queues a request. Thread-safe, never blocks on a step. The
  // callback runs on the engine thread and must be quick.
  AdmitResult add_request(GenerateRequest request, OutputCallback callback);
  // Ends a request at the start of the next step (its KV freed, its callback
  // told kAbort). Unknown or finished ids are ignored. Thread-safe.
  void abort(std::uint64_t id, std::string message = "aborted");

  // Runs one step on the calling thread (only when the loop is not started):
  // returns false when there was nothing to do.
  bool step();
  void run_until_idle();

  // The engine thread: runs steps while there is work, sleeps otherwise.
  void start();
  void stop();  // waits for the thread; unfinished requests end with kAbort
  // True while the engine thread runs and takes requests (for health checks).
  bool serving() const;

  EngineStats stats() const;
  StageClock& stage_clock() { return clock_; }

 private:
  struct Pending {
    std::unique_ptr<Sequence> seq;
    OutputCallback callback;
  };
  struct Live {
    std::unique_ptr<Sequence> seq;
    OutputCallback callback;
    Utf8Stream text;
    std::uint64_t seed = 0;
  };

  void drain_inbox();
  void finish(std::uint64_t id, FinishReason reason, const std::string& message);
  bool step_locked_out();  // the step body; runs on the engine thread
  void loop();
  void update_gauges();

  std::shared_ptr<Model> model_;
  std::shared_ptr<const workloads::Tokenizer> tokenizer_;
  EngineOptions options_;
  int eos_token_ = -1;
  int allowed_vocab_ = 0;
  KvCache cache_;
  BlockManager blocks_;
  Scheduler scheduler_;
  StageClock clock_;

  // Engine-thread state.
  std::map<std::uint64_t, Live> live_;
  std::vector<float> logits_;
  std::vector<std::pair<float, std::int32_t>> sample_scratch_;
  std::uint64_t step_index_ = 0;

  // Shared with submitting threads.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Pending> inbox_;
  std::vector<std::pair<std::uint64_t, std::string>> aborts_;
  std::uint64_t next_id_ = 1;
  std::size_t waiting_gauge_ = 0;  // inbox + scheduler waiting
  bool stopping_ = false;
  bool loop_running_ = false;
  std::thread thread_;
  EngineStats stats_;
};

// Builds a model (built-in name, config file or model directory / safetensors
// path), its tokenizer and an engine in one call.
struct LoadedEngine {
  std::shared_ptr<Model> model;
  std::shared_ptr<const workloads::Tokenizer> tokenizer;
  std::unique_ptr<Engine> engine;
};
LoadedEngine load_engine(const std::string& model_name_or_path, EngineOptions options = {});

}  // namespace prism::engine
