#include "prism/baselines/machine_peaks.h"

#include <cblas.h>

#include <algorithm>
#include <barrier>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "prism/kernels/large_buffer.h"

namespace prism::baselines {
namespace {

using Clock = std::chrono::steady_clock;

double median_of(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

}  // namespace

BandwidthMeasurement measure_memory_bandwidth(std::size_t array_bytes, int threads,
                                              int repetitions) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  repetitions = std::max(repetitions, 1);
  const std::size_t n = std::max<std::size_t>(array_bytes / sizeof(double), threads);
  // Uninitialised storage on huge pages, as the KV cache has (kernels' LargeBuffer), so that a
  // kernel's % of this bandwidth compares like with like; each thread first-touches its own slice
  // below.
  kernels::LargeBuffer a_buffer(n * sizeof(double), false), b_buffer(n * sizeof(double), false),
      c_buffer(n * sizeof(double), false);
  double* const a = a_buffer.as<double>();
  double* const b = b_buffer.as<double>();
  double* const c = c_buffer.as<double>();
  const double scalar = 3.0;

  std::vector<double> seconds(static_cast<std::size_t>(repetitions));
  // Every thread runs warm-up + repetitions; a barrier lines them up so that
  // each repetition times the slowest thread, which is what the bandwidth is.
  std::barrier sync(threads);
  std::vector<Clock::time_point> starts(static_cast<std::size_t>(repetitions));
  auto worker = [&](int t) {
    // Slices start on 2 MiB boundaries so that each huge page is first touched (and placed) by
    // the one thread that uses it.
    const std::size_t page =
        a_buffer.huge_pages_requested() ? (std::size_t{2} << 20) / sizeof(double) : 1;
    const auto boundary = [&](int k) {
      const std::size_t raw = n * static_cast<std::size_t>(k) / static_cast<std::size_t>(threads);
      return k == threads ? n : std::min(n, raw / page * page);
    };
    const std::size_t begin = boundary(t);
    const std::size_t end = boundary(t + 1);
    for (std::size_t i = begin; i < end; ++i) {
      a[i] = 0.0;
      b[i] = 1.0;
      c[i] = 2.0;
    }
    for (int rep = -1; rep < repetitions; ++rep) {
      sync.arrive_and_wait();
      if (t == 0 && rep >= 0) starts[static_cast<std::size_t>(rep)] = Clock::now();
      double* __restrict pa = a;
      const double* __restrict pb = b;
      const double* __restrict pc = c;
      for (std::size_t i = begin; i < end; ++i) pa[i] = pb[i] + scalar * pc[i];
      sync.arrive_and_wait();
      if (t == 0 && rep >= 0) {
        seconds[static_cast<std::size_t>(rep)] =
            std::chrono::duration<double>(Clock::now() - starts[static_cast<std::size_t>(rep)])
                .count();
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(worker, t);
  worker(0);
  for (auto& th : pool) th.join();

  // Keep the result observable so the triad cannot be optimised away.
  volatile double sink = a[n / 2];
  (void)sink;

  const double bytes = 3.0 * sizeof(double) * static_cast<double>(n);
  std::vector<double> rates;
  for (double s : seconds) rates.push_back(bytes / s / 1e9);
  BandwidthMeasurement m;
  m.best_gb_per_s = *std::max_element(rates.begin(), rates.end());
  m.median_gb_per_s = median_of(rates);
  m.array_bytes = n * sizeof(double);
  m.threads = threads;
  m.repetitions = repetitions;
  return m;
}

FlopMeasurement measure_sgemm_peak(int n, int repetitions) {
  n = std::max(n, 16);
  repetitions = std::max(repetitions, 1);
  const std::size_t elements = static_cast<std::size_t>(n) * static_cast<std::size_t>(n);
  std::vector<float> a(elements), b(elements), c(elements, 0.0f);
  for (std::size_t i = 0; i < elements; ++i) {
    a[i] = static_cast<float>((i * 7) % 13) * 0.01f;
    b[i] = static_cast<float>((i * 5) % 11) * 0.01f;
  }
  auto run = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n,
                0.0f, c.data(), n);
  };
  run();  // warm-up: thread pool start, page faults
  std::vector<double> rates;
  const double flops = 2.0 * n * static_cast<double>(n) * n;
  for (int rep = 0; rep < repetitions; ++rep) {
    const auto start = Clock::now();
    run();
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    rates.push_back(flops / s / 1e9);
  }
  FlopMeasurement m;
  m.best_gflop_per_s = *std::max_element(rates.begin(), rates.end());
  m.median_gflop_per_s = median_of(rates);
  m.matrix_size = n;
  m.repetitions = repetitions;
  return m;
}

}  // namespace prism::baselines
