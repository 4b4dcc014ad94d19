#include "prism/spikes/slo_burn.h"

#include <algorithm>
#include <stdexcept>

namespace prism::spikes {

SloBurnMonitor::SloBurnMonitor(SloConfig config) : config_(config) {
  if (config_.window_ns == 0) throw std::invalid_argument("SLO burn: window must be > 0");
  if (!(config_.max_bad_share > 0 && config_.max_bad_share <= 1))
    throw std::invalid_argument("SLO burn: max_bad_share must be in (0, 1]");
  if (config_.clear_share > config_.max_bad_share)
    throw std::invalid_argument("SLO burn: clear_share must not exceed max_bad_share");
}

void SloBurnMonitor::evict(uint64_t now_ns) {
  // The window is (now - window, now]; entries are kept sorted by finish time.
  const uint64_t cutoff = now_ns >= config_.window_ns ? now_ns - config_.window_ns : 0;
  while (!window_.empty() && window_.front().finish_ns <= cutoff && now_ns >= config_.window_ns) {
    const Entry& e = window_.front();
    if (e.ttft >= 0) {
      --ttft_.requests;
      ttft_.over_slo -= static_cast<uint64_t>(e.ttft);
    }
    if (e.tpot >= 0) {
      --tpot_.requests;
      tpot_.over_slo -= static_cast<uint64_t>(e.tpot);
    }
    window_.pop_front();
  }
}

void SloBurnMonitor::check(uint64_t now_ns, std::vector<SloAlert>& out) {
  auto one = [&](const char* metric, const SloWindowState& st, bool& open, double slo) {
    if (slo <= 0) return;
    const double share = st.share();
    SloAlert a{metric,      true,        now_ns, config_.window_ns,
               st.requests, st.over_slo, share,  config_.max_bad_share,
               slo};
    if (!open && st.requests >= config_.min_requests && share >= config_.max_bad_share) {
      open = true;
      out.push_back(a);
    } else if (open && (share < config_.clear_share || st.requests < config_.min_requests)) {
      open = false;
      a.open = false;
      out.push_back(a);
    }
  };
  one("ttft", ttft_, ttft_open_, config_.ttft_slo_ns);
  one("tpot", tpot_, tpot_open_, config_.tpot_slo_ns);
}

std::vector<SloAlert> SloBurnMonitor::add(const RequestTiming& r) {
  Entry e{r.finish_ns, -1, -1};
  if (config_.ttft_slo_ns > 0) e.ttft = r.ttft_ns > config_.ttft_slo_ns ? 1 : 0;
  if (config_.tpot_slo_ns > 0 && r.tpot_ns >= 0) e.tpot = r.tpot_ns > config_.tpot_slo_ns ? 1 : 0;
  newest_ns_ = std::max(newest_ns_, r.finish_ns);
  const uint64_t cutoff = newest_ns_ >= config_.window_ns ? newest_ns_ - config_.window_ns : 0;
  std::vector<SloAlert> out;
  if (newest_ns_ >= config_.window_ns && r.finish_ns <= cutoff) {
    // Already outside the window: it changes nothing.
    return out;
  }
  const auto pos = std::upper_bound(window_.begin(), window_.end(), r.finish_ns,
                                    [](uint64_t t, const Entry& x) { return t < x.finish_ns; });
  window_.insert(pos, e);
  if (e.ttft >= 0) {
    ++ttft_.requests;
    ttft_.over_slo += static_cast<uint64_t>(e.ttft);
  }
  if (e.tpot >= 0) {
    ++tpot_.requests;
    tpot_.over_slo += static_cast<uint64_t>(e.tpot);
  }
  evict(newest_ns_);
  check(newest_ns_, out);
  return out;
}

std::vector<SloAlert> SloBurnMonitor::advance(uint64_t now_ns) {
  newest_ns_ = std::max(newest_ns_, now_ns);
  evict(newest_ns_);
  std::vector<SloAlert> out;
  check(newest_ns_, out);
  return out;
}

}  // namespace prism::spikes
