// An in-process Target for scheduler tests: answers every request on a
// scripted schedule (first token after ttft, then one token per itl) from a
// thread of its own, and remembers what it was asked and how many requests
// were in flight at once.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "prism/harness/clock.h"
#include "prism/harness/target.h"

namespace prism::test {

class FakeTarget final : public harness::Target {
 public:
  FakeTarget(double ttft_ms, double itl_ms) : ttft_ns_(ms(ttft_ms)), itl_ns_(ms(itl_ms)) {}
  ~FakeTarget() override {
    {
      std::lock_guard lock(mutex_);
      quit_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  void start(harness::ResponseSink& sink) override {
    sink_ = &sink;
    thread_ = std::thread([this] { loop(); });
  }

  void submit(harness::TargetRequest request) override {
    std::lock_guard lock(mutex_);
    const std::int64_t now = harness::monotonic_ns();
    Pending p;
    p.id = request.id;
    p.tokens = request.max_output_tokens;
    p.next_ns = now + ttft_ns_;
    p.submitted_ns = now;
    received_.push_back(std::move(request));
    pending_[p.id] = p;
    max_in_flight_ = std::max(max_in_flight_, pending_.size());
    cv_.notify_all();
  }

  void cancel_all() override {
    std::unique_lock lock(mutex_);
    auto victims = std::move(pending_);
    pending_.clear();
    lock.unlock();
    for (auto& [id, p] : victims) {
      harness::TargetError e;
      e.cancelled = true;
      e.message = "cancelled";
      sink_->on_error(id, harness::monotonic_ns(), {}, e);
    }
  }

  nlohmann::json description() const override { return {{"kind", "fake"}}; }

  std::vector<harness::TargetRequest> received() const {
    std::lock_guard lock(mutex_);
    return received_;
  }
  std::size_t max_in_flight() const {
    std::lock_guard lock(mutex_);
    return max_in_flight_;
  }

 private:
  struct Pending {
    std::uint64_t id = 0;
    std::uint32_t tokens = 0;
    std::uint32_t sent_tokens = 0;
    std::int64_t next_ns = 0;
    std::int64_t submitted_ns = 0;
    bool announced = false;
  };
  static std::int64_t ms(double v) { return static_cast<std::int64_t>(v * 1e6); }

  void loop() {
    std::unique_lock lock(mutex_);
    while (!quit_) {
      std::int64_t next = harness::monotonic_ns() + 50'000'000;
      for (auto& [id, p] : pending_) next = std::min(next, p.next_ns);
      cv_.wait_until(lock, std::chrono::steady_clock::time_point(std::chrono::nanoseconds(next)));
      const std::int64_t now = harness::monotonic_ns();
      std::vector<std::uint64_t> finished;
      for (auto& [id, p] : pending_) {
        if (!p.announced) {
          sink_->on_sent(id, p.submitted_ns);
          p.announced = true;
        }
        if (p.next_ns > now) continue;
        if (p.sent_tokens < p.tokens) {
          const std::string text = " r" + std::to_string(id) + "t" + std::to_string(p.sent_tokens);
          if (p.sent_tokens == 0) {
            sink_->on_first_token(id, now, 1, true, text);
          } else {
            sink_->on_tokens(id, now, 1, true, text);
          }
          ++p.sent_tokens;
          p.next_ns += itl_ns_;
        }
        if (p.sent_tokens >= p.tokens) finished.push_back(id);
      }
      for (std::uint64_t id : finished) {
        harness::Usage u;
        u.reported = true;
        u.completion_tokens = pending_[id].tokens;
        pending_.erase(id);
        sink_->on_done(id, now, u);
      }
    }
  }

  std::int64_t ttft_ns_;
  std::int64_t itl_ns_;
  harness::ResponseSink* sink_ = nullptr;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::map<std::uint64_t, Pending> pending_;
  std::vector<harness::TargetRequest> received_;
  std::size_t max_in_flight_ = 0;
  bool quit_ = false;
  std::thread thread_;
};

}  // namespace prism::test
