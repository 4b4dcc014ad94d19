// Workload generation and tokenizer speed (issue 3 targets):
//   - 1,000 sessions x 10 turns x ~2K tokens per turn multi-turn: <= 5 s on one core
//   - 8 queries x 128K shared-context long-context: <= 5 s on one core
//   - tokenizer encode >= 10 MB/s per core on English text
// Tokenizers come from $PRISM_CACHE (scripts/setup); missing ones are skipped.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "prism/workloads/generators.h"
#include "prism/workloads/random.h"
#include "prism/workloads/tokenizer.h"
#include "prism/workloads/workload_json.h"

namespace wl = prism::workloads;

namespace {

const wl::Tokenizer* tokenizer(const std::string& name) {
  static std::map<std::string, std::unique_ptr<wl::Tokenizer>> cache;
  auto it = cache.find(name);
  if (it == cache.end()) {
    std::unique_ptr<wl::Tokenizer> t;
    if (name == "bytes" || std::filesystem::exists(wl::tokenizer_file_for(name)))
      t = wl::load_tokenizer(name);
    it = cache.emplace(name, std::move(t)).first;
  }
  return it->second.get();
}

// English text: the licence texts every Debian system ships; a word-list
// text when they are missing.
const std::string& english_text() {
  static const std::string text = [] {
    std::string out;
    const std::filesystem::path dir = "/usr/share/common-licenses";
    if (std::filesystem::exists(dir)) {
      std::vector<std::filesystem::path> files;
      for (const auto& e : std::filesystem::directory_iterator(dir))
        if (e.is_regular_file()) files.push_back(e.path());
      std::sort(files.begin(), files.end());
      for (const auto& f : files) {
        std::ifstream in(f, std::ios::binary);
        std::ostringstream s;
        s << in.rdbuf();
        out += s.str();
      }
    }
    if (out.size() < 100000) {
      static const char* words[] = {
          "the",  "of",   "and",   "to",   "in",    "a",     "is",   "that", "for",  "it",
          "as",   "was",  "with",  "be",   "by",    "on",    "not",  "he",   "this", "are",
          "or",   "his",  "from",  "at",   "which", "but",   "have", "an",   "had",  "they",
          "you",  "were", "their", "one",  "all",   "we",    "can",  "her",  "has",  "there",
          "been", "if",   "more",  "when", "will",  "would", "who",  "so"};
      wl::Rng rng(1);
      while (out.size() < 300000) {
        out += words[rng.below(std::size(words))];
        out += rng.below(12) == 0 ? ".\n" : " ";
      }
    }
    return out;
  }();
  return text;
}

void BM_TokenizerEncode(benchmark::State& state, const std::string& name) {
  const wl::Tokenizer* tok = tokenizer(name);
  if (!tok) {
    state.SkipWithError(("tokenizer file missing: " + wl::tokenizer_file_for(name)).c_str());
    return;
  }
  const std::string& text = english_text();
  std::size_t tokens = 0;
  for (auto _ : state) {
    auto ids = tok->encode(text);
    tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
  state.counters["tokens"] = static_cast<double>(tokens);
  state.counters["text_bytes"] = static_cast<double>(text.size());
}
BENCHMARK_CAPTURE(BM_TokenizerEncode, cl100k_base, std::string("cl100k_base"))
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_TokenizerEncode, o200k_base, std::string("o200k_base"))
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_TokenizerEncode, llama3, std::string("llama3"))->Unit(benchmark::kMillisecond);

// First encounter of every piece: each iteration encodes text the piece cache
// has never seen (the words are made unique by a counter suffix).
void BM_TokenizerEncodeColdCache(benchmark::State& state) {
  const wl::Tokenizer* tok = tokenizer("cl100k_base");
  if (!tok) {
    state.SkipWithError("tokenizer file missing: cl100k_base");
    return;
  }
  std::uint64_t round = 0;
  std::size_t bytes = 0;
  for (auto _ : state) {
    state.PauseTiming();
    std::string text;
    wl::Rng rng(++round);
    while (text.size() < 1 << 20) {
      text += " w";
      for (int i = 0; i < 6; ++i) text += static_cast<char>('a' + rng.below(26));
    }
    state.ResumeTiming();
    auto ids = tok->encode(text);
    benchmark::DoNotOptimize(ids.data());
    bytes += text.size();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
}
BENCHMARK(BM_TokenizerEncodeColdCache)->Unit(benchmark::kMillisecond);

void BM_TokenizerDecode(benchmark::State& state) {
  const wl::Tokenizer* tok = tokenizer("cl100k_base");
  if (!tok) {
    state.SkipWithError("tokenizer file missing: cl100k_base");
    return;
  }
  const auto ids = tok->encode(english_text());
  for (auto _ : state) {
    auto text = tok->decode(ids);
    benchmark::DoNotOptimize(text.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * english_text().size()));
}
BENCHMARK(BM_TokenizerDecode)->Unit(benchmark::kMillisecond);

const wl::Tokenizer& generation_tokenizer() {
  const wl::Tokenizer* t = tokenizer("llama3");
  return t ? *t : *tokenizer("bytes");
}

// 1,000 sessions x 10 turns, each turn adding ~2K tokens (1K user + 1K answer).
void BM_GenerateMultiTurn1000x10x2K(benchmark::State& state) {
  wl::MultiTurnOptions o;
  o.sessions = 1000;
  o.turns = wl::Distribution::fixed(10);
  o.user_tokens = wl::Distribution::parse("uniform:896:1152", "user");
  o.answer_tokens = wl::Distribution::parse("uniform:896:1152", "answer");
  wl::CommonOptions c;
  c.seed = 1;
  std::uint64_t prompt_tokens = 0, requests = 0;
  for (auto _ : state) {
    const wl::Workload w = wl::generate_multi_turn(o, c, generation_tokenizer());
    requests = w.request_count();
    prompt_tokens = 0;
    for (const auto& s : w.sessions)
      for (const auto& r : s.requests) prompt_tokens += r.prompt_tokens();
  }
  state.counters["requests"] = static_cast<double>(requests);
  state.counters["prompt_tokens"] = static_cast<double>(prompt_tokens);
}
BENCHMARK(BM_GenerateMultiTurn1000x10x2K)->Unit(benchmark::kSecond)->Iterations(1);

// 8 queries sharing one 128K-token context (SCBench multi-request mode).
void BM_GenerateLongContext8x128K(benchmark::State& state) {
  wl::LongContextOptions o;
  o.context_lengths = {131072};
  o.shared_context = wl::SharedContextMode::kMultiRequest;
  o.queries = 8;
  wl::CommonOptions c;
  c.seed = 1;
  for (auto _ : state) {
    const wl::Workload w = wl::generate_long_context(o, c, generation_tokenizer());
    benchmark::DoNotOptimize(w.sessions.data());
  }
}
BENCHMARK(BM_GenerateLongContext8x128K)->Unit(benchmark::kMillisecond);

// Writing the multi-turn spec: the contents table holds each segment once.
void BM_SerializeMultiTurn1000x10x2K(benchmark::State& state) {
  wl::MultiTurnOptions o;
  o.sessions = 1000;
  o.turns = wl::Distribution::fixed(10);
  o.user_tokens = wl::Distribution::parse("uniform:896:1152", "user");
  o.answer_tokens = wl::Distribution::parse("uniform:896:1152", "answer");
  wl::CommonOptions c;
  c.seed = 1;
  const wl::Workload w = wl::generate_multi_turn(o, c, generation_tokenizer());
  std::size_t bytes = 0;
  for (auto _ : state) {
    const std::string text = wl::serialize_workload(w);
    bytes = text.size();
    benchmark::DoNotOptimize(text.data());
  }
  state.counters["spec_bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_SerializeMultiTurn1000x10x2K)->Unit(benchmark::kSecond)->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
