#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>

#include "prism/analysis/trace.h"

namespace prism::analysis {

const char* span_kind_name(SpanKind kind) {
  switch (kind) {
    case SpanKind::kRange:
      return "range";
    case SpanKind::kMark:
      return "mark";
    case SpanKind::kKernel:
      return "kernel";
    case SpanKind::kMemcpy:
      return "memcpy";
    case SpanKind::kMemset:
      return "memset";
    case SpanKind::kSync:
      return "sync";
    case SpanKind::kRuntime:
      return "cuda_runtime";
    case SpanKind::kDriver:
      return "cuda_driver";
  }
  return "range";
}

uint32_t Trace::intern(std::string_view text) {
  if (text.empty()) return 0;
  if (index_.empty() && strings.size() > 1) {
    for (uint32_t i = 1; i < strings.size(); ++i) index_.emplace(strings[i], i);
  }
  auto [it, inserted] =
      index_.try_emplace(std::string(text), static_cast<uint32_t>(strings.size()));
  if (inserted) strings.emplace_back(text);
  return it->second;
}

uint64_t Trace::begin_ns() const {
  uint64_t begin = UINT64_MAX;
  for (const auto* spans : {&ranges, &marks, &gpu, &api}) {
    for (const Span& s : *spans) begin = std::min(begin, s.start_ns);
  }
  return begin == UINT64_MAX ? 0 : begin;
}

uint64_t Trace::end_ns() const {
  uint64_t end = 0;
  for (const auto* spans : {&ranges, &marks, &gpu, &api}) {
    for (const Span& s : *spans) end = std::max(end, s.end_ns);
  }
  return end;
}

void link_range_parents(Trace& trace) {
  // Stable order: by thread, then start, longer (outer) first.
  std::stable_sort(trace.ranges.begin(), trace.ranges.end(), [](const Span& a, const Span& b) {
    if (a.process != b.process) return a.process < b.process;
    if (a.track != b.track) return a.track < b.track;
    if (a.start_ns != b.start_ns) return a.start_ns < b.start_ns;
    return a.end_ns > b.end_ns;
  });
  std::vector<int32_t> stack;
  for (size_t i = 0; i < trace.ranges.size(); ++i) {
    Span& s = trace.ranges[i];
    if (i > 0 &&
        (trace.ranges[i - 1].track != s.track || trace.ranges[i - 1].process != s.process)) {
      stack.clear();
    }
    while (!stack.empty() && trace.ranges[static_cast<size_t>(stack.back())].end_ns <= s.start_ns) {
      stack.pop_back();
    }
    // A range that starts inside the top but ends after it is not nested: treat it as a sibling.
    while (!stack.empty() && trace.ranges[static_cast<size_t>(stack.back())].end_ns < s.end_ns) {
      stack.pop_back();
    }
    s.parent = stack.empty() ? -1 : stack.back();
    stack.push_back(static_cast<int32_t>(i));
  }
}

Trace load_trace(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw TraceError(path + ": cannot open: " + std::strerror(errno));
  char head[16] = {};
  in.read(head, sizeof(head));
  const std::streamsize got = in.gcount();
  if (got >= 8 && std::memcmp(head, "PRISMRAW", 8) == 0) return read_raw_trace_file(path);
  if (got >= 16 && std::memcmp(head, "SQLite format 3", 16) == 0) return read_nsys_sqlite(path);
  in.clear();
  in.seekg(0);
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string text = buffer.str();
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string::npos) throw TraceError(path + ": empty file");
  if (text[first] != '{' && text[first] != '[') {
    throw TraceError(path +
                     ": not a trace (expected a prism raw trace, Chrome trace JSON or an "
                     "Nsight Systems SQLite export)");
  }
  return read_chrome_trace(text, path);
}

}  // namespace prism::analysis
