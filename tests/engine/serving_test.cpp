#include <catch2/catch.hpp>

#include <map>
#include <random>

#include "prism/engine/block_manager.h"
#include "prism/engine/utf8_stream.h"
#include "tiny_engine.h"

using namespace prism::engine;
using prism::engine::test::Collected;
using prism::engine::test::prompt_tokens;
using prism::engine::test::tiny_engine;

namespace {

// Submits requests, runs the engine on this thread until idle, returns outputs by id.
std::map<std::uint64_t, Collected> run_all(Engine& engine,
                                           const std::vector<GenerateRequest>& requests,
                                           std::vector<std::uint64_t>* ids = nullptr) {
  auto results = std::make_shared<std::map<std::uint64_t, Collected>>();
  for (const auto& r : requests) {
    const AdmitResult a = engine.add_request(r, [results](const RequestOutput& o) {
      Collected& c = (*results)[o.request_id];
      c.tokens.insert(c.tokens.end(), o.token_ids.begin(), o.token_ids.end());
      c.text += o.text;
      c.last = o;
      ++c.callbacks;
    });
    REQUIRE(a.ok());
    if (ids != nullptr) ids->push_back(a.id);
  }
  engine.run_until_idle();
  return *results;
}

GenerateRequest greedy(std::vector<std::int32_t> prompt, int max_tokens) {
  GenerateRequest r;
  r.prompt = std::move(prompt);
  r.sampling.max_tokens = max_tokens;
  r.sampling.ignore_eos = true;
  return r;
}

}  // namespace

// --- UTF-8 ----------------------------------------------------------------

TEST_CASE("incremental detokenization holds back a character split across tokens",
          "[engine][utf8]") {
  Utf8Stream s;
  // "é€" = C3 A9 E2 82 AC, delivered a byte at a time.
  CHECK(s.push("a\xC3") == "a");
  CHECK(s.held_bytes() == 1);
  CHECK(s.push("\xA9\xE2") == "\xC3\xA9");
  CHECK(s.push("\x82") == "");
  CHECK(s.push("\xAC!") == "\xE2\x82\xAC!");
  CHECK(s.held_bytes() == 0);
  CHECK(s.finish().empty());
}

TEST_CASE("bytes that can never form a character become U+FFFD instead of stalling the stream",
          "[engine][utf8]") {
  Utf8Stream s;
  CHECK(s.push("\x80x") == "\xEF\xBF\xBDx");
  CHECK(s.push("\xC3(") == "\xEF\xBF\xBD(");  // lead byte followed by a non-continuation
  CHECK(s.push("\xED\xA0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  CHECK(s.push("\xF0\x9F") == "");
  CHECK(s.finish() == "\xEF\xBF\xBD");  // unfinished at the end
  CHECK(!is_valid_utf8("\xC0\xAF"));
  CHECK(is_valid_utf8("\xF0\x9F\x98\x80"));
}

TEST_CASE("random byte streams in random pieces always come out as valid UTF-8", "[engine][utf8]") {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 200; ++trial) {
    std::string in;
    const bool valid_input = trial % 2 == 0;
    if (valid_input) {
      const char* pieces[] = {"a", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", " "};
      for (int i = 0; i < 30; ++i) in += pieces[rng() % 5];
    } else {
      for (int i = 0; i < 60; ++i) in += static_cast<char>(rng() % 256);
    }
    Utf8Stream s;
    std::string out;
    std::size_t pos = 0;
    while (pos < in.size()) {
      const std::size_t n = std::min<std::size_t>(in.size() - pos, 1 + rng() % 4);
      const std::string piece = s.push(std::string_view(in).substr(pos, n));
      REQUIRE(is_valid_utf8(piece));
      out += piece;
      pos += n;
    }
    out += s.finish();
    REQUIRE(is_valid_utf8(out));
    if (valid_input) REQUIRE(out == in);
  }
}

// --- block manager --------------------------------------------------------

TEST_CASE("the block manager counts references and reuses cached prefixes", "[engine][blocks]") {
  BlockManager bm(4, 4, true);
  const std::vector<std::int32_t> toks = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  const int a = bm.allocate(), b = bm.allocate();
  CHECK(bm.used_blocks() == 2);
  const auto h0 = bm.register_full_block(a, BlockManager::kRootHash, std::span(toks).first(4));
  bm.register_full_block(b, h0, std::span(toks).subspan(4, 4));
  bm.release(b);
  bm.release(a);
  CHECK(bm.used_blocks() == 0);
  CHECK(bm.cached_idle_blocks() == 2);
  CHECK(bm.available_blocks() == 4);

  const auto hit = bm.acquire_cached_prefix(toks, 8);
  CHECK(hit == std::vector<int>{a, b});
  CHECK(bm.used_blocks() == 2);
  // A prefix that differs in the second block matches only the first.
  const std::vector<std::int32_t> other = {1, 2, 3, 4, 5, 6, 0, 8};
  CHECK(bm.acquire_cached_prefix(other, 8) == std::vector<int>{a});
  bm.release(a);
  bm.release(a);
  bm.release(b);
  CHECK(bm.used_blocks() == 0);
  CHECK_THROWS(bm.release(b));
}

TEST_CASE("cached blocks are evicted least recently released first, and only when needed",
          "[engine][blocks]") {
  BlockManager bm(3, 2, true);
  const std::vector<std::int32_t> t1 = {1, 1}, t2 = {2, 2};
  const int a = bm.allocate(), b = bm.allocate();
  bm.register_full_block(a, BlockManager::kRootHash, t1);
  bm.register_full_block(b, BlockManager::kRootHash, t2);
  bm.release(a);  // a first: a is the least recent
  bm.release(b);
  const int c = bm.allocate();  // the free block, no eviction
  CHECK(c != a);
  CHECK(c != b);
  CHECK(bm.evictions() == 0);
  CHECK(bm.allocate() == a);  // evicts a
  CHECK(bm.evictions() == 1);
  CHECK(bm.acquire_cached_prefix(t1, 1).empty());
  CHECK(bm.acquire_cached_prefix(t2, 1) == std::vector<int>{b});
  CHECK(bm.allocate() == -1);
}

TEST_CASE("without prefix caching nothing is ever served from the cache", "[engine][blocks]") {
  BlockManager bm(2, 2, false);
  const std::vector<std::int32_t> t = {1, 1};
  const int a = bm.allocate();
  bm.register_full_block(a, BlockManager::kRootHash, t);
  bm.release(a);
  CHECK(bm.cached_idle_blocks() == 0);
  CHECK(bm.acquire_cached_prefix(t, 1).empty());
}

// --- engine ---------------------------------------------------------------

TEST_CASE("the same seed gives the same sampled output", "[engine][sampling]") {
  auto engine = tiny_engine();
  GenerateRequest r = greedy(prompt_tokens(30), 40);
  r.sampling.temperature = 0.9f;
  r.sampling.top_p = 0.95f;
  r.sampling.seed = 42;
  GenerateRequest other = r;
  other.sampling.seed = 43;
  const auto a = run_all(*engine, {r});
  const auto b = run_all(*engine, {r, other});
  REQUIRE(a.begin()->second.tokens.size() == 40);
  CHECK(a.begin()->second.tokens == b.begin()->second.tokens);
  CHECK(a.begin()->second.tokens != std::next(b.begin())->second.tokens);
}

TEST_CASE("greedy output does not depend on what else is in the batch", "[engine][batching]") {
  auto engine = tiny_engine();
  const auto target = greedy(prompt_tokens(45, 9), 24);
  const auto alone = run_all(*engine, {target});
  std::vector<GenerateRequest> crowd = {greedy(prompt_tokens(70, 1), 30), target,
                                        greedy(prompt_tokens(12, 2), 5),
                                        greedy(prompt_tokens(33, 3), 50)};
  std::vector<std::uint64_t> ids;
  const auto batched = run_all(*engine, crowd, &ids);
  CHECK(batched.at(ids[1]).tokens == alone.begin()->second.tokens);
  CHECK(engine->stats().kv_blocks_used == 0);
}

TEST_CASE("chunked and unchunked prefill produce the same tokens", "[engine][chunked]") {
  const auto requests = std::vector<GenerateRequest>{greedy(prompt_tokens(100, 1), 12),
                                                     greedy(prompt_tokens(37, 2), 12),
                                                     greedy(prompt_tokens(64, 3), 12)};
  EngineOptions chunked;
  chunked.scheduler.chunked_prefill = true;
  chunked.scheduler.max_num_batched_tokens = 16;
  chunked.scheduler.prefix_caching = false;
  EngineOptions whole = chunked;
  whole.scheduler.chunked_prefill = false;
  auto e1 = tiny_engine(chunked);
  auto e2 = tiny_engine(whole);
  std::vector<std::uint64_t> i1, i2;
  const auto r1 = run_all(*e1, requests, &i1);
  const auto r2 = run_all(*e2, requests, &i2);
  for (std::size_t i = 0; i < requests.size(); ++i) {
    CHECK(r1.at(i1[i]).tokens.size() == 12);
    CHECK(r1.at(i1[i]).tokens == r2.at(i2[i]).tokens);
  }
  // The chunked engine needed more steps: a 100-token prompt at 16 tokens per step.
  CHECK(e1->stats().steps > e2->stats().steps);
}

TEST_CASE("a prefix-cache hit gives identical tokens and reports cached tokens",
          "[engine][prefix]") {
  auto engine = tiny_engine();
  const auto first = run_all(*engine, {greedy(prompt_tokens(100, 5), 10)});
  const auto second = run_all(*engine, {greedy(prompt_tokens(100, 5), 10)});
  CHECK(first.begin()->second.last.cached_tokens == 0);
  CHECK(second.begin()->second.last.cached_tokens == 96);  // full blocks, one token left to compute
  CHECK(first.begin()->second.tokens == second.begin()->second.tokens);
  CHECK(first.begin()->second.text == second.begin()->second.text);

  // A longer prompt sharing the first 100 tokens (a second turn) reuses them.
  auto turn2 = prompt_tokens(100, 5);
  const auto extra = prompt_tokens(40, 6);
  turn2.insert(turn2.end(), extra.begin(), extra.end());
  const auto third = run_all(*engine, {greedy(turn2, 4)});
  CHECK(third.begin()->second.last.cached_tokens == 96);
  const EngineStats s = engine->stats();
  CHECK(s.prefix_hit_tokens == 192);
  CHECK(s.prefix_queried_tokens == 340);
  CHECK(s.kv_blocks_used == 0);

  EngineOptions off;
  off.scheduler.prefix_caching = false;
  auto cold = tiny_engine(off);
  run_all(*cold, {greedy(prompt_tokens(100, 5), 10)});
  const auto again = run_all(*cold, {greedy(prompt_tokens(100, 5), 10)});
  CHECK(again.begin()->second.last.cached_tokens == 0);
  CHECK(again.begin()->second.tokens == first.begin()->second.tokens);
}

TEST_CASE("KV accounting returns to zero after every request, aborted or preempted",
          "[engine][kv]") {
  EngineOptions o;
  o.kv_cache_blocks = 14;  // 224 tokens for four sequences that want 4 x 100: forces preemption
  o.scheduler.max_num_batched_tokens = 64;
  auto engine = tiny_engine(o);
  std::vector<GenerateRequest> reqs;
  for (std::uint32_t i = 0; i < 4; ++i) reqs.push_back(greedy(prompt_tokens(50, 10 + i), 50));
  std::vector<std::uint64_t> ids;
  const auto results = run_all(*engine, reqs, &ids);
  EngineStats s = engine->stats();
  CHECK(s.preemptions > 0);
  CHECK(s.kv_blocks_used == 0);
  CHECK(s.running == 0);
  CHECK(s.waiting == 0);

  // Preemption by recompute does not change greedy outputs.
  auto roomy = tiny_engine();
  std::vector<std::uint64_t> ids2;
  const auto reference = run_all(*roomy, reqs, &ids2);
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    CHECK(results.at(ids[i]).tokens.size() == 50);
    CHECK(results.at(ids[i]).tokens == reference.at(ids2[i]).tokens);
  }

  // An abort mid-generation frees the sequence's blocks at the next step.
  auto got = std::make_shared<RequestOutput>();
  const AdmitResult a = engine->add_request(greedy(prompt_tokens(40), 500),
                                            [got](const RequestOutput& out) { *got = out; });
  REQUIRE(a.ok());
  for (int i = 0; i < 5; ++i) engine->step();
  CHECK(engine->stats().kv_blocks_used > 0);
  engine->abort(a.id, "test abort");
  engine->step();
  CHECK(got->finished);
  CHECK(got->finish_reason == FinishReason::kAbort);
  CHECK(got->message == "test abort");
  CHECK(engine->stats().kv_blocks_used == 0);
  CHECK(engine->stats().requests_aborted == 1);
}

TEST_CASE("without preemption admission reserves KV for the whole output and nothing is preempted",
          "[engine][kv]") {
  EngineOptions o;
  o.kv_cache_blocks = 14;
  o.scheduler.preemption = false;
  auto engine = tiny_engine(o);
  std::vector<GenerateRequest> reqs;
  for (std::uint32_t i = 0; i < 4; ++i) reqs.push_back(greedy(prompt_tokens(50, 10 + i), 50));
  const auto results = run_all(*engine, reqs);
  CHECK(results.size() == 4);
  for (const auto& [id, c] : results) CHECK(c.tokens.size() == 50);
  CHECK(engine->stats().preemptions == 0);
  CHECK(engine->stats().kv_blocks_used == 0);
}

TEST_CASE("streamed text is valid UTF-8 while usage counts every generated token",
          "[engine][utf8]") {
  auto engine = tiny_engine();
  GenerateRequest r = greedy(prompt_tokens(20), 300);
  r.sampling.temperature = 1.5f;  // random bytes: many split or invalid characters
  r.sampling.seed = 7;
  const auto res = run_all(*engine, {r});
  const Collected& c = res.begin()->second;
  CHECK(c.callbacks == 300);
  CHECK(c.last.completion_tokens == 300);
  CHECK(c.tokens.size() == 300);
  CHECK(is_valid_utf8(c.text));
  int high = 0;
  for (auto t : c.tokens) high += t >= 0x80 && t < 256;
  CHECK(high > 10);  // the test exercises multi-byte and invalid sequences
}

TEST_CASE("generation stops at eos or a stop token unless ignore_eos, and at max_tokens",
          "[engine][sampling]") {
  auto engine = tiny_engine();
  const auto base = run_all(*engine, {greedy(prompt_tokens(25), 8)});
  const std::int32_t first = base.begin()->second.tokens.at(0);
  CHECK(base.begin()->second.last.finish_reason == FinishReason::kLength);

  GenerateRequest stop = greedy(prompt_tokens(25), 8);
  stop.sampling.ignore_eos = false;
  stop.sampling.stop_token_ids = {first};
  const auto stopped = run_all(*engine, {stop});
  CHECK(stopped.begin()->second.tokens.size() == 1);
  CHECK(stopped.begin()->second.last.finish_reason == FinishReason::kStop);
  CHECK(stopped.begin()->second.last.completion_tokens == 1);

  stop.sampling.ignore_eos = true;  // ignore_eos also ignores stop tokens
  CHECK(run_all(*engine, {stop}).begin()->second.tokens.size() == 8);
}

TEST_CASE("requests that cannot fit are rejected naming the limit", "[engine][limits]") {
  auto engine = tiny_engine();
  const AdmitResult too_long = engine->add_request(greedy(prompt_tokens(1024), 1), {});
  CHECK(too_long.status == AdmitStatus::kTooLong);
  CHECK_THAT(too_long.message, Catch::Contains("1024"));
  const AdmitResult sum = engine->add_request(greedy(prompt_tokens(1000), 100), {});
  CHECK(sum.status == AdmitStatus::kTooLong);
  CHECK_THAT(sum.message, Catch::Contains("1100"));
  CHECK(engine->add_request(greedy({}, 1), {}).status == AdmitStatus::kInvalid);
  CHECK(engine->add_request(greedy({1, 300}, 1), {}).status == AdmitStatus::kInvalid);
  GenerateRequest bad_p = greedy({1}, 1);
  bad_p.sampling.top_p = 0.0f;
  CHECK(engine->add_request(bad_p, {}).status == AdmitStatus::kInvalid);
  CHECK(engine->stats().requests_rejected == 5);
}

TEST_CASE("the waiting queue is bounded", "[engine][limits]") {
  EngineOptions o;
  o.max_waiting_requests = 2;
  auto engine = tiny_engine(o);
  CHECK(engine->add_request(greedy({1, 2}, 2), {}).ok());
  CHECK(engine->add_request(greedy({1, 2}, 2), {}).ok());
  const AdmitResult full = engine->add_request(greedy({1, 2}, 2), {});
  CHECK(full.status == AdmitStatus::kQueueFull);
  engine->run_until_idle();
  CHECK(engine->add_request(greedy({1, 2}, 2), {}).ok());
  engine->run_until_idle();
}

TEST_CASE("the engine thread serves requests submitted from other threads", "[engine][threads]") {
  auto engine = tiny_engine();
  engine->start();
  struct Done {
    std::mutex mu;
    std::condition_variable cv;
    int finished = 0;
  };
  auto done = std::make_shared<Done>();
  for (int i = 0; i < 6; ++i) {
    REQUIRE(engine
                ->add_request(greedy(prompt_tokens(20 + i, static_cast<std::uint32_t>(i)), 15),
                              [done](const RequestOutput& o) {
                                if (!o.finished) return;
                                std::lock_guard lock(done->mu);
                                ++done->finished;
                                done->cv.notify_all();
                              })
                .ok());
  }
  {
    std::unique_lock lock(done->mu);
    REQUIRE(done->cv.wait_for(lock, std::chrono::seconds(60), [&] { return done->finished == 6; }));
  }
  CHECK_THROWS_AS(engine->step(), std::logic_error);
  engine->stop();
  CHECK(engine->stats().kv_blocks_used == 0);
  CHECK(engine->stats().requests_finished == 6);
}

TEST_CASE("the stage clock records nested stages per step only when enabled", "[engine][stages]") {
  EngineOptions o;
  o.stage_clock = true;
  auto engine = tiny_engine(o);
  run_all(*engine, {greedy(prompt_tokens(40), 3)});
  const auto records = engine->stage_clock().take();
  const auto layers = static_cast<std::size_t>(engine->config().num_layers);
  std::map<Stage, std::size_t> count;
  for (const auto& r : records) {
    ++count[r.stage];
    CHECK(r.end_ns >= r.begin_ns);
  }
  CHECK(count[Stage::kStep] == 3);
  CHECK(count[Stage::kSchedule] == 3);
  CHECK(count[Stage::kPrefill] == 1);
  CHECK(count[Stage::kDecode] == 2);
  CHECK(count[Stage::kAttention] == 3 * layers);
  CHECK(count[Stage::kMlp] == 3 * layers);
  CHECK(count[Stage::kSample] == 3);
  CHECK(count[Stage::kDetokenize] == 3);
  // Every stage of step n lies inside step n's range.
  std::map<std::uint64_t, StageRecord> steps;
  for (const auto& r : records)
    if (r.stage == Stage::kStep) steps[r.step] = r;
  for (const auto& r : records) {
    REQUIRE(steps.count(r.step) == 1);
    CHECK(r.begin_ns >= steps[r.step].begin_ns);
    CHECK(r.end_ns <= steps[r.step].end_ns);
  }
  CHECK(std::string(stage_name(Stage::kDetokenize)) == "detokenize");

  auto quiet = tiny_engine();
  run_all(*quiet, {greedy(prompt_tokens(40), 3)});
  CHECK(quiet->stage_clock().take().empty());
}
