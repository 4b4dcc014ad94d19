// Reads the agent's raw format (prism/agent/raw_format.h) into a Trace:
// push/pop and start/end events become closed ranges with parent links.
#include <cstring>
#include <fstream>
#include <sstream>

#include "prism/agent/raw_format.h"
#include "prism/analysis/live.h"
#include "prism/analysis/trace.h"

namespace prism::analysis {
namespace {

using agent::prism_raw_end;
using agent::prism_raw_event;
using agent::prism_raw_header;

struct OpenPush {
  int32_t index;  // slot in trace.ranges
  uint32_t domain;
};

struct ThreadState {
  uint32_t tid = 0;
  std::vector<OpenPush> stack;
};

class RawBuilder {
 public:
  // range_events, when given, receives per range the indices of the events that began and
  // ended it (kNoEvent while open), in the order events were given.
  explicit RawBuilder(Trace& trace, std::vector<RangeEvents>* range_events = nullptr)
      : trace_(trace), range_events_(range_events) {}

  void string(uint32_t id, std::string_view text) {
    if (id >= trace_.strings.size()) trace_.strings.resize(id + 1);
    trace_.strings[id] = std::string(text);
  }

  void event(const prism_raw_event& e) {
    const size_t index = static_cast<size_t>(trace_.event_count);
    ++trace_.event_count;
    last_ns_ = std::max(last_ns_, e.t1 > e.t0 ? e.t1 : e.t0);
    switch (e.kind) {
      case agent::PRISM_EV_PUSH: {
        ThreadState& t = thread(e.tid);
        Span s;
        s.start_ns = e.t0;
        s.end_ns = UINT64_MAX;  // open
        s.arg = e.arg;
        s.name = e.name;
        s.track = e.tid;
        s.process = trace_.pid;
        s.parent = t.stack.empty() ? -1 : t.stack.back().index;
        const auto slot = static_cast<int32_t>(trace_.ranges.size());
        trace_.ranges.push_back(s);
        began(index);
        t.stack.push_back({slot, e.corr});
        break;
      }
      case agent::PRISM_EV_POP: {
        ThreadState& t = thread(e.tid);
        // Pops end the innermost open push of the same domain.
        size_t k = t.stack.size();
        while (k > 0 && t.stack[k - 1].domain != e.corr) --k;
        if (k == 0) {
          ++trace_.unmatched_ends;  // pushed before the capture began
          break;
        }
        ended(static_cast<size_t>(t.stack[k - 1].index), index);
        close_range(trace_.ranges[static_cast<size_t>(t.stack[k - 1].index)], e.t0);
        t.stack.erase(t.stack.begin() + static_cast<std::ptrdiff_t>(k - 1));
        break;
      }
      case agent::PRISM_EV_RANGE_START: {
        Span s;
        s.start_ns = e.t0;
        s.end_ns = UINT64_MAX;
        s.name = e.name;
        s.track = e.tid;
        s.process = trace_.pid;
        s.arg = e.arg;
        open_ranges_[e.arg] = static_cast<int32_t>(trace_.ranges.size());
        trace_.ranges.push_back(s);
        began(index);
        break;
      }
      case agent::PRISM_EV_RANGE_END: {
        auto it = open_ranges_.find(e.arg);
        if (it == open_ranges_.end()) {
          ++trace_.unmatched_ends;
          break;
        }
        ended(static_cast<size_t>(it->second), index);
        close_range(trace_.ranges[static_cast<size_t>(it->second)], e.t0);
        open_ranges_.erase(it);
        break;
      }
      case agent::PRISM_EV_MARK: {
        Span s;
        s.kind = SpanKind::kMark;
        s.start_ns = s.end_ns = e.t0;
        s.name = e.name;
        s.track = e.tid;
        s.process = trace_.pid;
        trace_.marks.push_back(s);
        break;
      }
      case agent::PRISM_EV_KERNEL:
      case agent::PRISM_EV_MEMCPY:
      case agent::PRISM_EV_MEMSET: {
        Span s;
        s.kind = e.kind == agent::PRISM_EV_KERNEL   ? SpanKind::kKernel
                 : e.kind == agent::PRISM_EV_MEMCPY ? SpanKind::kMemcpy
                                                    : SpanKind::kMemset;
        s.start_ns = e.t0;
        s.end_ns = std::max(e.t0, e.t1);
        s.name = e.name;
        s.track = e.tid;
        s.correlation = e.corr;
        s.arg = e.arg;
        s.process = e.device;
        trace_.gpu.push_back(s);
        break;
      }
      case agent::PRISM_EV_SYNC:
      case agent::PRISM_EV_RUNTIME:
      case agent::PRISM_EV_DRIVER: {
        Span s;
        s.kind = e.kind == agent::PRISM_EV_SYNC      ? SpanKind::kSync
                 : e.kind == agent::PRISM_EV_RUNTIME ? SpanKind::kRuntime
                                                     : SpanKind::kDriver;
        s.start_ns = e.t0;
        s.end_ns = std::max(e.t0, e.t1);
        s.name = e.name;
        s.track = e.tid;
        s.correlation = e.corr;
        s.process = trace_.pid;
        trace_.api.push_back(s);
        break;
      }
      case agent::PRISM_EV_EXTERNAL:
        trace_.external_ids[e.corr] = e.arg;
        break;
      default:
        ++unknown_kinds_;
        break;
    }
  }

  void finish() {
    // Ranges still open when the capture ended are closed at its last timestamp.
    for (Span& s : trace_.ranges) {
      if (s.end_ns == UINT64_MAX) {
        s.end_ns = std::max(last_ns_, s.start_ns);
        s.open = true;
        ++trace_.unclosed;
      }
    }
    if (unknown_kinds_ > 0) {
      trace_.info.push_back("unknown_event_kinds=" + std::to_string(unknown_kinds_));
    }
  }

 private:
  // The agent stamps a range's start as late and its end as early as it can,
  // so an empty range can end a few ns before it starts: it lasted zero.
  static void close_range(Span& s, uint64_t end_ns) { s.end_ns = std::max(end_ns, s.start_ns); }

  void began(size_t event) {
    if (range_events_ != nullptr) range_events_->push_back({event, RangeEvents::kNoEvent});
  }
  void ended(size_t range, size_t event) {
    if (range_events_ != nullptr) (*range_events_)[range].end = event;
  }

  ThreadState& thread(uint32_t tid) {
    if (last_ != nullptr && last_->tid == tid) return *last_;
    auto [it, inserted] = threads_.try_emplace(tid);
    it->second.tid = tid;
    last_ = &it->second;
    return *last_;
  }

  Trace& trace_;
  std::vector<RangeEvents>* range_events_;
  std::unordered_map<uint32_t, ThreadState> threads_;
  ThreadState* last_ = nullptr;
  std::unordered_map<uint64_t, int32_t> open_ranges_;
  uint64_t last_ns_ = 0;
  uint64_t unknown_kinds_ = 0;
};

}  // namespace

Trace read_raw_trace(const std::string& bytes, const std::string& origin) {
  Trace trace;
  trace.source = "prism-raw";
  if (bytes.size() < sizeof(prism_raw_header)) {
    throw TraceError(origin + ": too short for a prism raw trace header (" +
                     std::to_string(bytes.size()) + " bytes)");
  }
  prism_raw_header header;
  std::memcpy(&header, bytes.data(), sizeof(header));
  if (std::memcmp(header.magic, PRISM_RAW_MAGIC, 8) != 0) {
    throw TraceError(origin + ": header magic is not PRISMRAW");
  }
  if (header.version != PRISM_RAW_VERSION) {
    throw TraceError(origin + ": unknown raw trace version " + std::to_string(header.version) +
                     " (this build reads version " + std::to_string(PRISM_RAW_VERSION) + ")");
  }
  trace.pid = header.pid;
  header.process_name[sizeof(header.process_name) - 1] = '\0';
  trace.process_name = header.process_name;
  RawBuilder builder(trace);
  size_t offset = sizeof(header);
  bool ended = false;
  size_t record_index = 0;
  while (offset < bytes.size()) {
    if (bytes.size() - offset < 8) {
      trace.complete = false;
      trace.partial_reason =
          "the trace ends inside a record header (the process stopped mid-write)";
      break;
    }
    uint32_t type = 0;
    uint32_t length = 0;
    std::memcpy(&type, bytes.data() + offset, 4);
    std::memcpy(&length, bytes.data() + offset + 4, 4);
    offset += 8;
    if (length > bytes.size() - offset) {
      trace.complete = false;
      trace.partial_reason = "record " + std::to_string(record_index) + " is cut short (" +
                             std::to_string(bytes.size() - offset) + " of " +
                             std::to_string(length) + " bytes): the process stopped mid-write";
      break;
    }
    const char* payload = bytes.data() + offset;
    switch (type) {
      case agent::PRISM_RAW_STRING: {
        if (length < 4)
          throw TraceError(origin + ": record " + std::to_string(record_index) +
                           ": string record shorter than its id");
        uint32_t id = 0;
        std::memcpy(&id, payload, 4);
        // The agent hands out at most 65536 ids; a larger one is a damaged file, and sizing
        // the string table by it would cost gigabytes.
        if (id > (1u << 20))
          throw TraceError(origin + ": record " + std::to_string(record_index) + ": string id " +
                           std::to_string(id) + " out of range");
        builder.string(id, std::string_view(payload + 4, length - 4));
        break;
      }
      case agent::PRISM_RAW_THREAD_NAME: {
        if (length != 8)
          throw TraceError(origin + ": record " + std::to_string(record_index) +
                           ": thread name record must be 8 bytes");
        uint32_t tid = 0;
        uint32_t name = 0;
        std::memcpy(&tid, payload, 4);
        std::memcpy(&name, payload + 4, 4);
        trace.thread_names[tid] = name < trace.strings.size() ? trace.strings[name] : std::string{};
        break;
      }
      case agent::PRISM_RAW_EVENTS: {
        if (length % sizeof(prism_raw_event) != 0) {
          throw TraceError(origin + ": record " + std::to_string(record_index) +
                           ": events payload is not a multiple of 40 bytes");
        }
        const size_t n = length / sizeof(prism_raw_event);
        for (size_t i = 0; i < n; ++i) {
          prism_raw_event e;
          std::memcpy(&e, payload + i * sizeof(e), sizeof(e));
          builder.event(e);
        }
        break;
      }
      case agent::PRISM_RAW_INFO:
        trace.info.emplace_back(payload, length);
        break;
      case agent::PRISM_RAW_END: {
        if (length < sizeof(prism_raw_end)) throw TraceError(origin + ": end record too short");
        prism_raw_end end;
        std::memcpy(&end, payload, sizeof(end));
        trace.dropped_host = end.dropped_host;
        trace.dropped_gpu = end.dropped_gpu;
        trace.dropped_window = end.dropped_window;
        ended = true;
        break;
      }
      default:
        throw TraceError(origin + ": record " + std::to_string(record_index) +
                         ": unknown record type " + std::to_string(type));
    }
    offset += length;
    ++record_index;
  }
  if (!ended && trace.complete) {
    trace.complete = false;
    trace.partial_reason =
        "no end record: the process exited or was killed before the trace was closed";
  }
  // Thread names may arrive before their strings in a stream; resolve again.
  builder.finish();
  return trace;
}

RawBatch read_raw_batch(const std::string& bytes, const std::string& origin) {
  RawBatch batch;
  if (bytes.size() < sizeof(prism_raw_header)) {
    throw TraceError(origin + ": too short for a prism raw trace header (" +
                     std::to_string(bytes.size()) + " bytes)");
  }
  prism_raw_header header;
  std::memcpy(&header, bytes.data(), sizeof(header));
  if (std::memcmp(header.magic, PRISM_RAW_MAGIC, 8) != 0)
    throw TraceError(origin + ": header magic is not PRISMRAW");
  if (header.version != PRISM_RAW_VERSION) {
    throw TraceError(origin + ": unknown raw trace version " + std::to_string(header.version));
  }
  batch.pid = header.pid;
  batch.start_ns = header.start_ns;
  size_t offset = sizeof(header);
  for (size_t record = 0; offset < bytes.size(); ++record) {
    const std::string where = origin + ": record " + std::to_string(record);
    if (bytes.size() - offset < 8) throw TraceError(where + ": cut short inside its header");
    uint32_t type = 0;
    uint32_t length = 0;
    std::memcpy(&type, bytes.data() + offset, 4);
    std::memcpy(&length, bytes.data() + offset + 4, 4);
    offset += 8;
    if (length > bytes.size() - offset) throw TraceError(where + ": cut short");
    const char* payload = bytes.data() + offset;
    switch (type) {
      case agent::PRISM_RAW_STRING: {
        uint32_t id = 0;
        if (length < 4) throw TraceError(where + ": string record shorter than its id");
        std::memcpy(&id, payload, 4);
        if (id == 0 || id > (1u << 20))
          throw TraceError(where + ": string id " + std::to_string(id) + " out of range");
        batch.strings.emplace_back(id, std::string(payload + 4, length - 4));
        break;
      }
      case agent::PRISM_RAW_THREAD_NAME: {
        if (length != 8) throw TraceError(where + ": thread name record must be 8 bytes");
        uint32_t tid = 0;
        uint32_t name = 0;
        std::memcpy(&tid, payload, 4);
        std::memcpy(&name, payload + 4, 4);
        batch.thread_names.emplace_back(tid, name);
        break;
      }
      case agent::PRISM_RAW_EVENTS: {
        if (length % sizeof(prism_raw_event) != 0)
          throw TraceError(where + ": events payload is not a multiple of 40 bytes");
        const size_t n = length / sizeof(prism_raw_event);
        const size_t first = batch.events.size();
        batch.events.resize(first + n);
        std::memcpy(batch.events.data() + first, payload, length);
        break;
      }
      case agent::PRISM_RAW_INFO:
      case agent::PRISM_RAW_END:
        break;  // facts about the whole capture: the snapshot at its end carries them
      default:
        throw TraceError(where + ": unknown record type " + std::to_string(type));
    }
    offset += length;
  }
  return batch;
}

Trace trace_from_raw_events(const std::vector<agent::prism_raw_event>& events,
                            const std::vector<std::string>& strings, uint32_t pid,
                            std::vector<RangeEvents>* range_events) {
  Trace trace;
  trace.source = "prism-raw";
  trace.pid = pid;
  trace.strings = strings;
  if (trace.strings.empty()) trace.strings.emplace_back();
  if (range_events != nullptr) range_events->clear();
  RawBuilder builder(trace, range_events);
  for (const prism_raw_event& e : events) builder.event(e);
  builder.finish();
  return trace;
}

Trace read_raw_trace_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw TraceError(path + ": cannot open");
  std::stringstream buffer;
  buffer << in.rdbuf();
  return read_raw_trace(buffer.str(), path);
}

}  // namespace prism::analysis
