// The environment record that `prism doctor` prints and that every result
// embeds: what the machine is, what it has, and two measured peaks.
#pragma once

#include <nlohmann/json.hpp>

namespace prism::harness {

struct EnvironmentOptions {
  bool measure = true;                // run the bandwidth and sgemm measurements (about 2 s)
  double gpu_query_timeout_s = 10.0;  // a wedged driver must not hang doctor
};

// Collects the record. Never throws for a missing driver, GPU or CUPTI: those
// are reported as values ("status" strings), not errors.
nlohmann::json collect_environment(const EnvironmentOptions& options = {});

// Human-readable report of a record from collect_environment().
std::string format_environment(const nlohmann::json& environment);

}  // namespace prism::harness
