#include "prism/engine/stages.h"

#if defined(PRISM_HAVE_NVTX3)
#include <nvtx3/nvToolsExt.h>
#endif

namespace prism::engine {

const char* stage_name(Stage stage) {
  switch (stage) {
    case Stage::kStep:
      return "step";
    case Stage::kSchedule:
      return "schedule";
    case Stage::kPrefill:
      return "prefill";
    case Stage::kDecode:
      return "decode";
    case Stage::kAttention:
      return "attention";
    case Stage::kMlp:
      return "mlp";
    case Stage::kSample:
      return "sample";
    case Stage::kDetokenize:
      return "detokenize";
  }
  return "unknown";
}

void StageClock::set_enabled(bool on) {
  enabled_.store(on, std::memory_order_relaxed);
}

void StageClock::record(const StageRecord& r) {
  std::lock_guard lock(mu_);
  if (records_.size() >= capacity_) {
    ++dropped_;
    return;
  }
  records_.push_back(r);
}

std::vector<StageRecord> StageClock::take() {
  std::lock_guard lock(mu_);
  std::vector<StageRecord> out;
  out.swap(records_);
  return out;
}

std::uint64_t StageClock::dropped() const {
  std::lock_guard lock(mu_);
  return dropped_;
}

StageScope::StageScope(StageClock* clock, Stage stage, std::uint64_t step)
    : clock_(clock != nullptr && clock->enabled() ? clock : nullptr), stage_(stage), step_(step) {
#if defined(PRISM_HAVE_NVTX3)
  nvtxRangePushA(stage_name(stage));
#endif
  if (clock_ != nullptr) begin_ns_ = stage_clock_now_ns();
}

StageScope::~StageScope() {
  if (clock_ != nullptr)
    clock_->record(StageRecord{stage_, step_, begin_ns_, stage_clock_now_ns()});
#if defined(PRISM_HAVE_NVTX3)
  nvtxRangePop();
#endif
}

}  // namespace prism::engine
