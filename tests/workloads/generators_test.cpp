#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <string>

#include <catch2/catch.hpp>

#include "prism/workloads/arrivals.h"
#include "prism/workloads/generators.h"
#include "prism/workloads/stats.h"
#include "prism/workloads/trace.h"
#include "prism/workloads/workload_json.h"

using namespace prism::workloads;

namespace {

const Tokenizer& bytes() {
  static const auto tok = make_byte_tokenizer();
  return *tok;
}

// cl100k_base, loaded once; null (with a WARN) when the npm file is missing.
const Tokenizer* cl100k() {
  static const std::unique_ptr<Tokenizer> tok = [] {
    return std::filesystem::exists(tokenizer_file_for("cl100k_base"))
               ? load_tokenizer("cl100k_base")
               : nullptr;
  }();
  if (!tok)
    WARN("SKIPPED part: " << tokenizer_file_for("cl100k_base") << " missing (run scripts/setup)");
  return tok.get();
}

std::string temp_file(const std::string& name, const std::string& text) {
  const auto path = (std::filesystem::temp_directory_path() / ("prism_wl_" + name)).string();
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

std::string azure_trace_path() {
  const char* src = std::getenv("PRISM_SOURCE_DIR");
  return std::string(src ? src : ".") +
         "/../shared/data/azure-llm-2023/AzureLLMInferenceTrace_conv.csv";
}

CommonOptions common(std::uint64_t seed) {
  CommonOptions c;
  c.seed = seed;
  return c;
}

MultiTurnOptions small_multi_turn() {
  MultiTurnOptions o;
  o.sessions = 3;
  o.turns = Distribution::fixed(4);
  o.user_tokens = Distribution::fixed(10);
  o.answer_tokens = Distribution::fixed(7);
  o.system_tokens = 5;
  return o;
}

LongContextOptions small_long_context() {
  LongContextOptions o;
  o.context_lengths = {300, 600};
  o.needle_depths = {0.0, 0.5, 1.0};
  return o;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const WorkloadError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("The same seed gives identical bytes and another seed different bytes", "[generators]") {
  auto all = [](std::uint64_t seed) {
    std::vector<std::string> out;
    out.push_back(
        serialize_workload(generate_multi_turn(small_multi_turn(), common(seed), bytes())));
    out.push_back(
        serialize_workload(generate_long_context(small_long_context(), common(seed), bytes())));
    RagOptions rag;
    rag.requests = 10;
    rag.chunks = 20;
    rag.chunk_tokens = 16;
    out.push_back(serialize_workload(generate_rag(rag, common(seed), bytes())));
    SyntheticOptions syn;
    syn.requests = 10;
    syn.input_tokens = Distribution::parse("lognormal:100:0.5", "input");
    out.push_back(serialize_workload(generate_synthetic(syn, common(seed), bytes())));
    // Trace replay: lengths and times come from the trace, token content from the seed.
    TraceOptions trace;
    trace.path = temp_file("seeded.jsonl",
                           "{\"timestamp\": 0, \"input_length\": 600, \"output_length\": 3, "
                           "\"hash_ids\": [7]}\n"
                           "{\"timestamp\": 40, \"input_length\": 520, \"output_length\": 2, "
                           "\"hash_ids\": [7]}\n");
    out.push_back(serialize_workload(generate_trace(trace, common(seed), bytes())));
    std::filesystem::remove(trace.path);
    return out;
  };
  const auto a = all(1), b = all(1), c = all(2);
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i] == b[i]);
    CHECK(a[i] != c[i]);
  }
}

TEST_CASE("Multi-turn reuse ratio equals what the construction implies", "[generators][reuse]") {
  const auto o = small_multi_turn();
  const Workload w = generate_multi_turn(o, common(3), bytes());
  const std::uint64_t S = 3, T = 4, P = 5, U = 10, A = 7;
  std::uint64_t total = 0, reused = (S * T - 1) * P;
  for (std::uint64_t n = 0; n < T; ++n) {
    total += S * (P + n * (U + A) + U);
    if (n > 0) reused += S * (n * U + (n - 1) * A);  // earlier user turns and answers already sent
  }
  const auto st = compute_stats(w);
  CHECK(st.requests == S * T);
  CHECK(st.sessions == S);
  CHECK(st.prompt_tokens == total);
  CHECK(st.reused_prompt_tokens == reused);
  CHECK(st.reuse_ratio == Approx(static_cast<double>(reused) / static_cast<double>(total)));
  CHECK(st.session_depth.min == T);
  CHECK(st.session_depth.max == T);
  CHECK(st.output_tokens == S * T * A);
  // Turn n carries the previous turns as history segments.
  const auto& last = w.sessions[1].requests[3];
  REQUIRE(last.segments.size() == 1 + 2 * 3 + 1);
  CHECK(last.segments[1].content_id == w.sessions[1].requests[0].segments[1].content_id);
  CHECK(last.segments[1].provenance == Provenance::kHistory);
  CHECK(last.segments.back().provenance == Provenance::kUser);
  CHECK(last.arrival_offset_s >= 0.0);
}

TEST_CASE("Shared-context long-context workloads reuse exactly the context",
          "[generators][reuse]") {
  LongContextOptions o;
  o.context_lengths = {1000};
  o.shared_context = SharedContextMode::kMultiRequest;
  o.queries = 5;
  o.query_tokens = 20;
  const Workload w = generate_long_context(o, common(4), bytes());
  REQUIRE(w.sessions.size() == 5);
  for (const auto& s : w.sessions) CHECK(s.requests[0].prompt_tokens() == 1000);
  const auto st = compute_stats(w);
  CHECK(st.reused_prompt_tokens == 4u * 980u);
  CHECK(st.reuse_ratio == Approx(4.0 * 980.0 / 5000.0));
  CHECK(st.prefix_reuse_ratio == Approx(st.reuse_ratio));

  o.shared_context = SharedContextMode::kMultiTurn;
  const Workload mt = generate_long_context(o, common(4), bytes());
  REQUIRE(mt.sessions.size() == 1);
  REQUIRE(mt.sessions[0].requests.size() == 5);
  const auto& r2 = mt.sessions[0].requests[2];
  CHECK(r2.prompt_tokens() == 1000 + 2 * (20 + 64));
}

TEST_CASE("Long-context prompts have the exact length with the needle at its depth",
          "[generators]") {
  const Workload w = generate_long_context(small_long_context(), common(5), bytes());
  REQUIRE(w.sessions.size() == 6);
  for (const auto& s : w.sessions) {
    const auto& r = s.requests[0];
    CHECK((r.prompt_tokens() == 300 || r.prompt_tokens() == 600));
    int needles = 0;
    for (const auto& g : r.segments) needles += g.provenance == Provenance::kNeedle;
    CHECK(needles == 1);
  }
  CHECK(w.sessions[0].requests[0].segments[0].provenance == Provenance::kNeedle);  // depth 0
  CHECK(w.sessions[2].requests[0].segments[1].provenance ==
        Provenance::kNeedle);  // depth 1: after the context
}

TEST_CASE("Prompts decode to text that re-encodes to the same tokens", "[generators][tokens]") {
  const Tokenizer* tok = cl100k();
  if (!tok) return;
  RagOptions rag;
  rag.requests = 8;
  rag.chunks = 16;
  rag.chunk_tokens = 64;
  const Workload w = generate_rag(rag, common(6), *tok);
  for (const auto& s : w.sessions) {
    std::vector<std::int32_t> all;
    for (const auto& g : s.requests[0].segments)
      all.insert(all.end(), g.tokens.begin(), g.tokens.end());
    CHECK(tok->encode(tok->decode(all)) == all);
  }
  const Workload lc = generate_long_context(small_long_context(), common(6), *tok);
  for (const auto& s : lc.sessions) {
    std::vector<std::int32_t> all;
    for (const auto& g : s.requests[0].segments)
      all.insert(all.end(), g.tokens.begin(), g.tokens.end());
    CHECK(tok->encode(tok->decode(all)) == all);
  }
}

TEST_CASE("Prompts drawn from a corpus file keep their exact length", "[generators][tokens]") {
  const Tokenizer* tok = cl100k();
  if (!tok) return;
  std::string text;
  for (int i = 0; i < 200; ++i)
    text += "The quick brown fox jumps over the lazy dog, again and again (" + std::to_string(i) +
            "). ";
  const auto corpus = temp_file("corpus.txt", text);
  CommonOptions c = common(7);
  c.corpus_path = corpus;
  SyntheticOptions o;
  o.requests = 10;
  o.input_tokens = Distribution::parse("uniform:50:90", "input");
  const Workload w = generate_synthetic(o, c, *tok);
  for (const auto& s : w.sessions) {
    const auto& tokens = s.requests[0].segments[0].tokens;
    CHECK(tok->encode(tok->decode(tokens)) == tokens);
    CHECK(tokens.size() >= 50);
    CHECK(tokens.size() <= 90);
  }
  std::filesystem::remove(corpus);
}

TEST_CASE("RAG requests retrieve k distinct chunks that recur at non-prefix positions",
          "[generators][reuse]") {
  RagOptions o;
  o.requests = 40;
  o.chunks = 30;
  o.chunk_tokens = 8;
  o.top_k = 3;
  o.system_tokens = 4;
  o.question_tokens = Distribution::fixed(5);
  const Workload w = generate_rag(o, common(8), bytes());
  std::size_t distinct_chunk_ids = 0;
  std::set<std::string> ids;
  for (const auto& s : w.sessions) {
    const auto& r = s.requests[0];
    REQUIRE(r.segments.size() == 1 + 3 + 1);
    std::set<std::string> in_request;
    for (std::size_t i = 1; i <= 3; ++i) {
      CHECK(r.segments[i].provenance == Provenance::kDocument);
      in_request.insert(r.segments[i].content_id);
      ids.insert(r.segments[i].content_id);
    }
    CHECK(in_request.size() == 3);
  }
  distinct_chunk_ids = ids.size();
  const auto st = compute_stats(w);
  const std::uint64_t total = 40 * (4 + 3 * 8 + 5);
  const std::uint64_t distinct = 4 + distinct_chunk_ids * 8 + 40 * 5;
  CHECK(st.prompt_tokens == total);
  CHECK(st.reused_prompt_tokens == total - distinct);
  CHECK(st.reuse_ratio > st.prefix_reuse_ratio);  // chunk reuse beyond the system prefix
  // Zipf popularity: the most popular chunk appears far more than the least.
  CHECK(distinct_chunk_ids < 30);
}

TEST_CASE("Impossible generator options are rejected with the reason", "[generators][errors]") {
  RagOptions rag;
  rag.chunks = 3;
  rag.top_k = 4;
  CHECK(error_of([&] { generate_rag(rag, common(1), bytes()); }) ==
        "top-k: 4 retrieved chunks per request need a corpus of at least 4 chunks (got 3)");
  LongContextOptions lc;
  lc.context_lengths = {2000000};
  CHECK(error_of([&] { generate_long_context(lc, common(1), bytes()); }) ==
        "context length 2000000: 2000000 tokens exceed the context limit of 1048576 "
        "(max_context_tokens)");
  lc.context_lengths = {20};
  CHECK_THAT(error_of([&] { generate_long_context(lc, common(1), bytes()); }),
             Catch::StartsWith("context length 20: too short for the needle and the question"));
  lc.context_lengths = {1000};
  lc.needle_depths = {1.5};
  CHECK(error_of([&] { generate_long_context(lc, common(1), bytes()); }) ==
        "needle depth: 1.5 is outside [0, 1]");
  MultiTurnOptions mt;
  mt.sessions = 0;
  CHECK(error_of([&] { generate_multi_turn(mt, common(1), bytes()); }) ==
        "sessions: must be at least 1");
  mt = small_multi_turn();
  CommonOptions tight = common(1);
  tight.max_context_tokens = 40;
  CHECK_THAT(error_of([&] { generate_multi_turn(mt, tight, bytes()); }),
             Catch::Contains("session 0, turn 2: 56 tokens exceed the context limit of 40"));
  CommonOptions bad_rate = common(1);
  bad_rate.arrival.rate_per_s = -2;
  CHECK_THAT(error_of([&] { generate_multi_turn(small_multi_turn(), bad_rate, bytes()); }),
             Catch::Contains("arrival.rate_per_s: must be a positive number"));
}

TEST_CASE("Distributions parse their text form and reject nonsense", "[generators][errors]") {
  Rng rng(1);
  CHECK(Distribution::parse("512", "x").draw_length(rng) == 512);
  const auto u = Distribution::parse("uniform:10:12", "x");
  for (int i = 0; i < 50; ++i) {
    const auto v = u.draw_length(rng);
    CHECK((v >= 10 && v <= 12));
  }
  CHECK(Distribution::parse("lognormal:100:0", "x").draw_length(rng) == 100);
  CHECK(error_of([] { Distribution::parse("uniform:5:1", "input tokens"); }) ==
        "input tokens: \"uniform:5:1\": the upper bound is below the lower bound");
  CHECK(error_of([] { Distribution::parse("-5", "output tokens"); }) ==
        "output tokens: \"-5\": lengths and times must not be negative");
  CHECK(error_of([] { Distribution::parse("zipf:1", "turns"); }) ==
        "turns: \"zipf:1\": unknown distribution \"zipf\" (expected a number, fixed, uniform, "
        "normal, "
        "lognormal, exponential or empirical)");
  CHECK(error_of([] { Distribution::parse("normal:10", "x"); }) ==
        "x: \"normal:10\": expected 2 parameter(s) after \"normal:\"");
  CHECK(error_of([] { Distribution::parse("abc", "x"); }) == "x: \"abc\": \"abc\" is not a number");
}

TEST_CASE("Mooncake hash ids become shared 512-token block segments", "[generators][trace]") {
  const auto path = temp_file(
      "mooncake.jsonl",
      "{\"timestamp\": 0, \"input_length\": 1500, \"output_length\": 10, \"hash_ids\": [1, 2, 3]}\n"
      "{\"timestamp\": 250, \"input_length\": 1400, \"output_length\": 12, \"hash_ids\": [1, 2, "
      "5]}\n"
      "{\"timestamp\": 1000, \"input_length\": 1100, \"output_length\": 5, \"hash_ids\": [1, "
      "2]}\n");
  TraceOptions o;
  o.path = path;
  const Workload w = generate_trace(o, common(9), bytes());
  REQUIRE(w.sessions.size() == 3);
  const auto& a = w.sessions[0].requests[0];
  const auto& b = w.sessions[1].requests[0];
  const auto& c = w.sessions[2].requests[0];
  CHECK(a.prompt_tokens() == 1500);
  CHECK(b.prompt_tokens() == 1400);
  CHECK(c.prompt_tokens() == 1100);
  REQUIRE(a.segments.size() == 3);
  CHECK(a.segments[0].content_id == "block1");
  CHECK(b.segments[0].content_id == "block1");
  CHECK(a.segments[0].tokens == b.segments[0].tokens);
  CHECK(a.segments[1].tokens == b.segments[1].tokens);
  CHECK(a.segments[2].content_id == "block3:476");
  CHECK(c.segments.back().content_id == "r2:prompt");  // beyond the listed blocks: unique tokens
  CHECK(c.segments.back().tokens.size() == 76);
  CHECK(w.arrival.kind == ArrivalKind::kTrace);
  CHECK(b.arrival_offset_s == Approx(0.25));
  CHECK(c.arrival_offset_s == Approx(1.0));
  const auto st = compute_stats(w);
  CHECK(st.reused_prompt_tokens == 2048);
  std::filesystem::remove(path);
}

TEST_CASE("Azure replay keeps the gaps between requests, scaled on request",
          "[generators][trace]") {
  const auto path = temp_file("azure.csv",
                              "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                              "2023-11-16 18:15:46.5000000,374,44\n"
                              "2023-11-16 18:15:47.7500000,396,109\n"
                              "2023-11-16 18:16:00.0000000,10,1\n");
  TraceOptions o;
  o.path = path;
  o.time_scale = 2.0;
  const Workload w = generate_trace(o, common(10), bytes());
  REQUIRE(w.sessions.size() == 3);
  CHECK(w.sessions[0].requests[0].arrival_offset_s == 0.0);
  CHECK(w.sessions[1].requests[0].arrival_offset_s == Approx(2.5));
  CHECK(w.sessions[2].requests[0].arrival_offset_s == Approx(27.0));
  CHECK(w.sessions[1].requests[0].prompt_tokens() == 396);
  CHECK(w.sessions[1].requests[0].output_tokens == 109);
  std::filesystem::remove(path);
}

TEST_CASE("The real Azure conversation trace replays with its recorded gaps",
          "[generators][trace]") {
  const auto path = azure_trace_path();
  if (!std::filesystem::exists(path)) {
    WARN("SKIPPED: " << path << " missing (shared/data is beside the repository)");
    return;
  }
  TraceOptions o;
  o.path = path;
  o.max_requests = 200;
  const Workload w = generate_trace(o, common(11), bytes());
  REQUIRE(w.sessions.size() == 200);
  // First rows: 18:15:46.6805900 (374, 44), 18:15:50.9951690 (396, 109).
  CHECK(w.sessions[0].requests[0].prompt_tokens() == 374);
  CHECK(w.sessions[0].requests[0].output_tokens == 44);
  CHECK(w.sessions[1].requests[0].arrival_offset_s == Approx(4.314579).margin(1e-6));
  for (std::size_t i = 1; i < w.sessions.size(); ++i)
    CHECK(w.sessions[i].requests[0].arrival_offset_s >=
          w.sessions[i - 1].requests[0].arrival_offset_s);
}

TEST_CASE("Malformed trace lines are rejected with file:line and the field",
          "[generators][trace][errors]") {
  const auto csv = temp_file("bad.csv",
                             "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 "
                             "18:15:46.5,374,44\n2023-11-16 18:15:47,abc,1\n");
  CHECK(error_of([&] { read_trace(csv); }) ==
        csv + ":3: ContextTokens: expected a non-negative integer, got \"abc\"");
  const auto csv2 =
      temp_file("bad2.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-13-16 18:15:46,1,1\n");
  CHECK_THAT(error_of([&] { read_trace(csv2); }),
             Catch::StartsWith(csv2 + ":2: TIMESTAMP: expected"));
  const auto csv3 = temp_file("bad3.csv", "when,in,out\n1,2,3\n");
  CHECK_THAT(error_of([&] { read_trace(csv3); }),
             Catch::StartsWith(csv3 + ":1: header: expected the columns"));
  const auto csv4 =
      temp_file("bad4.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,1\n");
  CHECK(error_of([&] { read_trace(csv4); }) == csv4 + ":2: row: expected 3 columns, got 2");
  const auto back = temp_file("back.csv",
                              "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 "
                              "18:15:46,1,1\n2023-11-16 18:15:40,1,1\n");
  TraceOptions o;
  o.path = back;
  CHECK(error_of([&] { generate_trace(o, common(1), bytes()); }) ==
        back + ":3: timestamp: goes back in time (before line 2)");
  const auto zero =
      temp_file("zero.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,0,1\n");
  o.path = zero;
  CHECK(error_of([&] { generate_trace(o, common(1), bytes()); }) ==
        zero + ":2: input length: must be at least 1");
  const auto jsonl = temp_file("bad.jsonl",
                               "{\"timestamp\": 0, \"input_length\": 10, \"output_length\": "
                               "1}\n{\"timestamp\": 5, \"input_length\": 10,\n");
  CHECK_THAT(error_of([&] { read_trace(jsonl); }),
             Catch::StartsWith(jsonl + ":2: line: malformed JSON"));
  const auto jsonl2 =
      temp_file("bad2.jsonl", "{\"timestamp\": 0, \"input_length\": -3, \"output_length\": 1}\n");
  CHECK(error_of([&] { read_trace(jsonl2); }) ==
        jsonl2 + ":1: input_length: expected a non-negative number, got -3");
  const auto jsonl3 = temp_file(
      "bad3.jsonl",
      "{\"timestamp\": 0, \"input_length\": 100, \"output_length\": 1, \"hash_ids\": [1, 2]}\n");
  CHECK(error_of([&] { read_trace(jsonl3); }) ==
        jsonl3 + ":1: hash_ids: 2 blocks of 512 tokens do not fit input_length 100");
  const auto jsonl4 = temp_file("bad4.jsonl", "{\"input_length\": 100, \"output_length\": 1}\n");
  CHECK(error_of([&] { read_trace(jsonl4); }) == jsonl4 + ":1: timestamp: missing field");
  CHECK(error_of([] { read_trace("/nonexistent/trace.csv"); }) ==
        "/nonexistent/trace.csv: cannot open trace file");
  for (const auto& p : {csv, csv2, csv3, csv4, back, zero, jsonl, jsonl2, jsonl3, jsonl4})
    std::filesystem::remove(p);
}

TEST_CASE("Poisson and Gamma gaps have the configured mean and variability", "[arrivals]") {
  auto moments = [](const ArrivalSpec& spec, std::uint64_t seed) {
    const auto t = draw_arrival_offsets(spec, 40000, seed);
    double sum = 0, sq = 0, prev = 0;
    for (double x : t) {
      const double g = x - prev;
      prev = x;
      sum += g;
      sq += g * g;
    }
    const double n = static_cast<double>(t.size()), mean = sum / n;
    return std::pair{mean, std::sqrt(sq / n - mean * mean) / mean};
  };
  ArrivalSpec poisson;
  poisson.kind = ArrivalKind::kPoisson;
  poisson.rate_per_s = 4.0;
  auto [pm, pcv] = moments(poisson, 1);
  CHECK(pm == Approx(0.25).epsilon(0.02));
  CHECK(pcv == Approx(1.0).epsilon(0.03));

  for (double burstiness : {0.25, 1.0, 4.0}) {
    ArrivalSpec gamma;
    gamma.kind = ArrivalKind::kGamma;
    gamma.rate_per_s = 10.0;
    gamma.burstiness = burstiness;
    auto [gm, gcv] = moments(gamma, 2);
    INFO("burstiness " << burstiness);
    CHECK(gm == Approx(0.1).epsilon(0.03));
    CHECK(gcv == Approx(1.0 / std::sqrt(burstiness)).epsilon(0.05));
  }
}

TEST_CASE("Closed-loop arrivals are all due at once and trace arrivals need a trace",
          "[arrivals]") {
  ArrivalSpec closed;
  closed.kind = ArrivalKind::kClosedLoop;
  closed.concurrency = 4;
  CHECK(draw_arrival_offsets(closed, 5, 1) == std::vector<double>(5, 0.0));
  ArrivalSpec trace;
  trace.kind = ArrivalKind::kTrace;
  CHECK_THROWS_AS(draw_arrival_offsets(trace, 5, 1), WorkloadError);
  CHECK(trace_offsets({10.0, 10.5, 12.0}, 2.0) == std::vector<double>{0.0, 1.0, 4.0});
  CHECK_THROWS_WITH(trace_offsets({10.0, 9.0}, 1.0), Catch::Contains("is before the previous one"));
}

TEST_CASE("A rate sweep expands into one arrival spec per rate", "[arrivals]") {
  ArrivalSpec s;
  s.kind = ArrivalKind::kPoisson;
  s.sweep_rates_per_s = {0.5, 1.0, 2.0};
  const auto points = sweep_points(s);
  REQUIRE(points.size() == 3);
  CHECK(points[2].rate_per_s == 2.0);
  CHECK(points[2].sweep_rates_per_s.empty());
  Workload w = generate_multi_turn(small_multi_turn(), common(12), bytes());
  assign_arrivals(w, points[2], 12);
  CHECK(w.arrival.rate_per_s == 2.0);
  CHECK(w.sessions[0].requests[0].arrival_offset_s > 0.0);
  CHECK(w.sessions[0].requests[1].arrival_offset_s ==
        generate_multi_turn(small_multi_turn(), common(12), bytes())
            .sessions[0]
            .requests[1]
            .arrival_offset_s);
}

TEST_CASE("Workload stats report lengths, histograms and session depth", "[stats]") {
  MultiTurnOptions o = small_multi_turn();
  o.turns = Distribution::parse("uniform:1:6", "turns");
  const Workload w = generate_multi_turn(o, common(13), bytes());
  const auto st = compute_stats(w);
  std::uint64_t depth_total = 0, hist_total = 0;
  for (const auto& s : w.sessions) depth_total += s.requests.size();
  for (auto c : st.prompt_lengths.histogram.counts) hist_total += c;
  CHECK(st.session_depth.total == depth_total);
  CHECK(hist_total == st.requests);
  CHECK(st.prompt_lengths.min == 15);  // system 5 + user 10
  CHECK(st.tokens_by_provenance.at("system") == 5 * st.requests);
  const std::string text = format_stats(w, st);
  CHECK_THAT(text, Catch::Contains("reuse ratio"));
  CHECK_THAT(text, Catch::Contains("session depth"));
}
