#include "prism/spikes/spikes_engine.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <optional>
#include <random>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>

#include "prism/engine/engine.h"
#include "prism/kernels/threading.h"

namespace prism::spikes {

namespace {

constexpr size_t kSchedule = 0, kAttention = 1, kMlp = 2, kForwardRest = 3, kSample = 4,
                 kDetokenize = 5;

void busy_wait_ns(int64_t ns) {
  const int64_t end = engine::stage_clock_now_ns() + ns;
  while (engine::stage_clock_now_ns() < end) {
  }
}

int64_t thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// OpenBLAS keeps its own threads; when it is the BLAS in use, keep it to one
// so the stepping thread does all of the engine's work (looked up at run time:
// another BLAS has no such call).
void set_blas_threads(int n) {
  using SetThreads = void (*)(int);
  if (void* f = dlsym(RTLD_DEFAULT, "openblas_set_num_threads")) reinterpret_cast<SetThreads>(f)(n);
}

// Sets the kernels' and BLAS threads for one run; restores the kernels' pool after.
class EngineThreads {
 public:
  explicit EngineThreads(int n) : previous_(kernels::kernel_threads()) {
    if (n > 0) {
      kernels::set_kernel_threads(n);
      set_blas_threads(n);
    }
  }
  ~EngineThreads() { kernels::set_kernel_threads(previous_); }
  EngineThreads(const EngineThreads&) = delete;
  EngineThreads& operator=(const EngineThreads&) = delete;

 private:
  int previous_;
};

void sleep_ns(int64_t ns) {
  timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

// A tokenizer that passes everything through, with an optional busy wait in
// the first token_bytes call of each step: the detokenize stage stalls once
// per step that detokenizes anything.
class DelayingTokenizer : public workloads::Tokenizer {
 public:
  explicit DelayingTokenizer(std::shared_ptr<const workloads::Tokenizer> inner)
      : inner_(std::move(inner)) {}
  const std::string& name() const override { return inner_->name(); }
  std::size_t vocab_size() const override { return inner_->vocab_size(); }
  std::vector<std::int32_t> encode(std::string_view text, bool allow_special) const override {
    return inner_->encode(text, allow_special);
  }
  std::string decode(std::span<const std::int32_t> ids) const override {
    return inner_->decode(ids);
  }
  std::string token_bytes(std::int32_t id) const override {
    const int64_t d = delay_ns.load(std::memory_order_relaxed);
    if (d > 0 && armed.exchange(false, std::memory_order_relaxed)) {
      busy_wait_ns(d);
      delayed_calls.fetch_add(1, std::memory_order_relaxed);
    }
    return inner_->token_bytes(id);
  }
  bool is_special(std::int32_t id) const override { return inner_->is_special(id); }
  std::optional<std::int32_t> eos_token() const override { return inner_->eos_token(); }
  std::optional<std::int32_t> bos_token() const override { return inner_->bos_token(); }

  mutable std::atomic<int64_t> delay_ns{0};
  mutable std::atomic<uint64_t> delayed_calls{0};
  // The stall hits the first token of each step (re-armed before every step).
  mutable std::atomic<bool> armed{false};

 private:
  std::shared_ptr<const workloads::Tokenizer> inner_;
};

// Pins the calling thread to one CPU for a run (so a CPU hog can be put on
// the same CPU, and a bandwidth hog on the others); restores the old mask.
class CpuPin {
 public:
  explicit CpuPin(int cpu) {
    if (cpu < 0 || pthread_getaffinity_np(pthread_self(), sizeof(old_), &old_) != 0) return;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    pinned_ = pthread_setaffinity_np(pthread_self(), sizeof(one), &one) == 0;
  }
  ~CpuPin() {
    if (pinned_) pthread_setaffinity_np(pthread_self(), sizeof(old_), &old_);
  }
  CpuPin(const CpuPin&) = delete;
  CpuPin& operator=(const CpuPin&) = delete;
  bool pinned() const { return pinned_; }

 private:
  cpu_set_t old_{};
  bool pinned_ = false;
};

// CPUs this thread may run on.
std::vector<int> allowed_cpus() {
  std::vector<int> out;
  cpu_set_t set;
  if (pthread_getaffinity_np(pthread_self(), sizeof(set), &set) == 0)
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) out.push_back(c);
  if (out.empty()) out.push_back(0);
  return out;
}

// The calling thread's scheduler statistics (/proc/thread-self/schedstat:
// time on CPU, time waiting on a run queue, timeslices). The run-queue wait
// is what other runnable threads on the same CPU cost this one.
class SchedStat {
 public:
  SchedStat() : fd_(open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC)) {}
  ~SchedStat() {
    if (fd_ >= 0) close(fd_);
  }
  SchedStat(const SchedStat&) = delete;
  SchedStat& operator=(const SchedStat&) = delete;
  // Run-queue wait so far, ns; -1 when the kernel does not say.
  int64_t run_delay_ns() const {
    if (fd_ < 0) return -1;
    char buf[128];
    const ssize_t n = pread(fd_, buf, sizeof(buf) - 1, 0);
    if (n <= 0) return -1;
    buf[n] = 0;
    unsigned long long on = 0, wait = 0;
    if (std::sscanf(buf, "%llu %llu", &on, &wait) != 2) return -1;
    return static_cast<int64_t>(wait);
  }

 private:
  int fd_;
};

// Background threads that compete with the engine for CPU or memory bandwidth,
// each pinned to a given CPU. The constructor returns once every thread is
// running its loop (buffers allocated and touched), so the fault is in force
// from the first iteration of its window.
class Hog {
 public:
  enum class Kind { kCpu, kMemory };
  Hog(Kind kind, const std::vector<int>& cpus) {
    for (int cpu : cpus)
      workers_.emplace_back([this, kind, cpu] {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
        if (kind == Kind::kCpu) {
          running_.fetch_add(1);
          volatile uint64_t x = 0;
          while (!stop_.load(std::memory_order_relaxed)) x = x * 6364136223846793005ULL + 1;
        } else {
          const size_t n = size_t{64} << 20;  // twice the last-level cache, each
          std::vector<char> a(n, 1), b(n, 2);
          running_.fetch_add(1);
          while (!stop_.load(std::memory_order_relaxed)) {
            std::memcpy(b.data(), a.data(), n);
            std::swap(a, b);
          }
        }
      });
    while (running_.load() < static_cast<int>(workers_.size())) std::this_thread::yield();
  }
  ~Hog() {
    stop_.store(true);
    for (auto& t : workers_) t.join();
  }
  Hog(const Hog&) = delete;
  Hog& operator=(const Hog&) = delete;

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int> running_{0};
  std::vector<std::thread> workers_;
};

struct Phase {
  double arrivals_per_step;
  double prompt_lo, prompt_hi;  // fraction of the usable context
  int output_lo, output_hi;
};
const Phase kPhases[] = {
    {0.08, 0.01, 0.15, 16, 200},    // steady mixed traffic
    {0.20, 0.20, 0.45, 8, 64},      // burst of long prompts
    {0.01, 0.50, 0.85, 32, 128},    // long-context arrivals
    {0.01, 0.005, 0.05, 8, 64},     // quiet: small batches
    {0.40, 0.005, 0.05, 100, 300},  // many short chats: batch grows
};
constexpr int kPhaseCount = static_cast<int>(sizeof(kPhases) / sizeof(kPhases[0]));
const char* kKinds[] = {"cpu_hog", "membw_hog", "stage_delay", "deschedule"};

}  // namespace

const std::vector<std::string>& engine_stages() {
  static const std::vector<std::string> names{"schedule",     "attention", "mlp",
                                              "forward_rest", "sample",    "detokenize"};
  return names;
}

std::array<double, kFeatureCount> engine_feature_scale() {
  return {256.0, 32.0, 65536.0, 32.0};
}

LabelledRun run_engine(const EngineEvalConfig& config, uint64_t seed, bool faults) {
  const EngineThreads threads(config.kernel_threads);
  // The engine steps on one CPU; the CPU hog runs on that same CPU (it must
  // take time from the engine to be a fault at all), the bandwidth hog on the
  // others (it must contend for the memory system, not for the CPU).
  const std::vector<int> cpus = allowed_cpus();
  const int engine_cpu = config.engine_cpu >= 0 ? config.engine_cpu : cpus.back();
  const CpuPin pin(config.pin ? engine_cpu : -1);
  std::vector<int> other_cpus;
  for (int c : cpus)
    if (c != engine_cpu) other_cpus.push_back(c);
  if (other_cpus.empty()) other_cpus.push_back(engine_cpu);
  const SchedStat schedstat;
  std::vector<int> kinds;  // indices into kKinds the run may inject; empty: all
  for (const std::string& k : config.fault_kinds) {
    const auto at = std::find_if(std::begin(kKinds), std::end(kKinds),
                                 [&](const char* name) { return k == name; });
    if (at == std::end(kKinds))
      throw std::invalid_argument(
          fmt::format("unknown fault kind '{}' (cpu_hog, membw_hog, stage_delay, deschedule)", k));
    kinds.push_back(static_cast<int>(at - std::begin(kKinds)));
  }
  engine::EngineOptions eo;
  eo.stage_clock = true;
  eo.scheduler.max_num_batched_tokens = config.token_budget;
  eo.scheduler.max_num_seqs = config.max_seqs;
  eo.kv_cache_bytes = int64_t{256} << 20;
  engine::LoadedEngine loaded = engine::load_engine(config.model, eo);
  auto tokenizer = std::make_shared<DelayingTokenizer>(loaded.tokenizer);
  engine::Engine eng(loaded.model, tokenizer, eo);
  eng.stage_clock().set_enabled(true);

  std::mt19937_64 rng(seed * 0x2545F4914F6CDD1DULL + 99);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::exponential_distribution<double> expo(1.0);
  const int usable = std::min(eng.max_context() - 320, eng.kv_capacity_tokens() / 4);
  const int vocab = static_cast<int>(std::min<std::size_t>(tokenizer->vocab_size(), 50000));

  LabelledRun run;
  run.source = "engine";
  run.series.stages = engine_stages();
  int phase = 0;
  uint64_t phase_left = 300;
  std::optional<FaultWindow> active;
  std::unique_ptr<Hog> hog;
  int64_t deschedule_ns = 0;
  std::atomic<int64_t> callback_sleep{0};
  bool slept_this_step = false;
  uint64_t next_fault =
      config.fault_free_prefix + static_cast<uint64_t>(expo(rng) * config.mean_fault_gap);
  engine::EngineStats before = eng.stats();
  uint64_t it = 0;
  uint64_t guard = 0;

  while (it < config.iterations && guard++ < config.iterations * 20) {
    if (phase_left-- == 0) {
      phase = static_cast<int>(unit(rng) * kPhaseCount) % kPhaseCount;
      phase_left = 150 + static_cast<uint64_t>(unit(rng) * 1200);
    }
    const Phase& ph = kPhases[phase];
    // Arrivals for this step (Poisson), unless the queue is already long.
    std::poisson_distribution<int> arrivals(ph.arrivals_per_step);
    for (int a = arrivals(rng); a > 0 && before.waiting < 64; --a) {
      engine::GenerateRequest req;
      const int len = std::max(
          4, static_cast<int>(usable * (ph.prompt_lo + (ph.prompt_hi - ph.prompt_lo) * unit(rng))));
      req.prompt.resize(static_cast<size_t>(len));
      for (auto& t : req.prompt) t = static_cast<int32_t>(unit(rng) * vocab) % vocab;
      req.sampling.max_tokens =
          ph.output_lo + static_cast<int>(unit(rng) * (ph.output_hi - ph.output_lo + 1));
      req.sampling.ignore_eos = true;
      req.sampling.seed = seed;
      eng.add_request(std::move(req),
                      [&callback_sleep, &slept_this_step](const engine::RequestOutput&) {
                        const int64_t d = callback_sleep.load(std::memory_order_relaxed);
                        if (d > 0 && !slept_this_step) {
                          slept_this_step = true;
                          sleep_ns(d);
                        }
                      });
    }

    // Faults: start before the first iteration of the window, stop after its last.
    if (faults && !active && it >= next_fault) {
      const double draw = unit(rng);
      int kind = static_cast<int>(draw * 4) % 4;
      if (!kinds.empty()) kind = kinds[static_cast<size_t>(draw * kinds.size()) % kinds.size()];
      const uint64_t len =
          config.min_fault_len +
          static_cast<uint64_t>(
              unit(rng) * static_cast<double>(config.max_fault_len - config.min_fault_len + 1));
      active = FaultWindow{it, std::min(it + len - 1, config.iterations - 1), kKinds[kind], ""};
      switch (kind) {
        case 0:
          hog = std::make_unique<Hog>(Hog::Kind::kCpu,
                                      std::vector<int>(config.cpu_hog_threads, engine_cpu));
          break;
        case 1:
          hog = std::make_unique<Hog>(Hog::Kind::kMemory, other_cpus);
          break;
        case 2:
          active->stage = "detokenize";
          // 0.3-1.5 ms per step: 1-5 median steps of the tiny model, a stall
          // (the simulator's stage_delay is 0.6-3 ms of its ~1 ms steps).
          tokenizer->delay_ns.store(
              static_cast<int64_t>(config.fault_scale * (300'000 + 1'200'000 * unit(rng))));
          break;
        default:
          deschedule_ns = static_cast<int64_t>(config.fault_scale * (1e6 + 4e6 * unit(rng)));
          callback_sleep.store(deschedule_ns);
          break;
      }
      run.faults.push_back(*active);
    }

    slept_this_step = false;
    tokenizer->armed.store(true, std::memory_order_relaxed);
    const uint64_t delayed0 = tokenizer->delayed_calls.load(std::memory_order_relaxed);
    const int64_t r0 = schedstat.run_delay_ns();
    const int64_t c0 = thread_cpu_ns();
    const int64_t t0 = engine::stage_clock_now_ns();
    const bool worked = eng.step();
    const int64_t t1 = engine::stage_clock_now_ns();
    const int64_t c1 = thread_cpu_ns();
    const int64_t r1 = schedstat.run_delay_ns();
    const uint64_t delayed = tokenizer->delayed_calls.load(std::memory_order_relaxed) - delayed0;
    const std::vector<engine::StageRecord> records = eng.stage_clock().take();
    const engine::EngineStats after = eng.stats();
    if (!worked) {
      before = after;
      continue;  // idle: no iteration (arrivals come next round)
    }
    IterationRecord rec;
    rec.index = it;
    rec.start_ns = static_cast<uint64_t>(t0);
    rec.end_ns = static_cast<uint64_t>(t1);
    rec.features.prefill_tokens =
        static_cast<double>(after.prompt_tokens_total - before.prompt_tokens_total);
    rec.features.decode_seqs =
        static_cast<double>(after.generation_tokens_total - before.generation_tokens_total);
    // KV read in the step: the sequences that finished in it freed theirs by
    // the time the step returns, so the larger of before and after.
    rec.features.context_tokens =
        static_cast<double>(std::max(after.kv_blocks_used, before.kv_blocks_used)) * eo.block_size;
    rec.features.batch_size = static_cast<double>(std::max(after.running, before.running));
    double forward = 0;
    for (const auto& r : records) {
      const double d = static_cast<double>(r.end_ns - r.begin_ns);
      switch (r.stage) {
        case engine::Stage::kSchedule:
          rec.stage_ns[kSchedule] += d;
          break;
        case engine::Stage::kAttention:
          rec.stage_ns[kAttention] += d;
          break;
        case engine::Stage::kMlp:
          rec.stage_ns[kMlp] += d;
          break;
        case engine::Stage::kPrefill:
        case engine::Stage::kDecode:
          forward += d;
          break;
        case engine::Stage::kSample:
          rec.stage_ns[kSample] += d;
          break;
        case engine::Stage::kDetokenize:
          rec.stage_ns[kDetokenize] += d;
          break;
        case engine::Stage::kStep:
          break;
      }
    }
    rec.stage_ns[kForwardRest] =
        std::max(0.0, forward - rec.stage_ns[kAttention] - rec.stage_ns[kMlp]);
    run.series.iterations.push_back(rec);
    run.handover_delay_ns.push_back(static_cast<double>(engine::stage_clock_now_ns() - t1));
    // Ground truth for ambient interference: time the stepping thread was off
    // CPU during the step (wall minus thread CPU time; the engine runs on this
    // thread alone when kernel_threads is 1).
    const double off_cpu = std::max(0.0, static_cast<double>((t1 - t0) - (c1 - c0)));
    run.off_cpu_ns.push_back(off_cpu);
    run.run_delay_ns.push_back(r0 >= 0 && r1 >= r0 ? static_cast<double>(r1 - r0) : -1.0);
    if (config.detector_sees_cpu_time) run.series.iterations.back().off_cpu_ns = off_cpu;
    // Ground truth where the fault is injected: did it act on this iteration?
    bool affected = false;
    if (active) {
      const std::string& kind = active->kind;
      if (kind == "stage_delay")
        affected = delayed > 0;  // the delayed stage ran (a step with no token output has none)
      else if (kind == "deschedule")
        affected = slept_this_step;  // the output callback slept (steps with no output do not)
      else if (kind == "cpu_hog")
        // The hog shares the engine's CPU: it slowed the steps it preempted.
        affected = off_cpu > config.min_affected_off_cpu_ns &&
                   off_cpu > config.min_affected_off_cpu_share * static_cast<double>(c1 - c0);
      else
        affected = true;  // membw_hog: continuous contention for the memory system
    }
    run.labels.push_back(affected ? 1 : 0);
    before = after;

    if (active && it >= active->last) {
      hog.reset();
      tokenizer->delay_ns.store(0);
      callback_sleep.store(0);
      active.reset();
      next_fault = it + 51 + static_cast<uint64_t>(expo(rng) * config.mean_fault_gap);
    }
    ++it;
  }
  hog.reset();
  // Windows stay whole for event-level scoring (an alert anywhere in one finds it).
  if (config.progress != nullptr)
    *config.progress << fmt::format("engine run: seed {} {} ({} iterations, {} faults)\n", seed,
                                    faults ? "with faults" : "pure variation",
                                    run.series.iterations.size(), run.faults.size());
  return run;
}

RunSource engine_source(EngineEvalConfig config) {
  return [config](uint64_t seed, bool faults) { return run_engine(config, seed, faults); };
}

}  // namespace prism::spikes
