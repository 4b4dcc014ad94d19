// Checks that a workload is possible before anything is run or written:
// negative or zero lengths, broken session/turn structure, segments whose
// content id names different tokens, contexts beyond the declared limit.
#pragma once

#include <string>

#include "prism/workloads/tokenizer.h"
#include "prism/workloads/workload.h"

namespace prism::workloads {

// Throws WorkloadError("<source_name>: <field path>: <reason>") naming the
// first problem found; returns normally when the workload is valid.
void validate_workload(const Workload& workload, const std::string& source_name);

// Checks an arrival spec alone (used by generators before they draw).
void validate_arrival(const ArrivalSpec& arrival, const std::string& where);

// Checks every token id against a tokenizer: inside its vocabulary and not a
// special token. Throws WorkloadError naming the first offending segment.
void validate_tokens(const Workload& workload, const Tokenizer& tokenizer,
                     const std::string& source_name);

}  // namespace prism::workloads
