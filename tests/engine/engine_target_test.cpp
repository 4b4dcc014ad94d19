#include <catch2/catch.hpp>

#include <condition_variable>
#include <map>
#include <mutex>

#include "prism/harness/engine_target.h"

using namespace prism::harness;

namespace {

// Records every callback; checks the per-request order the Target contract promises.
class RecordingSink final : public ResponseSink {
 public:
  struct Record {
    std::vector<std::string> events;
    std::uint32_t tokens = 0;
    std::string text;
    Usage usage;
    TargetError error;
    bool ended = false;
  };

  void on_sent(std::uint64_t id, std::int64_t) override { add(id, "sent"); }
  void on_first_token(std::uint64_t id, std::int64_t, std::uint32_t n, bool exact,
                      std::string_view text) override {
    std::lock_guard lock(mu_);
    auto& r = records_[id];
    r.events.push_back(exact ? "first" : "first?");
    r.tokens += n;
    r.text += text;
  }
  void on_tokens(std::uint64_t id, std::int64_t, std::uint32_t n, bool,
                 std::string_view text) override {
    std::lock_guard lock(mu_);
    auto& r = records_[id];
    if (r.events.back() != "tokens") r.events.push_back("tokens");
    r.tokens += n;
    r.text += text;
  }
  void on_done(std::uint64_t id, std::int64_t, const Usage& usage) override {
    std::lock_guard lock(mu_);
    auto& r = records_[id];
    r.events.push_back("done");
    r.usage = usage;
    r.ended = true;
    cv_.notify_all();
  }
  void on_error(std::uint64_t id, std::int64_t, const Usage& usage, const TargetError& e) override {
    std::lock_guard lock(mu_);
    auto& r = records_[id];
    r.events.push_back("error");
    r.usage = usage;
    r.error = e;
    r.ended = true;
    cv_.notify_all();
  }
  Record wait(std::uint64_t id) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(60), [&] { return records_[id].ended; });
    return records_[id];
  }

 private:
  void add(std::uint64_t id, const char* e) {
    std::lock_guard lock(mu_);
    records_[id].events.push_back(e);
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::uint64_t, Record> records_;
};

TargetRequest request(std::uint64_t id, std::vector<Message> messages, std::uint32_t out) {
  TargetRequest r;
  r.id = id;
  r.messages = std::move(messages);
  r.max_output_tokens = out;
  r.ignore_eos = true;
  return r;
}

std::vector<std::int32_t> ids(int n, int salt) {
  std::vector<std::int32_t> v;
  for (int i = 0; i < n; ++i) v.push_back((i * 37 + salt * 11) % 256);
  return v;
}

}  // namespace

TEST_CASE("the in-process engine target streams exact tokens and reports usage with cached tokens",
          "[engine][target]") {
  auto target = make_engine_target("tiny");
  RecordingSink sink;
  target->start(sink);
  const Message system{Role::kSystem, ids(48, 1), ""};
  const Message user0{Role::kUser, ids(20, 2), ""};
  target->submit(request(1, {system, user0}, 10));
  const auto r1 = sink.wait(1);
  CHECK(r1.events == std::vector<std::string>{"sent", "first", "tokens", "done"});
  CHECK(r1.tokens == 10);
  CHECK(r1.usage.reported);
  CHECK(r1.usage.prompt_tokens == 68);
  CHECK(r1.usage.completion_tokens == 10);
  CHECK(r1.usage.cached_tokens == 0);

  // Turn 2 carries turn 1's prompt and reply: the prefix cache serves the history.
  const Message reply{Role::kAssistant, {}, r1.text.empty() ? std::string("x") : r1.text};
  target->submit(request(2, {system, user0, reply, Message{Role::kUser, ids(30, 3), ""}}, 3));
  const auto r2 = sink.wait(2);
  CHECK(r2.events.back() == "done");
  CHECK(r2.usage.cached_tokens >= 64);
  const auto d = target->description();
  CHECK(d["kind"] == "engine");
  CHECK(d["model"] == "tiny");
  CHECK(d["prefix_caching"] == true);
}

TEST_CASE("the in-process target reports rejected and cancelled requests as errors",
          "[engine][target]") {
  EngineTargetOptions o;
  auto target = make_engine_target("tiny", o);
  RecordingSink sink;
  target->start(sink);
  target->submit(request(1, {Message{Role::kUser, ids(2000, 1), ""}}, 4));
  const auto too_long = sink.wait(1);
  CHECK(too_long.events.back() == "error");
  CHECK(too_long.error.error_class == prism::results::ErrorClass::kOversized);
  CHECK(too_long.error.http_status == 400);
  CHECK_THAT(too_long.error.message, Catch::Contains("1024"));

  target->submit(request(2, {Message{Role::kUser, {1, 2, 999}, ""}}, 4));
  CHECK(sink.wait(2).error.http_status == 400);

  target->submit(request(3, {Message{Role::kUser, ids(100, 4), ""}}, 900));
  target->cancel_all();
  const auto cancelled = sink.wait(3);
  CHECK(cancelled.events.back() == "error");
  CHECK(cancelled.error.cancelled);
  CHECK(cancelled.usage.completion_tokens < 900);

  // The target still serves after a cancel.
  target->submit(request(4, {Message{Role::kUser, ids(10, 5), ""}}, 2));
  CHECK(sink.wait(4).events.back() == "done");
}
