#include "prism/engine/engine.h"

#include <algorithm>
#include <stdexcept>

#include <fmt/core.h>

#include "prism/engine/weights.h"

namespace prism::engine {
namespace {

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

int kv_blocks_for(const ModelConfig& c, const EngineOptions& o) {
  if (o.block_size <= 0) throw std::invalid_argument("engine: block_size must be positive");
  if (o.kv_cache_blocks > 0) return o.kv_cache_blocks;
  const std::int64_t block_bytes = c.kv_bytes_per_token() * o.block_size;
  std::int64_t blocks = o.kv_cache_bytes / block_bytes;
  // Never more than every running sequence at full context could use.
  const std::int64_t useful = static_cast<std::int64_t>(o.scheduler.max_num_seqs) *
                              ((c.max_context + o.block_size - 1) / o.block_size);
  blocks = std::min(blocks, useful);
  if (blocks < 1)
    throw std::invalid_argument(fmt::format("engine: kv_cache_bytes {} holds no block of {} bytes",
                                            o.kv_cache_bytes, block_bytes));
  return static_cast<int>(std::min<std::int64_t>(blocks, 1 << 30));
}

}  // namespace

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAbort:
      return "abort";
    case FinishReason::kNone:
      break;
  }
  return "";
}

Engine::Engine(std::shared_ptr<Model> model, std::shared_ptr<const workloads::Tokenizer> tokenizer,
               EngineOptions options)
    : model_(std::move(model)),
      tokenizer_(std::move(tokenizer)),
      options_(options),
      cache_(model_->config(), kv_blocks_for(model_->config(), options), options.block_size),
      blocks_(cache_.num_blocks(), options.block_size, options.scheduler.prefix_caching),
      scheduler_(options.scheduler, blocks_, model_->config().max_context) {
  const ModelConfig& c = model_->config();
  eos_token_ = c.eos_token_id;
  if (eos_token_ < 0 && tokenizer_->eos_token()) eos_token_ = *tokenizer_->eos_token();
  allowed_vocab_ = std::min<int>(c.vocab_size, static_cast<int>(tokenizer_->vocab_size()));
  clock_.set_enabled(options.stage_clock);
  stats_.kv_blocks_total = blocks_.num_blocks();
}

Engine::~Engine() {
  stop();
}

AdmitResult Engine::add_request(GenerateRequest request, OutputCallback callback) {
  const ModelConfig& c = model_->config();
  const auto reject = [&](AdmitStatus s, std::string msg) {
    std::lock_guard lock(mu_);
    ++stats_.requests_rejected;
    return AdmitResult{s, 0, std::move(msg)};
  };
  const SamplingParams& sp = request.sampling;
  const auto prompt_len = static_cast<std::int64_t>(request.prompt.size());
  if (prompt_len == 0) return reject(AdmitStatus::kInvalid, "prompt is empty");
  for (const auto t : request.prompt)
    if (t < 0 || t >= c.vocab_size)
      return reject(
          AdmitStatus::kInvalid,
          fmt::format("prompt token id {} is outside the vocabulary (0..{})", t, c.vocab_size - 1));
  if (sp.max_tokens < 1) return reject(AdmitStatus::kInvalid, "max_tokens must be at least 1");
  if (!(sp.temperature >= 0.0f) || sp.temperature > 100.0f)
    return reject(AdmitStatus::kInvalid, "temperature must be between 0 and 100");
  if (!(sp.top_p > 0.0f && sp.top_p <= 1.0f))
    return reject(AdmitStatus::kInvalid, "top_p must be in (0, 1]");
  if (prompt_len >= c.max_context)
    return reject(AdmitStatus::kTooLong,
                  fmt::format("prompt has {} tokens; this model's maximum context length is {} "
                              "tokens (prompt plus at least one output token)",
                              prompt_len, c.max_context));
  if (prompt_len + sp.max_tokens > c.max_context)
    return reject(
        AdmitStatus::kTooLong,
        fmt::format("this model's maximum context length is {} tokens; the request asks "
                    "for {} ({} in the prompt, {} for the completion)",
                    c.max_context, prompt_len + sp.max_tokens, prompt_len, sp.max_tokens));
  if (prompt_len + (options_.scheduler.preemption ? 1 : sp.max_tokens) > kv_capacity_tokens())
    return reject(AdmitStatus::kTooLong,
                  fmt::format("the request needs {} KV tokens; the KV cache holds {} tokens",
                              prompt_len + (options_.scheduler.preemption ? 1 : sp.max_tokens),
                              kv_capacity_tokens()));

  auto seq = std::make_unique<Sequence>();
  seq->tokens = std::move(request.prompt);
  seq->prompt_len = static_cast<int>(prompt_len);
  seq->sampling = sp;
  std::lock_guard lock(mu_);
  if (stopping_) {
    ++stats_.requests_rejected;
    return AdmitResult{AdmitStatus::kStopped, 0, "the engine is shutting down"};
  }
  if (waiting_gauge_ >= options_.max_waiting_requests) {
    ++stats_.requests_rejected;
    return AdmitResult{AdmitStatus::kQueueFull, 0,
                       fmt::format("too many requests waiting ({}); retry later", waiting_gauge_)};
  }
  seq->id = next_id_++;
  const std::uint64_t id = seq->id;
  inbox_.push_back(Pending{std::move(seq), std::move(callback)});
  ++waiting_gauge_;
  stats_.waiting = waiting_gauge_;
  cv_.notify_one();
  return AdmitResult{AdmitStatus::kAccepted, id, ""};
}

void Engine::abort(std::uint64_t id, std::string message) {
  std::lock_guard lock(mu_);
  aborts_.emplace_back(id, std::move(message));
  cv_.notify_one();
}

void Engine::drain_inbox() {
  std::vector<Pending> inbox;
  std::vector<std::pair<std::uint64_t, std::string>> aborts;
  {
    std::lock_guard lock(mu_);
    inbox.swap(inbox_);
    aborts.swap(aborts_);
  }
  for (auto& p : inbox) {
    Live live;
    live.seed = p.seq->sampling.seed ? *p.seq->sampling.seed
                                     : splitmix64(p.seq->id ^ model_->config().seed);
    live.callback = std::move(p.callback);
    Sequence* raw = p.seq.get();
    live.seq = std::move(p.seq);
    live_.emplace(raw->id, std::move(live));
    scheduler_.add(raw);
  }
  for (const auto& [id, message] : aborts) finish(id, FinishReason::kAbort, message);
}

void Engine::finish(std::uint64_t id, FinishReason reason, const std::string& message) {
  const auto it = live_.find(id);
  if (it == live_.end()) return;
  Live& live = it->second;
  Sequence* seq = live.seq.get();
  scheduler_.remove(seq);
  RequestOutput out;
  out.request_id = id;
  out.text = live.text.finish();
  out.finished = true;
  out.finish_reason = reason;
  out.message = message;
  out.prompt_tokens = seq->prompt_len;
  out.completion_tokens = seq->num_output();
  out.cached_tokens = std::max(0, seq->cached_prompt_tokens);
  out.time_ns = stage_clock_now_ns();
  OutputCallback cb = std::move(live.callback);
  live_.erase(it);
  {
    std::lock_guard lock(mu_);
    if (reason == FinishReason::kAbort)
      ++stats_.requests_aborted;
    else
      ++stats_.requests_finished;
  }
  update_gauges();
  if (cb) cb(out);
}

void Engine::update_gauges() {
  std::lock_guard lock(mu_);
  waiting_gauge_ = inbox_.size() + scheduler_.num_waiting();
  stats_.waiting = waiting_gauge_;
  stats_.running = scheduler_.num_running();
  stats_.kv_blocks_used = blocks_.used_blocks();
  stats_.kv_blocks_cached_idle = blocks_.cached_idle_blocks();
  stats_.prefix_queried_tokens = blocks_.queried_tokens();
  stats_.prefix_hit_tokens = blocks_.hit_tokens();
  stats_.preemptions = scheduler_.preemptions();
}

bool Engine::step() {
  {
    std::lock_guard lock(mu_);
    if (loop_running_) throw std::logic_error("Engine::step() called while the engine thread runs");
  }
  return step_locked_out();
}

void Engine::run_until_idle() {
  while (step()) {
  }
}

bool Engine::step_locked_out() {
  drain_inbox();
  if (live_.empty()) {
    update_gauges();
    return false;
  }
  const std::int64_t t0 = stage_clock_now_ns();
  const std::uint64_t step = ++step_index_;
  const ModelConfig& c = model_->config();
  std::vector<RequestOutput> outputs;
  std::vector<std::uint64_t> finished;
  int prefill_tokens = 0, sampled = 0;
  {
    const StageScope step_scope(&clock_, Stage::kStep, step);
    SchedulerOutput plan;
    {
      const StageScope scope(&clock_, Stage::kSchedule, step);
      plan = scheduler_.schedule();
    }
    if (plan.chunks.empty()) {
      update_gauges();
      return false;
    }
    prefill_tokens = plan.prefill_tokens;
    std::vector<ForwardEntry> entries;
    entries.reserve(plan.chunks.size());
    for (const auto& ch : plan.chunks) {
      Sequence* s = ch.seq;
      entries.push_back(ForwardEntry{
          .tokens = std::span<const std::int32_t>(s->tokens).subspan(
              static_cast<std::size_t>(s->num_computed), static_cast<std::size_t>(ch.num_tokens)),
          .start_pos = s->num_computed,
          .block_table = s->blocks,
          .want_logits = s->num_computed + ch.num_tokens == static_cast<int>(s->tokens.size())});
    }
    model_->forward(entries, cache_, logits_, &clock_, step);
    for (const auto& ch : plan.chunks) scheduler_.on_computed(ch.seq, ch.num_tokens);

    struct Sampled {
      Live* live;
      std::int32_t token;
      FinishReason reason;
    };
    std::vector<Sampled> picks;
    {
      const StageScope scope(&clock_, Stage::kSample, step);
      std::size_t row = 0;
      for (std::size_t i = 0; i < plan.chunks.size(); ++i) {
        if (!entries[i].want_logits) continue;
        Sequence* s = plan.chunks[i].seq;
        Live& live = live_.at(s->id);
        const std::span<const float> row_logits(
            logits_.data() + row * static_cast<std::size_t>(c.vocab_size),
            static_cast<std::size_t>(c.vocab_size));
        ++row;
        const std::int32_t tok =
            sample_token(row_logits, allowed_vocab_, s->sampling.temperature, s->sampling.top_p,
                         live.seed, static_cast<std::uint64_t>(s->num_output()), sample_scratch_);
        s->tokens.push_back(tok);
        FinishReason reason = FinishReason::kNone;
        const auto& stops = s->sampling.stop_token_ids;
        if (!s->sampling.ignore_eos &&
            (tok == eos_token_ || std::find(stops.begin(), stops.end(), tok) != stops.end())) {
          reason = FinishReason::kStop;
        } else if (s->num_output() >= s->sampling.max_tokens ||
                   static_cast<int>(s->tokens.size()) >= c.max_context ||
                   static_cast<int>(s->tokens.size()) >= kv_capacity_tokens()) {
          reason = FinishReason::kLength;
        }
        picks.push_back({&live, tok, reason});
      }
    }
    sampled = static_cast<int>(picks.size());
    {
      const StageScope scope(&clock_, Stage::kDetokenize, step);
      const std::int64_t now = stage_clock_now_ns();
      for (auto& p : picks) {
        Sequence* s = p.live->seq.get();
        RequestOutput out;
        out.request_id = s->id;
        out.token_ids.push_back(p.token);
        if (!tokenizer_->is_special(p.token) && p.token < allowed_vocab_)
          out.text = p.live->text.push(tokenizer_->token_bytes(p.token));
        if (p.reason != FinishReason::kNone) {
          out.text += p.live->text.finish();
          out.finished = true;
          out.finish_reason = p.reason;
          finished.push_back(s->id);
        }
        out.prompt_tokens = s->prompt_len;
        out.completion_tokens = s->num_output();
        out.cached_tokens = std::max(0, s->cached_prompt_tokens);
        out.time_ns = now;
        outputs.push_back(std::move(out));
      }
    }
  }
  // Finished sequences leave first and the statistics are updated, so what a
  // callback's owner observes next (/metrics, KV usage) already includes this step.
  std::vector<OutputCallback> final_callbacks;
  final_callbacks.reserve(outputs.size());
  std::vector<std::pair<const OutputCallback*, const RequestOutput*>> calls;
  calls.reserve(outputs.size());
  for (const auto& out : outputs) {
    const auto it = live_.find(out.request_id);
    if (it == live_.end()) continue;
    if (out.finished) {
      final_callbacks.push_back(std::move(it->second.callback));
      scheduler_.remove(it->second.seq.get());
      live_.erase(it);
      calls.emplace_back(&final_callbacks.back(), &out);
    } else {
      calls.emplace_back(&it->second.callback, &out);
    }
  }
  const double dt = static_cast<double>(stage_clock_now_ns() - t0) * 1e-9;
  {
    std::lock_guard lock(mu_);
    ++stats_.steps;
    stats_.prompt_tokens_total += static_cast<std::uint64_t>(prefill_tokens);
    stats_.generation_tokens_total += static_cast<std::uint64_t>(sampled);
    stats_.requests_finished += finished.size();
    int b = 0;
    while (b < kStepLatencyBucketCount && dt > kStepLatencyBuckets[b]) ++b;
    ++stats_.step_latency_counts[b];
    stats_.step_latency_sum_s += dt;
  }
  update_gauges();
  // Callbacks after the step's ranges close: their cost is the caller's.
  for (const auto& [cb, out] : calls)
    if (*cb) (*cb)(*out);
  return true;
}

void Engine::loop() {
  while (true) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock,
               [&] { return stopping_ || !inbox_.empty() || !aborts_.empty() || !live_.empty(); });
      if (stopping_) break;
    }
    try {
      step_locked_out();
    } catch (const std::exception& e) {
      // A bug or an exhausted resource in one step must not take the server down:
      // end what was in flight, keep serving.
      std::vector<std::uint64_t> ids;
      for (const auto& [id, live] : live_) ids.push_back(id);
      for (const auto id : ids)
        finish(id, FinishReason::kAbort, fmt::format("engine error: {}", e.what()));
      update_gauges();
    }
  }
}

void Engine::start() {
  std::lock_guard lock(mu_);
  if (loop_running_) return;
  stopping_ = false;
  loop_running_ = true;
  thread_ = std::thread([this] { loop(); });
}

void Engine::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  {
    std::lock_guard lock(mu_);
    loop_running_ = false;
  }
  drain_inbox();
  std::vector<std::uint64_t> ids;
  for (const auto& [id, live] : live_) ids.push_back(id);
  for (const auto id : ids) finish(id, FinishReason::kAbort, "the engine stopped");
  update_gauges();
}

bool Engine::serving() const {
  std::lock_guard lock(mu_);
  return loop_running_ && !stopping_;
}

EngineStats Engine::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

LoadedEngine load_engine(const std::string& model_name_or_path, EngineOptions options) {
  LoadedEngine out;
  ModelConfig config = load_model_config(model_name_or_path);
  ModelWeights weights = load_weights_for(config, model_name_or_path);
  out.tokenizer =
      std::shared_ptr<const workloads::Tokenizer>(workloads::load_tokenizer(config.tokenizer));
  out.model = std::make_shared<Model>(std::move(config), std::move(weights));
  out.engine = std::make_unique<Engine>(out.model, out.tokenizer, options);
  return out;
}

}  // namespace prism::engine
