// The agent's core: clock, string interning, per-thread SPSC buffers, the
// collector thread, the flight recorder ring, live stats and the raw output.
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#include <new>

#include "agent.h"
#include "prism/control/protocol.h"
#include "prism/control/stage_rules.h"

namespace prism::agent {

HotFlags g_hot;

namespace {

// ------------------------------------------------------------------ config
struct Config {
  uint32_t buffer_events = 16384;  // per thread, power of two
  uint32_t drain_ms = 10;
  uint64_t ring_events = 1u << 19;  // flight recorder capacity (~20 MiB when allocated)
  uint64_t window_ns = 30ull * 1000000000ull;
  char output_dir[512] = {};
  bool quiet = false;
};
Config g_config;

uint64_t env_number(const char* name, uint64_t fallback, uint64_t lo, uint64_t hi) {
  const char* text = getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  char* end = nullptr;
  errno = 0;
  const unsigned long long value = strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value < lo || value > hi) {
    say("ignoring %s=%s (expected an integer in [%llu, %llu])", name, text,
        static_cast<unsigned long long>(lo), static_cast<unsigned long long>(hi));
    return fallback;
  }
  return value;
}

uint32_t round_up_pow2(uint64_t v) {
  uint32_t p = 16;
  while (p < v && p < (1u << 22)) p <<= 1;
  return p;
}

// ------------------------------------------------------------------ clock
struct Calibration {
  uint64_t base_ticks = 0;
  uint64_t base_ns = 0;
  double ns_per_tick = 1.0;
  uint64_t span_ns = 0;  // baseline the rate was measured over
  bool ready = false;
};
Calibration g_calibration;  // owned by the collector thread (under g_lock after ready)

// A (ticks, ns) pair read together: the tightest of a few brackets, so a preemption (or a
// hypervisor's steal) between the reads does not put a rate error of percent into calibration.
void sample_pair(uint64_t* ticks, uint64_t* ns) {
#if defined(__x86_64__)
  uint64_t best = UINT64_MAX;
  for (int attempt = 0; attempt < 5; ++attempt) {
    const uint64_t t0 = __rdtsc();
    const uint64_t n = monotonic_ns();
    const uint64_t t1 = __rdtsc();
    if (t1 - t0 < best) {
      best = t1 - t0;
      *ns = n;
      *ticks = t0 + (t1 - t0) / 2;
    }
  }
#else
  *ns = monotonic_ns();
  *ticks = *ns;
#endif
}

// Measures the TSC rate over the span since the base sample, at least min_span_ns long (waits
// for the rest when called earlier: only agent threads call this). Caller holds g_lock or is
// the only thread touching the calibration.
void calibrate(uint64_t min_span_ns) {
  uint64_t ticks = 0;
  uint64_t ns = 0;
  sample_pair(&ticks, &ns);
  if (ns - g_calibration.base_ns < min_span_ns) {
    const uint64_t wait = min_span_ns - (ns - g_calibration.base_ns);
    timespec pause{static_cast<time_t>(wait / 1000000000ull),
                   static_cast<long>(wait % 1000000000ull)};
    nanosleep(&pause, nullptr);
    sample_pair(&ticks, &ns);
  }
  g_calibration.ns_per_tick = static_cast<double>(ns - g_calibration.base_ns) /
                              static_cast<double>(ticks - g_calibration.base_ticks);
  g_calibration.span_ns = ns - g_calibration.base_ns;
  g_calibration.ready = true;
}

uint64_t ticks_to_ns(uint64_t ticks) {
  if (!g_hot.use_tsc) return ticks;
  const double delta = static_cast<double>(static_cast<int64_t>(ticks - g_calibration.base_ticks));
  return g_calibration.base_ns +
         static_cast<uint64_t>(static_cast<int64_t>(delta * g_calibration.ns_per_tick));
}

bool tsc_is_usable() {
#if defined(__x86_64__)
  FILE* f = fopen("/proc/cpuinfo", "re");
  if (f == nullptr) return false;
  char line[4096];
  bool constant = false;
  bool nonstop = false;
  while (fgets(line, sizeof(line), f) != nullptr) {
    if (strncmp(line, "flags", 5) != 0) continue;
    constant = strstr(line, " constant_tsc") != nullptr;
    nonstop = strstr(line, " nonstop_tsc") != nullptr;
    break;
  }
  fclose(f);
  if (getenv("PRISM_PROBE_NO_TSC") != nullptr) return false;
  return constant && nonstop;
#else
  return false;
#endif
}

// ------------------------------------------------------------------ strings
constexpr uint32_t kStringSlots = 1u << 17;  // hash slots (power of two)
constexpr uint32_t kMaxStrings = 1u << 16;   // ids
constexpr size_t kMaxNameBytes = 1024;       // longer names are cut

struct StringSlot {
  std::atomic<uint64_t> hash{0};
  std::atomic<uint32_t> id{0};
};
StringSlot* g_slots = nullptr;                  // calloc'd at init (untouched pages cost nothing)
std::atomic<const char*>* g_strings = nullptr;  // id -> text
std::atomic<uint32_t> g_next_string{1};
std::atomic<uint64_t> g_string_overflow{0};

inline uint64_t hash_bytes(const char* text, size_t length) {
  uint64_t h = 0xcbf29ce484222325ull ^ length;
  for (size_t i = 0; i < length; ++i) {
    h ^= static_cast<unsigned char>(text[i]);
    h *= 0x100000001b3ull;
  }
  h ^= h >> 29;
  return h == 0 ? 1 : h;
}

// ------------------------------------------------------------------ thread buffers
enum BufferState : uint32_t { kInUse = 0, kRetired = 1, kFree = 2 };

struct ThreadBuffer {
  // The producer's line: what record_slow reads, so the collector's writes to tail do not
  // evict it.
  alignas(64) std::atomic<uint64_t> head{0};  // producer
  uint64_t cached_tail = 0;                   // producer's view of tail
  std::atomic<uint64_t> dropped{0};
  uint32_t mask = 0;
  HostEvent* events = nullptr;
  alignas(64) std::atomic<uint64_t> tail{0};  // collector
  std::atomic<uint32_t> state{kInUse};
  std::atomic<uint32_t> tid{0};
  bool populated = false;  // collector-only: every page of events is mapped
  ThreadBuffer* next = nullptr;
  // Collector-only: open push/pop ranges for live stats.
  static constexpr int kStackDepth = 64;
  uint32_t stack_name[kStackDepth];
  uint32_t stack_domain[kStackDepth];
  uint64_t stack_t0[kStackDepth];
  int depth = 0;
  bool comm_named = false;
};
std::atomic<ThreadBuffer*> g_buffers{nullptr};
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14; older kernels answer EINVAL
#endif
// Bytes of a new thread buffer mapped on the thread's first event (the rest by the collector).
constexpr size_t kEagerBytes = 16 * 1024;
pthread_key_t g_thread_key;
thread_local ThreadBuffer* tls_buffer __attribute__((tls_model("initial-exec"))) = nullptr;
thread_local uint32_t tls_tid __attribute__((tls_model("initial-exec"))) = 0;

// ------------------------------------------------------------------ shared state (g_lock)
pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t g_wake = PTHREAD_COND_INITIALIZER;
prism_raw_event* g_ring = nullptr;
uint64_t g_ring_capacity = 0;
uint64_t g_ring_write = 0;     // total events ever appended
uint64_t g_capture_begin = 0;  // ring index where the current capture starts
uint64_t g_capture_start_ns = 0;
uint64_t g_capture_deadline_ns = 0;  // 0 = until stop
bool g_capture_ever = false;
uint64_t g_dropped_window = 0;
uint64_t g_dropped_gpu = 0;
uint32_t g_activities = 0;
char g_cupti_state[160] = "off";

struct NameStats {
  uint64_t count;
  uint64_t total_ns;
  uint64_t max_ns;
};
NameStats* g_name_stats = nullptr;   // indexed by string id
int16_t* g_stage_of_name = nullptr;  // -2 unknown, -1 no rule, else rule index
control::StageRuleSet* g_rules = nullptr;

struct OpenRange {
  uint64_t id;
  uint64_t t0;
  uint32_t name;
};
constexpr uint32_t kOpenRanges = 4096;
OpenRange* g_open_ranges = nullptr;

struct ThreadName {
  uint32_t tid;
  uint32_t name;
};
constexpr uint32_t kMaxThreadNames = 4096;
ThreadName g_thread_names[kMaxThreadNames];
uint32_t g_thread_name_count = 0;
std::atomic_flag g_thread_name_lock = ATOMIC_FLAG_INIT;

constexpr uint32_t kMaxInfo = 32;
char g_info[kMaxInfo][256];
uint32_t g_info_count = 0;

// Output file (PRISM_PROBE_OUTPUT): streamed by the collector.
int g_out_fd = -1;
bool g_out_failed = false;
uint64_t g_out_ring_index = 0;
uint32_t g_out_strings = 1;
uint32_t g_out_thread_names = 0;
uint32_t g_out_info = 0;
uint64_t g_out_events = 0;

std::atomic<bool> g_initialized{false};
pthread_once_t g_init_once = PTHREAD_ONCE_INIT;
pthread_t g_collector;
bool g_collector_running = false;
bool g_stop_collector = false;
pid_t g_init_pid = 0;
bool g_in_child = false;
std::atomic<uint64_t> g_range_ids{1};

// ------------------------------------------------------------------ helpers
void lock_names() {
  while (g_thread_name_lock.test_and_set(std::memory_order_acquire)) {
  }
}
void unlock_names() {
  g_thread_name_lock.clear(std::memory_order_release);
}

void buffer_thread_exit(void* value) {
  auto* buffer = static_cast<ThreadBuffer*>(value);
  if (buffer != nullptr) buffer->state.store(kRetired, std::memory_order_release);
  tls_buffer = nullptr;
}

ThreadBuffer* acquire_buffer() {
  if (!g_initialized.load(std::memory_order_acquire)) return nullptr;
  const uint32_t tid = current_tid();
  for (ThreadBuffer* b = g_buffers.load(std::memory_order_acquire); b != nullptr; b = b->next) {
    uint32_t expected = kFree;
    if (b->state.compare_exchange_strong(expected, kInUse, std::memory_order_acq_rel)) {
      b->tid.store(tid, std::memory_order_release);
      b->comm_named = false;
      pthread_setspecific(g_thread_key, b);
      return b;
    }
  }
  auto* b = static_cast<ThreadBuffer*>(calloc(1, sizeof(ThreadBuffer)));
  if (b == nullptr) return nullptr;
  new (b) ThreadBuffer();
  // A page fault on the first write to a page would land inside the host's range and inflate
  // it; mapping the whole ring here would stall the thread's first event instead. So the first
  // kEagerBytes are touched now and the collector populates the rest (populate_buffer).
  const size_t bytes = g_config.buffer_events * sizeof(HostEvent);
  void* events = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  b->events = events == MAP_FAILED ? nullptr : static_cast<HostEvent*>(events);
  if (b->events != nullptr) memset(b->events, 0, bytes < kEagerBytes ? bytes : kEagerBytes);
  if (b->events == nullptr) {
    free(b);
    return nullptr;
  }
  b->mask = g_config.buffer_events - 1;
  b->tid.store(tid, std::memory_order_release);
  ThreadBuffer* head = g_buffers.load(std::memory_order_acquire);
  do {
    b->next = head;
  } while (!g_buffers.compare_exchange_weak(head, b, std::memory_order_acq_rel));
  pthread_setspecific(g_thread_key, b);
  return b;
}

void append_ring(const prism_raw_event& event, uint64_t now_ns) {
  if (g_ring == nullptr) return;
  prism_raw_event& slot = g_ring[g_ring_write % g_ring_capacity];
  if (g_ring_write >= g_ring_capacity && slot.t0 + g_config.window_ns > now_ns &&
      g_ring_write - g_ring_capacity >= g_capture_begin) {
    ++g_dropped_window;  // the ring is too small for the window: a real loss
  }
  slot = event;
  ++g_ring_write;
}

void stats_add(uint32_t name, uint64_t duration) {
  if (g_name_stats == nullptr || name == 0 || name >= kMaxStrings) return;
  NameStats& s = g_name_stats[name];
  ++s.count;
  s.total_ns += duration;
  if (duration > s.max_ns) s.max_ns = duration;
}

void stats_observe(ThreadBuffer* b, const prism_raw_event& e) {
  switch (e.kind) {
    case PRISM_EV_PUSH:
      if (b->depth < ThreadBuffer::kStackDepth) {
        b->stack_name[b->depth] = e.name;
        b->stack_domain[b->depth] = e.corr;
        b->stack_t0[b->depth] = e.t0;
      }
      ++b->depth;
      break;
    case PRISM_EV_POP: {
      if (b->depth == 0) break;  // pushed before the capture began
      int top = b->depth - 1;
      if (top < ThreadBuffer::kStackDepth) {
        for (int i = top; i >= 0; --i) {
          if (b->stack_domain[i] == e.corr) {
            stats_add(b->stack_name[i], e.t0 - b->stack_t0[i]);
            for (int k = i; k < top; ++k) {
              b->stack_name[k] = b->stack_name[k + 1];
              b->stack_domain[k] = b->stack_domain[k + 1];
              b->stack_t0[k] = b->stack_t0[k + 1];
            }
            break;
          }
        }
      }
      --b->depth;
      break;
    }
    case PRISM_EV_RANGE_START: {
      if (g_open_ranges == nullptr) break;
      for (uint32_t probe = 0; probe < 16; ++probe) {
        OpenRange& r = g_open_ranges[(e.arg + probe) % kOpenRanges];
        if (r.id == 0) {
          r = OpenRange{e.arg, e.t0, e.name};
          break;
        }
      }
      break;
    }
    case PRISM_EV_RANGE_END: {
      if (g_open_ranges == nullptr) break;
      for (uint32_t probe = 0; probe < 16; ++probe) {
        OpenRange& r = g_open_ranges[(e.arg + probe) % kOpenRanges];
        if (r.id == e.arg) {
          stats_add(r.name, e.t0 - r.t0);
          r.id = 0;
          break;
        }
      }
      break;
    }
    default:
      break;
  }
}

void name_from_comm(ThreadBuffer* b) {
  b->comm_named = true;
  const uint32_t tid = b->tid.load(std::memory_order_acquire);
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/task/%u/comm", tid);
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  char comm[32] = {};
  const ssize_t n = read(fd, comm, sizeof(comm) - 1);
  close(fd);
  if (n <= 0) return;
  size_t length = static_cast<size_t>(n);
  while (length > 0 && (comm[length - 1] == '\n' || comm[length - 1] == '\0')) --length;
  const uint32_t name = intern_n(comm, length);
  lock_names();
  bool known = false;
  for (uint32_t i = 0; i < g_thread_name_count; ++i) known |= g_thread_names[i].tid == tid;
  unlock_names();
  if (!known) name_thread(tid, name);
}

// Maps the pages of a new thread buffer that acquire_buffer left to us, while the producer
// may be writing its first events: MADV_POPULATE_WRITE (Linux 5.14) keeps the contents; older
// kernels get an atomic add of zero per page, which keeps them too.
void populate_buffer(ThreadBuffer* b) {
  const size_t bytes = (static_cast<size_t>(b->mask) + 1) * sizeof(HostEvent);
  b->populated = true;
  if (bytes <= kEagerBytes) return;
  char* rest = reinterpret_cast<char*>(b->events) + kEagerBytes;
  if (madvise(rest, bytes - kEagerBytes, MADV_POPULATE_WRITE) == 0) return;
  const long page = sysconf(_SC_PAGESIZE) > 0 ? sysconf(_SC_PAGESIZE) : 4096;
  for (size_t offset = 0; offset < bytes - kEagerBytes; offset += static_cast<size_t>(page)) {
    __atomic_fetch_add(reinterpret_cast<uint64_t*>(rest + offset), 0, __ATOMIC_RELAXED);
  }
}

// Moves every thread's pending events into the ring. Caller holds g_lock.
void drain_locked(uint64_t now_ns) {
  // The collector calibrates the TSC 20 ms after load; a snapshot, stats or live poll that drains
  // earlier measures the rate over the span so far (at least 1 ms) rather than converting ticks
  // with no rate at all (which stamped early events tens of ms late, then time jumped back).
  // Only when there is something to convert: agent_start at load runs on the host thread.
  if (g_hot.use_tsc && !g_calibration.ready) {
    bool pending = false;
    for (ThreadBuffer* b = g_buffers.load(std::memory_order_acquire); b != nullptr; b = b->next)
      pending |= b->head.load(std::memory_order_acquire) != b->tail.load(std::memory_order_relaxed);
    if (!pending) return;
    calibrate(1000000);
  }
  for (ThreadBuffer* b = g_buffers.load(std::memory_order_acquire); b != nullptr; b = b->next) {
    const uint32_t state = b->state.load(std::memory_order_acquire);
    if (state == kFree) continue;
    if (PRISM_UNLIKELY(!b->populated)) populate_buffer(b);
    const uint64_t head = b->head.load(std::memory_order_acquire);
    uint64_t tail = b->tail.load(std::memory_order_relaxed);
    if (head != tail && !b->comm_named) name_from_comm(b);
    const uint32_t tid = b->tid.load(std::memory_order_acquire);
    for (; tail != head; ++tail) {
      const HostEvent& h = b->events[tail & b->mask];
      prism_raw_event e{};
      e.t0 = ticks_to_ns(h.ticks);
      e.arg = h.arg;
      e.name = h.name;
      e.tid = tid;
      e.corr = h.domain;
      e.kind = h.kind;
      append_ring(e, now_ns);
      stats_observe(b, e);
    }
    b->tail.store(tail, std::memory_order_release);
    if (state == kRetired && b->head.load(std::memory_order_acquire) == tail) {
      b->depth = 0;
      b->state.store(kFree, std::memory_order_release);
    }
  }
}

// ---- raw format writing, shared by the output file and snapshots.
struct Sink {
  // Either a file descriptor or a growable memory buffer.
  int fd = -1;
  char* data = nullptr;
  size_t size = 0;
  size_t capacity = 0;
  bool failed = false;

  void write_bytes(const void* bytes, size_t n) {
    if (failed || n == 0) return;
    if (fd >= 0) {
      const char* p = static_cast<const char*>(bytes);
      while (n > 0) {
        const ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
          failed = true;
          return;
        }
        p += w;
        n -= static_cast<size_t>(w);
      }
      return;
    }
    if (size + n > capacity) {
      size_t grow = capacity == 0 ? 65536 : capacity * 2;
      while (grow < size + n) grow *= 2;
      char* bigger = static_cast<char*>(realloc(data, grow));
      if (bigger == nullptr) {
        failed = true;
        return;
      }
      data = bigger;
      capacity = grow;
    }
    memcpy(data + size, bytes, n);
    size += n;
  }
  void record(uint32_t type, const void* payload, uint32_t bytes) {
    const uint32_t head[2] = {type, bytes};
    write_bytes(head, sizeof(head));
    write_bytes(payload, bytes);
  }
  void string(uint32_t id) {
    const char* text = string_of(id);
    if (text == nullptr) return;
    const uint32_t length = static_cast<uint32_t>(strlen(text));
    const uint32_t head[3] = {PRISM_RAW_STRING, length + 4, id};
    write_bytes(head, sizeof(head));
    write_bytes(text, length);
  }
  // The process name is read from /proc for snapshots and the output file; the live path
  // (hundreds of polls a second) reuses the last one read, as the client takes it only once.
  void header(uint64_t start_ns, bool read_name = true) {
    static char last_name[sizeof(prism_raw_header::process_name)] = {};
    prism_raw_header h{};
    memcpy(h.magic, PRISM_RAW_MAGIC, 8);
    h.version = PRISM_RAW_VERSION;
    h.pid = static_cast<uint32_t>(getpid());
    h.start_ns = start_ns;
    if (read_name || last_name[0] == '\0') {
      const int fd_comm = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
      if (fd_comm >= 0) {
        const ssize_t n = read(fd_comm, h.process_name, sizeof(h.process_name) - 1);
        close(fd_comm);
        if (n > 0 && h.process_name[n - 1] == '\n') h.process_name[n - 1] = '\0';
        memcpy(last_name, h.process_name, sizeof(last_name));
      }
    } else {
      memcpy(h.process_name, last_name, sizeof(last_name));
    }
    write_bytes(&h, sizeof(h));
  }
  void events(const prism_raw_event* first, size_t count) {
    constexpr size_t kChunk = 8192;
    while (count > 0) {
      const size_t n = count < kChunk ? count : kChunk;
      record(PRISM_RAW_EVENTS, first, static_cast<uint32_t>(n * sizeof(prism_raw_event)));
      first += n;
      count -= n;
    }
  }
  void end(uint64_t events_written) {
    prism_raw_end e{};
    e.events = events_written;
    uint64_t host = 0;
    for (ThreadBuffer* b = g_buffers.load(std::memory_order_acquire); b != nullptr; b = b->next) {
      host += b->dropped.load(std::memory_order_relaxed);
    }
    e.dropped_host = host;
    e.dropped_gpu = g_dropped_gpu;
    e.dropped_window = g_dropped_window;
    record(PRISM_RAW_END, &e, sizeof(e));
  }
};

// Writes ring[from, to) to sink, in at most two contiguous pieces. Caller holds g_lock.
void write_ring_range(Sink& sink, uint64_t from, uint64_t to) {
  if (g_ring == nullptr || from >= to) return;
  while (from < to) {
    const uint64_t offset = from % g_ring_capacity;
    uint64_t n = to - from;
    if (offset + n > g_ring_capacity) n = g_ring_capacity - offset;
    sink.events(g_ring + offset, n);
    from += n;
  }
}

void write_names_since(Sink& sink, uint32_t* strings_done, uint32_t* threads_done,
                       uint32_t* info_done) {
  const uint32_t strings = string_count();
  for (uint32_t id = *strings_done; id < strings; ++id) sink.string(id);
  *strings_done = strings;
  lock_names();
  const uint32_t names = g_thread_name_count;
  ThreadName copy[64];
  while (*threads_done < names) {
    uint32_t n = 0;
    while (n < 64 && *threads_done < names) copy[n++] = g_thread_names[(*threads_done)++];
    unlock_names();
    for (uint32_t i = 0; i < n; ++i)
      sink.record(PRISM_RAW_THREAD_NAME, &copy[i], sizeof(ThreadName));
    lock_names();
  }
  unlock_names();
  for (uint32_t i = *info_done; i < g_info_count; ++i) {
    sink.record(PRISM_RAW_INFO, g_info[i], static_cast<uint32_t>(strlen(g_info[i])));
  }
  *info_done = g_info_count;
}

// Streams what is new to the output file. Caller holds g_lock.
void flush_output_locked(bool closing) {
  if (g_config.output_dir[0] == '\0' || g_out_failed || g_in_child) return;
  if (g_out_fd < 0) {
    if (g_ring_write == 0 && !closing) return;  // create the file only once there is data
    char path[640];
    snprintf(path, sizeof(path), "%s/probe-%d.praw", g_config.output_dir,
             static_cast<int>(getpid()));
    g_out_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (g_out_fd < 0) {
      g_out_failed = true;
      say("cannot write %s: %s; the trace is kept in memory only", path, strerror(errno));
      return;
    }
    Sink header;
    header.fd = g_out_fd;
    header.header(g_capture_start_ns);
  }
  Sink sink;
  sink.fd = g_out_fd;
  write_names_since(sink, &g_out_strings, &g_out_thread_names, &g_out_info);
  uint64_t from = g_out_ring_index;
  if (g_ring_write > g_ring_capacity && from < g_ring_write - g_ring_capacity) {
    g_dropped_window += g_ring_write - g_ring_capacity - from;
    from = g_ring_write - g_ring_capacity;
  }
  write_ring_range(sink, from, g_ring_write);
  g_out_events += g_ring_write - from;
  g_out_ring_index = g_ring_write;
  if (closing) sink.end(g_out_events);
  if (sink.failed) {
    g_out_failed = true;
    say("writing the trace file failed: %s", strerror(errno));
  }
}

bool ensure_capture_memory_locked() {
  if (g_ring == nullptr) {
    g_ring = static_cast<prism_raw_event*>(calloc(g_config.ring_events, sizeof(prism_raw_event)));
    if (g_ring == nullptr) return false;
    g_ring_capacity = g_config.ring_events;
  }
  if (g_name_stats == nullptr) {
    g_name_stats = static_cast<NameStats*>(calloc(kMaxStrings, sizeof(NameStats)));
    g_stage_of_name = static_cast<int16_t*>(malloc(kMaxStrings * sizeof(int16_t)));
    g_open_ranges = static_cast<OpenRange*>(calloc(kOpenRanges, sizeof(OpenRange)));
    if (g_name_stats == nullptr || g_stage_of_name == nullptr || g_open_ranges == nullptr)
      return false;
    for (uint32_t i = 0; i < kMaxStrings; ++i) g_stage_of_name[i] = -2;
  }
  return true;
}

void stop_capture_locked(const char* why) {
  g_hot.active.store(false, std::memory_order_release);
  if (g_hot.gpu_active.load(std::memory_order_acquire)) {
    g_hot.gpu_active.store(false, std::memory_order_release);
    pthread_mutex_unlock(&g_lock);
    cupti_flush();
    cupti_stop();
    pthread_mutex_lock(&g_lock);
  }
  (void)why;
}

void* collector_main(void*) {
  // Calibrate the TSC against CLOCK_MONOTONIC off the host thread, over 20 ms (a drain before
  // then calibrated over a shorter span: this replaces it).
  if (g_hot.use_tsc) {
    timespec pause{0, 20 * 1000 * 1000};
    nanosleep(&pause, nullptr);
    pthread_mutex_lock(&g_lock);
    if (g_calibration.span_ns < 20 * 1000 * 1000) calibrate(0);
    pthread_mutex_unlock(&g_lock);
  }
  pthread_mutex_lock(&g_lock);
  while (!g_stop_collector) {
    timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_nsec += static_cast<long>(g_config.drain_ms) * 1000000L;
    while (deadline.tv_nsec >= 1000000000L) {
      deadline.tv_nsec -= 1000000000L;
      ++deadline.tv_sec;
    }
    pthread_cond_timedwait(&g_wake, &g_lock, &deadline);
    if (g_stop_collector) break;
    const uint64_t now = monotonic_ns();
    if (g_hot.use_tsc && now - g_calibration.base_ns > 4 * g_calibration.span_ns) {
      // A longer baseline gives a better rate; refine rarely so the mapping stays stable.
      calibrate(0);
    }
    drain_locked(now);
    if (g_hot.active.load(std::memory_order_relaxed) && g_capture_deadline_ns != 0 &&
        now >= g_capture_deadline_ns) {
      stop_capture_locked("duration elapsed");
      drain_locked(monotonic_ns());
    }
    flush_output_locked(false);
  }
  pthread_mutex_unlock(&g_lock);
  return nullptr;
}

void on_fork_child() {
  // The child has none of our threads and shares the parent's file: stay dormant forever.
  g_in_child = true;
  g_hot.active.store(false, std::memory_order_relaxed);
  g_hot.gpu_active.store(false, std::memory_order_relaxed);
  g_collector_running = false;
  pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
  g_lock = fresh;
}

void parse_start_env(StartOptions* options) {
  options->duration_ms = env_number("PRISM_PROBE_DURATION_MS", 0, 0, control::kMaxDurationMs);
  const char* activities = getenv("PRISM_PROBE_ACTIVITIES");
  options->activities = control::kActivityNvtx;
  if (activities != nullptr) {
    if (strstr(activities, "gpu") != nullptr) options->activities |= control::kActivityGpu;
  } else if (g_cuda_injected) {
    options->activities |= control::kActivityGpu;
  }
}

void init_once() {
  g_init_pid = getpid();
  g_config.quiet = getenv("PRISM_PROBE_QUIET") != nullptr;
  g_config.buffer_events =
      round_up_pow2(env_number("PRISM_PROBE_BUFFER_EVENTS", 16384, 16, 1u << 22));
  g_config.drain_ms = static_cast<uint32_t>(env_number("PRISM_PROBE_DRAIN_MS", 10, 1, 1000));
  g_config.ring_events = env_number("PRISM_PROBE_RING_EVENTS", 1u << 19, 1024, 1ull << 27);
  g_config.window_ns = env_number("PRISM_PROBE_WINDOW_S", 30, 1, 86400) * 1000000000ull;
  if (const char* out = getenv("PRISM_PROBE_OUTPUT"); out != nullptr && *out != '\0') {
    snprintf(g_config.output_dir, sizeof(g_config.output_dir), "%s", out);
  }
  g_slots = static_cast<StringSlot*>(calloc(kStringSlots, sizeof(StringSlot)));
  g_strings = static_cast<std::atomic<const char*>*>(calloc(kMaxStrings, sizeof(const char*)));
  if (g_slots == nullptr || g_strings == nullptr) {
    say("out of memory at start; the agent stays off");
    return;
  }
  if (pthread_key_create(&g_thread_key, buffer_thread_exit) != 0) return;
  g_hot.use_tsc = tsc_is_usable();
  sample_pair(&g_calibration.base_ticks, &g_calibration.base_ns);
  if (!g_hot.use_tsc) g_calibration.ready = true;
  pthread_atfork(nullptr, nullptr, on_fork_child);
  g_initialized.store(true, std::memory_order_release);

  if (const char* rules_path = getenv("PRISM_PROBE_RULES"); rules_path != nullptr && *rules_path) {
    const int fd = open(rules_path, O_RDONLY | O_CLOEXEC);
    char* text = static_cast<char*>(malloc(control::kMaxRulesBytes));
    ssize_t n = -1;
    if (fd >= 0 && text != nullptr) n = read(fd, text, control::kMaxRulesBytes);
    if (fd >= 0) close(fd);
    char error[160];
    if (n < 0) {
      say("cannot read PRISM_PROBE_RULES=%s", rules_path);
    } else if (!agent_load_rules(text, static_cast<size_t>(n), error, sizeof(error))) {
      say("PRISM_PROBE_RULES=%s: %s", rules_path, error);
    }
    free(text);
  }

  sigset_t all;
  sigset_t previous;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &previous);  // our threads never take the host's signals
  g_collector_running = pthread_create(&g_collector, nullptr, collector_main, nullptr) == 0;
  if (!g_collector_running) {
    // Nobody will calibrate the TSC: stamp with CLOCK_MONOTONIC (no event is recorded yet).
    g_hot.use_tsc = false;
    g_calibration.ready = true;
  }
  char why[256] = {};
  if (!control_server_start(why, sizeof(why))) say("control socket off: %s", why);
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  if (g_collector_running) pthread_setname_np(g_collector, "prism-collect");

  if (const char* start = getenv("PRISM_PROBE_START");
      start != nullptr && strcmp(start, "1") == 0) {
    StartOptions options;
    parse_start_env(&options);
    agent_start(options);
  }
}

__attribute__((destructor)) void agent_shutdown() {
  if (!g_initialized.load(std::memory_order_acquire) || g_in_child || getpid() != g_init_pid)
    return;
  control_server_stop();
  const bool was_active = g_hot.active.load(std::memory_order_acquire);
  pthread_mutex_lock(&g_lock);
  if (was_active) stop_capture_locked("process exit");
  g_stop_collector = true;
  pthread_cond_broadcast(&g_wake);
  pthread_mutex_unlock(&g_lock);
  if (g_collector_running) pthread_join(g_collector, nullptr);
  g_collector_running = false;
  pthread_mutex_lock(&g_lock);
  drain_locked(monotonic_ns());
  if (g_out_fd >= 0 || (g_config.output_dir[0] != '\0' && g_ring_write > 0)) {
    flush_output_locked(true);
    if (g_out_fd >= 0) {
      fsync(g_out_fd);
      close(g_out_fd);
      g_out_fd = -1;
    }
  }
  pthread_mutex_unlock(&g_lock);
}

}  // namespace

// ------------------------------------------------------------------ public (internal) API
uint64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

void say(const char* format, ...) {
  if (g_config.quiet) return;
  char line[512];
  int used = snprintf(line, sizeof(line), "prism-probe[%d]: ", static_cast<int>(getpid()));
  if (used < 0) return;
  va_list args;
  va_start(args, format);
  vsnprintf(line + used, sizeof(line) - static_cast<size_t>(used) - 1, format, args);
  va_end(args);
  size_t length = strlen(line);
  line[length++] = '\n';
  ssize_t ignored = ::write(STDERR_FILENO, line, length);
  (void)ignored;
}

uint32_t intern_n(const char* text, size_t length) {
  if (text == nullptr || g_slots == nullptr) return 0;
  if (length > kMaxNameBytes) length = kMaxNameBytes;
  const uint64_t h = hash_bytes(text, length);
  for (uint32_t probe = 0; probe < 64; ++probe) {
    StringSlot& slot = g_slots[(h + probe) & (kStringSlots - 1)];
    uint64_t seen = slot.hash.load(std::memory_order_acquire);
    if (seen == 0) {
      if (slot.hash.compare_exchange_strong(seen, h, std::memory_order_acq_rel)) {
        const uint32_t id = g_next_string.fetch_add(1, std::memory_order_relaxed);
        if (id >= kMaxStrings) {
          g_string_overflow.fetch_add(1, std::memory_order_relaxed);
          slot.id.store(static_cast<uint32_t>(-1), std::memory_order_release);
          return 0;
        }
        char* copy = static_cast<char*>(malloc(length + 1));
        if (copy != nullptr) {
          memcpy(copy, text, length);
          copy[length] = '\0';
        }
        g_strings[id].store(copy, std::memory_order_release);
        slot.id.store(id, std::memory_order_release);
        return id;
      }
    }
    if (seen == h) {
      uint32_t id;
      while ((id = slot.id.load(std::memory_order_acquire)) == 0) {
      }
      return id == static_cast<uint32_t>(-1) ? 0 : id;
    }
  }
  g_string_overflow.fetch_add(1, std::memory_order_relaxed);
  return 0;
}

uint32_t intern(const char* text) {
  return text == nullptr ? 0 : intern_n(text, strnlen(text, kMaxNameBytes));
}

uint32_t intern_wide(const wchar_t* text) {
  if (text == nullptr) return 0;
  char narrow[256];
  size_t n = 0;
  for (; n < sizeof(narrow) - 1 && text[n] != 0; ++n) {
    const wchar_t c = text[n];
    narrow[n] = (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  }
  return intern_n(narrow, n);
}

const char* string_of(uint32_t id) {
  if (g_strings == nullptr || id == 0 || id >= kMaxStrings) return nullptr;
  return g_strings[id].load(std::memory_order_acquire);
}

uint32_t string_count() {
  const uint32_t n = g_next_string.load(std::memory_order_acquire);
  return n > kMaxStrings ? kMaxStrings : n;
}

uint32_t current_tid() {
  if (PRISM_UNLIKELY(tls_tid == 0)) tls_tid = static_cast<uint32_t>(syscall(SYS_gettid));
  return tls_tid;
}

uint64_t next_range_id() {
  return g_range_ids.fetch_add(1, std::memory_order_relaxed);
}

void record_slow(uint16_t kind, uint32_t name, uint32_t domain, uint64_t arg) {
  // Ends are stamped on entry and beginnings as late as possible, so the agent's own work
  // (a thread's first buffer, the ring check) stays outside the ranges it measures.
  const bool opens = kind == PRISM_EV_PUSH || kind == PRISM_EV_RANGE_START;
  uint64_t ticks = opens ? 0 : now_ticks();
  ThreadBuffer* b = tls_buffer;
  if (PRISM_UNLIKELY(b == nullptr)) {
    b = acquire_buffer();
    if (b == nullptr) return;
    tls_buffer = b;
  }
  const uint64_t head = b->head.load(std::memory_order_relaxed);
  if (PRISM_UNLIKELY(head - b->cached_tail > b->mask)) {
    b->cached_tail = b->tail.load(std::memory_order_acquire);
    if (head - b->cached_tail > b->mask) {
      b->dropped.store(b->dropped.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      return;
    }
  }
  HostEvent& e = b->events[head & b->mask];
  if (opens) ticks = now_ticks();
  e.ticks = ticks;
  e.arg = arg;
  e.name = name;
  e.kind = kind;
  e.domain = domain;
  b->head.store(head + 1, std::memory_order_release);
}

void name_thread(uint32_t tid, uint32_t name) {
  lock_names();
  for (uint32_t i = 0; i < g_thread_name_count; ++i) {
    if (g_thread_names[i].tid == tid && g_thread_names[i].name == name) {
      unlock_names();
      return;
    }
  }
  if (g_thread_name_count < kMaxThreadNames) g_thread_names[g_thread_name_count++] = {tid, name};
  unlock_names();
}

void add_info(const char* key, const char* value) {
  pthread_mutex_lock(&g_lock);
  for (uint32_t i = 0; i < g_info_count; ++i) {
    const size_t key_length = strlen(key);
    if (strncmp(g_info[i], key, key_length) == 0 && g_info[i][key_length] == '=') {
      pthread_mutex_unlock(&g_lock);
      return;  // first word wins: INFO records are append-only in the stream
    }
  }
  if (g_info_count < kMaxInfo)
    snprintf(g_info[g_info_count++], sizeof(g_info[0]), "%s=%s", key, value);
  pthread_mutex_unlock(&g_lock);
}

void submit_gpu_events(const prism_raw_event* events, size_t count, uint64_t dropped) {
  if (g_in_child) return;
  pthread_mutex_lock(&g_lock);
  g_dropped_gpu += dropped;
  const uint64_t now = monotonic_ns();
  for (size_t i = 0; i < count; ++i) append_ring(events[i], now);
  pthread_mutex_unlock(&g_lock);
}

void agent_init(const char* how) {
  (void)how;
  pthread_once(&g_init_once, init_once);
}

void agent_start(const StartOptions& options) {
  if (!g_initialized.load(std::memory_order_acquire) || g_in_child) return;
  pthread_mutex_lock(&g_lock);
  if (!ensure_capture_memory_locked()) {
    pthread_mutex_unlock(&g_lock);
    say("cannot allocate the flight recorder; staying dormant");
    return;
  }
  const bool restarting = g_hot.active.load(std::memory_order_acquire);
  drain_locked(monotonic_ns());  // whatever came before belongs to no capture of ours
  if (!restarting || !g_capture_ever) {
    g_capture_begin = g_ring_write;
    g_capture_start_ns = monotonic_ns();
    memset(g_name_stats, 0, kMaxStrings * sizeof(NameStats));
    memset(g_open_ranges, 0, kOpenRanges * sizeof(OpenRange));
    for (ThreadBuffer* b = g_buffers.load(std::memory_order_acquire); b != nullptr; b = b->next)
      b->depth = 0;
  }
  g_capture_ever = true;
  g_capture_deadline_ns =
      options.duration_ms == 0 ? 0 : monotonic_ns() + options.duration_ms * 1000000ull;
  g_activities = options.activities;
  const bool want_gpu = (options.activities & control::kActivityGpu) != 0;
  pthread_mutex_unlock(&g_lock);

  if (want_gpu && !g_hot.gpu_active.load(std::memory_order_acquire)) {
    char why[160] = {};
    if (cupti_start(why, sizeof(why))) {
      g_hot.gpu_active.store(true, std::memory_order_release);
      snprintf(g_cupti_state, sizeof(g_cupti_state), "on");
    } else {
      static std::atomic<bool> said{false};
      if (!said.exchange(true)) say("GPU activity off, recording NVTX ranges only: %s", why);
      snprintf(g_cupti_state, sizeof(g_cupti_state), "unavailable");
      add_info("cupti", why);
    }
  }
  g_hot.active.store(true, std::memory_order_release);
}

void agent_stop() {
  if (!g_initialized.load(std::memory_order_acquire)) return;
  pthread_mutex_lock(&g_lock);
  if (g_hot.active.load(std::memory_order_acquire)) stop_capture_locked("stop");
  drain_locked(monotonic_ns());
  pthread_mutex_unlock(&g_lock);
}

size_t agent_status(char* buffer, size_t size) {
  pthread_mutex_lock(&g_lock);
  uint64_t dropped = 0;
  uint32_t threads = 0;
  for (ThreadBuffer* b = g_buffers.load(std::memory_order_acquire); b != nullptr; b = b->next) {
    dropped += b->dropped.load(std::memory_order_relaxed);
    ++threads;
  }
  const bool active = g_hot.active.load(std::memory_order_acquire);
  const uint64_t captured = g_capture_ever ? g_ring_write - g_capture_begin : 0;
  const uint64_t elapsed = g_capture_ever ? monotonic_ns() - g_capture_start_ns : 0;
  const int n = snprintf(
      buffer, size,
      "ok status version=%d pid=%d active=%d elapsed_ns=%llu events=%llu dropped=%llu "
      "dropped_gpu=%llu dropped_window=%llu threads=%u strings=%u cupti=%s rules=%u "
      "window_s=%llu\n",
      control::kProtocolVersion, static_cast<int>(getpid()), active ? 1 : 0,
      static_cast<unsigned long long>(elapsed), static_cast<unsigned long long>(captured),
      static_cast<unsigned long long>(dropped), static_cast<unsigned long long>(g_dropped_gpu),
      static_cast<unsigned long long>(g_dropped_window), threads, string_count() - 1, g_cupti_state,
      g_rules == nullptr ? 0u : g_rules->count,
      static_cast<unsigned long long>(g_config.window_ns / 1000000000ull));
  pthread_mutex_unlock(&g_lock);
  return n < 0 ? 0 : (static_cast<size_t>(n) < size ? static_cast<size_t>(n) : size - 1);
}

size_t agent_stats(char* buffer, size_t size, size_t* rows) {
  *rows = 0;
  size_t used = 0;
  pthread_mutex_lock(&g_lock);
  drain_locked(monotonic_ns());
  if (g_name_stats == nullptr) {
    pthread_mutex_unlock(&g_lock);
    return 0;
  }
  // With rules: one row per stage (plus "other"); without: one row per range name.
  struct Row {
    const char* name;
    NameStats s;
  };
  constexpr size_t kMaxRows = 512;
  static Row table[kMaxRows];
  size_t count = 0;
  const uint32_t strings = string_count();
  for (uint32_t id = 1; id < strings; ++id) {
    const NameStats& s = g_name_stats[id];
    if (s.count == 0) continue;
    const char* row_name = string_of(id);
    if (row_name == nullptr) continue;
    if (g_rules != nullptr) {
      if (g_stage_of_name[id] == -2) {
        g_stage_of_name[id] = static_cast<int16_t>(
            control::match_rule(*g_rules, control::RuleTarget::kRange, row_name, strlen(row_name)));
        if (g_stage_of_name[id] < 0 &&
            control::match_rule(*g_rules, control::RuleTarget::kIteration, row_name,
                                strlen(row_name)) >= 0) {
          g_stage_of_name[id] = -3;
        }
      }
      const int16_t rule = g_stage_of_name[id];
      row_name = rule >= 0 ? g_rules->rules[rule].stage : (rule == -3 ? "iteration" : "other");
    }
    size_t k = 0;
    while (k < count && strcmp(table[k].name, row_name) != 0) ++k;
    if (k == count) {
      if (count == kMaxRows) continue;
      table[count++] = Row{row_name, NameStats{0, 0, 0}};
    }
    table[k].s.count += s.count;
    table[k].s.total_ns += s.total_ns;
    if (s.max_ns > table[k].s.max_ns) table[k].s.max_ns = s.max_ns;
  }
  for (size_t k = 0; k < count; ++k) {
    const int n =
        snprintf(buffer + used, size - used, "row %s count=%llu total_ns=%llu max_ns=%llu\n",
                 table[k].name, static_cast<unsigned long long>(table[k].s.count),
                 static_cast<unsigned long long>(table[k].s.total_ns),
                 static_cast<unsigned long long>(table[k].s.max_ns));
    if (n < 0 || used + static_cast<size_t>(n) >= size) break;
    used += static_cast<size_t>(n);
    ++*rows;
  }
  pthread_mutex_unlock(&g_lock);
  return used;
}

bool agent_snapshot(char** data, size_t* size) {
  Sink sink;
  pthread_mutex_lock(&g_lock);
  drain_locked(monotonic_ns());
  sink.header(g_capture_start_ns);
  uint32_t strings = 1;
  uint32_t threads = 0;
  uint32_t info = 0;
  write_names_since(sink, &strings, &threads, &info);
  uint64_t from = g_capture_ever ? g_capture_begin : g_ring_write;
  if (g_ring_write > g_ring_capacity && from < g_ring_write - g_ring_capacity) {
    from = g_ring_write - g_ring_capacity;  // the flight recorder kept only the last part
  }
  // Keep only the window: the flight recorder's promise is "the last N seconds".
  const uint64_t now = monotonic_ns();
  while (from < g_ring_write && g_ring[from % g_ring_capacity].t0 + g_config.window_ns < now &&
         g_ring[from % g_ring_capacity].kind < PRISM_EV_KERNEL) {
    ++from;
  }
  write_ring_range(sink, from, g_ring_write);
  sink.end(g_ring_write - from);
  pthread_mutex_unlock(&g_lock);
  if (sink.failed) {
    free(sink.data);
    return false;
  }
  *data = sink.data;
  *size = sink.size;
  return true;
}

bool agent_events(EventsCursor* cursor, char** data, size_t* size) {
  Sink sink;
  pthread_mutex_lock(&g_lock);
  drain_locked(monotonic_ns());  // what the host threads recorded until now, not a period ago
  sink.header(g_capture_start_ns, false);
  uint32_t strings = cursor->strings;
  uint32_t threads = cursor->threads;
  uint32_t info = g_info_count;  // info goes with the snapshot, not the live path
  if (strings > string_count()) strings = string_count();
  lock_names();
  if (threads > g_thread_name_count) threads = g_thread_name_count;
  unlock_names();
  if (strings == 0) strings = 1;  // id 0 is "no name"
  write_names_since(sink, &strings, &threads, &info);
  // Only this capture's events; a cursor from before it (or 0) starts at its beginning.
  uint64_t from = cursor->since;
  const uint64_t first = g_capture_ever ? g_capture_begin : g_ring_write;
  if (from < first) from = first;
  if (from > g_ring_write) from = g_ring_write;
  cursor->lost = 0;
  if (g_ring_write > g_ring_capacity && from < g_ring_write - g_ring_capacity) {
    cursor->lost = g_ring_write - g_ring_capacity - from;
    from = g_ring_write - g_ring_capacity;
  }
  uint64_t to = g_ring_write;
  if (to - from > control::kMaxEventsPerReply) to = from + control::kMaxEventsPerReply;
  write_ring_range(sink, from, to);
  cursor->since = to;
  cursor->pending = g_ring_write - to;
  cursor->strings = strings;
  cursor->threads = threads;
  cursor->active = g_hot.active.load(std::memory_order_acquire);
  pthread_mutex_unlock(&g_lock);
  if (sink.failed) {
    free(sink.data);
    return false;
  }
  *data = sink.data;
  *size = sink.size;
  return true;
}

bool agent_load_rules(const char* text, size_t length, char* error, size_t error_size) {
  auto* rules = static_cast<control::StageRuleSet*>(malloc(sizeof(control::StageRuleSet)));
  if (rules == nullptr) {
    snprintf(error, error_size, "out of memory");
    return false;
  }
  new (rules) control::StageRuleSet();
  if (!control::parse_stage_rules(text, length, rules, error, error_size)) {
    free(rules);
    return false;
  }
  pthread_mutex_lock(&g_lock);
  control::StageRuleSet* old = g_rules;
  g_rules = rules;
  if (g_stage_of_name != nullptr) {
    for (uint32_t i = 0; i < kMaxStrings; ++i) g_stage_of_name[i] = -2;
  }
  pthread_mutex_unlock(&g_lock);
  free(old);
  return true;
}

}  // namespace prism::agent
