// The engine's pipeline stages. Every stage is an NVTX range (default domain,
// names as stage_name() spells them: "step", "schedule", "prefill", "decode",
// "attention", "mlp", "sample", "detokenize"), which is what the probes see.
// The stage clock, off by default, records the same ranges with
// CLOCK_MONOTONIC timestamps as ground truth for the probes' accuracy tests.
//
// Nesting, per engine step:
//   step
//   ├── schedule
//   ├── prefill | decode      the forward pass: "prefill" when the batch holds
//   │   ├── attention  ×layers   any prompt tokens (a mixed Sarathi batch too),
//   │   └── mlp        ×layers   "decode" when it holds only decode tokens
//   ├── sample
//   └── detokenize
#pragma once

#include <atomic>
#include <cstdint>
#include <ctime>
#include <mutex>
#include <string_view>
#include <vector>

namespace prism::engine {

enum class Stage : std::uint8_t {
  kStep,
  kSchedule,
  kPrefill,
  kDecode,
  kAttention,
  kMlp,
  kSample,
  kDetokenize,
};
inline constexpr int kStageCount = 8;

const char* stage_name(Stage stage);

inline std::int64_t stage_clock_now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

struct StageRecord {
  Stage stage = Stage::kStep;
  std::uint64_t step = 0;     // engine step (iteration) index
  std::int64_t begin_ns = 0;  // CLOCK_MONOTONIC
  std::int64_t end_ns = 0;
};

// Thread-safe; cheap when disabled (one relaxed load per range).
class StageClock {
 public:
  explicit StageClock(std::size_t capacity = 1 << 20) : capacity_(capacity) {}
  void set_enabled(bool on);
  bool enabled() const { return enabled_.load(std::memory_order_relaxed); }
  void record(const StageRecord& r);
  // Returns the records so far and clears them.
  std::vector<StageRecord> take();
  std::uint64_t dropped() const;

 private:
  std::atomic<bool> enabled_{false};
  std::size_t capacity_;
  mutable std::mutex mu_;
  std::vector<StageRecord> records_;
  std::uint64_t dropped_ = 0;
};

// RAII: an NVTX range plus, when the clock is on, a stage record.
class StageScope {
 public:
  StageScope(StageClock* clock, Stage stage, std::uint64_t step);
  ~StageScope();
  StageScope(const StageScope&) = delete;
  StageScope& operator=(const StageScope&) = delete;

 private:
  StageClock* clock_;
  Stage stage_;
  std::uint64_t step_;
  std::int64_t begin_ns_ = 0;
};

}  // namespace prism::engine
