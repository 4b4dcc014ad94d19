#include "prism/harness/engine_target.h"

#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>

#include <fmt/core.h>

#include "prism/harness/clock.h"
#include "prism/kernels/threading.h"

namespace prism::harness {

struct EngineTarget::Impl {
  std::string model_spec;
  EngineTargetOptions options;
  engine::LoadedEngine loaded;
  ResponseSink* sink = nullptr;

  std::mutex mu;
  std::condition_variable cv;
  std::map<std::uint64_t, std::uint64_t> engine_to_request;  // in flight: engine id -> request id
  std::set<std::uint64_t> cancelled;                         // engine ids cancelled by cancel_all

  void on_output(std::uint64_t request_id, bool& first, const engine::RequestOutput& o);
};

namespace {

TargetError admit_error(const engine::AdmitResult& a) {
  TargetError e;
  e.message = a.message;
  switch (a.status) {
    case engine::AdmitStatus::kTooLong:
      e.error_class = results::ErrorClass::kOversized;
      e.http_status = 400;
      break;
    case engine::AdmitStatus::kInvalid:
      e.error_class = results::ErrorClass::kHttpStatus;
      e.http_status = 400;
      break;
    case engine::AdmitStatus::kQueueFull:
      e.error_class = results::ErrorClass::kHttpStatus;
      e.http_status = 429;
      break;
    case engine::AdmitStatus::kStopped:
      e.error_class = results::ErrorClass::kHttpStatus;
      e.http_status = 503;
      break;
    case engine::AdmitStatus::kAccepted:
      break;
  }
  return e;
}

Usage usage_of(const engine::RequestOutput& o) {
  return Usage{.reported = true,
               .prompt_tokens = static_cast<std::uint32_t>(o.prompt_tokens),
               .completion_tokens = static_cast<std::uint32_t>(o.completion_tokens),
               .cached_tokens = static_cast<std::uint32_t>(o.cached_tokens)};
}

}  // namespace

void EngineTarget::Impl::on_output(std::uint64_t request_id, bool& first,
                                   const engine::RequestOutput& o) {
  const std::int64_t now = monotonic_ns();
  const auto n = static_cast<std::uint32_t>(o.token_ids.size());
  if (n > 0) {
    if (first) {
      sink->on_first_token(request_id, now, n, true, o.text);
      first = false;
    } else {
      sink->on_tokens(request_id, now, n, true, o.text);
    }
  }
  if (!o.finished) return;
  bool was_cancelled = false;
  {
    std::lock_guard lock(mu);
    was_cancelled = cancelled.erase(o.request_id) > 0;
  }
  if (o.finish_reason == engine::FinishReason::kAbort) {
    TargetError e;
    e.cancelled = was_cancelled;
    e.error_class = was_cancelled ? results::ErrorClass::kNone : results::ErrorClass::kOther;
    e.message = o.message;
    sink->on_error(request_id, now, usage_of(o), e);
  } else {
    sink->on_done(request_id, now, usage_of(o));
  }
  {
    std::lock_guard lock(mu);
    engine_to_request.erase(o.request_id);
  }
  cv.notify_all();
}

EngineTarget::EngineTarget(const std::string& model, EngineTargetOptions options)
    : impl_(std::make_unique<Impl>()) {
  impl_->model_spec = model;
  impl_->options = options;
  if (options.kernel_threads > 0) kernels::set_kernel_threads(options.kernel_threads);
  impl_->loaded = engine::load_engine(model, options.engine);
}

EngineTarget::~EngineTarget() {
  // Ends every request in flight with on_error(cancelled), then stops the thread.
  if (impl_->sink != nullptr) cancel_all();
  impl_->loaded.engine->stop();
}

void EngineTarget::start(ResponseSink& sink) {
  impl_->sink = &sink;
  impl_->loaded.engine->start();
}

void EngineTarget::submit(TargetRequest request) {
  Impl& s = *impl_;
  if (s.sink == nullptr) throw std::logic_error("EngineTarget::submit before start");
  engine::GenerateRequest gen;
  for (const auto& m : request.messages) {
    if (!m.tokens.empty()) {
      gen.prompt.insert(gen.prompt.end(), m.tokens.begin(), m.tokens.end());
    } else if (!m.text.empty()) {
      const auto ids = s.loaded.tokenizer->encode(m.text);
      gen.prompt.insert(gen.prompt.end(), ids.begin(), ids.end());
    }
  }
  gen.sampling.max_tokens = static_cast<int>(std::max<std::uint32_t>(1, request.max_output_tokens));
  gen.sampling.ignore_eos = request.ignore_eos;
  gen.sampling.temperature = s.options.temperature;
  gen.sampling.top_p = s.options.top_p;
  gen.sampling.seed = s.options.seed + request.id;

  const std::uint64_t rid = request.id;
  s.sink->on_sent(rid, monotonic_ns());
  auto first = std::make_shared<bool>(true);
  // Register before the engine can answer: the engine id is only known after
  // add_request returns, so the callback looks it up under the lock.
  std::unique_lock lock(s.mu);
  const engine::AdmitResult a = s.loaded.engine->add_request(
      std::move(gen), [this, rid, first](const engine::RequestOutput& o) {
        {
          // Wait until submit() has recorded the id (it holds the lock while adding).
          std::lock_guard guard(impl_->mu);
        }
        impl_->on_output(rid, *first, o);
      });
  if (!a.ok()) {
    lock.unlock();
    s.sink->on_error(rid, monotonic_ns(), Usage{}, admit_error(a));
    return;
  }
  s.engine_to_request.emplace(a.id, rid);
}

void EngineTarget::cancel_all() {
  Impl& s = *impl_;
  std::vector<std::uint64_t> ids;
  {
    std::lock_guard lock(s.mu);
    for (const auto& [eid, rid] : s.engine_to_request) {
      ids.push_back(eid);
      s.cancelled.insert(eid);
    }
  }
  for (const auto eid : ids) s.loaded.engine->abort(eid, "cancelled");
  std::unique_lock lock(s.mu);
  s.cv.wait(lock, [&] {
    for (const auto eid : ids)
      if (s.engine_to_request.count(eid) != 0) return false;
    return true;
  });
}

nlohmann::json EngineTarget::description() const {
  const Impl& s = *impl_;
  const auto& e = *s.loaded.engine;
  const auto& sch = e.options().scheduler;
  nlohmann::json d = {{"kind", "engine"},
                      {"name", "prism-reference-engine"},
                      {"model", e.config().name},
                      {"model_spec", s.model_spec},
                      {"model_config", engine::model_config_to_json(e.config())},
                      {"tokenizer", e.tokenizer().name()},
                      {"kv_cache_tokens", e.kv_capacity_tokens()},
                      {"block_size", e.options().block_size},
                      {"max_num_batched_tokens", sch.max_num_batched_tokens},
                      {"max_num_seqs", sch.max_num_seqs},
                      {"chunked_prefill", sch.chunked_prefill},
                      {"prefix_caching", sch.prefix_caching},
                      {"preemption", sch.preemption},
                      {"temperature", s.options.temperature},
                      {"top_p", s.options.top_p},
                      {"kernel_threads", kernels::kernel_threads()},
                      {"kernel_isa", kernels::kernel_isa()}};
  return d;
}

engine::Engine& EngineTarget::engine() {
  return *impl_->loaded.engine;
}

std::unique_ptr<Target> make_engine_target(const std::string& model, EngineTargetOptions options) {
  return std::make_unique<EngineTarget>(model, std::move(options));
}

}  // namespace prism::harness
