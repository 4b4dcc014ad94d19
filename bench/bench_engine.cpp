// Reference engine benchmarks (issue 9), on the `small` model (about 100M
// parameters, fp32) with seeded random weights:
//   BM_DecodeSingle     one sequence, one token per step: bytes of weights
//                       read per token / step time vs measured memory bandwidth
//   BM_Prefill          one 2K-token prompt in one step: model FLOPs / time vs
//                       measured sgemm peak
//   BM_DecodeBatch/B    B sequences decoding together: tokens per second
//   BM_MultiTurnTtft    TTFT of turn 2 after a 4K-token turn 1, with and
//                       without prefix caching (engine, chunked prefill)
// After the runs, a summary prints each figure against its target.
//   build/<dir>/bench/bench_engine [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <memory>
#include <numeric>
#include <set>
#include <string>

#include "prism/baselines/machine_peaks.h"
#include "prism/engine/engine.h"
#include "prism/engine/model.h"
#include "prism/engine/weights.h"
#include "prism/kernels/threading.h"
#include "prism/workloads/tokenizer.h"

namespace {

using namespace prism::engine;

std::shared_ptr<Model> small_model() {
  static const std::shared_ptr<Model> model = [] {
    ModelConfig c = load_model_config("small");
    ModelWeights w = random_weights(c, c.seed);
    return std::make_shared<Model>(std::move(c), std::move(w));
  }();
  return model;
}

std::vector<std::int32_t> tokens(int n, std::uint32_t salt) {
  std::vector<std::int32_t> out(static_cast<std::size_t>(n));
  std::uint32_t x = 0x9e3779b9u * (salt + 1);
  for (auto& t : out) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    t = static_cast<std::int32_t>(x % 100000);
  }
  return out;
}

std::vector<std::int32_t> block_range(int first, int count) {
  std::vector<std::int32_t> b(static_cast<std::size_t>(count));
  std::iota(b.begin(), b.end(), first);
  return b;
}

// Process CPU seconds (every thread): on a shared machine the rate per
// CPU-second a computation actually got is compared with the peak per
// CPU-second of the same run (as kernels/README.md does).
double process_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

std::map<std::string, std::vector<double>>& per_cpu() {
  static std::map<std::string, std::vector<double>> f;
  return f;
}

double median_of(std::vector<double> v) {
  if (v.empty()) return -1.0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Figures the summary compares with the targets.
std::map<std::string, double>& figures() {
  static std::map<std::string, double> f;
  return f;
}

void BM_DecodeSingle(benchmark::State& state) {
  auto model = small_model();
  const ModelConfig& c = model->config();
  const int context = static_cast<int>(state.range(0));
  const int nblocks = context / 16 + 1;
  KvCache cache(c, nblocks);
  const auto table = block_range(0, nblocks);
  std::vector<float> logits;
  const auto prompt = tokens(context, 1);
  const ForwardEntry prefill{.tokens = prompt, .start_pos = 0, .block_table = table};
  model->forward(std::span(&prefill, 1), cache, logits);
  const std::int32_t next = 42;
  // Each step decodes position `context` again: the context stays fixed.
  const ForwardEntry step{
      .tokens = std::span(&next, 1), .start_pos = context, .block_table = table};
  const double cpu0 = process_cpu_s();
  for (auto _ : state) {
    model->forward(std::span(&step, 1), cache, logits);
    benchmark::DoNotOptimize(logits.data());
  }
  const double cpu = process_cpu_s() - cpu0;
  const double bytes = static_cast<double>(c.weight_bytes_read_per_token());
  const double gb_per_cpu_s = bytes * static_cast<double>(state.iterations()) / cpu / 1e9;
  state.counters["weight_GB_per_cpu_s"] = gb_per_cpu_s;
  per_cpu()["decode_GB_per_cpu_s"].push_back(gb_per_cpu_s);
  state.counters["weight_GB_per_token"] = bytes / 1e9;
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["weight_GB_per_s"] = benchmark::Counter(
      bytes * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_DecodeSingle)->Arg(128)->Unit(benchmark::kMillisecond)->MinTime(2.0)->UseRealTime();

// The same decode step, alternated with one STREAM triad repetition, so each
// (decode, triad) pair sees the same share of a shared machine: the per-pair
// ratio of weight bandwidth to triad bandwidth, median over the pairs, is the
// roofline fraction with the other processes' load cancelled out as far as
// it can be. Iteration time is one pair.
// STREAM triad a = b + s c over three 128 MB arrays on the kernels' threads,
// per CPU-second of the process (8 bytes x 3 per element, as STREAM counts).
void BM_TriadPerCpu(benchmark::State& state) {
  const std::size_t n = (std::size_t{128} << 20) / sizeof(double);
  std::vector<double> a(n, 0.0), b(n, 1.0), cv(n, 2.0);
  const std::int64_t chunks = 64;
  const auto triad = [&](std::int64_t i) {
    const std::size_t lo = n * static_cast<std::size_t>(i) / chunks;
    const std::size_t hi = n * static_cast<std::size_t>(i + 1) / chunks;
    for (std::size_t j = lo; j < hi; ++j) a[j] = b[j] + 3.0 * cv[j];
  };
  prism::kernels::parallel_for(chunks, triad);  // warm
  const double cpu0 = process_cpu_s();
  for (auto _ : state) {
    prism::kernels::parallel_for(chunks, triad);
    benchmark::DoNotOptimize(a.data());
  }
  const double gb =
      3.0 * sizeof(double) * static_cast<double>(n) * static_cast<double>(state.iterations()) / 1e9;
  const double per_cpu_s = gb / (process_cpu_s() - cpu0);
  state.counters["GB_per_cpu_s"] = per_cpu_s;
  state.counters["GB_per_s"] = benchmark::Counter(gb, benchmark::Counter::kIsRate);
  per_cpu()["triad_GB_per_cpu_s"].push_back(per_cpu_s);
}
BENCHMARK(BM_TriadPerCpu)->Unit(benchmark::kMillisecond)->MinTime(1.0)->UseRealTime();

std::vector<double>& pair_ratios() {  // every pair of every repetition
  static std::vector<double> r;
  return r;
}

void BM_DecodeVsTriad(benchmark::State& state) {
  auto model = small_model();
  const ModelConfig& c = model->config();
  const int context = 128;
  const int nblocks = context / 16 + 1;
  KvCache cache(c, nblocks);
  const auto table = block_range(0, nblocks);
  std::vector<float> logits;
  const auto prompt = tokens(context, 1);
  const ForwardEntry prefill{.tokens = prompt, .start_pos = 0, .block_table = table};
  model->forward(std::span(&prefill, 1), cache, logits);
  const std::int32_t next = 42;
  const ForwardEntry step{
      .tokens = std::span(&next, 1), .start_pos = context, .block_table = table};
  model->forward(std::span(&step, 1), cache, logits);  // warm
  const double bytes = static_cast<double>(c.weight_bytes_read_per_token());
  std::vector<double> ratios;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    model->forward(std::span(&step, 1), cache, logits);
    const double decode_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const auto bw = prism::baselines::measure_memory_bandwidth(std::size_t{128} << 20, 0, 1);
    ratios.push_back(bytes / decode_s / 1e9 / bw.best_gb_per_s);
  }
  pair_ratios().insert(pair_ratios().end(), ratios.begin(), ratios.end());
  std::sort(ratios.begin(), ratios.end());
  state.counters["roofline_fraction_median"] = ratios[ratios.size() / 2];
}
BENCHMARK(BM_DecodeVsTriad)->Iterations(25)->Unit(benchmark::kMillisecond)->UseRealTime();

double prefill_flops(const ModelConfig& c, double n) {
  const double lm_head = 2.0 * c.vocab_size * c.hidden_size;
  const double linear = (static_cast<double>(c.linear_flops_per_token()) - lm_head) * n + lm_head;
  // Causal attention: QK^T and PV over n^2 / 2 pairs per head.
  const double attention = 2.0 * 2.0 * (n * n / 2.0) * c.head_dim * c.num_heads * c.num_layers;
  return linear + attention;
}

void BM_Prefill(benchmark::State& state) {
  auto model = small_model();
  const ModelConfig& c = model->config();
  const int n = static_cast<int>(state.range(0));
  const int nblocks = n / 16 + 1;
  KvCache cache(c, nblocks);
  const auto table = block_range(0, nblocks);
  const auto prompt = tokens(n, 2);
  std::vector<float> logits;
  const ForwardEntry e{.tokens = prompt, .start_pos = 0, .block_table = table};
  for (auto _ : state) {
    model->forward(std::span(&e, 1), cache, logits);
    benchmark::DoNotOptimize(logits.data());
  }
  const double flops = prefill_flops(c, n);
  state.counters["GFLOP_per_prefill"] = flops / 1e9;
  state.counters["GFLOP_per_s"] = benchmark::Counter(
      flops * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(n) * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Prefill)->Arg(2048)->Unit(benchmark::kMillisecond)->MinTime(3.0)->UseRealTime();

void BM_DecodeBatch(benchmark::State& state) {
  auto model = small_model();
  const ModelConfig& c = model->config();
  const int batch = static_cast<int>(state.range(0));
  const int context = 256;
  const int per_seq = context / 16 + 1;
  KvCache cache(c, per_seq * batch);
  std::vector<std::vector<std::int32_t>> tables, prompts;
  std::vector<float> logits;
  for (int b = 0; b < batch; ++b) {
    tables.push_back(block_range(b * per_seq, per_seq));
    prompts.push_back(tokens(context, static_cast<std::uint32_t>(10 + b)));
    const ForwardEntry e{.tokens = prompts.back(), .start_pos = 0, .block_table = tables.back()};
    model->forward(std::span(&e, 1), cache, logits);
  }
  const std::vector<std::int32_t> next(static_cast<std::size_t>(batch), 7);
  std::vector<ForwardEntry> step;
  for (int b = 0; b < batch; ++b)
    step.push_back(ForwardEntry{.tokens = std::span(next).subspan(static_cast<std::size_t>(b), 1),
                                .start_pos = context,
                                .block_table = tables[static_cast<std::size_t>(b)]});
  const double cpu0 = process_cpu_s();
  for (auto _ : state) {
    model->forward(step, cache, logits);
    benchmark::DoNotOptimize(logits.data());
  }
  const double tokens_per_cpu_s = static_cast<double>(batch) *
                                  static_cast<double>(state.iterations()) /
                                  (process_cpu_s() - cpu0);
  state.counters["tokens_per_cpu_s"] = tokens_per_cpu_s;
  per_cpu()["batch" + std::to_string(batch) + "_tokens_per_cpu_s"].push_back(tokens_per_cpu_s);
  state.counters["tokens_per_s"] =
      benchmark::Counter(static_cast<double>(batch) * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
}
BENCHMARK(BM_DecodeBatch)
    ->Arg(1)
    ->Arg(16)
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0)
    ->UseRealTime();

// Turn 1: a 4096-token prompt, 16 output tokens. Turn 2: turn 1's prompt and
// reply plus 256 new tokens (4368 tokens, 4112 of them history). Times turn 2
// from submission to its first token.
void BM_MultiTurnTtft(benchmark::State& state) {
  const bool caching = state.range(0) != 0;
  EngineOptions o;
  o.scheduler.prefix_caching = caching;
  o.scheduler.max_num_batched_tokens = 512;
  static const std::shared_ptr<const prism::workloads::Tokenizer> tok =
      prism::workloads::make_byte_tokenizer();  // text is not looked at here
  Engine engine(small_model(), tok, o);
  std::uint32_t salt = 100;
  for (auto _ : state) {
    GenerateRequest turn1;
    turn1.prompt = tokens(4096, ++salt);
    turn1.sampling.max_tokens = 16;
    turn1.sampling.ignore_eos = true;
    auto reply = std::make_shared<std::vector<std::int32_t>>();
    engine.add_request(turn1, [reply](const RequestOutput& out) {
      reply->insert(reply->end(), out.token_ids.begin(), out.token_ids.end());
    });
    engine.run_until_idle();

    GenerateRequest turn2;
    turn2.prompt = turn1.prompt;
    turn2.prompt.insert(turn2.prompt.end(), reply->begin(), reply->end());
    const auto user = tokens(256, ++salt);
    turn2.prompt.insert(turn2.prompt.end(), user.begin(), user.end());
    turn2.sampling.max_tokens = 1;
    turn2.sampling.ignore_eos = true;
    auto first = std::make_shared<std::chrono::steady_clock::time_point>();
    auto cached = std::make_shared<int>(0);
    const auto t0 = std::chrono::steady_clock::now();
    engine.add_request(turn2, [first, cached](const RequestOutput& out) {
      if (!out.token_ids.empty() && *first == std::chrono::steady_clock::time_point{})
        *first = std::chrono::steady_clock::now();
      *cached = out.cached_tokens;
    });
    engine.run_until_idle();
    state.SetIterationTime(std::chrono::duration<double>(*first - t0).count());
    state.counters["cached_tokens"] = *cached;
    state.counters["prompt_tokens"] = static_cast<double>(turn2.prompt.size());
  }
}
BENCHMARK(BM_MultiTurnTtft)
    ->ArgName("prefix_caching")
    ->Arg(1)
    ->Arg(0)
    ->Iterations(2)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

// Collects each benchmark's real time per iteration for the summary: the
// median over repetitions when there are repetitions, else the single run.
class SummaryReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& r : runs) {
      if (r.error_occurred) continue;
      const std::string name = r.run_name.str();
      const double seconds = r.GetAdjustedRealTime() * 1e-3;  // ms -> s
      if (r.run_type == Run::RT_Aggregate && r.aggregate_name == "median") {
        figures()[name] = seconds;
        medians_.insert(name);
      } else if (r.run_type == Run::RT_Iteration && medians_.count(name) == 0) {
        figures()[name] = seconds;  // a later median replaces it
      }
    }
    ConsoleReporter::ReportRuns(runs);
  }

 private:
  std::set<std::string> medians_;
};

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // The machine's bandwidth is measured before and after the runs and the
  // better figure is the roofline: on a shared machine that is the
  // conservative choice.
  const auto bw_before = prism::baselines::measure_memory_bandwidth();
  SummaryReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();

  // Mean seconds per iteration of the first run whose name starts with prefix, or -1.
  const auto time_of = [](const std::string& prefix) {
    for (const auto& [name, seconds] : figures())
      if (name.rfind(prefix, 0) == 0) return seconds;
    return -1.0;
  };
  const ModelConfig& c = small_model()->config();
  std::printf("\nReference engine vs targets (model %s, %.1fM parameters, %d kernel threads, %s)\n",
              c.name.c_str(), static_cast<double>(c.parameter_count()) / 1e6,
              prism::kernels::kernel_threads(), prism::kernels::kernel_isa());
  if (const double s = time_of("BM_DecodeSingle/128"); s > 0) {
    const auto bw_after = prism::baselines::measure_memory_bandwidth();
    const double triad = std::max(bw_before.best_gb_per_s, bw_after.best_gb_per_s);
    const double gbs = static_cast<double>(c.weight_bytes_read_per_token()) / s / 1e9;
    std::printf(
        "  decode, 1 sequence: %.2f ms/token, %.2f GB/s of weights (%.0f MB/token); STREAM "
        "triad best %.2f GB/s (%.2f before, %.2f after) -> %.0f%% of roofline (target >= 50%%)\n",
        s * 1e3, gbs, static_cast<double>(c.weight_bytes_read_per_token()) / 1e6, triad,
        bw_before.best_gb_per_s, bw_after.best_gb_per_s, 100.0 * gbs / triad);
  }
  if (const double d = median_of(per_cpu()["decode_GB_per_cpu_s"]),
      t = median_of(per_cpu()["triad_GB_per_cpu_s"]);
      d > 0 && t > 0) {
    std::printf(
        "  decode, 1 sequence, per CPU-second: %.2f GB of weights per CPU-s; triad %.2f GB per "
        "CPU-s -> %.0f%% of roofline (target >= 50%%)\n",
        d, t, 100.0 * d / t);
  }
  if (const double b1 = median_of(per_cpu()["batch1_tokens_per_cpu_s"]),
      b16 = median_of(per_cpu()["batch16_tokens_per_cpu_s"]);
      b1 > 0 && b16 > 0) {
    std::printf(
        "  decode throughput per CPU-second: batch 1 %.1f tok/CPU-s, batch 16 %.1f tok/CPU-s "
        "-> %.1fx (target >= 4x)\n",
        b1, b16, b16 / b1);
  }
  if (auto& r = pair_ratios(); !r.empty()) {
    std::sort(r.begin(), r.end());
    std::printf(
        "  decode, 1 sequence, alternated with single triad repetitions: median of %zu pairs "
        "%.0f%% of roofline (quartiles %.0f%%..%.0f%%; target >= 50%%)\n",
        r.size(), 100.0 * r[r.size() / 2], 100.0 * r[r.size() / 4], 100.0 * r[r.size() * 3 / 4]);
  }
  if (const double s = time_of("BM_Prefill/2048"); s > 0) {
    const auto peak = prism::baselines::measure_sgemm_peak();
    const double gflops = prefill_flops(c, 2048) / s / 1e9;
    std::printf(
        "  prefill, 2048 tokens: %.0f ms, %.1f GFLOP/s; sgemm peak %.1f GFLOP/s -> %.0f%% (target "
        ">= 30%%)\n",
        s * 1e3, gflops, peak.best_gflop_per_s, 100.0 * gflops / peak.best_gflop_per_s);
  }
  if (time_of("BM_DecodeBatch/1/") > 0 && time_of("BM_DecodeBatch/16/") > 0) {
    const double t1 = 1.0 / time_of("BM_DecodeBatch/1/");
    const double t16 = 16.0 / time_of("BM_DecodeBatch/16/");
    std::printf(
        "  decode throughput: batch 1 %.1f tok/s, batch 16 %.1f tok/s -> %.1fx (target >= 4x)\n",
        t1, t16, t16 / t1);
  }
  if (time_of("BM_MultiTurnTtft/prefix_caching:1") > 0 &&
      time_of("BM_MultiTurnTtft/prefix_caching:0") > 0) {
    const double on = time_of("BM_MultiTurnTtft/prefix_caching:1");
    const double off = time_of("BM_MultiTurnTtft/prefix_caching:0");
    std::printf(
        "  multi-turn TTFT of turn 2 (4112 tokens of history): %.0f ms with prefix caching, "
        "%.0f ms without -> %.0f%% (target <= 25%%)\n",
        on * 1e3, off * 1e3, 100.0 * on / off);
  }
  return 0;
}
