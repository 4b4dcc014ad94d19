// Real request traces: Azure LLM inference CSV and Mooncake JSONL. The
// format is detected from the content; every malformed line is reported as
// file:line and the field.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace prism::workloads {

enum class TraceFormat { kAzureCsv, kMooncakeJsonl };

struct TraceRecord {
  double timestamp_s = 0.0;  // absolute, as in the file (Azure: Unix time; Mooncake: ms / 1000)
  std::uint32_t input_tokens = 0;
  std::uint32_t output_tokens = 0;
  std::vector<std::uint64_t> hash_ids;  // Mooncake: one per 512-token block
  std::size_t line = 0;
};

struct Trace {
  TraceFormat format = TraceFormat::kAzureCsv;
  std::string source;
  std::vector<TraceRecord> records;
};

inline constexpr std::uint32_t kMooncakeBlockTokens = 512;

// Parses trace text; `max_records` > 0 stops after that many requests.
// Throws WorkloadError("<source>:<line>: <field>: <reason>").
Trace parse_trace(std::string_view text, const std::string& source, std::size_t max_records = 0);
Trace read_trace(const std::string& path, std::size_t max_records = 0);

std::string_view trace_format_name(TraceFormat f);  // "azure-csv", "mooncake-jsonl"

}  // namespace prism::workloads
