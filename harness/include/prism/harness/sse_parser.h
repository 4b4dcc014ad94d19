// Incremental parser for text/event-stream (the WHATWG server-sent events
// format) as OpenAI-compatible servers stream it. Bytes arrive in arbitrary
// pieces; an event is dispatched at the blank line that ends it. Only the
// `data` field matters to the harness; `event`, `id`, `retry` and comments
// are accepted and ignored. An event larger than the limit is refused rather
// than buffered without bound.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace prism::harness {

class SseParser {
 public:
  enum class Status { kOk, kOversized, kStopped };

  SseParser() = default;
  explicit SseParser(std::size_t max_event_bytes) : max_event_bytes_(max_event_bytes) {}

  // Feeds bytes; calls on_data(std::string_view data) -> bool for every
  // complete event that has data. Returning false stops parsing (kStopped).
  template <typename OnData>
  Status feed(std::string_view bytes, OnData&& on_data) {
    std::size_t i = 0;
    while (i < bytes.size()) {
      if (skip_lf_) {
        skip_lf_ = false;
        if (bytes[i] == '\n') {
          ++i;
          continue;
        }
      }
      const std::size_t end = bytes.find_first_of("\r\n", i);
      if (end == std::string_view::npos) {
        line_.append(bytes.substr(i));
        if (line_.size() + data_.size() > max_event_bytes_) return Status::kOversized;
        return Status::kOk;
      }
      std::string_view line = bytes.substr(i, end - i);
      if (!line_.empty()) {
        line_.append(line);
        line = line_;
      }
      skip_lf_ = bytes[end] == '\r';
      i = end + 1;
      if (line.size() + data_.size() > max_event_bytes_) return Status::kOversized;
      if (!process_line(line, on_data)) {
        line_.clear();
        return Status::kStopped;
      }
      line_.clear();
    }
    return Status::kOk;
  }

  // True when bytes of an unfinished event are buffered.
  bool has_partial_event() const { return !line_.empty() || has_data_; }
  std::size_t buffered_bytes() const { return line_.capacity() + data_.capacity(); }

 private:
  template <typename OnData>
  bool process_line(std::string_view line, OnData& on_data) {
    if (line.empty()) {
      if (!has_data_) return true;
      has_data_ = false;
      const bool go_on = on_data(std::string_view(data_));
      data_.clear();
      return go_on;
    }
    if (line.front() == ':') return true;  // comment, e.g. keep-alive ": ping"
    const std::size_t colon = line.find(':');
    const std::string_view field = line.substr(0, colon);
    std::string_view value;
    if (colon != std::string_view::npos) {
      value = line.substr(colon + 1);
      if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    }
    if (field == "data") {
      if (has_data_) data_.push_back('\n');
      data_.append(value);
      has_data_ = true;
    }
    return true;
  }

  std::size_t max_event_bytes_ = std::size_t{1} << 20;
  std::string line_;
  std::string data_;
  bool has_data_ = false;
  bool skip_lf_ = false;
};

}  // namespace prism::harness
