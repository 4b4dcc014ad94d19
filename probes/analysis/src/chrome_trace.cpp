// Chrome trace JSON: our export (streamed with fmt, it must keep up with
// millions of events) and the importer for it and for Kineto / PyTorch
// profiler traces (nlohmann::json; errors name the event index and field).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "prism/analysis/export.h"

namespace prism::analysis {
namespace {

constexpr uint32_t kGpuPidBase = 0x7fff0000u;  // above any Linux pid

void append_escaped(fmt::memory_buffer& out, std::string_view text) {
  for (const char c : text) {
    switch (c) {
      case '"':
        out.append(std::string_view("\\\""));
        break;
      case '\\':
        out.append(std::string_view("\\\\"));
        break;
      case '\n':
        out.append(std::string_view("\\n"));
        break;
      case '\t':
        out.append(std::string_view("\\t"));
        break;
      case '\r':
        out.append(std::string_view("\\r"));
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          fmt::format_to(std::back_inserter(out), "\\u{:04x}", static_cast<unsigned>(c));
        } else {
          out.push_back(c);
        }
    }
  }
}

void append_us(fmt::memory_buffer& out, uint64_t ns) {
  fmt::format_to(std::back_inserter(out), "{}.{:03}", ns / 1000, ns % 1000);
}

const char* category(SpanKind kind) {
  switch (kind) {
    case SpanKind::kKernel:
      return "kernel";
    case SpanKind::kMemcpy:
      return "gpu_memcpy";
    case SpanKind::kMemset:
      return "gpu_memset";
    case SpanKind::kSync:
      return "cuda_sync";
    case SpanKind::kRuntime:
      return "cuda_runtime";
    case SpanKind::kDriver:
      return "cuda_driver";
    case SpanKind::kMark:
      return "nvtx";
    case SpanKind::kRange:
      return "nvtx";
  }
  return "nvtx";
}

}  // namespace

std::string to_chrome_trace(const Trace& trace, const StageRules* rules) {
  fmt::memory_buffer out;
  out.reserve(128 + (trace.ranges.size() + trace.gpu.size() + trace.api.size()) * 110);
  auto put = [&](std::string_view s) { out.append(s); };
  put("{\"displayTimeUnit\":\"ns\",\"otherData\":{");
  fmt::format_to(std::back_inserter(out), "\"prism_trace_version\":{},\"source\":\"",
                 kChromeTraceVersion);
  append_escaped(out, trace.source);
  fmt::format_to(std::back_inserter(out), "\",\"complete\":{},\"partial_reason\":\"",
                 trace.complete ? "true" : "false");
  append_escaped(out, trace.partial_reason);
  fmt::format_to(std::back_inserter(out),
                 "\",\"pid\":{},\"dropped_host\":{},\"dropped_gpu\":{},\"dropped_window\":{},"
                 "\"unmatched_ends\":{},\"unclosed\":{},\"events\":{},\"info\":[",
                 trace.pid, trace.dropped_host, trace.dropped_gpu, trace.dropped_window,
                 trace.unmatched_ends, trace.unclosed, trace.event_count);
  for (size_t i = 0; i < trace.info.size(); ++i) {
    put(i == 0 ? "\"" : ",\"");
    append_escaped(out, trace.info[i]);
    put("\"");
  }
  put("]},\"traceEvents\":[\n");
  bool first = true;
  auto begin_event = [&]() {
    if (!first) put(",\n");
    first = false;
  };
  begin_event();
  fmt::format_to(
      std::back_inserter(out),
      "{{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":{},\"tid\":0,\"args\":{{\"name\":\"",
      trace.pid);
  append_escaped(out, trace.process_name.empty() ? "process" : trace.process_name);
  put("\"}}");
  for (const auto& [tid, name] : trace.thread_names) {
    begin_event();
    fmt::format_to(
        std::back_inserter(out),
        "{{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":{},\"tid\":{},\"args\":{{\"name\":\"",
        trace.pid, tid);
    append_escaped(out, name);
    put("\"}}");
  }
  std::map<uint32_t, bool> devices;
  for (const Span& g : trace.gpu) devices[g.process] = true;
  for (const auto& [device, unused] : devices) {
    begin_event();
    fmt::format_to(std::back_inserter(out),
                   "{{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":{},\"tid\":0,\"args\":{{"
                   "\"name\":\"GPU {}\"}}}}",
                   kGpuPidBase + device, device);
  }
  std::vector<std::string> stage_of_name;
  if (rules != nullptr) {
    stage_of_name.resize(trace.strings.size());
    for (size_t i = 1; i < trace.strings.size(); ++i) {
      const auto& text = trace.strings[i];
      int r =
          control::match_rule(rules->set(), control::RuleTarget::kRange, text.data(), text.size());
      if (r < 0)
        r = control::match_rule(rules->set(), control::RuleTarget::kKernel, text.data(),
                                text.size());
      if (r >= 0) stage_of_name[i] = rules->set().rules[r].stage;
      if (r < 0 && control::match_rule(rules->set(), control::RuleTarget::kIteration, text.data(),
                                       text.size()) >= 0) {
        stage_of_name[i] = "iteration";
      }
    }
  }
  auto span_event = [&](const Span& s, uint32_t pid, uint32_t tid) {
    begin_event();
    put("{\"ph\":\"X\",\"cat\":\"");
    put(category(s.kind));
    put("\",\"name\":\"");
    append_escaped(out, trace.name(s.name));
    fmt::format_to(std::back_inserter(out), "\",\"pid\":{},\"tid\":{},\"ts\":", pid, tid);
    append_us(out, s.start_ns);
    put(",\"dur\":");
    append_us(out, s.duration());
    const bool has_stage = s.name < stage_of_name.size() && !stage_of_name[s.name].empty();
    if (s.kind != SpanKind::kRange || has_stage || s.arg != 0) {
      put(",\"args\":{");
      bool any = false;
      auto field = [&](std::string_view key) {
        if (any) put(",");
        any = true;
        put("\"");
        put(key);
        put("\":");
      };
      if (has_stage) {
        field("stage");
        put("\"");
        append_escaped(out, stage_of_name[s.name]);
        put("\"");
      }
      if (s.kind != SpanKind::kRange) {
        field("correlation");
        fmt::format_to(std::back_inserter(out), "{}", s.correlation);
      }
      if (s.kind == SpanKind::kKernel || s.kind == SpanKind::kMemcpy ||
          s.kind == SpanKind::kMemset) {
        field("device");
        fmt::format_to(std::back_inserter(out), "{}", s.process);
        field("stream");
        fmt::format_to(std::back_inserter(out), "{}", s.track);
        if (s.arg != 0) {
          field("bytes");
          fmt::format_to(std::back_inserter(out), "{}", s.arg);
        }
        const auto ext = trace.external_ids.find(s.correlation);
        if (ext != trace.external_ids.end()) {
          field("External id");
          fmt::format_to(std::back_inserter(out), "{}", ext->second);
        }
      } else if (s.kind == SpanKind::kRange && s.arg != 0) {
        field("External id");
        fmt::format_to(std::back_inserter(out), "{}", s.arg);
      }
      put("}");
    }
    put("}");
  };
  for (const Span& s : trace.ranges) span_event(s, trace.pid, s.track);
  for (const Span& s : trace.api) span_event(s, trace.pid, s.track);
  for (const Span& s : trace.gpu) span_event(s, kGpuPidBase + s.process, s.track);
  for (const Span& m : trace.marks) {
    begin_event();
    put("{\"ph\":\"i\",\"s\":\"t\",\"cat\":\"nvtx\",\"name\":\"");
    append_escaped(out, trace.name(m.name));
    fmt::format_to(std::back_inserter(out), "\",\"pid\":{},\"tid\":{},\"ts\":", trace.pid, m.track);
    append_us(out, m.start_ns);
    put("}");
  }
  put("\n]}\n");
  return fmt::to_string(out);
}

// ------------------------------------------------------------------ import
namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& origin, size_t index, const std::string& what) {
  throw TraceError(origin + ": traceEvents[" + std::to_string(index) + "]: " + what);
}

uint64_t time_field(const json& e, const char* key, const std::string& origin, size_t index) {
  const auto it = e.find(key);
  if (it == e.end()) fail(origin, index, std::string("missing field \"") + key + "\"");
  if (!it->is_number()) fail(origin, index, std::string("field \"") + key + "\" is not a number");
  const double us = it->get<double>();
  if (!std::isfinite(us) || us < 0 || us > 9.0e12) {
    fail(origin, index, std::string("field \"") + key + "\" is out of range");
  }
  return static_cast<uint64_t>(std::llround(us * 1000.0));
}

uint32_t id_field(const json& e, const char* key, const std::string& origin, size_t index,
                  Trace& trace) {
  const auto it = e.find(key);
  if (it == e.end()) fail(origin, index, std::string("missing field \"") + key + "\"");
  if (it->is_number_integer()) return static_cast<uint32_t>(it->get<int64_t>());
  if (it->is_number_unsigned()) return static_cast<uint32_t>(it->get<uint64_t>());
  if (it->is_string()) {
    // Kineto sometimes names tracks ("stream 7"): take a trailing number, else intern the text.
    const auto& text = it->get_ref<const std::string&>();
    size_t digits = text.size();
    while (digits > 0 && text[digits - 1] >= '0' && text[digits - 1] <= '9') --digits;
    if (digits < text.size() && text.size() - digits < 10)
      return static_cast<uint32_t>(std::stoul(text.substr(digits)));
    return 0x40000000u + trace.intern(text);
  }
  fail(origin, index, std::string("field \"") + key + "\" is neither a number nor a string");
}

uint64_t arg_number(const json& e, const char* key) {
  const auto args = e.find("args");
  if (args == e.end() || !args->is_object()) return 0;
  const auto it = args->find(key);
  if (it == args->end()) return 0;
  if (it->is_number_unsigned()) return it->get<uint64_t>();
  if (it->is_number_integer())
    return static_cast<uint64_t>(std::max<int64_t>(0, it->get<int64_t>()));
  if (it->is_number_float()) return static_cast<uint64_t>(std::max(0.0, it->get<double>()));
  return 0;
}

std::string string_field(const json& e, const char* key, const std::string& origin, size_t index) {
  const auto it = e.find(key);
  if (it == e.end()) fail(origin, index, std::string("missing field \"") + key + "\"");
  if (!it->is_string()) fail(origin, index, std::string("field \"") + key + "\" is not a string");
  return it->get<std::string>();
}

}  // namespace

Trace read_chrome_trace(const std::string& json_text, const std::string& origin) {
  json document;
  try {
    document = json::parse(json_text);
  } catch (const json::exception& e) {
    // parse_error, and out_of_range for numbers no double holds ("dur": 1e+310).
    throw TraceError(origin + ": not valid JSON: " + e.what());
  }
  Trace trace;
  trace.source = "chrome";
  const json* events = nullptr;
  if (document.is_array()) {
    events = &document;
  } else if (document.is_object()) {
    const auto it = document.find("traceEvents");
    if (it == document.end()) throw TraceError(origin + ": missing field \"traceEvents\"");
    if (!it->is_array()) throw TraceError(origin + ": field \"traceEvents\" is not an array");
    events = &*it;
    if (const auto other = document.find("otherData");
        other != document.end() && other->is_object()) {
      if (const auto v = other->find("prism_trace_version"); v != other->end()) {
        if (!v->is_number_integer() || v->get<int64_t>() != kChromeTraceVersion) {
          throw TraceError(origin + ": unknown otherData.prism_trace_version " + v->dump() +
                           " (this build reads " + std::to_string(kChromeTraceVersion) + ")");
        }
        trace.source = other->value("source", std::string("prism"));
        trace.complete = other->value("complete", true);
        trace.partial_reason = other->value("partial_reason", std::string());
        trace.pid = other->value("pid", 0u);
        trace.dropped_host = other->value("dropped_host", uint64_t{0});
        trace.dropped_gpu = other->value("dropped_gpu", uint64_t{0});
        trace.dropped_window = other->value("dropped_window", uint64_t{0});
        trace.unmatched_ends = other->value("unmatched_ends", uint64_t{0});
        trace.unclosed = other->value("unclosed", uint64_t{0});
        if (const auto info = other->find("info"); info != other->end() && info->is_array()) {
          for (const auto& entry : *info) {
            if (entry.is_string()) trace.info.push_back(entry.get<std::string>());
          }
        }
      }
    }
    if (const auto schema = document.find("schemaVersion"); schema != document.end()) {
      if (!schema->is_number_integer() || schema->get<int64_t>() != 1) {
        throw TraceError(origin + ": unknown Kineto schemaVersion " + schema->dump() +
                         " (this build reads 1)");
      }
      trace.source = "kineto";
    }
  } else {
    throw TraceError(
        origin + ": a Chrome trace is a JSON object with \"traceEvents\" or an array of events");
  }

  std::map<std::pair<uint32_t, uint32_t>, std::vector<Span>> open;  // B/E stacks per (pid, tid)
  uint64_t skipped = 0;
  for (size_t i = 0; i < events->size(); ++i) {
    const json& e = (*events)[i];
    if (!e.is_object()) fail(origin, i, "event is not an object");
    const std::string ph = string_field(e, "ph", origin, i);
    ++trace.event_count;
    if (ph == "M") {
      const std::string name = string_field(e, "name", origin, i);
      const auto args = e.find("args");
      const bool has_name = args != e.end() && args->is_object() && args->contains("name") &&
                            (*args)["name"].is_string();
      if (name == "thread_name" && has_name) {
        trace.thread_names[id_field(e, "tid", origin, i, trace)] =
            (*args)["name"].get<std::string>();
      } else if (name == "process_name" && has_name && trace.process_name.empty()) {
        const uint32_t pid = id_field(e, "pid", origin, i, trace);
        if (pid < kGpuPidBase) trace.process_name = (*args)["name"].get<std::string>();
      }
      continue;
    }
    if (ph == "X") {
      Span s;
      s.name = trace.intern(string_field(e, "name", origin, i));
      s.start_ns = time_field(e, "ts", origin, i);
      s.end_ns = s.start_ns + time_field(e, "dur", origin, i);
      const uint32_t pid = id_field(e, "pid", origin, i, trace);
      const uint32_t tid = id_field(e, "tid", origin, i, trace);
      std::string cat =
          e.contains("cat") && e["cat"].is_string() ? e["cat"].get<std::string>() : "";
      std::transform(cat.begin(), cat.end(), cat.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      s.correlation = static_cast<uint32_t>(arg_number(e, "correlation"));
      if (cat == "kernel" || cat == "gpu_memcpy" || cat == "memcpy" || cat == "gpu_memset" ||
          cat == "memset") {
        s.kind = cat == "kernel" ? SpanKind::kKernel
                                 : (cat.find("memcpy") != std::string::npos ? SpanKind::kMemcpy
                                                                            : SpanKind::kMemset);
        const auto args = e.find("args");
        const bool has_device = args != e.end() && args->is_object() && args->contains("device");
        s.process = has_device ? static_cast<uint32_t>(arg_number(e, "device"))
                               : (pid >= kGpuPidBase ? pid - kGpuPidBase : pid);
        const bool has_stream = args != e.end() && args->is_object() && args->contains("stream");
        s.track = has_stream ? static_cast<uint32_t>(arg_number(e, "stream")) : tid;
        s.arg = arg_number(e, "bytes");
        if (const uint64_t ext = arg_number(e, "External id"); ext != 0 && s.correlation != 0) {
          trace.external_ids[s.correlation] = ext;
        }
        trace.gpu.push_back(s);
      } else if (cat == "cuda_runtime" || cat == "cuda_driver" || cat == "cuda_sync") {
        s.kind = cat == "cuda_runtime"  ? SpanKind::kRuntime
                 : cat == "cuda_driver" ? SpanKind::kDriver
                                        : SpanKind::kSync;
        s.track = tid;
        s.process = pid;
        trace.api.push_back(s);
      } else if (cat == "gpu_user_annotation" || pid >= kGpuPidBase) {
        ++skipped;  // GPU-side copies of host annotations: the host range is the one we keep
      } else {
        s.track = tid;
        s.process = pid;
        s.arg = arg_number(e, "External id");
        if (trace.pid == 0) trace.pid = pid;
        trace.ranges.push_back(s);
      }
      continue;
    }
    if (ph == "B" || ph == "E") {
      const uint32_t pid = id_field(e, "pid", origin, i, trace);
      const uint32_t tid = id_field(e, "tid", origin, i, trace);
      const uint64_t ts = time_field(e, "ts", origin, i);
      auto& stack = open[{pid, tid}];
      if (ph == "B") {
        Span s;
        s.name = trace.intern(string_field(e, "name", origin, i));
        s.start_ns = ts;
        s.track = tid;
        s.process = pid;
        stack.push_back(s);
      } else if (stack.empty()) {
        ++trace.unmatched_ends;
      } else {
        Span s = stack.back();
        stack.pop_back();
        s.end_ns = std::max(ts, s.start_ns);
        trace.ranges.push_back(s);
      }
      continue;
    }
    if (ph == "i" || ph == "I" || ph == "R" || ph == "n") {
      Span m;
      m.kind = SpanKind::kMark;
      m.name = trace.intern(string_field(e, "name", origin, i));
      m.start_ns = m.end_ns = time_field(e, "ts", origin, i);
      m.track = id_field(e, "tid", origin, i, trace);
      trace.marks.push_back(m);
      continue;
    }
    ++skipped;  // flows, counters, async and object events carry no stage time
  }
  for (auto& [key, stack] : open) {
    for (Span& s : stack) {
      s.end_ns = s.start_ns;
      s.open = true;
      ++trace.unclosed;
      trace.ranges.push_back(s);
    }
  }
  if (skipped > 0) trace.info.push_back("skipped_events=" + std::to_string(skipped));
  link_range_parents(trace);
  return trace;
}

}  // namespace prism::analysis
