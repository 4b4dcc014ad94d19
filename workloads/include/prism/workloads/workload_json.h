// The workload spec on disk: versioned JSON ("spec_version": 1). Segment
// tokens are stored once per content id in a "contents" table and requests
// refer to them by id, so a multi-turn workload whose history repeats every
// turn stays small and reuse is explicit. README.md documents the format.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "prism/workloads/workload.h"

namespace prism::workloads {

// Every error the workloads module reports about its input: the message names
// the file (or source), the line where there is one, and the field path.
class WorkloadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::string_view provenance_name(Provenance p);         // "system", "document", ...
Provenance parse_provenance(std::string_view name);     // throws WorkloadError
std::string_view arrival_kind_name(ArrivalKind k);      // "closed-loop", "poisson", ...
ArrivalKind parse_arrival_kind(std::string_view name);  // throws WorkloadError

// The JSON value of a workload (keys sorted; contents in first-use order).
nlohmann::json to_json(const Workload& workload);

// Builds and validates a workload from its JSON value. Errors are
// WorkloadError("<source_name>: <field path>: <reason>").
Workload workload_from_json(const nlohmann::json& json, const std::string& source_name);

// Reads, parses and validates a spec file. Syntax errors name file:line:column.
Workload read_workload_file(const std::string& path);

// Compact JSON text of the workload, byte-identical for identical workloads
// (equal to to_json(workload).dump(), written directly for speed).
std::string serialize_workload(const Workload& workload);

}  // namespace prism::workloads
