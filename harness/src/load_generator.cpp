#include "prism/harness/load_generator.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <deque>
#include <limits>
#include <mutex>
#include <queue>
#include <random>
#include <unordered_set>

#include <fmt/core.h>

#include "prism/harness/clock.h"
#include "prism/harness/token_attribution.h"

namespace prism::harness {

using results::ErrorClass;
using results::Observation;
using results::RequestStatus;
using workloads::Provenance;

namespace {

// Number of leading system segments of a turn-0 request.
std::size_t leading_system(const workloads::Request& r) {
  std::size_t n = 0;
  while (n < r.segments.size() && r.segments[n].provenance == Provenance::kSystem) ++n;
  return n;
}

std::vector<std::int32_t> new_user_tokens(const workloads::Session& session, std::size_t turn) {
  std::unordered_set<std::string> seen;
  for (std::size_t k = 0; k < turn; ++k) {
    for (const auto& s : session.requests[k].segments) {
      if (!s.content_id.empty()) seen.insert(s.content_id);
    }
  }
  const auto& r = session.requests[turn];
  std::vector<std::int32_t> tokens;
  const std::size_t skip = turn == 0 ? leading_system(r) : 0;
  for (std::size_t i = skip; i < r.segments.size(); ++i) {
    const auto& s = r.segments[i];
    if (turn > 0 && (s.provenance == Provenance::kHistory ||
                     (!s.content_id.empty() && seen.count(s.content_id) != 0))) {
      continue;
    }
    tokens.insert(tokens.end(), s.tokens.begin(), s.tokens.end());
  }
  return tokens;
}

std::string signal_name(int sig) {
  if (sig == SIGINT) return "SIGINT";
  if (sig == SIGTERM) return "SIGTERM";
  return fmt::format("signal {}", sig);
}

}  // namespace

std::vector<Message> build_messages(const workloads::Session& session, std::size_t turn,
                                    const std::vector<std::string>& replies) {
  std::vector<Message> messages;
  if (session.requests.empty()) return messages;
  const auto& first = session.requests.front();
  const std::size_t system_count = leading_system(first);
  if (system_count > 0) {
    Message system{Role::kSystem, {}, {}};
    for (std::size_t i = 0; i < system_count; ++i) {
      const auto& t = first.segments[i].tokens;
      system.tokens.insert(system.tokens.end(), t.begin(), t.end());
    }
    messages.push_back(std::move(system));
  }
  for (std::size_t k = 0; k <= turn && k < session.requests.size(); ++k) {
    messages.push_back(Message{Role::kUser, new_user_tokens(session, k), {}});
    if (k < turn) {
      Message reply{Role::kAssistant, {}, k < replies.size() ? replies[k] : std::string()};
      messages.push_back(std::move(reply));
    }
  }
  return messages;
}

namespace {

struct Slot {
  const workloads::Request* request = nullptr;
  std::size_t session = 0;
  std::size_t turn = 0;
  std::int64_t due_ns = 0;
  std::uint32_t harness_prompt_tokens = 0;
  // Written by the target's I/O thread until on_done/on_error.
  Observation obs;
  std::vector<ChunkArrival> chunks;
  std::string reply;
  Usage usage;
  TargetError error;
  bool failed = false;
  std::int64_t end_ns = 0;
};

struct SessionState {
  std::size_t next_turn = 0;
  std::vector<std::string> replies;
  bool ended = false;
};

class Scheduler final : public ResponseSink {
 public:
  Scheduler(const workloads::Workload& w, Target& target, const LoadOptions& o)
      : workload_(w), target_(target), options_(o) {
    for (std::size_t s = 0; s < w.sessions.size(); ++s) {
      const auto& session = w.sessions[s];
      for (std::size_t t = 0; t < session.requests.size(); ++t) {
        auto slot = std::make_unique<Slot>();
        slot->request = &session.requests[t];
        slot->session = s;
        slot->turn = t;
        slots_.push_back(std::move(slot));
      }
    }
    first_slot_.resize(w.sessions.size());
    std::size_t index = 0;
    for (std::size_t s = 0; s < w.sessions.size(); ++s) {
      first_slot_[s] = index;
      index += w.sessions[s].requests.size();
    }
    sessions_.resize(w.sessions.size());
  }

  // ---- ResponseSink: the target's I/O thread -------------------------------
  void on_sent(std::uint64_t id, std::int64_t t) override {
    Slot& s = *slots_[id];
    s.obs.sent_s = seconds(t);
  }
  void on_first_token(std::uint64_t id, std::int64_t t, std::uint32_t tokens, bool exact,
                      std::string_view text) override {
    on_tokens(id, t, tokens, exact, text);
  }
  void on_tokens(std::uint64_t id, std::int64_t t, std::uint32_t tokens, bool exact,
                 std::string_view text) override {
    Slot& s = *slots_[id];
    s.chunks.push_back({t, tokens, exact, static_cast<std::uint32_t>(text.size())});
    if (s.request->turn + 1 < workload_.sessions[s.session].requests.size()) s.reply.append(text);
  }
  void on_done(std::uint64_t id, std::int64_t t, const Usage& usage) override {
    Slot& s = *slots_[id];
    s.usage = usage;
    s.end_ns = t;
    complete(id);
  }
  void on_error(std::uint64_t id, std::int64_t t, const Usage& usage,
                const TargetError& error) override {
    Slot& s = *slots_[id];
    s.usage = usage;
    s.error = error;
    s.failed = true;
    s.end_ns = t;
    complete(id);
  }

  // ---- the scheduler thread -------------------------------------------------
  LoadResult run() {
    minimize_timer_slack();
    origin_ns_ = monotonic_ns();
    const bool pure_closed_loop =
        !options_.rate_per_s && workload_.arrival.kind == workloads::ArrivalKind::kClosedLoop;
    cap_ = options_.concurrency ? std::max<std::uint32_t>(*options_.concurrency, 1)
           : pure_closed_loop   ? std::max<std::uint32_t>(workload_.arrival.concurrency, 1)
                                : std::numeric_limits<std::uint32_t>::max();
    if (!pure_closed_loop) plan_session_starts();
    planned_ = slots_.size();
    if (options_.max_requests) {
      planned_ =
          std::min<std::uint64_t>(planned_, *options_.max_requests + options_.warmup_requests);
    }

    std::int64_t next_progress = origin_ns_;
    for (;;) {
      handle_completions();
      const std::int64_t now = monotonic_ns();
      if (options_.interrupt != nullptr && options_.interrupt->load() != 0) {
        result_.complete = false;
        result_.incomplete_reason =
            fmt::format("interrupted by {}", signal_name(options_.interrupt->load()));
        break;
      }
      if (!stopped_issuing_) {
        if (options_.max_duration_s && now - origin_ns_ >= s_to_ns(*options_.max_duration_s)) {
          stop_issuing(now);
        } else if (options_.max_requests &&
                   dispatched_ >= *options_.max_requests + options_.warmup_requests) {
          stop_issuing(now);
        }
      }
      if (!stopped_issuing_) {
        while (!timed_.empty() && timed_.top().first <= now) {
          ready_.push_back(timed_.top().second);
          timed_.pop();
        }
        while (!ready_.empty() && in_flight_ < cap_ && !limit_reached()) {
          const std::size_t index = ready_.front();
          ready_.pop_front();
          dispatch(index);
        }
        while (pure_closed_loop && ready_.empty() && in_flight_ < cap_ &&
               next_unstarted_ < workload_.sessions.size() && !limit_reached()) {
          const std::size_t s = next_unstarted_++;
          if (workload_.sessions[s].requests.empty()) continue;
          slots_[first_slot_[s]]->due_ns = monotonic_ns();
          dispatch(first_slot_[s]);
        }
        if (limit_reached()) stop_issuing(now);
      }
      if (options_.on_progress && now >= next_progress) {
        options_.on_progress(progress(now));
        next_progress = now + s_to_ns(options_.progress_interval_s);
      }
      const bool nothing_left = timed_.empty() && ready_.empty() &&
                                (!pure_closed_loop || next_unstarted_ >= workload_.sessions.size());
      if (in_flight_ == 0 && (stopped_issuing_ || nothing_left)) break;
      if (stopped_issuing_ && in_flight_ > 0 &&
          now - stop_issuing_at_ > s_to_ns(options_.drain_timeout_s)) {
        result_.complete = false;
        result_.incomplete_reason = fmt::format("{} requests still in flight {} s after the limit",
                                                in_flight_, options_.drain_timeout_s);
        break;
      }
      wait(now);
    }
    if (in_flight_ > 0) {
      target_
          .cancel_all();  // every in-flight request ends with on_error(cancelled) before it returns
      handle_completions();
    }
    result_.elapsed_s = seconds(monotonic_ns());
    result_.origin_ns = origin_ns_;
    if (options_.on_progress) options_.on_progress(progress(monotonic_ns()));
    std::sort(result_.observations.begin(), result_.observations.end(),
              [](const Observation& a, const Observation& b) {
                return a.scheduled_s != b.scheduled_s ? a.scheduled_s < b.scheduled_s
                                                      : a.request_id < b.request_id;
              });
    return std::move(result_);
  }

 private:
  double seconds(std::int64_t t) const { return ns_to_s(t - origin_ns_); }

  bool limit_reached() const {
    return options_.max_requests &&
           dispatched_ >= *options_.max_requests + options_.warmup_requests;
  }

  void stop_issuing(std::int64_t now) {
    if (stopped_issuing_) return;
    stopped_issuing_ = true;
    stop_issuing_at_ = now;
  }

  void plan_session_starts() {
    std::mt19937_64 rng(options_.seed);
    double t = 0;
    for (std::size_t s = 0; s < workload_.sessions.size(); ++s) {
      if (workload_.sessions[s].requests.empty()) continue;
      double offset;
      if (options_.rate_per_s) {
        std::exponential_distribution<double> gap(*options_.rate_per_s);
        offset = t;
        t += gap(rng);
      } else {
        offset = workload_.sessions[s].requests.front().arrival_offset_s;
      }
      const std::size_t index = first_slot_[s];
      slots_[index]->due_ns = origin_ns_ + s_to_ns(offset);
      timed_.emplace(slots_[index]->due_ns, index);
    }
  }

  void dispatch(std::size_t index) {
    Slot& s = *slots_[index];
    const auto& session = workload_.sessions[s.session];
    TargetRequest request;
    request.id = index;
    request.session = session.id;
    request.turn = static_cast<std::uint32_t>(s.turn);
    request.messages = build_messages(session, s.turn, sessions_[s.session].replies);
    request.max_output_tokens = s.request->output_tokens;
    request.ignore_eos = s.request->ignore_eos;
    for (const auto& m : request.messages)
      s.harness_prompt_tokens += static_cast<std::uint32_t>(m.tokens.size());
    s.obs.request_id = s.request->id;
    s.obs.session = session.id;
    s.obs.turn = s.request->turn;
    s.obs.warmup = dispatched_ < options_.warmup_requests;
    s.obs.scheduled_s = seconds(s.due_ns);
    s.obs.sent_s = seconds(monotonic_ns());  // refined by on_sent
    ++dispatched_;
    ++in_flight_;
    target_.submit(std::move(request));
  }

  void complete(std::uint64_t id) {
    {
      std::lock_guard lock(mutex_);
      completions_.push_back(id);
    }
    cv_.notify_one();
  }

  void handle_completions() {
    std::deque<std::uint64_t> batch;
    {
      std::lock_guard lock(mutex_);
      batch.swap(completions_);
    }
    for (std::uint64_t id : batch) finalize(*slots_[id]);
  }

  void finalize(Slot& s) {
    --in_flight_;
    Observation& o = s.obs;
    o.completed_s = seconds(s.end_ns);
    const std::optional<std::uint32_t> total =
        s.usage.reported && !s.failed ? std::optional(s.usage.completion_tokens) : std::nullopt;
    const auto counts = attribute_tokens(s.chunks, total);
    o.token_times_s = token_times(s.chunks, counts, origin_ns_);
    o.prompt_tokens = s.usage.reported && s.usage.prompt_tokens > 0 ? s.usage.prompt_tokens
                                                                    : s.harness_prompt_tokens;
    o.completion_tokens = s.usage.reported && !s.failed
                              ? s.usage.completion_tokens
                              : static_cast<std::uint32_t>(o.token_times_s.size());
    o.cached_tokens = s.usage.cached_tokens;
    o.http_status = s.error.http_status;
    auto& session = sessions_[s.session];
    if (!s.failed) {
      o.status = RequestStatus::kOk;
      o.error = ErrorClass::kNone;
      if (!o.warmup) output_tokens_ += o.completion_tokens;
      session.replies.push_back(std::move(s.reply));
      const std::size_t next = s.turn + 1;
      if (next < workload_.sessions[s.session].requests.size() && !stopped_issuing_) {
        const std::size_t index = first_slot_[s.session] + next;
        Slot& n = *slots_[index];
        n.due_ns = s.end_ns + s_to_ns(std::max(0.0, n.request->arrival_offset_s));
        timed_.emplace(n.due_ns, index);
      }
    } else {
      o.status = s.error.cancelled ? RequestStatus::kCancelled : RequestStatus::kError;
      o.error = s.error.cancelled ? ErrorClass::kNone : s.error.error_class;
      o.error_message = s.error.message;
      if (!s.error.cancelled) ++errors_;
      if (s.turn + 1 < workload_.sessions[s.session].requests.size()) {
        ++result_.sessions_ended_by_error;
      }
      session.ended = true;
    }
    ++done_;
    s.chunks = {};
    s.reply = {};
    result_.observations.push_back(std::move(o));
  }

  void wait(std::int64_t now) {
    std::int64_t until = now + 50'000'000;  // re-check interrupts and limits at least every 50 ms
    if (!stopped_issuing_ && !timed_.empty() && in_flight_ < cap_)
      until = std::min(until, timed_.top().first);
    if (options_.max_duration_s && !stopped_issuing_) {
      until = std::min(until, origin_ns_ + s_to_ns(*options_.max_duration_s));
    }
    std::unique_lock lock(mutex_);
    if (!completions_.empty()) return;
    const auto deadline = std::chrono::steady_clock::time_point(std::chrono::nanoseconds(until));
    cv_.wait_until(lock, deadline, [&] { return !completions_.empty(); });
  }

  LoadProgress progress(std::int64_t now) const {
    LoadProgress p;
    p.elapsed_s = seconds(now);
    p.planned = planned_;
    p.sent = dispatched_;
    p.done = done_;
    p.errors = errors_;
    p.in_flight = in_flight_;
    p.output_tokens = output_tokens_;
    return p;
  }

  const workloads::Workload& workload_;
  Target& target_;
  const LoadOptions& options_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<std::size_t> first_slot_;
  std::vector<SessionState> sessions_;
  std::int64_t origin_ns_ = 0;
  std::uint32_t cap_ = 0;
  std::uint64_t planned_ = 0;
  std::priority_queue<std::pair<std::int64_t, std::size_t>,
                      std::vector<std::pair<std::int64_t, std::size_t>>, std::greater<>>
      timed_;
  std::deque<std::size_t> ready_;
  std::size_t next_unstarted_ = 0;
  std::uint64_t dispatched_ = 0;
  std::uint64_t in_flight_ = 0;
  std::uint64_t done_ = 0;
  std::uint64_t errors_ = 0;
  std::uint64_t output_tokens_ = 0;
  bool stopped_issuing_ = false;
  std::int64_t stop_issuing_at_ = 0;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::uint64_t> completions_;
  LoadResult result_;
};

}  // namespace

LoadResult run_load(const workloads::Workload& workload, Target& target,
                    const LoadOptions& options) {
  Scheduler scheduler(workload, target, options);
  target.start(scheduler);
  return scheduler.run();
}

}  // namespace prism::harness
