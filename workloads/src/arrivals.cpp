#include "prism/workloads/arrivals.h"

#include <string>

#include "prism/workloads/random.h"
#include "prism/workloads/validation.h"
#include "prism/workloads/workload_json.h"

namespace prism::workloads {

std::vector<double> draw_arrival_offsets(const ArrivalSpec& spec, std::size_t count,
                                         std::uint64_t seed) {
  validate_arrival(spec, "arrivals");
  std::vector<double> out;
  out.reserve(count);
  Rng rng(derive_seed(seed, "arrivals"));
  double t = 0.0;
  switch (spec.kind) {
    case ArrivalKind::kClosedLoop:
      out.assign(count, 0.0);
      break;
    case ArrivalKind::kPoisson:
      for (std::size_t i = 0; i < count; ++i)
        out.push_back(t += rng.exponential(1.0 / spec.rate_per_s));
      break;
    case ArrivalKind::kGamma: {
      const double shape = spec.burstiness;
      const double scale = 1.0 / (spec.rate_per_s * shape);
      for (std::size_t i = 0; i < count; ++i) out.push_back(t += rng.gamma(shape, scale));
      break;
    }
    case ArrivalKind::kTrace:
      throw WorkloadError(
          "arrivals: trace arrivals come from a trace's timestamps, not a random draw");
  }
  return out;
}

std::vector<double> trace_offsets(const std::vector<double>& timestamps, double time_scale) {
  std::vector<double> out;
  out.reserve(timestamps.size());
  for (std::size_t i = 0; i < timestamps.size(); ++i) {
    if (i > 0 && timestamps[i] < timestamps[i - 1])
      throw WorkloadError("trace: timestamp of request " + std::to_string(i) + " (" +
                          std::to_string(timestamps[i]) + ") is before the previous one (" +
                          std::to_string(timestamps[i - 1]) + ")");
    out.push_back((timestamps[i] - timestamps.front()) * time_scale);
  }
  return out;
}

void assign_arrivals(Workload& w, const ArrivalSpec& spec, std::uint64_t seed) {
  validate_arrival(spec, "arrivals");
  if (spec.kind == ArrivalKind::kTrace) {
    if (w.arrival.kind != ArrivalKind::kTrace)
      throw WorkloadError("arrivals: trace arrivals need a workload generated from a trace");
    const double factor = spec.time_scale / w.arrival.time_scale;
    for (auto& s : w.sessions)
      if (!s.requests.empty()) s.requests.front().arrival_offset_s *= factor;
    w.arrival = spec;
    return;
  }
  const auto offsets = draw_arrival_offsets(spec, w.sessions.size(), seed);
  for (std::size_t i = 0; i < w.sessions.size(); ++i)
    if (!w.sessions[i].requests.empty())
      w.sessions[i].requests.front().arrival_offset_s = offsets[i];
  w.arrival = spec;
}

std::vector<ArrivalSpec> sweep_points(const ArrivalSpec& spec) {
  if (spec.sweep_rates_per_s.empty()) return {spec};
  std::vector<ArrivalSpec> out;
  for (double rate : spec.sweep_rates_per_s) {
    ArrivalSpec point = spec;
    point.rate_per_s = rate;
    point.sweep_rates_per_s.clear();
    out.push_back(point);
  }
  return out;
}

}  // namespace prism::workloads
