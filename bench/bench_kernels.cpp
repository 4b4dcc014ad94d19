// CPU kernel benchmarks: every kernel across shapes, with FLOP and byte
// counters from the roofline model so --benchmark_format=json output carries
// GFLOP/s and GB/s. Sizes stay moderate by default; the long-context shapes
// (16K-32K) are in the *Long* families, filter with --benchmark_filter.
#include <benchmark/benchmark.h>

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "prism/baselines/machine_peaks.h"
#include "prism/kernels/attention.h"
#include "prism/kernels/kv_quant.h"
#include "prism/kernels/ops.h"
#include "prism/kernels/paged_kv.h"
#include "prism/kernels/sparse.h"
#include "prism/kernels/threading.h"

using namespace prism::kernels;

namespace {

std::vector<float> random_vector(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// Process CPU time next to wall time: on a shared machine the wall-clock rate
// mixes in other tenants. cpu_util = CPU seconds / (wall seconds x threads);
// *_per_cpu_s = work per CPU-second of this process x threads, the rate the
// kernel reaches while it actually has the cores (memory stalls count as CPU).
double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + ts.tv_nsec * 1e-9;
}
double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
// The roofline references, measured once at start-up with the same code as
// `prism doctor` (baselines/machine_peaks.h) so every figure of this run can
// be put against peaks taken under the same conditions. Wall-clock medians.
struct RunPeaks {
  double sgemm_flops = 0.0;  // FLOP/s
  double bandwidth = 0.0;    // bytes/s, STREAM triad
};
RunPeaks& run_peaks() {
  static RunPeaks peaks;
  return peaks;
}

class CpuAccounting {
 public:
  CpuAccounting() : cpu0_(process_cpu_seconds()), wall0_(wall_seconds()) {}
  // work: FLOPs or bytes per iteration; name: the counter ("FLOPS" or "BYTES").
  void report(benchmark::State& state, double work, const std::string& name) const {
    const double cpu = process_cpu_seconds() - cpu0_, wall = wall_seconds() - wall0_;
    const double threads = static_cast<double>(kernel_threads());
    state.counters[name] = benchmark::Counter(work, benchmark::Counter::kIsIterationInvariantRate);
    if (cpu <= 0 || wall <= 0) return;
    // Percent of this run's measured peak (sgemm for FLOPS, STREAM for BYTES).
    const double peak = name == "FLOPS" ? run_peaks().sgemm_flops : run_peaks().bandwidth;
    if (peak > 0)
      state.counters["pct_of_peak"] =
          100.0 * work * static_cast<double>(state.iterations()) / wall / peak;
    state.counters["cpu_util"] = cpu / (wall * threads);
    state.counters[name + "_per_cpu_s"] =
        work * static_cast<double>(state.iterations()) / (cpu / threads);
  }

 private:
  double cpu0_, wall0_;
};

// Causal prefill FLOPs: QK^T and PV over the visible (query, key) pairs.
double causal_pairs(std::int64_t q, std::int64_t kv) {
  const std::int64_t offset = kv - q;
  return static_cast<double>(q) * offset + static_cast<double>(q) * (q + 1) / 2.0;
}

void BM_PrefillAttention(benchmark::State& state) {
  const int len = static_cast<int>(state.range(0));
  const int d = static_cast<int>(state.range(1));
  const int hq = static_cast<int>(state.range(2)), hkv = static_cast<int>(state.range(3));
  const auto q = random_vector(static_cast<std::size_t>(len) * hq * d, 1);
  const auto k = random_vector(static_cast<std::size_t>(len) * hkv * d, 2);
  const auto v = random_vector(static_cast<std::size_t>(len) * hkv * d, 3);
  std::vector<float> out(q.size());
  std::vector<std::int32_t> starts{0, len};
  PrefillAttentionArgs a;
  a.heads = {hq, hkv, d, 0.0f};
  a.batch = {starts, starts};
  a.q = q.data();
  a.k = k.data();
  a.v = v.data();
  a.out = out.data();
  const CpuAccounting acct;
  for (auto _ : state) {
    prefill_attention(a);
    benchmark::ClobberMemory();
  }
  acct.report(state, 4.0 * causal_pairs(len, len) * d * hq, "FLOPS");
  state.SetLabel(kernel_isa());
}
BENCHMARK(BM_PrefillAttention)
    ->ArgNames({"tokens", "head_dim", "q_heads", "kv_heads"})
    ->Args({1024, 128, 8, 2})
    ->Args({4096, 128, 8, 2})
    ->Args({4096, 64, 8, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_PrefillAttention)
    ->Name("BM_PrefillAttentionLong")
    ->ArgNames({"tokens", "head_dim", "q_heads", "kv_heads"})
    ->Args({8192, 128, 4, 1})
    ->Args({16384, 128, 2, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1);

struct PagedSetup {
  PagedKvLayout layout;
  std::unique_ptr<PagedKvStorage> storage;
  std::vector<std::int32_t> table, lens;
  int max_blocks = 0;
  std::vector<float> q, out;
  int q_heads = 0;

  PagedSetup(int batch, int ctx, int hq, int hkv, int d, int bs = 16) : q_heads(hq) {
    max_blocks = (ctx + bs - 1) / bs;
    layout = PagedKvLayout{batch * max_blocks, bs, hkv, d};
    storage = std::make_unique<PagedKvStorage>(layout);
    auto kv = random_vector(layout.total_floats(), 5);
    auto view = storage->view();
    std::copy(kv.begin(), kv.end(), view.k);
    std::copy(kv.rbegin(), kv.rend(), view.v);
    table.resize(static_cast<std::size_t>(batch) * max_blocks);
    std::iota(table.begin(), table.end(), 0);
    std::shuffle(table.begin(), table.end(), std::mt19937(9));
    lens.assign(batch, ctx);
    q = random_vector(static_cast<std::size_t>(batch) * hq * d, 6);
    out.resize(q.size());
  }
  BlockTable block_table() const { return BlockTable{table, max_blocks, lens}; }
  // Dense decode over the whole cache, unmasked.
  DecodeAttentionArgs decode_args() {
    DecodeAttentionArgs a;
    a.heads = {q_heads, layout.num_kv_heads, layout.head_dim, 0.0f};
    a.cache = storage->const_view();
    a.block_table = block_table();
    a.q = q.data();
    a.out = out.data();
    return a;
  }
};

void BM_DecodeAttention(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0)), ctx = static_cast<int>(state.range(1));
  const int d = static_cast<int>(state.range(2));
  const int hq = static_cast<int>(state.range(3)), hkv = static_cast<int>(state.range(4));
  PagedSetup s(batch, ctx, hq, hkv, d);
  DecodeAttentionArgs a = s.decode_args();
  const CpuAccounting acct;
  for (auto _ : state) {
    decode_attention(a);
    benchmark::ClobberMemory();
  }
  acct.report(state, 2.0 * batch * static_cast<double>(ctx) * hkv * d * sizeof(float), "BYTES");
  state.SetLabel(kernel_isa());
}
BENCHMARK(BM_DecodeAttention)
    ->ArgNames({"batch", "context", "head_dim", "q_heads", "kv_heads"})
    ->Args({1, 4096, 128, 32, 8})
    ->Args({1, 16384, 128, 32, 8})
    ->Args({1, 32768, 128, 32, 8})
    ->Args({8, 4096, 128, 32, 8})
    ->Args({1, 16384, 64, 8, 1})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// STREAM triad a = b + 3c over the kernels' own thread pool; 3 x 8 bytes per
// element counted, as STREAM does (write-allocate traffic not counted).
class Triad {
 public:
  // On huge pages like the KV cache (LargeBuffer): with 4 KB pages the triad
  // would pay TLB misses the decode it is compared with does not.
  explicit Triad(std::size_t doubles)
      : n_(doubles), a_(n_ * sizeof(double)), b_(n_ * sizeof(double)), c_(n_ * sizeof(double)) {
    std::fill_n(b_.as<double>(), n_, 1.0);
    std::fill_n(c_.as<double>(), n_, 2.0);
  }
  void run() {
    double* __restrict a = a_.as<double>();
    const double* __restrict b = b_.as<double>();
    const double* __restrict c = c_.as<double>();
    const std::size_t n = n_;
    const std::int64_t chunks = 64;
    parallel_for(chunks, [=](std::int64_t i) {
      const std::size_t lo = n * i / chunks, hi = n * (i + 1) / chunks;
      for (std::size_t j = lo; j < hi; ++j) a[j] = b[j] + 3.0 * c[j];
    });
    benchmark::ClobberMemory();
  }
  double bytes() const { return 3.0 * 8.0 * static_cast<double>(n_); }

 private:
  std::size_t n_;
  LargeBuffer a_, b_, c_;
};

// Decode against a STREAM triad timed in the same iterations, alternately
// (triad, then decode): this VM's bandwidth moves by up to 1.7x from one
// minute to the next (other tenants of the host), so a percentage of a peak
// measured at another time can be off either way. The benchmark's time is the
// decode's alone (manual timing); pct_of_triad = decode bytes/s over triad
// bytes/s, both wall-clock over the same iterations. The triad also evicts the
// cache, so every decode starts cold, as a long context does anyway.
void BM_DecodeVsTriad(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0)), ctx = static_cast<int>(state.range(1));
  const int d = static_cast<int>(state.range(2));
  const int hq = static_cast<int>(state.range(3)), hkv = static_cast<int>(state.range(4));
  PagedSetup s(batch, ctx, hq, hkv, d);
  DecodeAttentionArgs a = s.decode_args();
  Triad triad(std::size_t{16} << 20);
  // K and V of every cached token once (q and out are negligible).
  const double bytes = 2.0 * batch * static_cast<double>(ctx) * hkv * d * sizeof(float);
  double decode_s = 0.0, triad_s = 0.0;
  for (auto _ : state) {
    const double t0 = wall_seconds();
    triad.run();
    const double t1 = wall_seconds();
    decode_attention(a);
    benchmark::ClobberMemory();
    const double t2 = wall_seconds();
    state.SetIterationTime(t2 - t1);
    decode_s += t2 - t1;
    triad_s += t1 - t0;
  }
  const double iters = static_cast<double>(state.iterations());
  state.counters["BYTES"] =
      benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["TRIAD_BYTES"] = benchmark::Counter(triad.bytes() * iters / triad_s);
  state.counters["pct_of_triad"] = 100.0 * (bytes / decode_s) / (triad.bytes() / triad_s);
  state.SetLabel(kernel_isa());
}
BENCHMARK(BM_DecodeVsTriad)
    ->ArgNames({"batch", "context", "head_dim", "q_heads", "kv_heads"})
    ->Args({1, 16384, 128, 32, 8})
    ->Args({1, 32768, 128, 32, 8})
    ->Args({4, 16384, 128, 32, 8})
    ->Args({1, 16384, 64, 8, 1})
    ->Unit(benchmark::kMicrosecond)
    ->UseManualTime()
    ->MinTime(1.0);

// ---------------------------------------------------------------- peaks ----
// The roofline's references, measured in the same binary so a comparison is
// taken under the same conditions: OpenBLAS sgemm (through kernels::gemm) and
// a STREAM triad over the kernels' own thread pool.
void BM_SgemmPeak(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const auto x = random_vector(static_cast<std::size_t>(n) * n, 1), w = random_vector(x.size(), 2);
  std::vector<float> y(x.size());
  const CpuAccounting acct;
  for (auto _ : state) {
    linear(x.data(), w.data(), y.data(), n, n, n);
    benchmark::ClobberMemory();
  }
  acct.report(state, 2.0 * n * n * static_cast<double>(n), "FLOPS");
}
BENCHMARK(BM_SgemmPeak)->Arg(2048)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_StreamTriad(benchmark::State& state) {
  Triad triad(static_cast<std::size_t>(state.range(0)) << 20);  // Mi doubles per array
  const CpuAccounting acct;
  for (auto _ : state) triad.run();
  acct.report(state, triad.bytes(), "BYTES");
}
BENCHMARK(BM_StreamTriad)->Arg(16)->Unit(benchmark::kMillisecond)->UseRealTime();

// ------------------------------------------------------- decode variants ----
void BM_DecodeQuantized(benchmark::State& state) {
  const int ctx = static_cast<int>(state.range(0));
  const auto bits = state.range(1) == 8 ? KvQuantBits::int8 : KvQuantBits::int4;
  const int hq = 32, hkv = 8, d = 128;
  PagedSetup s(1, ctx, hq, hkv, d);
  QuantizedKvStorage qkv(s.layout, bits);
  quantize_kv_pages(s.storage->const_view(), s.block_table(), qkv.view());
  QuantizedDecodeArgs a;
  a.heads = {hq, hkv, d, 0.0f};
  a.cache = &qkv.view();
  a.block_table = s.block_table();
  a.q = s.q.data();
  a.out = s.out.data();
  const CpuAccounting acct;
  for (auto _ : state) {
    decode_attention_quantized(a);
    benchmark::ClobberMemory();
  }
  acct.report(state, static_cast<double>(ctx) * hkv * qkv.view().bytes_per_token_head(), "BYTES");
}
BENCHMARK(BM_DecodeQuantized)
    ->ArgNames({"context", "bits"})
    ->Args({16384, 8})
    ->Args({16384, 4})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

void BM_DecodeSinkWindow(benchmark::State& state) {
  const int ctx = static_cast<int>(state.range(0));
  PagedSetup s(1, ctx, 32, 8, 128);
  DecodeAttentionArgs a = s.decode_args();
  a.mask.sink_tokens = 16;
  a.mask.window_tokens = ctx / 8 - 16;
  for (auto _ : state) decode_attention(a);
}
BENCHMARK(BM_DecodeSinkWindow)
    ->ArgName("context")
    ->Arg(32768)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// Quest stages at one context: bounds (per page, amortised), estimate, select, attend.
void BM_QuestStages(benchmark::State& state) {
  const int ctx = static_cast<int>(state.range(0)), stage = static_cast<int>(state.range(1));
  const int hq = 32, hkv = 8, d = 128;
  PagedSetup s(1, ctx, hq, hkv, d);
  QuestBounds bounds(s.layout);
  quest_update_bounds(s.storage->const_view(), s.block_table(), bounds);
  std::vector<float> scores;
  quest_page_scores({hq, hkv, d, 0.0f}, s.q.data(), 0, s.block_table(), bounds, scores);
  PageSelection sel;
  const int top = ctx / 8 / 16;
  quest_select_pages(scores, s.block_table(), hkv, top, sel);
  DecodeAttentionArgs a = s.decode_args();
  for (auto _ : state) {
    switch (stage) {
      case 0:
        quest_update_bounds(s.storage->const_view(), s.block_table(), bounds);
        break;
      case 1:
        quest_page_scores(a.heads, s.q.data(), 0, s.block_table(), bounds, scores);
        break;
      case 2:
        quest_select_pages(scores, s.block_table(), hkv, top, sel);
        break;
      default:
        decode_attention_pages(a, sel);
        break;
    }
  }
  static const char* names[] = {"bounds", "estimate", "select", "attend"};
  state.SetLabel(names[stage]);
}
BENCHMARK(BM_QuestStages)
    ->ArgNames({"context", "stage"})
    ->Args({32768, 0})
    ->Args({32768, 1})
    ->Args({32768, 2})
    ->Args({32768, 3})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// ------------------------------------------------------- sparse prefill ----
struct PrefillData {
  int len, hq, hkv, d;
  std::vector<float> q, k, v, out;
  PrefillData(int len_, int hq_, int hkv_, int d_) : len(len_), hq(hq_), hkv(hkv_), d(d_) {
    q = random_vector(static_cast<std::size_t>(len) * hq * d, 1);
    k = random_vector(static_cast<std::size_t>(len) * hkv * d, 2);
    v = random_vector(static_cast<std::size_t>(len) * hkv * d, 3);
    out.resize(q.size());
  }
  SparsePrefillInput input() const {
    return {{hq, hkv, d, 0.0f}, len, len, q.data(), k.data(), v.data()};
  }
};

// stage 0 = estimate, 1 = select, 2 = attend; method 0 = vertical-slash, 1 = block top-k.
void BM_SparsePrefill(benchmark::State& state) {
  const int len = static_cast<int>(state.range(0)), method = static_cast<int>(state.range(1));
  const int stage = static_cast<int>(state.range(2));
  PrefillData data(len, 4, 1, 128);
  const auto in = data.input();
  VerticalSlashConfig vs;
  vs.vertical_size = vs.slash_size = len / 32;
  VerticalSlashEstimate vest;
  FlexPrefillConfig fp;
  fp.gamma = 0.9f;
  BlockScores bscores;
  BlockSparsePattern pattern;
  const auto estimate = [&] {
    if (method == 0)
      vertical_slash_estimate(in, vs, vest);
    else
      flexprefill_estimate(in, fp, bscores);
  };
  const auto select = [&] {
    if (method == 0)
      vertical_slash_select(vest, vs, len, pattern);
    else
      flexprefill_select(bscores, fp, len, len, pattern);
  };
  estimate();
  select();
  for (auto _ : state) {
    if (stage == 0)
      estimate();
    else if (stage == 1)
      select();
    else
      block_sparse_attention(in, pattern, data.out.data());
  }
  state.counters["density"] = pattern.density(len, len);
  static const char* names[] = {"vertical-slash", "block-topk"};
  static const char* stages[] = {"estimate", "select", "attend"};
  state.SetLabel(std::string(names[method]) + " " + stages[stage]);
}
BENCHMARK(BM_SparsePrefill)
    ->ArgNames({"tokens", "method", "stage"})
    ->ArgsProduct({{4096}, {0, 1}, {0, 1, 2}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// ----------------------------------------------------------------- ops ----
void BM_RmsNorm(benchmark::State& state) {
  const int rows = static_cast<int>(state.range(0)), dim = 4096;
  const auto x = random_vector(static_cast<std::size_t>(rows) * dim, 1), w = random_vector(dim, 2);
  std::vector<float> out(x.size());
  for (auto _ : state) rms_norm(x.data(), w.data(), out.data(), rows, dim, 1e-5f);
  state.counters["BYTES"] =
      benchmark::Counter(8.0 * rows * dim, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_RmsNorm)->Arg(1)->Arg(512)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_Rope(benchmark::State& state) {
  const int tokens = static_cast<int>(state.range(0)), heads = 32, d = 128;
  auto x = random_vector(static_cast<std::size_t>(tokens) * heads * d, 1);
  std::vector<std::int32_t> pos(tokens);
  std::iota(pos.begin(), pos.end(), 0);
  for (auto _ : state) apply_rope(x.data(), tokens, heads, d, pos, RopeParams{500000.0f});
  state.counters["BYTES"] =
      benchmark::Counter(8.0 * tokens * heads * d, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Rope)->Arg(1)->Arg(512)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_SwiGlu(benchmark::State& state) {
  const int rows = static_cast<int>(state.range(0)), dim = 14336;
  const auto gu = random_vector(static_cast<std::size_t>(rows) * 2 * dim, 1);
  std::vector<float> out(static_cast<std::size_t>(rows) * dim);
  for (auto _ : state) swiglu_fused(gu.data(), out.data(), rows, dim);
  state.counters["BYTES"] =
      benchmark::Counter(12.0 * rows * dim, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_SwiGlu)->Arg(1)->Arg(64)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_Gemm(benchmark::State& state) {
  const int m = static_cast<int>(state.range(0)), n = 4096, k = 4096;
  const auto x = random_vector(static_cast<std::size_t>(m) * k, 1),
             w = random_vector(static_cast<std::size_t>(n) * k, 2);
  std::vector<float> y(static_cast<std::size_t>(m) * n);
  for (auto _ : state) linear(x.data(), w.data(), y.data(), m, n, k);
  state.counters["FLOPS"] = benchmark::Counter(2.0 * m * n * static_cast<double>(k),
                                               benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Gemm)
    ->ArgName("m")
    ->Arg(1)
    ->Arg(16)
    ->Arg(512)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // PRISM_BENCH_NO_PEAKS=1 skips the start-up peak measurement (a few seconds).
  const char* skip = std::getenv("PRISM_BENCH_NO_PEAKS");
  if (skip == nullptr || std::strcmp(skip, "1") != 0) {
    const auto flops = prism::baselines::measure_sgemm_peak(2048, 5);
    const auto bw =
        prism::baselines::measure_memory_bandwidth(std::size_t{128} << 20, kernel_threads(), 7);
    run_peaks() = {flops.median_gflop_per_s * 1e9, bw.median_gb_per_s * 1e9};
    benchmark::AddCustomContext("peak_sgemm_gflops_median",
                                std::to_string(flops.median_gflop_per_s));
    benchmark::AddCustomContext("peak_sgemm_gflops_best", std::to_string(flops.best_gflop_per_s));
    benchmark::AddCustomContext("peak_stream_triad_gbs_median", std::to_string(bw.median_gb_per_s));
    benchmark::AddCustomContext("peak_stream_triad_gbs_best", std::to_string(bw.best_gb_per_s));
  }
  benchmark::AddCustomContext("kernel_isa", kernel_isa());
  benchmark::AddCustomContext("kernel_threads", std::to_string(kernel_threads()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
