// GPU activity through CUPTI, loaded with dlopen so the agent still loads (and
// records NVTX ranges) in processes where CUPTI or the driver is missing.
// CUDA_INJECTION64_PATH makes the driver call InitializeInjection at cuInit.
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"

#if defined(PRISM_HAVE_CUDA)
#include <cupti.h>
#endif

namespace prism::agent {

bool g_cuda_injected = false;

#if defined(PRISM_HAVE_CUDA)
namespace {

struct Cupti {
  void* handle = nullptr;
  decltype(&cuptiActivityRegisterCallbacks) register_callbacks = nullptr;
  decltype(&cuptiActivityEnable) enable = nullptr;
  decltype(&cuptiActivityDisable) disable = nullptr;
  decltype(&cuptiActivityFlushAll) flush_all = nullptr;
  decltype(&cuptiActivityGetNextRecord) next_record = nullptr;
  decltype(&cuptiActivityGetNumDroppedRecords) dropped_records = nullptr;
  decltype(&cuptiActivityPushExternalCorrelationId) push_external = nullptr;
  decltype(&cuptiActivityPopExternalCorrelationId) pop_external = nullptr;
  decltype(&cuptiActivityRegisterTimestampCallback) timestamp_callback = nullptr;
  decltype(&cuptiGetTimestamp) get_timestamp = nullptr;
  decltype(&cuptiGetResultString) result_string = nullptr;
  decltype(&cuptiGetCallbackName) callback_name = nullptr;
};
Cupti g_cupti;
bool g_loaded = false;
int64_t g_clock_offset = 0;  // added to CUPTI timestamps when we could not install our clock

constexpr CUpti_ActivityKind kKinds[] = {
    CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL,
    CUPTI_ACTIVITY_KIND_MEMCPY,
    CUPTI_ACTIVITY_KIND_MEMSET,
    CUPTI_ACTIVITY_KIND_SYNCHRONIZATION,
    CUPTI_ACTIVITY_KIND_RUNTIME,
    CUPTI_ACTIVITY_KIND_DRIVER,
    CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION,
};

template <typename T>
bool load_symbol(void* handle, const char* name, T* out) {
  *out = reinterpret_cast<T>(dlsym(handle, name));
  return *out != nullptr;
}

uint64_t CUPTIAPI our_clock() {
  return monotonic_ns();
}

constexpr uint32_t kMaxCbid = 2048;
uint32_t g_api_names[2][kMaxCbid];

uint32_t api_name(CUpti_CallbackDomain domain, uint32_t cbid) {
  const int d = domain == CUPTI_CB_DOMAIN_RUNTIME_API ? 0 : 1;
  if (cbid >= kMaxCbid) return 0;
  uint32_t& cached = g_api_names[d][cbid];
  if (cached == 0 && g_cupti.callback_name != nullptr) {
    const char* name = nullptr;
    if (g_cupti.callback_name(domain, cbid, &name) == CUPTI_SUCCESS && name != nullptr) {
      cached = intern(name);
    }
  }
  return cached;
}

uint64_t fix(uint64_t t) {
  return static_cast<uint64_t>(static_cast<int64_t>(t) + g_clock_offset);
}

bool convert(const CUpti_Activity* record, prism_raw_event* e) {
  *e = prism_raw_event{};
  switch (record->kind) {
    case CUPTI_ACTIVITY_KIND_KERNEL:
    case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
      const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(record);
      e->kind = PRISM_EV_KERNEL;
      e->t0 = fix(k->start);
      e->t1 = fix(k->end);
      e->name = intern(k->name);
      e->tid = k->streamId;
      e->device = static_cast<uint16_t>(k->deviceId);
      e->corr = k->correlationId;
      return true;
    }
    case CUPTI_ACTIVITY_KIND_MEMCPY: {
      const auto* m = reinterpret_cast<const CUpti_ActivityMemcpy6*>(record);
      static const char* const kCopy[] = {
          "memcpy",      "memcpy HtoD", "memcpy DtoH", "memcpy HtoA", "memcpy AtoH", "memcpy AtoA",
          "memcpy AtoD", "memcpy DtoA", "memcpy DtoD", "memcpy HtoH", "memcpy PtoP"};
      e->kind = PRISM_EV_MEMCPY;
      e->t0 = fix(m->start);
      e->t1 = fix(m->end);
      e->arg = m->bytes;
      e->name =
          intern(m->copyKind < sizeof(kCopy) / sizeof(kCopy[0]) ? kCopy[m->copyKind] : "memcpy");
      e->tid = m->streamId;
      e->device = static_cast<uint16_t>(m->deviceId);
      e->corr = m->correlationId;
      return true;
    }
    case CUPTI_ACTIVITY_KIND_MEMSET: {
      const auto* m = reinterpret_cast<const CUpti_ActivityMemset4*>(record);
      e->kind = PRISM_EV_MEMSET;
      e->t0 = fix(m->start);
      e->t1 = fix(m->end);
      e->arg = m->bytes;
      e->name = intern("memset");
      e->tid = m->streamId;
      e->device = static_cast<uint16_t>(m->deviceId);
      e->corr = m->correlationId;
      return true;
    }
    case CUPTI_ACTIVITY_KIND_SYNCHRONIZATION: {
      const auto* s = reinterpret_cast<const CUpti_ActivitySynchronization2*>(record);
      static const char* const kSync[] = {"sync", "cudaEventSynchronize", "cudaStreamWaitEvent",
                                          "cudaStreamSynchronize", "cudaDeviceSynchronize"};
      e->kind = PRISM_EV_SYNC;
      e->t0 = fix(s->start);
      e->t1 = fix(s->end);
      e->name = intern(static_cast<unsigned>(s->type) < 5 ? kSync[s->type] : "sync");
      e->tid = s->streamId;
      e->corr = s->correlationId;
      return true;
    }
    case CUPTI_ACTIVITY_KIND_RUNTIME:
    case CUPTI_ACTIVITY_KIND_DRIVER: {
      const auto* a = reinterpret_cast<const CUpti_ActivityAPI*>(record);
      const bool runtime = record->kind == CUPTI_ACTIVITY_KIND_RUNTIME;
      e->kind = runtime ? PRISM_EV_RUNTIME : PRISM_EV_DRIVER;
      e->t0 = fix(a->start);
      e->t1 = fix(a->end);
      e->name =
          api_name(runtime ? CUPTI_CB_DOMAIN_RUNTIME_API : CUPTI_CB_DOMAIN_DRIVER_API, a->cbid);
      e->tid = a->threadId;
      e->corr = a->correlationId;
      return true;
    }
    case CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION: {
      const auto* x = reinterpret_cast<const CUpti_ActivityExternalCorrelation*>(record);
      e->kind = PRISM_EV_EXTERNAL;
      e->arg = x->externalId;
      e->corr = x->correlationId;
      return true;
    }
    default:
      return false;
  }
}

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  constexpr size_t kBytes = 4u << 20;
  *buffer = static_cast<uint8_t*>(aligned_alloc(8, kBytes));
  *size = *buffer == nullptr ? 0 : kBytes;  // CUPTI counts the records it then drops
  *max_records = 0;
}

void CUPTIAPI buffer_completed(CUcontext context, uint32_t stream, uint8_t* buffer, size_t,
                               size_t valid) {
  prism_raw_event batch[512];
  size_t n = 0;
  CUpti_Activity* record = nullptr;
  while (g_cupti.next_record(buffer, valid, &record) == CUPTI_SUCCESS) {
    if (convert(record, &batch[n]) && ++n == 512) {
      submit_gpu_events(batch, n, 0);
      n = 0;
    }
  }
  size_t dropped = 0;
  if (g_cupti.dropped_records(context, stream, &dropped) != CUPTI_SUCCESS) dropped = 0;
  submit_gpu_events(batch, n, dropped);
  free(buffer);
}

const char* result_text(CUptiResult r) {
  const char* text = nullptr;
  if (g_cupti.result_string != nullptr && g_cupti.result_string(r, &text) == CUPTI_SUCCESS &&
      text) {
    return text;
  }
  return "unknown CUPTI error";
}

bool load(char* why, size_t why_size) {
  if (g_loaded) return true;
  if (dlopen("libcuda.so.1", RTLD_LAZY | RTLD_NOLOAD) == nullptr) {
    snprintf(why, why_size, "the process has not loaded the CUDA driver (libcuda.so.1)");
    return false;
  }
  const char* candidates[] = {getenv("PRISM_CUPTI_PATH"),
                              "libcupti.so",
                              "libcupti.so.13",
                              "libcupti.so.12",
                              "/usr/local/cuda/lib64/libcupti.so",
                              "/usr/local/cuda/extras/CUPTI/lib64/libcupti.so"};
  const char* last_error = "not found";
  for (const char* path : candidates) {
    if (path == nullptr || *path == '\0') continue;
    g_cupti.handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (g_cupti.handle != nullptr) break;
    last_error = dlerror();
  }
  if (g_cupti.handle == nullptr) {
    snprintf(why, why_size, "cannot load libcupti (%s); set PRISM_CUPTI_PATH", last_error);
    return false;
  }
  void* h = g_cupti.handle;
  bool ok = load_symbol(h, "cuptiActivityRegisterCallbacks", &g_cupti.register_callbacks) &&
            load_symbol(h, "cuptiActivityEnable", &g_cupti.enable) &&
            load_symbol(h, "cuptiActivityDisable", &g_cupti.disable) &&
            load_symbol(h, "cuptiActivityFlushAll", &g_cupti.flush_all) &&
            load_symbol(h, "cuptiActivityGetNextRecord", &g_cupti.next_record) &&
            load_symbol(h, "cuptiActivityGetNumDroppedRecords", &g_cupti.dropped_records) &&
            load_symbol(h, "cuptiActivityPushExternalCorrelationId", &g_cupti.push_external) &&
            load_symbol(h, "cuptiActivityPopExternalCorrelationId", &g_cupti.pop_external) &&
            load_symbol(h, "cuptiGetTimestamp", &g_cupti.get_timestamp);
  load_symbol(h, "cuptiGetResultString", &g_cupti.result_string);
  load_symbol(h, "cuptiGetCallbackName", &g_cupti.callback_name);
  load_symbol(h, "cuptiActivityRegisterTimestampCallback", &g_cupti.timestamp_callback);
  if (!ok) {
    snprintf(why, why_size, "libcupti lacks the activity API this agent needs");
    dlclose(h);
    g_cupti = Cupti{};
    return false;
  }
  g_loaded = true;
  return true;
}

}  // namespace

bool cupti_start(char* why, size_t why_size) {
  if (!load(why, why_size)) return false;
  // Put GPU timestamps on our clock (CLOCK_MONOTONIC), or measure the offset once.
  if (g_cupti.timestamp_callback == nullptr ||
      g_cupti.timestamp_callback(our_clock) != CUPTI_SUCCESS) {
    uint64_t cupti_now = 0;
    const uint64_t before = monotonic_ns();
    g_cupti.get_timestamp(&cupti_now);
    const uint64_t after = monotonic_ns();
    g_clock_offset =
        static_cast<int64_t>(before + (after - before) / 2) - static_cast<int64_t>(cupti_now);
  }
  CUptiResult r = g_cupti.register_callbacks(buffer_requested, buffer_completed);
  if (r != CUPTI_SUCCESS) {
    snprintf(why, why_size, "cuptiActivityRegisterCallbacks: %s", result_text(r));
    return false;
  }
  for (CUpti_ActivityKind kind : kKinds) {
    r = g_cupti.enable(kind);
    if (r != CUPTI_SUCCESS) {
      snprintf(why, why_size, "cuptiActivityEnable(%d): %s", static_cast<int>(kind),
               result_text(r));
      for (CUpti_ActivityKind k : kKinds) g_cupti.disable(k);
      return false;
    }
  }
  return true;
}

void cupti_stop() {
  if (!g_loaded) return;
  for (CUpti_ActivityKind kind : kKinds) g_cupti.disable(kind);
}

void cupti_flush() {
  if (g_loaded) g_cupti.flush_all(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
}

void cupti_push_external(uint64_t id) {
  if (g_loaded) g_cupti.push_external(CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0, id);
}

void cupti_pop_external() {
  uint64_t ignored = 0;
  if (g_loaded) g_cupti.pop_external(CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0, &ignored);
}

#else  // built without the CUDA toolkit

bool cupti_start(char* why, size_t why_size) {
  snprintf(why, why_size, "this agent was built without the CUDA toolkit (PRISM_CUDA=OFF)");
  return false;
}
void cupti_stop() {}
void cupti_flush() {}
void cupti_push_external(uint64_t) {}
void cupti_pop_external() {}

#endif

}  // namespace prism::agent

// The CUDA driver calls this at cuInit when CUDA_INJECTION64_PATH names this library.
PRISM_EXPORT int InitializeInjection(void) {
  using namespace prism::agent;
  g_cuda_injected = true;
  agent_init("cuda");
  const char* activities = getenv("PRISM_PROBE_ACTIVITIES");
  if (g_hot.active.load() && !g_hot.gpu_active.load() &&
      (activities == nullptr || strstr(activities, "gpu") != nullptr)) {
    StartOptions options;
    options.activities = 3;
    options.duration_ms = 0;
    agent_start(options);
  }
  return 1;
}
