// Internal interface between the agent's parts. Everything here runs inside
// somebody else's process: libc only, no exceptions, no allocation on the hot
// path after a thread's first event, never block the host thread.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <atomic>

#include "prism/agent/raw_format.h"

#if defined(__GNUC__)
#define PRISM_LIKELY(x) __builtin_expect(!!(x), 1)
#define PRISM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define PRISM_EXPORT extern "C" __attribute__((visibility("default")))
#else
#define PRISM_LIKELY(x) (x)
#define PRISM_UNLIKELY(x) (x)
#define PRISM_EXPORT extern "C"
#endif

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

namespace prism::agent {

// What the hot path reads, on one cache line so that a hook called after the host has
// evicted the agent from its caches (a long range) pays one miss before its timestamp, not three.
struct alignas(64) HotFlags {
  std::atomic<bool> active{false};      // the one flag a dormant hook reads; dormant: false
  std::atomic<bool> gpu_active{false};  // CUPTI records; pushes also push an external id
  bool use_tsc = false;                 // stamp with rdtsc (invariant TSC) or CLOCK_MONOTONIC
};
extern HotFlags g_hot;

// ---- clock: raw ticks on the hot path, converted to CLOCK_MONOTONIC ns by the collector.
uint64_t monotonic_ns();
inline uint64_t now_ticks() {
#if defined(__x86_64__)
  if (PRISM_LIKELY(g_hot.use_tsc)) return __rdtsc();
#endif
  return monotonic_ns();
}

// ---- strings: interned names; ids start at 1, 0 means "no name".
uint32_t intern(const char* text);
uint32_t intern_n(const char* text, size_t length);
uint32_t intern_wide(const wchar_t* text);
const char* string_of(uint32_t id);  // nullptr when unknown
uint32_t string_count();             // highest id + 1

// ---- host events into the calling thread's SPSC buffer.
struct HostEvent {
  uint64_t ticks;
  uint64_t arg;
  uint32_t name;
  uint16_t kind;
  uint16_t pad;
  uint32_t domain;
  uint32_t pad2;
};
void record_slow(uint16_t kind, uint32_t name, uint32_t domain, uint64_t arg);
inline void record(uint16_t kind, uint32_t name, uint32_t domain, uint64_t arg) {
  record_slow(kind, name, domain, arg);
}
void name_thread(uint32_t tid, uint32_t name);
uint32_t current_tid();
uint64_t next_range_id();

// ---- GPU records from the CUPTI backend (called on CUPTI's buffer thread).
void submit_gpu_events(const prism_raw_event* events, size_t count, uint64_t dropped);
void add_info(const char* key, const char* value);  // "key=value" kept for snapshots

// ---- lifecycle and control.
void agent_init(const char* how);  // idempotent; how = "nvtx", "cuda", "preload"
struct StartOptions {
  uint64_t duration_ms = 0;
  uint32_t activities = 1;
};
void agent_start(const StartOptions& options);
void agent_stop();
// Writes a status line ("ok status ...\n") into buffer.
size_t agent_status(char* buffer, size_t size);
// Appends stats rows; returns the number of rows; writes into buffer up to size.
size_t agent_stats(char* buffer, size_t size, size_t* rows);
// Serializes the current capture (raw format) into a malloc'd buffer.
bool agent_snapshot(char** data, size_t* size);
// The live path: what arrived since a client's cursors (raw format, no END record), into a
// malloc'd buffer. O(new events): drains the thread buffers and copies ring[since, now).
struct EventsCursor {
  uint64_t since = 0;    // in: first ring index wanted; out: the next one to ask for
  uint32_t strings = 0;  // in: string ids below this are known; out: the new count
  uint32_t threads = 0;  // in: thread names already sent; out: the new count
  uint64_t lost = 0;     // out: events overwritten before they were asked for
  uint64_t pending = 0;  // out: events left for the next call (reply size cap)
  bool active = false;   // out: a capture is running
};
bool agent_events(EventsCursor* cursor, char** data, size_t* size);
bool agent_load_rules(const char* text, size_t length, char* error, size_t error_size);

// ---- control socket (control_server.cpp).
bool control_server_start(char* why, size_t why_size);
void control_server_stop();
const char* control_socket_path();

// ---- CUPTI backend (cupti_backend.cpp).
bool cupti_start(char* why, size_t why_size);
void cupti_stop();
void cupti_flush();
void cupti_push_external(uint64_t id);
void cupti_pop_external();
extern bool g_cuda_injected;

// One-line diagnostics to stderr, prefixed; never more than a few per process.
void say(const char* format, ...) __attribute__((format(printf, 1, 2)));

}  // namespace prism::agent
