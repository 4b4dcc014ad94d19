// CPU kernel benchmarks: every kernel across shapes, with FLOP and byte
// counters from the roofline model so --benchmark_format=json output carries
// GFLOP/s and GB/s. Sizes stay moderate by default; the long-context shapes
// (16K-32K) are in the *Long* families, filter with --benchmark_filter.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

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
  for (auto _ : state) {
    prefill_attention(a);
    benchmark::ClobberMemory();
  }
  const double flops = 4.0 * causal_pairs(len, len) * d * hq;
  state.counters["FLOPS"] =
      benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
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

  PagedSetup(int batch, int ctx, int hq, int hkv, int d, int bs = 16) {
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
};

void BM_DecodeAttention(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0)), ctx = static_cast<int>(state.range(1));
  const int d = static_cast<int>(state.range(2));
  const int hq = static_cast<int>(state.range(3)), hkv = static_cast<int>(state.range(4));
  PagedSetup s(batch, ctx, hq, hkv, d);
  DecodeAttentionArgs a;
  a.heads = {hq, hkv, d, 0.0f};
  a.cache = s.storage->const_view();
  a.block_table = s.block_table();
  a.q = s.q.data();
  a.out = s.out.data();
  for (auto _ : state) {
    decode_attention(a);
    benchmark::ClobberMemory();
  }
  const double bytes = 2.0 * batch * static_cast<double>(ctx) * hkv * d * sizeof(float);
  state.counters["BYTES"] =
      benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
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

}  // namespace

BENCHMARK_MAIN();
