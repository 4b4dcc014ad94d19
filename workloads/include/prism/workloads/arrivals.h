// Arrival processes: when each session's first request is due.
//   closed loop  all offsets 0; the harness keeps `concurrency` requests in flight
//   Poisson      exponential gaps with mean 1/rate
//   Gamma        gaps ~ Gamma(shape = burstiness, scale = 1/(rate * burstiness)):
//                mean 1/rate, coefficient of variation 1/sqrt(burstiness)
//                (burstiness < 1 is burstier than Poisson, > 1 smoother)
//   trace        timestamps from a trace, relative to the first, times time_scale
// Later turns of a session keep their think time in arrival_offset_s.
#pragma once

#include <cstdint>
#include <vector>

#include "prism/workloads/workload.h"

namespace prism::workloads {

// `count` arrival offsets (seconds from the start, non-decreasing, first gap
// drawn too so offsets start after 0 for open-loop processes). Throws
// WorkloadError for kTrace (use trace_offsets) or an invalid spec.
std::vector<double> draw_arrival_offsets(const ArrivalSpec& spec, std::size_t count,
                                         std::uint64_t seed);

// Offsets from absolute trace timestamps: (t - t_first) * time_scale. Throws
// when timestamps go backwards.
std::vector<double> trace_offsets(const std::vector<double>& timestamps_s, double time_scale);

// Sets the arrival spec and the first-turn offsets of every session, in
// session order (kTrace keeps the offsets the workload already has, scaled by
// spec.time_scale / the workload's current time_scale).
void assign_arrivals(Workload& workload, const ArrivalSpec& spec, std::uint64_t seed);

// One spec per rate of a sweep (the spec itself when it has no sweep).
std::vector<ArrivalSpec> sweep_points(const ArrivalSpec& spec);

}  // namespace prism::workloads
