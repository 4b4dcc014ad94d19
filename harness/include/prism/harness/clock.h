// The one clock of the harness: CLOCK_MONOTONIC in integer nanoseconds. It is
// system-wide, so a mock server in another process stamps on the same time
// line and a test can compare its send times with the harness's arrival times.
#pragma once

#include <cstdint>
#include <ctime>

namespace prism::harness {

inline std::int64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

inline double ns_to_s(std::int64_t ns) {
  return static_cast<double>(ns) * 1e-9;
}
inline std::int64_t s_to_ns(double s) {
  return static_cast<std::int64_t>(s * 1e9);
}

// Timer slack (50 us by default on Linux) is added to every sleep and poll of
// the calling thread; a load generator that must send on time sets it to 1 ns.
void minimize_timer_slack();

// Pins the calling thread to one CPU (sched_setaffinity). Returns false, and
// leaves the thread as it was, when cpu is negative or not available to this
// process (offline, or outside its cpuset); a CPU outside the mask the thread
// inherited from its creator is available. A pinned I/O thread and a pinned server do not steal
// each other's core, so a measurement of one is not a measurement of the other.
bool pin_current_thread_to_cpu(int cpu);

// Puts the calling thread in SCHED_FIFO at `priority` (1-99) so that no
// ordinary thread preempts it; false when not allowed (needs CAP_SYS_NICE or
// an RLIMIT_RTPRIO) or priority < 1. The kernel's RT throttling still leaves
// other threads 5 % of each CPU; a thread that blocks (epoll) uses far less.
bool make_current_thread_realtime(int priority);

// Raises the soft open-file limit to the hard limit: 1,000 streams need more
// than the usual 1,024 descriptors once server and client share a process.
void raise_open_file_limit();

}  // namespace prism::harness
