// Alerts as JSON lines, and where they go: a stream (stdout, a file) or the
// stdin of a user command (`--exec CMD`), one object per line.
#pragma once

#include <cstdio>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "prism/spikes/detector.h"
#include "prism/spikes/slo_burn.h"

namespace prism::spikes {

inline constexpr int kAlertFormatVersion = 1;

// {"type":"spike","version":1,"phase":"open"|"closed",...}; see README.md.
// detected_ns: when the alert was raised (same clock as the iteration times),
// 0 when unknown; latency_ns is then left out.
nlohmann::json spike_alert_json(const SpikeAlert& alert, uint64_t detected_ns = 0,
                                bool include_window = true);
nlohmann::json slo_alert_json(const SloAlert& alert);
nlohmann::json verdict_json(const IterationVerdict& v, const std::vector<std::string>& stages);

class AlertSink {
 public:
  virtual ~AlertSink() = default;
  virtual void emit(const nlohmann::json& alert) = 0;
};

// Writes each alert as one line and flushes.
class StreamSink : public AlertSink {
 public:
  explicit StreamSink(std::ostream& out) : out_(out) {}
  void emit(const nlohmann::json& alert) override;

 private:
  std::ostream& out_;
};

// Keeps alerts in memory (tests, evaluation).
class MemorySink : public AlertSink {
 public:
  void emit(const nlohmann::json& alert) override { alerts.push_back(alert); }
  std::vector<nlohmann::json> alerts;
};

// Starts `sh -c CMD` once and writes each alert line to its stdin. If the
// command exits early, later alerts are dropped (counted) rather than killing
// the caller; callers should ignore SIGPIPE (the prism CLI does).
class CommandSink : public AlertSink {
 public:
  explicit CommandSink(const std::string& command);
  ~CommandSink() override;
  CommandSink(const CommandSink&) = delete;
  CommandSink& operator=(const CommandSink&) = delete;
  void emit(const nlohmann::json& alert) override;
  // Closes the pipe and waits for the command; returns its exit status.
  int close();
  uint64_t dropped() const { return dropped_; }

 private:
  std::FILE* pipe_ = nullptr;
  uint64_t dropped_ = 0;
  std::string command_;
};

// Sends each alert to every sink.
class FanoutSink : public AlertSink {
 public:
  void add(AlertSink* sink) { sinks_.push_back(sink); }
  void emit(const nlohmann::json& alert) override {
    for (AlertSink* s : sinks_) s->emit(alert);
  }

 private:
  std::vector<AlertSink*> sinks_;
};

}  // namespace prism::spikes
