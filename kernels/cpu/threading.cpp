#include "prism/kernels/threading.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "isa.h"

namespace prism::kernels {
namespace {

// A fork-join pool: parallel_for publishes one job (a body and a counter),
// wakes the workers, works on it itself, then waits until every worker that
// joined has left. Jobs never overlap: a mutex serialises callers.
class ThreadPool {
 public:
  explicit ThreadPool(int threads) { start(threads); }
  ~ThreadPool() { stop(); }

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  void resize(int threads) {
    std::lock_guard<std::mutex> call(call_mutex_);
    stop();
    start(threads);
  }

  void run(std::int64_t n, const std::function<void(std::int64_t)>& body) {
    if (n <= 0) return;
    if (n == 1 || workers_.empty() || in_pool_job) {
      for (std::int64_t i = 0; i < n; ++i) body(i);
      return;
    }
    std::lock_guard<std::mutex> call(call_mutex_);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      body_ = &body;
      total_ = n;
      next_.store(0);
      error_ = nullptr;
      active_ = static_cast<int>(workers_.size());
      ++generation_;
    }
    wake_.notify_all();
    work();
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return active_ == 0; });
    body_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  static thread_local bool in_pool_job;

  void start(int threads) {
    stopping_ = false;
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
  }
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  void work() {
    in_pool_job = true;
    for (;;) {
      const std::int64_t i = next_.fetch_add(1);
      if (i >= total_) break;
      try {
        (*body_)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
        next_.store(total_);
      }
    }
    in_pool_job = false;
  }

  void worker_loop() {
    std::uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
      }
      work();
      std::lock_guard<std::mutex> lock(mutex_);
      if (--active_ == 0) done_.notify_one();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex call_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  const std::function<void(std::int64_t)>* body_ = nullptr;
  std::int64_t total_ = 0;
  std::atomic<std::int64_t> next_{0};
  std::exception_ptr error_;
  int active_ = 0;
  std::uint64_t generation_ = 0;
  bool stopping_ = false;
};

thread_local bool ThreadPool::in_pool_job = false;

int default_threads() {
  if (const char* env = std::getenv("PRISM_KERNEL_THREADS")) {
    const int n = std::atoi(env);
    if (n >= 1) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

ThreadPool& pool() {
  static ThreadPool p(default_threads());
  return p;
}

}  // namespace

int kernel_threads() {
  return pool().size();
}

void set_kernel_threads(int n) {
  if (n < 1)
    throw std::invalid_argument("set_kernel_threads: n must be >= 1, got " + std::to_string(n));
  if (n != pool().size()) pool().resize(n);
}

void parallel_for(std::int64_t n, const std::function<void(std::int64_t)>& body) {
  pool().run(n, body);
}

const char* kernel_isa() {
  return cpu::isa().name;
}

namespace cpu {

const IsaTable& isa() {
  static const IsaTable& chosen = []() -> const IsaTable& {
    const char* force = std::getenv("PRISM_KERNEL_ISA");
    const std::string want = force != nullptr ? force : "";
    __builtin_cpu_init();
    const bool has512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl");
    const bool has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (want == "scalar") return scalar::table();
    if (want == "generic") return generic::table();
    if (want == "avx2" && has2) return avx2::table();
    if (want.empty() || want == "avx512") {
      if (has512) return avx512::table();
      if (has2) return avx2::table();
    }
    return generic::table();
  }();
  return chosen;
}

const IsaTable& isa_for(int head_dim) {
  const IsaTable& best = isa();
  if (head_dim % best.width == 0) return best;
  if (best.width > 8 && head_dim % 8 == 0) return avx2::table();
  if (best.width > 4 && head_dim % 4 == 0) return generic::table();
  return scalar::table();
}

}  // namespace cpu
}  // namespace prism::kernels
