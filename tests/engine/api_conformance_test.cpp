// API conformance: the harness's OpenAI target (libcurl, SSE, usage) runs
// workloads against the engine's OpenAI-compatible server, the same server
// `prism serve` runs, on the tiny model. Whatever the harness measures must
// agree with what the engine did.
#include <catch2/catch.hpp>

#include <map>

#include "prism/engine/openai_server.h"
#include "prism/harness/load_generator.h"
#include "prism/harness/openai_target.h"
#include "prism/workloads/generators.h"
#include "tiny_engine.h"

using namespace prism;
using results::RequestStatus;

namespace {

struct ServedTiny {
  std::unique_ptr<engine::Engine> engine;
  std::unique_ptr<engine::OpenAiServer> server;
  int port = 0;

  explicit ServedTiny(engine::EngineOptions o = {}) {
    engine = engine::test::tiny_engine(o);
    engine::ServerOptions so;
    so.port = 0;
    so.http_threads = 16;
    server = std::make_unique<engine::OpenAiServer>(*engine, so);
    port = server->start();
  }
  ~ServedTiny() {
    engine->stop();
    server->stop();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
};

workloads::CommonOptions closed_loop(std::uint32_t concurrency) {
  workloads::CommonOptions c;
  c.seed = 11;
  c.arrival.kind = workloads::ArrivalKind::kClosedLoop;
  c.arrival.concurrency = concurrency;
  c.max_context_tokens = 1024;
  return c;
}

}  // namespace

TEST_CASE("the harness's OpenAI target runs a shared-prefix workload against the engine's server",
          "[engine][api]") {
  ServedTiny served;
  const auto tok = engine::test::byte_tokenizer();
  workloads::SyntheticOptions so;
  so.requests = 8;
  so.input_tokens = workloads::Distribution::fixed(60);
  so.output_tokens = workloads::Distribution::fixed(7);
  so.shared_prefix_tokens = 80;
  const workloads::Workload w = workloads::generate_synthetic(so, closed_loop(2), *tok);

  harness::OpenAiTargetOptions to;
  to.url = served.url();
  to.model = "tiny";
  to.api = harness::ApiKind::kCompletions;
  to.prompt_format = harness::PromptFormat::kTokenIds;
  harness::OpenAiTarget target(to);
  harness::LoadOptions lo;
  lo.concurrency = 2;
  const harness::LoadResult r = harness::run_load(w, target, lo);

  REQUIRE(r.complete);
  REQUIRE(r.observations.size() == 8);
  std::uint32_t cached_total = 0;
  for (const auto& o : r.observations) {
    INFO("request " << o.request_id << ": " << o.error_message);
    CHECK(o.status == RequestStatus::kOk);
    // Usage is the engine's word: the prompt as sent (token ids), the output asked for.
    CHECK(o.prompt_tokens == 140);
    CHECK(o.completion_tokens == 7);
    CHECK(o.token_times_s.size() == 7);
    CHECK(o.cached_tokens <= 128);
    CHECK(o.cached_tokens % 16 == 0);
    cached_total += o.cached_tokens;
  }
  // The shared 80-token prefix is 5 full blocks: at most the two requests
  // that start together miss it; every later one is served 80 tokens from cache.
  CHECK(cached_total >= 6 * 80);
  const engine::EngineStats s = served.engine->stats();
  CHECK(s.requests_finished == 8);
  CHECK(s.generation_tokens_total == 8 * 7);
  CHECK(s.prefix_hit_tokens == cached_total);
  CHECK(s.kv_blocks_used == 0);
  CHECK(s.running == 0);
}

TEST_CASE("the harness's OpenAI target runs a multi-turn chat workload against the engine's server",
          "[engine][api]") {
  ServedTiny served;
  const auto tok = engine::test::byte_tokenizer();
  workloads::MultiTurnOptions mo;
  mo.sessions = 3;
  mo.turns = workloads::Distribution::fixed(3);
  mo.user_tokens = workloads::Distribution::fixed(30);
  mo.answer_tokens = workloads::Distribution::fixed(5);
  mo.think_time_s = workloads::Distribution::fixed(0);
  mo.system_tokens = 40;
  const workloads::Workload w = workloads::generate_multi_turn(mo, closed_loop(3), *tok);

  harness::OpenAiTargetOptions to;
  to.url = served.url();
  to.model = "tiny";
  to.api = harness::ApiKind::kChat;  // history goes back as messages, replies as text
  to.detokenize = [tok](std::span<const std::int32_t> ids) { return tok->decode(ids); };
  to.count_tokens = [](std::string_view) { return 1u; };
  harness::OpenAiTarget target(to);
  const harness::LoadResult r = harness::run_load(w, target, harness::LoadOptions{});

  REQUIRE(r.complete);
  REQUIRE(r.observations.size() == 9);
  std::map<std::uint64_t, std::map<std::uint32_t, const results::Observation*>> by_session;
  for (const auto& o : r.observations) {
    INFO("session " << o.session << " turn " << o.turn << ": " << o.error_message);
    CHECK(o.status == RequestStatus::kOk);
    CHECK(o.completion_tokens == 5);
    CHECK(o.prompt_tokens > 0);
    by_session[o.session][o.turn] = &o;
  }
  REQUIRE(by_session.size() == 3);
  for (const auto& [session, turns] : by_session) {
    REQUIRE(turns.size() == 3);
    // Each turn's prompt holds the previous one (plus the reply and a new user
    // message), and the prefix cache serves the conversation so far.
    CHECK(turns.at(1)->prompt_tokens > turns.at(0)->prompt_tokens + 30);
    CHECK(turns.at(2)->prompt_tokens > turns.at(1)->prompt_tokens + 30);
    CHECK(turns.at(1)->cached_tokens >= turns.at(0)->prompt_tokens / 16 * 16 - 16);
    CHECK(turns.at(2)->cached_tokens >= turns.at(1)->prompt_tokens / 16 * 16 - 16);
  }
  CHECK(served.engine->stats().kv_blocks_used == 0);
}
