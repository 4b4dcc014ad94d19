#include "prism/spikes/alerts.h"

#include <sys/wait.h>

#include <stdexcept>

namespace prism::spikes {

namespace {

nlohmann::json features_json(const IterationFeatures& f) {
  nlohmann::json j = nlohmann::json::object();
  for (int i = 0; i < kFeatureCount; ++i)
    j[feature_names()[static_cast<size_t>(i)]] = feature_value(f, i);
  return j;
}

}  // namespace

nlohmann::json verdict_json(const IterationVerdict& v, const std::vector<std::string>& stages) {
  nlohmann::json j;
  j["iteration"] = v.record.index;
  j["start_ns"] = v.record.start_ns;
  j["end_ns"] = v.record.end_ns;
  j["duration_ns"] = v.record.duration_ns();
  j["predicted_ns"] = v.predicted_ns;
  j["bound_ns"] = v.bound_ns;
  j["anomalous"] = v.anomalous;
  if (v.sustained) j["sustained"] = true;
  j["features"] = features_json(v.record.features);
  nlohmann::json s = nlohmann::json::object();
  for (size_t i = 0; i < stages.size() && i < static_cast<size_t>(kMaxStages); ++i)
    s[stages[i]] = v.record.stage_ns[i];
  j["stage_ns"] = std::move(s);
  return j;
}

nlohmann::json spike_alert_json(const SpikeAlert& a, uint64_t detected_ns, bool include_window) {
  nlohmann::json j;
  j["type"] = "spike";
  j["version"] = kAlertFormatVersion;
  j["phase"] = a.phase == AlertPhase::kOpen ? "open" : "closed";
  j["alert_id"] = a.alert_id;
  j["first_iteration"] = a.first_iteration;
  j["last_iteration"] = a.last_iteration;
  j["anomalous_iterations"] = a.anomalous_iterations;
  const IterationVerdict& t = a.trigger;
  j["iteration"] = t.record.index;
  j["start_ns"] = t.record.start_ns;
  j["end_ns"] = t.record.end_ns;
  j["observed_ns"] = t.record.duration_ns();
  j["predicted_ns"] = t.predicted_ns;
  j["bound_ns"] = t.bound_ns;
  j["excess_ns"] = t.excess_ns;
  j["excess_ratio"] = t.predicted_ns > 0 ? t.excess_ns / t.predicted_ns : 0.0;
  j["score"] = t.score;
  j["features"] = features_json(t.record.features);
  if (detected_ns != 0) {
    j["detected_ns"] = detected_ns;
    if (a.phase == AlertPhase::kOpen && detected_ns >= t.record.end_ns)
      j["latency_ns"] = detected_ns - t.record.end_ns;
  }
  j["blamed"] = a.blamed;
  auto& stages = j["stages"] = nlohmann::json::array();
  for (const StageExcess& e : a.stages)
    stages.push_back({{"stage", e.stage},
                      {"observed_ns", e.observed_ns},
                      {"predicted_ns", e.predicted_ns},
                      {"excess_ns", e.excess_ns},
                      {"share", e.share}});
  if (include_window) {
    auto& w = j["window"] = nlohmann::json::array();
    for (const IterationVerdict& v : a.window) w.push_back(verdict_json(v, a.stage_names));
    j["window_truncated"] = a.window_truncated;
  }
  return j;
}

nlohmann::json slo_alert_json(const SloAlert& a) {
  return {{"type", "slo_burn"},
          {"version", kAlertFormatVersion},
          {"phase", a.open ? "open" : "cleared"},
          {"metric", a.metric},
          {"time_ns", a.time_ns},
          {"window_ns", a.window_ns},
          {"requests", a.requests},
          {"over_slo", a.over_slo},
          {"share", a.share},
          {"max_bad_share", a.max_bad_share},
          {"slo_ns", a.slo_ns}};
}

void StreamSink::emit(const nlohmann::json& alert) {
  out_ << alert.dump() << '\n';
  out_.flush();
}

CommandSink::CommandSink(const std::string& command) : command_(command) {
  if (command.empty()) throw std::invalid_argument("--exec: empty command");
  pipe_ = ::popen(command.c_str(), "w");
  if (pipe_ == nullptr) throw std::runtime_error("--exec: cannot start '" + command + "'");
}

CommandSink::~CommandSink() {
  close();
}

void CommandSink::emit(const nlohmann::json& alert) {
  if (pipe_ == nullptr) {
    ++dropped_;
    return;
  }
  const std::string line = alert.dump() + "\n";
  if (std::fwrite(line.data(), 1, line.size(), pipe_) != line.size() || std::fflush(pipe_) != 0)
    ++dropped_;
}

int CommandSink::close() {
  if (pipe_ == nullptr) return 0;
  const int status = ::pclose(pipe_);
  pipe_ = nullptr;
  if (status == -1) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status)
                           : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

}  // namespace prism::spikes
