// Request-level SLO burn: the share of recently finished requests whose TTFT
// (or TPOT) is over its SLO, in a sliding time window. An alert opens when the
// share reaches max_bad_share (with at least min_requests in the window) and
// closes when it falls back below clear_share.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

namespace prism::spikes {

struct SloConfig {
  double ttft_slo_ns = 0;  // 0: TTFT not watched
  double tpot_slo_ns = 0;  // 0: TPOT not watched
  uint64_t window_ns = 60'000'000'000;
  double max_bad_share = 0.10;  // alert when at least this share is over SLO
  double clear_share = 0.05;    // clear when the share falls below this
  uint64_t min_requests = 20;   // fewer requests in the window: no verdict
};

struct RequestTiming {
  uint64_t finish_ns = 0;  // when the request completed (window position)
  double ttft_ns = 0;
  double tpot_ns = 0;  // mean time per output token after the first; < 0: not applicable
};

struct SloAlert {
  std::string metric;  // "ttft" or "tpot"
  bool open = true;    // false: the burn cleared
  uint64_t time_ns = 0;
  uint64_t window_ns = 0;
  uint64_t requests = 0;
  uint64_t over_slo = 0;
  double share = 0;
  double max_bad_share = 0;
  double slo_ns = 0;
};

// Counts over one metric in the window.
struct SloWindowState {
  uint64_t requests = 0;
  uint64_t over_slo = 0;
  double share() const { return requests == 0 ? 0.0 : static_cast<double>(over_slo) / requests; }
};

class SloBurnMonitor {
 public:
  explicit SloBurnMonitor(SloConfig config);
  // Requests in finish order (out-of-order finishes are accepted; the window
  // evicts by finish time relative to the newest). Returns alerts raised.
  std::vector<SloAlert> add(const RequestTiming& request);
  // Moves the window to now (no new request): may clear an alert.
  std::vector<SloAlert> advance(uint64_t now_ns);
  SloWindowState ttft() const { return ttft_; }
  SloWindowState tpot() const { return tpot_; }
  bool ttft_burning() const { return ttft_open_; }
  bool tpot_burning() const { return tpot_open_; }

 private:
  struct Entry {
    uint64_t finish_ns;
    int8_t ttft;  // -1 not watched / not applicable, 0 ok, 1 over
    int8_t tpot;
  };
  void evict(uint64_t now_ns);
  void check(uint64_t now_ns, std::vector<SloAlert>& out);

  SloConfig config_;
  std::deque<Entry> window_;
  SloWindowState ttft_, tpot_;
  bool ttft_open_ = false, tpot_open_ = false;
  uint64_t newest_ns_ = 0;
};

}  // namespace prism::spikes
