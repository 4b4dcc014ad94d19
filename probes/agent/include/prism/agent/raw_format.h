// The agent's raw trace format ("prism raw", .praw): what libprism_probe.so
// writes to PRISM_PROBE_OUTPUT and streams over the control socket for a
// snapshot. Plain C layout, little endian, no dependencies, so the agent (libc
// only) and the analysis library (which reads it) share one definition.
//
// File = header, then records. Each record is {u32 type, u32 payload_bytes,
// payload}. A file whose last record is not END was cut short (the process
// died or the capture was interrupted): readers mark such a trace partial.
#pragma once

#include <stdint.h>

#ifdef __cplusplus
namespace prism::agent {
#endif

#define PRISM_RAW_MAGIC "PRISMRAW"
#define PRISM_RAW_VERSION 1u

struct prism_raw_header {
  char magic[8];          // "PRISMRAW"
  uint32_t version;       // PRISM_RAW_VERSION
  uint32_t pid;           // traced process
  uint64_t start_ns;      // CLOCK_MONOTONIC ns when the capture began
  char process_name[48];  // from /proc/self/comm, NUL terminated
};

enum prism_raw_record_type {
  PRISM_RAW_STRING = 1,       // u32 id, then the bytes (not NUL terminated)
  PRISM_RAW_THREAD_NAME = 2,  // u32 tid, u32 string id
  PRISM_RAW_EVENTS = 3,       // n * prism_raw_event
  PRISM_RAW_INFO = 4,         // "key=value" text, one per record
  PRISM_RAW_END = 5,          // prism_raw_end: the trace was closed cleanly
};

enum prism_raw_event_kind {
  // Host (NVTX) events: instants; t1 = 0.
  PRISM_EV_PUSH = 1,         // name, corr = domain id
  PRISM_EV_POP = 2,          // corr = domain id
  PRISM_EV_RANGE_START = 3,  // name, arg = range id, corr = domain id
  PRISM_EV_RANGE_END = 4,    // arg = range id
  PRISM_EV_MARK = 5,         // name, corr = domain id
  // GPU and CUDA API activities (CUPTI): intervals [t0, t1].
  PRISM_EV_KERNEL = 16,    // name, tid = stream, device, corr = correlation id
  PRISM_EV_MEMCPY = 17,    // arg = bytes, name = copy kind
  PRISM_EV_MEMSET = 18,    // arg = bytes
  PRISM_EV_SYNC = 19,      // name = sync kind
  PRISM_EV_RUNTIME = 20,   // CUDA runtime API call: name, tid = OS thread, corr
  PRISM_EV_DRIVER = 21,    // CUDA driver API call: name, tid = OS thread, corr
  PRISM_EV_EXTERNAL = 22,  // corr = CUPTI correlation id, arg = NVTX range id (external id)
};

struct prism_raw_event {
  uint64_t t0;    // ns, CLOCK_MONOTONIC (start, or the instant)
  uint64_t t1;    // ns end for intervals, 0 for instants
  uint64_t arg;   // range id, bytes, external id
  uint32_t name;  // string id (0 = none)
  uint32_t tid;   // OS thread id for host/API events, stream id for GPU activities
  uint32_t corr;  // correlation id (GPU/API) or domain string id (host)
  uint16_t kind;  // prism_raw_event_kind
  uint16_t device;
};

struct prism_raw_end {
  uint64_t events;          // events written
  uint64_t dropped_host;    // host events lost to full per-thread buffers
  uint64_t dropped_gpu;     // CUPTI records lost (buffers or CUPTI's own count)
  uint64_t dropped_window;  // events evicted from the flight recorder before being read
};

#ifdef __cplusplus
static_assert(sizeof(prism_raw_event) == 40, "raw event layout is part of the format");
static_assert(sizeof(prism_raw_header) == 72, "raw header layout is part of the format");
}  // namespace prism::agent
#endif
