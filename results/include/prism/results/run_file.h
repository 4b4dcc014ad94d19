// Result schema v1: one JSON document per run. See results/README.md for the
// field-by-field description. Later schema versions must keep the reader able
// to name what is wrong with a file it cannot read.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "prism/results/atomic_file.h"
#include "prism/results/observation.h"

namespace prism::results {

inline constexpr const char* kRunSchemaName = "prism.run";
inline constexpr int kRunSchemaVersion = 1;

struct Run {
  std::string run_id;
  std::string started_at;   // ISO-8601 UTC, e.g. 2026-11-24T15:16:26.123Z
  std::string finished_at;  // empty while the run is in progress
  bool complete = true;  // false when interrupted (Ctrl-C, SIGTERM, a limit, a crash of the target)
  std::string incomplete_reason;
  std::string prism_version;
  std::string prism_git_sha;
  nlohmann::json environment = nlohmann::json::object();    // `prism doctor --json`
  nlohmann::json configuration = nlohmann::json::object();  // command-line options, SLOs, limits
  nlohmann::json target = nlohmann::json::object();         // what was measured
  nlohmann::json workload = nullptr;                        // workload summary and hash
  std::vector<Observation> observations;
  nlohmann::json metrics = nullptr;  // computed metrics (TTFT, TPOT, ...)
  nlohmann::json stages = nullptr;   // per-stage breakdowns from the probes
};

// A result file that cannot be read as schema v1. what() names the file and the field.
class ResultFileError : public FileError {
 public:
  ResultFileError(const std::string& file, const std::string& field, const std::string& problem);
  const std::string& file() const { return file_; }
  const std::string& field() const { return field_; }

 private:
  std::string file_;
  std::string field_;
};

nlohmann::json run_to_json(const Run& run);
nlohmann::json observation_to_json(const Observation& observation);
// `source` names the document in errors (a path, or "<memory>").
Run run_from_json(const nlohmann::json& document, const std::string& source);
Observation observation_from_json(const nlohmann::json& object, const std::string& source,
                                  const std::string& field_prefix);

void write_run_file(const std::string& path, const Run& run);
Run read_run_file(const std::string& path);

std::string to_string(RequestStatus status);
std::string to_string(ErrorClass error);
RequestStatus request_status_from_string(const std::string& text);  // throws std::invalid_argument
ErrorClass error_class_from_string(const std::string& text);        // throws std::invalid_argument

// A fresh, sortable run id: UTC time plus random suffix, e.g. 20261124T151626Z-3fa9c1.
std::string new_run_id();
std::string utc_timestamp_now();

}  // namespace prism::results
