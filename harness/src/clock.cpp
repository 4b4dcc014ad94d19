#include "prism/harness/clock.h"

#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <algorithm>

namespace prism::harness {

void minimize_timer_slack() {
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
}

bool pin_current_thread_to_cpu(int cpu) {
  if (cpu < 0 || cpu >= CPU_SETSIZE) return false;
  // Not checked against the calling thread's own mask: a thread inherits its
  // creator's, so an I/O thread started by a thread pinned to the server's
  // CPU would be refused the other CPU and silently share the server's. The
  // kernel refuses a CPU outside the process's cpuset or offline (EINVAL).
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  return sched_setaffinity(0, sizeof one, &one) == 0;  // 0: the calling thread
}

bool make_current_thread_realtime(int priority) {
  if (priority < 1) return false;
  sched_param param{};
  param.sched_priority = std::min(priority, sched_get_priority_max(SCHED_FIFO));
  return pthread_setschedparam(pthread_self(), SCHED_FIFO, &param) == 0;
}

void raise_open_file_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

}  // namespace prism::harness
