#include <catch2/catch.hpp>

#include <chrono>
#include <future>
#include <thread>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "prism/engine/openai_server.h"
#include "prism/engine/utf8_stream.h"
#include "tiny_engine.h"

using namespace prism::engine;
using nlohmann::json;
using prism::engine::test::tiny_engine;

namespace {

struct Fixture {
  std::unique_ptr<Engine> engine;
  std::unique_ptr<OpenAiServer> server;
  int port = 0;

  explicit Fixture(EngineOptions o = {}, int http_threads = 8) {
    engine = tiny_engine(o);
    ServerOptions so;
    so.port = 0;
    so.http_threads = http_threads;
    server = std::make_unique<OpenAiServer>(*engine, so);
    port = server->start();
  }
  ~Fixture() {
    engine->stop();
    server->stop();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(30, 0);
    return c;
  }
  httplib::Result post(const std::string& path, const std::string& body) const {
    auto c = client();
    return c.Post(path.c_str(), body, "application/json");
  }
};

// Splits an SSE body into its data payloads.
std::vector<std::string> sse_data(const std::string& body) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    const std::size_t end = body.find("\n\n", pos);
    out.push_back(body.substr(pos + 6, end - pos - 6));
    pos = end;
  }
  return out;
}

bool wait_until(const std::function<bool()>& pred) {
  for (int i = 0; i < 400; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

}  // namespace

TEST_CASE("the server answers completions with text and usage", "[engine][server]") {
  Fixture f;
  const auto res = f.post(
      "/v1/completions",
      R"({"model":"tiny","prompt":"Hello, world","max_tokens":12,"temperature":0,"ignore_eos":true})");
  REQUIRE(res);
  CHECK(res->status == 200);
  const json body = json::parse(res->body);
  CHECK(body["object"] == "text_completion");
  CHECK(body["model"] == "tiny");
  CHECK(body["choices"][0]["finish_reason"] == "length");
  CHECK(is_valid_utf8(body["choices"][0]["text"].get<std::string>()));
  CHECK(body["usage"]["prompt_tokens"] == 12);
  CHECK(body["usage"]["completion_tokens"] == 12);
  CHECK(body["usage"]["total_tokens"] == 24);
  CHECK(body["usage"]["prompt_tokens_details"]["cached_tokens"] == 0);

  // Token-id prompts are accepted too, and the same greedy request gives the same text.
  const auto again = f.post(
      "/v1/completions",
      R"({"prompt":[72,101,108,108,111,44,32,119,111,114,108,100],"max_tokens":12,"temperature":0,"ignore_eos":true})");
  REQUIRE(again);
  CHECK(json::parse(again->body)["choices"][0]["text"] == body["choices"][0]["text"]);
}

TEST_CASE("streamed completions are SSE chunks ending in usage with cached tokens and [DONE]",
          "[engine][server]") {
  Fixture f;
  const std::string prompt(70, 'x');
  const std::string req = json{
      {"prompt", prompt},   {"max_tokens", 20},
      {"stream", true},     {"stream_options", {{"include_usage", true}}},
      {"ignore_eos", true}, {"temperature", 1.0},
      {"seed", 3}}.dump();
  for (int round = 0; round < 2; ++round) {
    const auto res = f.post("/v1/completions", req);
    REQUIRE(res);
    CHECK(res->status == 200);
    CHECK(res->get_header_value("Content-Type").find("text/event-stream") != std::string::npos);
    CHECK(is_valid_utf8(res->body));
    const auto events = sse_data(res->body);
    REQUIRE(events.size() == 22);  // 20 tokens, a usage chunk, [DONE]
    CHECK(events.back() == "[DONE]");
    const json usage = json::parse(events[events.size() - 2]);
    CHECK(usage["choices"].empty());
    CHECK(usage["usage"]["completion_tokens"] == 20);
    CHECK(usage["usage"]["prompt_tokens"] == 70);
    CHECK(usage["usage"]["prompt_tokens_details"]["cached_tokens"] == (round == 0 ? 0 : 64));
    CHECK(json::parse(events[19])["choices"][0]["finish_reason"] == "length");
    CHECK(json::parse(events[0])["choices"][0]["finish_reason"].is_null());
  }
}

TEST_CASE("chat completions stream deltas with the assistant role first", "[engine][server]") {
  Fixture f;
  const auto res = f.post(
      "/v1/chat/completions",
      R"({"messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"}]}],
                              "max_tokens":5,"stream":true,"ignore_eos":true})");
  REQUIRE(res);
  CHECK(res->status == 200);
  const auto events = sse_data(res->body);
  REQUIRE(events.size() == 6);
  const json first = json::parse(events[0]);
  CHECK(first["object"] == "chat.completion.chunk");
  CHECK(first["choices"][0]["delta"]["role"] == "assistant");
  CHECK(json::parse(events[1])["choices"][0]["delta"].count("role") == 0);

  const auto plain = f.post(
      "/v1/chat/completions",
      R"({"messages":[{"role":"user","content":"hi"}],"max_completion_tokens":4,"ignore_eos":true})");
  REQUIRE(plain);
  const json body = json::parse(plain->body);
  CHECK(body["object"] == "chat.completion");
  CHECK(body["choices"][0]["message"]["role"] == "assistant");
  CHECK(body["usage"]["completion_tokens"] == 4);
}

TEST_CASE("models, health, tokenize and metrics endpoints answer", "[engine][server]") {
  Fixture f;
  auto c = f.client();
  const auto models = c.Get("/v1/models");
  REQUIRE(models);
  CHECK(json::parse(models->body)["data"][0]["id"] == "tiny");
  CHECK(json::parse(models->body)["data"][0]["max_model_len"] == 1024);
  const auto health = c.Get("/health");
  REQUIRE(health);
  CHECK(health->status == 200);
  const auto tok = f.post("/tokenize", R"({"prompt":"abc"})");
  REQUIRE(tok);
  CHECK(json::parse(tok->body)["tokens"] == json::array({97, 98, 99}));
  const auto detok = f.post("/detokenize", R"({"tokens":[97,98,99]})");
  REQUIRE(detok);
  CHECK(json::parse(detok->body)["prompt"] == "abc");
  REQUIRE(f.post("/v1/completions", R"({"prompt":"abc","max_tokens":3,"ignore_eos":true})"));
  const auto metrics = c.Get("/metrics");
  REQUIRE(metrics);
  for (const char* name :
       {"prism_engine_requests_waiting{model=\"tiny\"} 0",
        "prism_engine_requests_running{model=\"tiny\"} 0",
        "prism_engine_kv_cache_usage_ratio{model=\"tiny\"} 0", "prism_engine_prefix_cache_hit_rate",
        "prism_engine_generation_tokens_total{model=\"tiny\"} 3",
        "prism_engine_step_duration_seconds_bucket{model=\"tiny\",le=\"+Inf\"} 3",
        "# TYPE prism_engine_step_duration_seconds histogram"})
    CHECK_THAT(metrics->body, Catch::Contains(name));
}

TEST_CASE("bad requests get 400s that name the problem and the server keeps serving",
          "[engine][server]") {
  Fixture f;
  const auto expect = [&](const std::string& path, const std::string& body, int status,
                          const std::string& words) {
    const auto res = f.post(path, body);
    REQUIRE(res);
    CHECK(res->status == status);
    const json err = json::parse(res->body);
    CHECK_THAT(err["error"]["message"].get<std::string>(), Catch::Contains(words));
  };
  expect("/v1/completions", R"({"prompt": "abc", "max_tokens": )", 400, "malformed JSON");
  expect("/v1/completions", "", 400, "empty");
  expect("/v1/completions", "[1,2]", 400, "JSON object");
  expect("/v1/completions", R"({"max_tokens": 3})", 400, "'prompt' is required");
  expect("/v1/completions", R"({"prompt": "a", "max_tokens": "3"})", 400,
         "'max_tokens' must be an integer");
  expect("/v1/completions", R"({"prompt": "a", "temperature": -1})", 400, "'temperature'");
  expect("/v1/completions", R"({"prompt": "a", "stop": ["x"]})", 400, "stop");
  expect("/v1/completions", R"({"prompt": "a", "model": "gpt-9"})", 404, "gpt-9");
  expect("/v1/completions", R"({"prompt": [1, 999]})", 400, "vocabulary");
  expect("/v1/chat/completions", R"({"messages": "hi"})", 400, "'messages'");
  expect("/v1/chat/completions", R"({"messages": [{"content": "hi"}]})", 400, "role");
  // Longer than the context: the limit is named.
  expect("/v1/completions", json{{"prompt", std::string(1500, 'a')}}.dump(), 400,
         "maximum context length is 1024");
  expect("/v1/completions", json{{"prompt", std::string(1000, 'a')}, {"max_tokens", 100}}.dump(),
         400, "1024");
  auto c = f.client();
  const auto missing = c.Get("/v1/nothing");
  REQUIRE(missing);
  CHECK(missing->status == 404);
  const auto ok = f.post("/v1/completions", R"({"prompt": "still alive", "max_tokens": 2})");
  REQUIRE(ok);
  CHECK(ok->status == 200);
}

TEST_CASE("a full queue answers 429 and the server recovers", "[engine][server]") {
  EngineOptions o;
  o.max_waiting_requests = 0;
  Fixture f(o);
  const auto res = f.post("/v1/completions", R"({"prompt": "a", "max_tokens": 2})");
  REQUIRE(res);
  CHECK(res->status == 429);
  CHECK_THAT(json::parse(res->body)["error"]["message"].get<std::string>(),
             Catch::Contains("too many requests"));
  auto c = f.client();
  CHECK(c.Get("/health")->status == 200);
  CHECK_THAT(c.Get("/metrics")->body,
             Catch::Contains("prism_engine_requests_rejected_total{model=\"tiny\"} 1"));
}

TEST_CASE("a streaming client that disconnects has its KV freed at once", "[engine][server]") {
  Fixture f;
  auto c = f.client();
  int chunks = 0;
  const std::string body = json{
      {"prompt", std::string(100, 'q')},
      {"max_tokens", 900},
      {"stream", true},
      {"ignore_eos", true}}.dump();
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.body = body;
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char*, std::size_t, std::uint64_t, std::uint64_t) {
    return ++chunks < 3;  // read a little, then hang up
  };
  const auto res = c.send(req);
  CHECK(chunks == 3);
  CHECK(f.engine->stats().generation_tokens_total < 900);
  CHECK(wait_until([&] { return f.engine->stats().requests_aborted == 1; }));
  CHECK(wait_until([&] { return f.engine->stats().kv_blocks_used == 0; }));
  CHECK(f.engine->stats().running == 0);
  const auto ok = f.post("/v1/completions", R"({"prompt": "next", "max_tokens": 2})");
  REQUIRE(ok);
  CHECK(ok->status == 200);
}

namespace {

// Holds the engine thread inside a request's output callback until released,
// so a test can fill queues and HTTP threads without racing the engine.
class EngineFreeze {
 public:
  explicit EngineFreeze(Engine& engine) {
    GenerateRequest r;
    r.prompt = prism::engine::test::prompt_tokens(8);
    r.sampling.max_tokens = 2;
    r.sampling.ignore_eos = true;
    auto entered = std::make_shared<std::promise<void>>();
    auto entered_future = entered->get_future();
    REQUIRE(engine
                .add_request(r,
                             [entered, gate = gate_](const RequestOutput& o) {
                               if (o.finished) return;
                               entered->set_value();
                               gate->wait();
                             })
                .ok());
    entered_future.wait();
  }
  ~EngineFreeze() { release(); }
  void release() {
    if (!released_) released_promise_.set_value();
    released_ = true;
  }

 private:
  std::promise<void> released_promise_;
  std::shared_ptr<std::shared_future<void>> gate_ =
      std::make_shared<std::shared_future<void>>(released_promise_.get_future().share());
  bool released_ = false;
};

}  // namespace

TEST_CASE("a non-streaming client that disconnects has its KV freed at once", "[engine][server]") {
  Fixture f;
  EngineFreeze freeze(*f.engine);
  {
    auto c = f.client();
    c.set_read_timeout(0, 200'000);  // gives up while the engine is frozen, and hangs up
    const auto res = c.Post(
        "/v1/completions",
        json{{"prompt", std::string(100, 'q')}, {"max_tokens", 900}, {"ignore_eos", true}}.dump(),
        "application/json");
    CHECK(!res);
  }
  CHECK(f.engine->stats().waiting == 1);
  // The handler sees the hang-up within its 20 ms poll; give it ample time
  // before the engine runs again, so the abort lands before any decoding.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  freeze.release();
  CHECK(wait_until([&] { return f.engine->stats().requests_aborted == 1; }));
  CHECK(wait_until([&] { return f.engine->stats().kv_blocks_used == 0; }));
  CHECK(f.engine->stats().generation_tokens_total < 100);
  const auto ok = f.post("/v1/completions", R"({"prompt": "next", "max_tokens": 2})");
  REQUIRE(ok);
  CHECK(ok->status == 200);
}

TEST_CASE("overload meets a bounded queue (429) and bounded connections (503), never a crash",
          "[engine][server]") {
  const auto post_in_background = [](const Fixture& f, std::vector<std::thread>& threads,
                                     std::vector<int>& statuses, std::size_t n) {
    statuses.assign(n, 0);
    for (std::size_t i = 0; i < n; ++i)
      threads.emplace_back([&f, &statuses, i] {
        const auto res = f.post("/v1/completions", R"({"prompt":"abc","max_tokens":2})");
        statuses[i] = res ? res->status : -1;
      });
  };
  std::vector<std::thread> threads;
  std::vector<int> statuses;

  SECTION("a full engine queue answers 429 with Retry-After") {
    EngineOptions o;
    o.max_waiting_requests = 2;
    Fixture f(o);
    {
      EngineFreeze freeze(*f.engine);
      post_in_background(f, threads, statuses, 2);
      REQUIRE(wait_until([&] { return f.engine->stats().waiting == 2; }));
      const auto res = f.post("/v1/completions", R"({"prompt":"abc","max_tokens":2})");
      REQUIRE(res);
      CHECK(res->status == 429);
      CHECK(res->get_header_value("Retry-After") == "1");
      CHECK(json::parse(res->body)["error"]["type"] == "rate_limit_error");
    }
    for (auto& t : threads) t.join();
    CHECK(statuses == std::vector<int>{200, 200});
    CHECK(f.engine->stats().kv_blocks_used == 0);
  }

  SECTION("generation requests beyond the HTTP threads for them answer 503 at once") {
    EngineOptions o;
    o.max_waiting_requests = 64;
    Fixture f(o, 4 + kReservedHttpThreads);  // 4 generation requests at once
    {
      EngineFreeze freeze(*f.engine);
      post_in_background(f, threads, statuses, 4);
      REQUIRE(wait_until([&] { return f.engine->stats().waiting == 4; }));
      const auto res = f.post("/v1/completions", R"({"prompt":"abc","max_tokens":2})");
      REQUIRE(res);
      CHECK(res->status == 503);
      CHECK(res->get_header_value("Retry-After") == "1");
      CHECK_THAT(json::parse(res->body)["error"]["message"].get<std::string>(),
                 Catch::Contains("overloaded"));
      // The reserved threads still answer health checks and metrics.
      auto c = f.client();
      const auto health = c.Get("/health");
      REQUIRE(health);
      CHECK(health->status == 200);
      const auto metrics = c.Get("/metrics");
      REQUIRE(metrics);
      CHECK_THAT(metrics->body, Catch::Contains("prism_engine_requests_waiting{model=\"tiny\"} 4"));
    }
    for (auto& t : threads) t.join();
    CHECK(statuses == std::vector<int>{200, 200, 200, 200});
    CHECK(wait_until([&] { return f.engine->stats().kv_blocks_used == 0; }));
  }
}

TEST_CASE("a stopped engine answers 503 and the server does not crash", "[engine][server]") {
  Fixture f;
  f.engine->stop();
  const auto res = f.post("/v1/completions", R"({"prompt":"abc","max_tokens":2})");
  REQUIRE(res);
  CHECK(res->status == 503);
  CHECK_THAT(json::parse(res->body)["error"]["message"].get<std::string>(),
             Catch::Contains("shutting down"));
  auto c = f.client();
  const auto health = c.Get("/health");
  REQUIRE(health);
  CHECK(health->status == 503);
  CHECK(c.Get("/v1/models")->status == 200);
}

TEST_CASE("metrics report KV usage while running, prefix hits and step latencies",
          "[engine][server]") {
  Fixture f;
  const std::string body =
      json{{"prompt", std::string(70, 'm')}, {"max_tokens", 3}, {"ignore_eos", true}}.dump();
  REQUIRE(f.post("/v1/completions", body)->status == 200);
  REQUIRE(f.post("/v1/completions", body)->status == 200);
  auto c = f.client();
  std::string metrics;
  {
    EngineFreeze freeze(*f.engine);  // one request mid-flight, holding KV
    metrics = c.Get("/metrics")->body;
    CHECK_THAT(metrics, Catch::Contains("prism_engine_requests_running{model=\"tiny\"} 1"));
    CHECK_THAT(metrics, Catch::Contains("prism_engine_kv_cache_blocks_used{model=\"tiny\"} 1"));
    CHECK_THAT(metrics, !Catch::Contains("prism_engine_kv_cache_usage_ratio{model=\"tiny\"} 0\n"));
  }
  REQUIRE(wait_until([&] { return f.engine->stats().running == 0; }));
  metrics = c.Get("/metrics")->body;
  // The second request found 64 of its 70 prompt tokens cached (4 full blocks).
  CHECK_THAT(metrics,
             Catch::Contains("prism_engine_prefix_cache_queries_tokens_total{model=\"tiny\"} 148"));
  CHECK_THAT(metrics,
             Catch::Contains("prism_engine_prefix_cache_hits_tokens_total{model=\"tiny\"} 64"));
  CHECK_THAT(metrics, Catch::Contains("prism_engine_kv_cache_blocks_used{model=\"tiny\"} 0"));
  const double hit_rate = 64.0 / 148.0;
  const auto value_of = [&](const std::string& key) {
    const auto pos = metrics.find(key + " ");
    REQUIRE(pos != std::string::npos);
    return std::stod(metrics.substr(pos + key.size() + 1));
  };
  CHECK(value_of("prism_engine_prefix_cache_hit_rate{model=\"tiny\"}") ==
        Approx(hit_rate).epsilon(1e-4));
  CHECK(value_of("prism_engine_step_duration_seconds_count{model=\"tiny\"}") ==
        static_cast<double>(f.engine->stats().steps));
}
