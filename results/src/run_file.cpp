#include "prism/results/run_file.h"

#include <array>
#include <chrono>
#include <ctime>
#include <random>
#include <stdexcept>

#include <fmt/core.h>

namespace prism::results {
namespace {

using nlohmann::json;

constexpr std::array<std::pair<RequestStatus, const char*>, 3> kStatusNames{{
    {RequestStatus::kOk, "ok"},
    {RequestStatus::kError, "error"},
    {RequestStatus::kCancelled, "cancelled"},
}};

constexpr std::array<std::pair<ErrorClass, const char*>, 8> kErrorNames{{
    {ErrorClass::kNone, "none"},
    {ErrorClass::kConnect, "connect"},
    {ErrorClass::kHttpStatus, "http_status"},
    {ErrorClass::kTimeout, "timeout"},
    {ErrorClass::kStreamCut, "stream_cut"},
    {ErrorClass::kMalformedSse, "malformed_sse"},
    {ErrorClass::kOversized, "oversized"},
    {ErrorClass::kOther, "other"},
}};

// Typed field access that names the file and the field on every failure.
class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  const json& require(const json& object, const std::string& prefix, const char* key,
                      json::value_t type) const {
    const std::string field = prefix.empty() ? key : prefix + "." + key;
    auto it = object.find(key);
    if (it == object.end()) throw ResultFileError(source_, field, "missing required field");
    if (!matches(*it, type)) {
      throw ResultFileError(source_, field,
                            fmt::format("expected {}, found {}", type_name(type), it->type_name()));
    }
    return *it;
  }

  std::string string(const json& o, const std::string& prefix, const char* key) const {
    return require(o, prefix, key, json::value_t::string).get<std::string>();
  }
  double number(const json& o, const std::string& prefix, const char* key) const {
    return require(o, prefix, key, json::value_t::number_float).get<double>();
  }
  std::uint64_t unsigned_integer(const json& o, const std::string& prefix, const char* key) const {
    return require(o, prefix, key, json::value_t::number_unsigned).get<std::uint64_t>();
  }
  const std::string& source() const { return source_; }

 private:
  static bool matches(const json& value, json::value_t type) {
    switch (type) {
      case json::value_t::number_float:
        return value.is_number();
      case json::value_t::number_unsigned:
        return value.is_number_unsigned() ||
               (value.is_number_integer() && value.get<std::int64_t>() >= 0);
      case json::value_t::number_integer:
        return value.is_number_integer();
      default:
        return value.type() == type;
    }
  }
  static const char* type_name(json::value_t type) {
    switch (type) {
      case json::value_t::number_float:
        return "number";
      case json::value_t::number_unsigned:
        return "non-negative integer";
      case json::value_t::number_integer:
        return "integer";
      case json::value_t::string:
        return "string";
      case json::value_t::boolean:
        return "boolean";
      case json::value_t::array:
        return "array";
      case json::value_t::object:
        return "object";
      default:
        return "value";
    }
  }
  std::string source_;
};

}  // namespace

ResultFileError::ResultFileError(const std::string& file, const std::string& field,
                                 const std::string& problem)
    : FileError(fmt::format("{}: field '{}': {}", file, field, problem)),
      file_(file),
      field_(field) {}

std::string to_string(RequestStatus status) {
  for (const auto& [value, name] : kStatusNames)
    if (value == status) return name;
  return "error";
}

std::string to_string(ErrorClass error) {
  for (const auto& [value, name] : kErrorNames)
    if (value == error) return name;
  return "other";
}

RequestStatus request_status_from_string(const std::string& text) {
  for (const auto& [value, name] : kStatusNames)
    if (text == name) return value;
  throw std::invalid_argument(fmt::format("unknown request status '{}'", text));
}

ErrorClass error_class_from_string(const std::string& text) {
  for (const auto& [value, name] : kErrorNames)
    if (text == name) return value;
  throw std::invalid_argument(fmt::format("unknown error class '{}'", text));
}

json observation_to_json(const Observation& o) {
  json j = {
      {"request_id", o.request_id},
      {"session", o.session},
      {"turn", o.turn},
      {"warmup", o.warmup},
      {"scheduled_s", o.scheduled_s},
      {"sent_s", o.sent_s},
      {"token_times_s", o.token_times_s},
      {"completed_s", o.completed_s},
      {"prompt_tokens", o.prompt_tokens},
      {"completion_tokens", o.completion_tokens},
      {"cached_tokens", o.cached_tokens},
      {"status", to_string(o.status)},
      {"error", to_string(o.error)},
  };
  if (o.http_status != 0) j["http_status"] = o.http_status;
  if (!o.error_message.empty()) j["error_message"] = o.error_message;
  return j;
}

Observation observation_from_json(const json& j, const std::string& source,
                                  const std::string& prefix) {
  const Reader r(source);
  if (!j.is_object()) throw ResultFileError(source, prefix, "expected object");
  Observation o;
  o.request_id = r.unsigned_integer(j, prefix, "request_id");
  o.session = r.unsigned_integer(j, prefix, "session");
  o.turn = static_cast<std::uint32_t>(r.unsigned_integer(j, prefix, "turn"));
  o.warmup = r.require(j, prefix, "warmup", json::value_t::boolean).get<bool>();
  o.scheduled_s = r.number(j, prefix, "scheduled_s");
  o.sent_s = r.number(j, prefix, "sent_s");
  const json& times = r.require(j, prefix, "token_times_s", json::value_t::array);
  o.token_times_s.reserve(times.size());
  for (std::size_t i = 0; i < times.size(); ++i) {
    if (!times[i].is_number()) {
      throw ResultFileError(source, fmt::format("{}.token_times_s[{}]", prefix, i),
                            "expected number");
    }
    o.token_times_s.push_back(times[i].get<double>());
  }
  o.completed_s = r.number(j, prefix, "completed_s");
  o.prompt_tokens = static_cast<std::uint32_t>(r.unsigned_integer(j, prefix, "prompt_tokens"));
  o.completion_tokens =
      static_cast<std::uint32_t>(r.unsigned_integer(j, prefix, "completion_tokens"));
  o.cached_tokens = static_cast<std::uint32_t>(r.unsigned_integer(j, prefix, "cached_tokens"));
  try {
    o.status = request_status_from_string(r.string(j, prefix, "status"));
    o.error = error_class_from_string(r.string(j, prefix, "error"));
  } catch (const std::invalid_argument& e) {
    throw ResultFileError(source, prefix + ".status/error", e.what());
  }
  if (auto it = j.find("http_status"); it != j.end() && it->is_number_integer()) {
    o.http_status = it->get<int>();
  }
  if (auto it = j.find("error_message"); it != j.end() && it->is_string()) {
    o.error_message = it->get<std::string>();
  }
  return o;
}

json run_to_json(const Run& run) {
  json observations = json::array();
  for (const auto& o : run.observations) observations.push_back(observation_to_json(o));
  json j = {
      {"schema", kRunSchemaName},
      {"schema_version", kRunSchemaVersion},
      {"run_id", run.run_id},
      {"started_at", run.started_at},
      {"finished_at", run.finished_at},
      {"complete", run.complete},
      {"prism", {{"version", run.prism_version}, {"git_sha", run.prism_git_sha}}},
      {"environment", run.environment},
      {"configuration", run.configuration},
      {"target", run.target},
      {"workload", run.workload},
      {"observations", std::move(observations)},
      {"metrics", run.metrics},
      {"stages", run.stages},
  };
  if (!run.complete) j["incomplete_reason"] = run.incomplete_reason;
  return j;
}

Run run_from_json(const json& j, const std::string& source) {
  const Reader r(source);
  if (!j.is_object()) throw ResultFileError(source, "(document)", "expected a JSON object");
  const std::string schema = r.string(j, "", "schema");
  if (schema != kRunSchemaName) {
    throw ResultFileError(source, "schema",
                          fmt::format("expected '{}', found '{}'", kRunSchemaName, schema));
  }
  const json& version = r.require(j, "", "schema_version", json::value_t::number_integer);
  if (version.get<std::int64_t>() != kRunSchemaVersion) {
    throw ResultFileError(source, "schema_version",
                          fmt::format("unsupported version {} (this Prism reads version {})",
                                      version.dump(), kRunSchemaVersion));
  }
  Run run;
  run.run_id = r.string(j, "", "run_id");
  if (run.run_id.empty()) throw ResultFileError(source, "run_id", "must not be empty");
  run.started_at = r.string(j, "", "started_at");
  run.finished_at = r.string(j, "", "finished_at");
  run.complete = r.require(j, "", "complete", json::value_t::boolean).get<bool>();
  if (!run.complete) {
    if (auto it = j.find("incomplete_reason"); it != j.end() && it->is_string())
      run.incomplete_reason = it->get<std::string>();
  }
  const json& prism = r.require(j, "", "prism", json::value_t::object);
  run.prism_version = r.string(prism, "prism", "version");
  run.prism_git_sha = r.string(prism, "prism", "git_sha");
  run.environment = r.require(j, "", "environment", json::value_t::object);
  run.configuration = r.require(j, "", "configuration", json::value_t::object);
  run.target = r.require(j, "", "target", json::value_t::object);
  run.workload = j.value("workload", json(nullptr));
  const json& observations = r.require(j, "", "observations", json::value_t::array);
  run.observations.reserve(observations.size());
  for (std::size_t i = 0; i < observations.size(); ++i) {
    run.observations.push_back(
        observation_from_json(observations[i], source, fmt::format("observations[{}]", i)));
  }
  run.metrics = j.value("metrics", json(nullptr));
  run.stages = j.value("stages", json(nullptr));
  return run;
}

void write_run_file(const std::string& path, const Run& run) {
  write_file_atomically(path, run_to_json(run).dump(1) + "\n");
}

Run read_run_file(const std::string& path) {
  const std::string text = read_file(path);
  json document;
  try {
    document = json::parse(text);
  } catch (const json::parse_error& e) {
    throw ResultFileError(path, "(document)", fmt::format("not valid JSON: {}", e.what()));
  }
  return run_from_json(document, path);
}

std::string utc_timestamp_now() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &utc);
  return fmt::format("{}.{:03d}Z", buf, static_cast<int>(millis));
}

std::string new_run_id() {
  const std::time_t seconds = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &utc);
  std::random_device device;
  return fmt::format("{}-{:06x}", buf, device() & 0xffffffu);
}

}  // namespace prism::results
