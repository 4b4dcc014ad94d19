// CUDA kernel benchmarks: CUDA-event timing (manual time), the L2 flushed
// before every timed run (cold cache), FLOP and byte counters for the
// roofline. Without a device the binary says why and exits 0.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "prism/kernels/cuda.h"

namespace cu = prism::kernels::cuda;
using prism::kernels::PagedKvLayout;

namespace {

std::vector<float> random_vector(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// Times f with events around it, after flushing the L2.
template <typename F>
void timed_loop(benchmark::State& state, F&& f) {
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  f();  // warm-up (module load, workspace)
  cu::synchronize();
  for (auto _ : state) {
    cu::flush_l2();
    cudaEventRecord(start);
    f();
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    state.SetIterationTime(ms / 1e3);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
}

void BM_CudaDecode(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0)), ctx = static_cast<int>(state.range(1));
  const int hq = 32, hkv = 8, d = 128, bs = 16;
  const int pages = (ctx + bs - 1) / bs;
  const PagedKvLayout layout{batch * pages, bs, hkv, d};
  const auto n = layout.total_floats();
  cu::DeviceBuffer k(n * 2), v(n * 2);
  cudaMemset(k.data(), 0, n * 2);
  cudaMemset(v.data(), 0, n * 2);
  std::vector<std::int32_t> table(static_cast<std::size_t>(batch) * pages), lens(batch, ctx);
  std::iota(table.begin(), table.end(), 0);
  const auto qh = random_vector(static_cast<std::size_t>(batch) * hq * d, 1);
  auto q = cu::upload(qh.data(), qh.size(), cu::DType::bf16);
  cu::DeviceBuffer out(qh.size() * 2);
  auto dt = cu::upload_bytes(table.data(), table.size() * 4),
       dl = cu::upload_bytes(lens.data(), lens.size() * 4);
  cu::DecodeAttentionArgs a;
  a.heads = {hq, hkv, d, 0.0f};
  a.layout = layout;
  a.k_cache = k.data();
  a.v_cache = v.data();
  a.batch = batch;
  a.block_table = static_cast<const std::int32_t*>(dt.data());
  a.max_blocks_per_seq = pages;
  a.context_lens = static_cast<const std::int32_t*>(dl.data());
  a.max_context_len = ctx;
  a.q = q.data();
  a.out = out.data();
  cu::DeviceBuffer ws(cu::decode_workspace_bytes(a));
  a.workspace = ws.data();
  timed_loop(state, [&] { cu::decode_attention(a); });
  state.counters["BYTES"] =
      benchmark::Counter(2.0 * 2.0 * batch * static_cast<double>(ctx) * hkv * d,
                         benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_CudaDecode)
    ->ArgNames({"batch", "context"})
    ->Args({1, 32768})
    ->Args({8, 32768})
    ->Args({16, 16384})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

void BM_CudaPrefill(benchmark::State& state) {
  const int len = static_cast<int>(state.range(0));
  const int hq = 32, hkv = 8, d = 128;
  cu::DeviceBuffer q(static_cast<std::size_t>(len) * hq * d * 2),
      k(static_cast<std::size_t>(len) * hkv * d * 2),
      v(static_cast<std::size_t>(len) * hkv * d * 2),
      out(static_cast<std::size_t>(len) * hq * d * 2);
  cudaMemset(q.data(), 0, q.bytes());
  cudaMemset(k.data(), 0, k.bytes());
  cudaMemset(v.data(), 0, v.bytes());
  std::vector<std::int32_t> starts{0, len};
  auto ds = cu::upload_bytes(starts.data(), 8);
  cu::PrefillAttentionArgs a;
  a.heads = {hq, hkv, d, 0.0f};
  a.batch = 1;
  a.q_starts = a.kv_starts = static_cast<const std::int32_t*>(ds.data());
  a.max_q_len = len;
  a.q = q.data();
  a.k = k.data();
  a.v = v.data();
  a.out = out.data();
  timed_loop(state, [&] { cu::prefill_attention(a); });
  const double pairs = static_cast<double>(len) * (len + 1) / 2.0;
  state.counters["FLOPS"] =
      benchmark::Counter(4.0 * pairs * d * hq, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_CudaPrefill)
    ->ArgName("tokens")
    ->Arg(4096)
    ->Arg(8192)
    ->Arg(16384)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

void BM_CublasGemm(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  cu::DeviceBuffer x(static_cast<std::size_t>(n) * n * 2), w(x.bytes()), y(x.bytes());
  cudaMemset(x.data(), 0, x.bytes());
  cudaMemset(w.data(), 0, w.bytes());
  timed_loop(state, [&] { cu::gemm(x.data(), w.data(), y.data(), n, n, n, cu::DType::bf16); });
  state.counters["FLOPS"] = benchmark::Counter(2.0 * n * n * static_cast<double>(n),
                                               benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_CublasGemm)
    ->ArgName("n")
    ->Arg(4096)
    ->Arg(8192)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  std::string reason;
  if (!cu::device_available(&reason)) {
    std::printf("bench_kernels_cuda: skipped, no CUDA device: %s\n", reason.c_str());
    return 0;
  }
  std::printf("device: %s\n", cu::device_name().c_str());
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
