// The reference engine (prism_engine) as an injection target: runs batches of
// greedy requests on a built-in model with the engine's own stage clock on,
// and writes that clock as CSV in the format of nvtx_stage_program
// (thread,iteration,stage,start_ns,end_ns), so tests can compare what the
// probe agent saw through the engine's NVTX ranges with the engine's truth.
// Prints one line "steps=N tokens=T seconds=S tokens_per_s=R clock_overhead_ns=C"
// on stdout (C: what the engine's clock costs inside each range, see below).
//
//   engine_stage_program [--model tiny] [--requests 48] [--prompt 32]
//                        [--max-tokens 16] [--rounds 1] [--warmup-rounds 0] [--clock FILE]
//                        [--no-clock] [--loop-ms MS] [--ready FILE]
//                        [--ab-blocks N [--ab-block-rounds R]]
//
// --ab-blocks: the in-process A/B of the agent's cost (run with the agent injected
// and dormant). After the warm-up, N blocks of R rounds each alternate agent
// dormant (A) and active (B) in ABBA order, switched through the agent's own control
// socket between blocks (outside the timed part); each block is timed alone. Prints
// "ab_pairs=P active_pct_median=M active_pct_p25=.. active_pct_p75=.. dormant_tokens_per_s=..
// active_tokens_per_s=.. ranges_per_step=.." where a pair is two adjacent blocks.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include "prism/control/client.h"
#include "prism/engine/engine.h"
#include "prism/engine/model_config.h"
#include "prism/engine/weights.h"
#include "prism/workloads/tokenizer.h"

namespace {

using namespace prism::engine;

struct Options {
  std::string model = "tiny";
  int requests = 48;
  int prompt = 32;
  int max_tokens = 16;
  int rounds = 1;
  int warmup_rounds =
      0;  // run first and left out of the timing (NVTX loads a tool at the first call)
  std::string clock_path;
  bool clock = true;
  long loop_ms = 0;  // keep running rounds until this much time has passed
  std::string ready_path;
  int ab_blocks = 0;
  int ab_block_rounds = 8;
};

[[noreturn]] void usage(const char* message) {
  std::fprintf(stderr, "engine_stage_program: %s\n", message);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value for " + arg).c_str());
      return argv[++i];
    };
    if (arg == "--model") {
      o.model = value();
    } else if (arg == "--requests") {
      o.requests = std::atoi(value().c_str());
    } else if (arg == "--prompt") {
      o.prompt = std::atoi(value().c_str());
    } else if (arg == "--max-tokens") {
      o.max_tokens = std::atoi(value().c_str());
    } else if (arg == "--warmup-rounds") {
      o.warmup_rounds = std::atoi(value().c_str());
    } else if (arg == "--rounds") {
      o.rounds = std::atoi(value().c_str());
    } else if (arg == "--clock") {
      o.clock_path = value();
    } else if (arg == "--no-clock") {
      o.clock = false;
    } else if (arg == "--loop-ms") {
      o.loop_ms = std::atol(value().c_str());
    } else if (arg == "--ready") {
      o.ready_path = value();
    } else if (arg == "--ab-blocks") {
      o.ab_blocks = std::atoi(value().c_str());
    } else if (arg == "--ab-block-rounds") {
      o.ab_block_rounds = std::atoi(value().c_str());
    } else {
      usage(("unknown option " + arg).c_str());
    }
  }
  if (o.requests < 1 || o.prompt < 1 || o.max_tokens < 1 || o.rounds < 1)
    usage("--requests, --prompt, --max-tokens and --rounds must be >= 1");
  if (o.ab_blocks < 0 || o.ab_blocks % 2 != 0 || o.ab_block_rounds < 1)
    usage("--ab-blocks must be an even count >= 0 and --ab-block-rounds >= 1");
  return o;
}

// Deterministic prompt of n byte tokens (different per request so nothing is a prefix hit).
std::vector<std::int32_t> prompt_tokens(int n, std::uint32_t salt, int vocab) {
  std::vector<std::int32_t> out;
  std::uint32_t x = 2463534242u ^ (salt * 0x9e3779b9u);
  for (int i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    out.push_back(static_cast<std::int32_t>(x % static_cast<std::uint32_t>(vocab)));
  }
  return out;
}

void write_clock(const std::string& path, const std::vector<StageRecord>& records) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) usage(("cannot write " + path).c_str());
  std::fprintf(f, "thread,iteration,stage,start_ns,end_ns\n");
  for (const auto& r : records) {
    std::fprintf(f, "0,%llu,%s,%lld,%lld\n", static_cast<unsigned long long>(r.step),
                 stage_name(r.stage), static_cast<long long>(r.begin_ns),
                 static_cast<long long>(r.end_ns));
  }
  std::fclose(f);
}

// What the engine's clock itself costs inside each NVTX range: its timestamps
// are taken inside the range (after the push, before the pop), so per range
// the NVTX range also holds one clock read and one StageClock::record(). A
// scratch clock measures that cost the same way the engine pays it.
double clock_overhead_ns() {
  StageClock scratch;
  scratch.set_enabled(true);
  constexpr int kRanges = 4096;
  const std::int64_t t0 = stage_clock_now_ns();
  for (int i = 0; i < kRanges; ++i) {
    const std::int64_t begin = stage_clock_now_ns();
    scratch.record(StageRecord{Stage::kSchedule, static_cast<std::uint64_t>(i), begin, begin});
  }
  return static_cast<double>(stage_clock_now_ns() - t0) / kRanges;
}

double percentile_of_sorted(const std::vector<double>& v, double q) {
  const double at = q * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(at);
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (at - static_cast<double>(lo));
}

// The in-process A/B (see the header): dormant and active blocks in ABBA order.
template <typename RunRound>
int run_ab(const Options& o, Engine& engine, std::uint64_t& tokens, RunRound&& run_round) {
  prism::control::ProbeClient client = [] {
    try {
      return prism::control::ProbeClient::connect(static_cast<int>(getpid()), 2000);
    } catch (const prism::control::ProbeError& e) {
      std::fprintf(stderr, "engine_stage_program: --ab-blocks needs the agent injected: %s\n",
                   e.what());
      std::exit(2);
    }
  }();
  std::vector<double> dormant_rate, active_rate, ratios;
  std::uint64_t active_steps = 0;
  std::uint64_t active_ranges = 0;
  for (int block = 0; block < o.ab_blocks; ++block) {
    const bool active = (block % 4 == 1) || (block % 4 == 2);  // A B B A ...
    if (active) client.start(0, prism::control::kActivityNvtx);
    const std::uint64_t steps0 = engine.stats().steps;
    const std::uint64_t tokens0 = tokens;
    const std::int64_t t0 = stage_clock_now_ns();
    for (int round = 0; round < o.ab_block_rounds; ++round) run_round();
    const double seconds = static_cast<double>(stage_clock_now_ns() - t0) * 1e-9;
    const double rate = static_cast<double>(tokens - tokens0) / seconds;
    if (active) {
      const prism::control::Stats stats = client.stats();
      client.stop();
      for (const auto& row : stats.rows) active_ranges += row.count;
      active_steps += engine.stats().steps - steps0;
      active_rate.push_back(rate);
    } else {
      dormant_rate.push_back(rate);
    }
    if (block % 2 == 1) ratios.push_back(active_rate.back() / dormant_rate.back());
  }
  std::sort(ratios.begin(), ratios.end());
  std::sort(active_rate.begin(), active_rate.end());
  std::sort(dormant_rate.begin(), dormant_rate.end());
  std::printf(
      "ab_pairs=%zu active_pct_median=%.2f active_pct_p25=%.2f active_pct_p75=%.2f "
      "dormant_tokens_per_s=%.1f active_tokens_per_s=%.1f ranges_per_step=%.2f\n",
      ratios.size(), 100.0 * percentile_of_sorted(ratios, 0.5),
      100.0 * percentile_of_sorted(ratios, 0.25), 100.0 * percentile_of_sorted(ratios, 0.75),
      percentile_of_sorted(dormant_rate, 0.5), percentile_of_sorted(active_rate, 0.5),
      active_steps > 0 ? static_cast<double>(active_ranges) / static_cast<double>(active_steps)
                       : 0.0);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  const ModelConfig config = load_model_config(o.model);
  const ModelWeights weights = random_weights(config, config.seed);
  auto model = std::make_shared<Model>(config, weights);
  std::shared_ptr<const prism::workloads::Tokenizer> tokenizer =
      prism::workloads::load_tokenizer(config.tokenizer);
  EngineOptions options;
  options.kv_cache_blocks =
      (o.requests * (o.prompt + o.max_tokens) + options.block_size - 1) / options.block_size +
      o.requests + 16;
  options.stage_clock = o.clock;
  options.scheduler.max_num_seqs = o.requests;
  Engine engine(model, tokenizer, options);
  const int vocab = std::min(256, config.vocab_size);

  std::uint64_t tokens = 0;
  std::uint32_t salt = 1;
  for (int round = 0; round < o.warmup_rounds; ++round) {
    for (int r = 0; r < o.requests; ++r) {
      GenerateRequest request;
      request.prompt = prompt_tokens(o.prompt, salt++, vocab);
      request.sampling.max_tokens = o.max_tokens;
      request.sampling.ignore_eos = true;
      engine.add_request(std::move(request), [](const RequestOutput&) {});
    }
    engine.run_until_idle();
  }
  if (o.warmup_rounds > 0) engine.stage_clock().take();
  // One round: o.requests requests admitted together and run to completion.
  auto run_round = [&]() {
    for (int r = 0; r < o.requests; ++r) {
      GenerateRequest request;
      request.prompt = prompt_tokens(o.prompt, salt++, vocab);
      request.sampling.max_tokens = o.max_tokens;
      request.sampling.ignore_eos = true;
      const AdmitResult admitted = engine.add_request(
          std::move(request),
          [&tokens](const RequestOutput& out) { tokens += out.token_ids.size(); });
      if (!admitted.ok()) {
        std::fprintf(stderr, "engine_stage_program: request rejected: %s\n",
                     admitted.message.c_str());
        std::exit(1);
      }
    }
    engine.run_until_idle();
  };
  if (o.ab_blocks > 0) return run_ab(o, engine, tokens, run_round);
  const std::int64_t t0 = stage_clock_now_ns();
  for (int round = 0;; ++round) {
    const bool more_rounds = round < o.rounds;
    const bool more_time = o.loop_ms > 0 && stage_clock_now_ns() - t0 < o.loop_ms * 1'000'000;
    if (!more_rounds && !more_time) break;
    run_round();
    // Ready once the engine has made NVTX calls: NVTX loads an injected agent at the first.
    if (round == 0 && !o.ready_path.empty()) {
      if (FILE* f = std::fopen(o.ready_path.c_str(), "w")) {
        std::fputs("ready\n", f);
        std::fclose(f);
      }
    }
  }
  const double seconds = static_cast<double>(stage_clock_now_ns() - t0) * 1e-9;
  if (!o.clock_path.empty()) write_clock(o.clock_path, engine.stage_clock().take());
  std::printf("steps=%llu tokens=%llu seconds=%.6f tokens_per_s=%.1f clock_overhead_ns=%.1f\n",
              static_cast<unsigned long long>(engine.stats().steps),
              static_cast<unsigned long long>(tokens), seconds,
              seconds > 0 ? static_cast<double>(tokens) / seconds : 0.0,
              o.clock ? clock_overhead_ns() : 0.0);
  return 0;
}
