// Workload generators. Each takes its own options plus the common ones and a
// tokenizer, and returns a validated Workload that is a pure function of the
// options and the seed. Defaults are sized for a 2-core CPU run; every size
// is an option. Impossible options (k > N, negative or zero lengths, a context
// beyond max_context_tokens) throw WorkloadError with the reason.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "prism/workloads/distribution.h"
#include "prism/workloads/tokenizer.h"
#include "prism/workloads/workload.h"

namespace prism::workloads {

inline constexpr std::uint64_t kDefaultMaxContextTokens = 1u << 20;  // 1M tokens

struct CommonOptions {
  std::uint64_t seed = 0;
  std::string name;  // empty: "<kind>-seed<seed>"
  ArrivalSpec arrival;
  std::uint64_t max_context_tokens = kDefaultMaxContextTokens;
  std::string corpus_path;  // sample prompt text from this file instead of word tokens
  bool ignore_eos = true;
};

// long-context: one request per (context length, needle depth) whose prompt
// is exactly `length` tokens: context, a needle at the depth, more context,
// the question. Shared-context mode (SCBench): per length one context and
// `queries` queries, either as turns of one session (each turn carries the
// previous queries and answers) or as separate single-request sessions that
// all start with the same context segment.
enum class SharedContextMode { kNone, kMultiTurn, kMultiRequest };
struct LongContextOptions {
  std::vector<std::uint32_t> context_lengths = {4096, 8192, 16384, 32768, 65536, 131072};
  std::vector<double> needle_depths = {0.5};  // 0 = start of context, 1 = end
  SharedContextMode shared_context = SharedContextMode::kNone;
  std::uint32_t queries = 4;  // shared-context mode
  std::uint32_t query_tokens = 32;
  Distribution output_tokens = Distribution::fixed(64);
  double think_time_s = 0.0;  // between turns, multi-turn shared mode
};
Workload generate_long_context(const LongContextOptions& options, const CommonOptions& common,
                               const Tokenizer& tokenizer);

// rag: a corpus of `chunks` chunks of `chunk_tokens`; each request is the
// shared system prompt + `top_k` distinct chunks drawn by Zipf(zipf_s)
// popularity (in retrieval-rank order) + a question. Chunks recur at
// non-prefix positions across requests.
struct RagOptions {
  std::uint32_t requests = 64;
  std::uint32_t chunks = 512;
  std::uint32_t chunk_tokens = 256;
  std::uint32_t top_k = 4;
  double zipf_s = 1.0;
  std::uint32_t system_tokens = 128;
  Distribution question_tokens = Distribution::fixed(48);
  Distribution output_tokens = Distribution::fixed(128);
};
Workload generate_rag(const RagOptions& options, const CommonOptions& common,
                      const Tokenizer& tokenizer);

// multi-turn: sessions whose turn n prompt = system + (user, answer) of turns
// 0..n-1 as history + new user text; the answer of turn n is its output
// length. Think time separates turns.
struct MultiTurnOptions {
  std::uint32_t sessions = 32;
  Distribution turns = Distribution::parse("uniform:2:6", "turns");
  Distribution user_tokens = Distribution::parse("lognormal:128:0.5", "user tokens");
  Distribution answer_tokens = Distribution::parse("lognormal:128:0.5", "answer tokens");
  Distribution think_time_s = Distribution::parse("exponential:2", "think time");
  std::uint32_t system_tokens = 256;  // shared by every session; 0 for none
};
Workload generate_multi_turn(const MultiTurnOptions& options, const CommonOptions& common,
                             const Tokenizer& tokenizer);

// trace: replay of an Azure CSV or Mooncake JSONL trace (format from the
// content). Each record is a single-request session at its timestamp (gaps
// times time_scale). Mooncake hash ids become shared 512-token block segments;
// Azure prompts are unique. Common arrival options other than trace replace
// the timestamps (e.g. replay the lengths at a Poisson rate).
struct TraceOptions {
  std::string path;
  double time_scale = 1.0;
  std::size_t max_requests = 0;  // 0: all
  bool use_trace_arrivals = true;
};
Workload generate_trace(const TraceOptions& options, const CommonOptions& common,
                        const Tokenizer& tokenizer);

// synthetic: independent requests with input and output lengths from
// distributions and an optional prefix shared by all.
struct SyntheticOptions {
  std::uint32_t requests = 100;
  Distribution input_tokens = Distribution::fixed(512);
  Distribution output_tokens = Distribution::fixed(128);
  std::uint32_t shared_prefix_tokens = 0;
};
Workload generate_synthetic(const SyntheticOptions& options, const CommonOptions& common,
                            const Tokenizer& tokenizer);

}  // namespace prism::workloads
