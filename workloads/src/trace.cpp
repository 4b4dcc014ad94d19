#include "prism/workloads/trace.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "prism/workloads/workload_json.h"

namespace prism::workloads {
namespace {

[[noreturn]] void fail(const std::string& source, std::size_t line, const std::string& field,
                       const std::string& why) {
  throw WorkloadError(source + ":" + std::to_string(line) + ": " + field + ": " + why);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

// "2023-11-16 18:15:46.6805900" (also "T" separator, optional fraction) -> Unix seconds.
bool parse_datetime(std::string_view s, double& out) {
  int y, mo, d, h, mi, sec;
  if (s.size() < 19) return false;
  auto num = [&](std::size_t pos, std::size_t len, int& v) {
    auto r = std::from_chars(s.data() + pos, s.data() + pos + len, v);
    return r.ec == std::errc() && r.ptr == s.data() + pos + len;
  };
  if (!num(0, 4, y) || s[4] != '-' || !num(5, 2, mo) || s[7] != '-' || !num(8, 2, d) ||
      (s[10] != ' ' && s[10] != 'T') || !num(11, 2, h) || s[13] != ':' || !num(14, 2, mi) ||
      s[16] != ':' || !num(17, 2, sec))
    return false;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return false;
  double frac = 0.0;
  std::size_t pos = 19;
  if (pos < s.size() && s[pos] == '.') {
    double scale = 0.1;
    for (++pos; pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos])); ++pos) {
      frac += (s[pos] - '0') * scale;
      scale /= 10;
    }
  }
  if (pos < s.size() && s[pos] == 'Z') ++pos;
  if (pos != s.size()) return false;
  const std::int64_t days = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  out = static_cast<double>(days * 86400 + h * 3600 + mi * 60 + sec) + frac;
  return true;
}

bool parse_uint32(std::string_view s, std::uint32_t& v) {
  s = trim(s);
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  return !s.empty() && r.ec == std::errc() && r.ptr == s.data() + s.size();
}

void parse_azure(std::string_view text, const std::string& source, std::size_t max_records,
                 Trace& trace) {
  std::size_t pos = 0, line_no = 0;
  int col_time = -1, col_in = -1, col_out = -1;
  std::size_t columns = 0;
  while (pos < text.size()) {
    std::size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (trim(line).empty()) continue;
    std::vector<std::string_view> cells;
    for (std::size_t start = 0;;) {
      const std::size_t comma = line.find(',', start);
      cells.push_back(trim(line.substr(
          start, comma == std::string_view::npos ? std::string_view::npos : comma - start)));
      if (comma == std::string_view::npos) break;
      start = comma + 1;
    }
    if (col_time < 0) {  // header
      for (std::size_t i = 0; i < cells.size(); ++i) {
        const std::string c = lower(cells[i]);
        if (c == "timestamp") col_time = static_cast<int>(i);
        if (c == "contexttokens") col_in = static_cast<int>(i);
        if (c == "generatedtokens") col_out = static_cast<int>(i);
      }
      if (col_time < 0 || col_in < 0 || col_out < 0)
        fail(source, line_no, "header",
             "expected the columns TIMESTAMP,ContextTokens,GeneratedTokens, got \"" +
                 std::string(line) + "\"");
      columns = cells.size();
      continue;
    }
    if (cells.size() != columns)
      fail(source, line_no, "row",
           "expected " + std::to_string(columns) + " columns, got " + std::to_string(cells.size()));
    TraceRecord r;
    r.line = line_no;
    if (!parse_datetime(cells[col_time], r.timestamp_s))
      fail(source, line_no, "TIMESTAMP",
           "expected \"YYYY-MM-DD HH:MM:SS[.fraction]\", got \"" + std::string(cells[col_time]) +
               "\"");
    if (!parse_uint32(cells[col_in], r.input_tokens))
      fail(source, line_no, "ContextTokens",
           "expected a non-negative integer, got \"" + std::string(cells[col_in]) + "\"");
    if (!parse_uint32(cells[col_out], r.output_tokens))
      fail(source, line_no, "GeneratedTokens",
           "expected a non-negative integer, got \"" + std::string(cells[col_out]) + "\"");
    trace.records.push_back(std::move(r));
    if (max_records && trace.records.size() >= max_records) break;
  }
  if (col_time < 0) throw WorkloadError(source + ": empty trace (no header)");
}

void parse_mooncake(std::string_view text, const std::string& source, std::size_t max_records,
                    Trace& trace) {
  std::size_t pos = 0, line_no = 0;
  while (pos < text.size()) {
    std::size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    const std::string_view line = trim(text.substr(pos, eol - pos));
    pos = eol + 1;
    ++line_no;
    if (line.empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      std::string what = e.what();
      if (auto p = what.find("syntax error"); p != std::string::npos) what = what.substr(p);
      fail(source, line_no, "line", "malformed JSON: " + what);
    }
    if (!j.is_object()) fail(source, line_no, "line", "expected a JSON object");
    TraceRecord r;
    r.line = line_no;
    auto number = [&](const char* key, bool required) -> double {
      auto it = j.find(key);
      if (it == j.end()) {
        if (required) fail(source, line_no, key, "missing field");
        return 0;
      }
      if (!it->is_number() || it->get<double>() < 0)
        fail(source, line_no, key, "expected a non-negative number, got " + it->dump());
      return it->get<double>();
    };
    r.timestamp_s = number("timestamp", true) / 1000.0;
    const double in = number("input_length", true), out = number("output_length", true);
    if (in > 4e9 || in != static_cast<std::uint32_t>(in))
      fail(source, line_no, "input_length", "expected an integer token count");
    if (out > 4e9 || out != static_cast<std::uint32_t>(out))
      fail(source, line_no, "output_length", "expected an integer token count");
    r.input_tokens = static_cast<std::uint32_t>(in);
    r.output_tokens = static_cast<std::uint32_t>(out);
    if (auto it = j.find("hash_ids"); it != j.end()) {
      if (!it->is_array()) fail(source, line_no, "hash_ids", "expected an array of integers");
      for (std::size_t i = 0; i < it->size(); ++i) {
        const auto& h = (*it)[i];
        if (!h.is_number_integer() ||
            (h.is_number_integer() && !h.is_number_unsigned() && h.get<std::int64_t>() < 0))
          fail(source, line_no, "hash_ids[" + std::to_string(i) + "]",
               "expected a non-negative integer, got " + h.dump());
        r.hash_ids.push_back(h.get<std::uint64_t>());
      }
    }
    const std::uint64_t blocks = r.hash_ids.size();
    if (blocks > 0 && (blocks - 1) * kMooncakeBlockTokens >= r.input_tokens)
      fail(source, line_no, "hash_ids",
           std::to_string(blocks) + " blocks of " + std::to_string(kMooncakeBlockTokens) +
               " tokens do not fit input_length " + std::to_string(r.input_tokens));
    trace.records.push_back(std::move(r));
    if (max_records && trace.records.size() >= max_records) break;
  }
}

}  // namespace

std::string_view trace_format_name(TraceFormat f) {
  return f == TraceFormat::kAzureCsv ? "azure-csv" : "mooncake-jsonl";
}

Trace parse_trace(std::string_view text, const std::string& source, std::size_t max_records) {
  Trace trace;
  trace.source = source;
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) throw WorkloadError(source + ": empty trace");
  if (text[first] == '{') {
    trace.format = TraceFormat::kMooncakeJsonl;
    parse_mooncake(text, source, max_records, trace);
  } else {
    trace.format = TraceFormat::kAzureCsv;
    parse_azure(text, source, max_records, trace);
  }
  if (trace.records.empty()) throw WorkloadError(source + ": the trace has no requests");
  return trace;
}

Trace read_trace(const std::string& path, std::size_t max_records) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw WorkloadError(path + ": cannot open trace file");
  std::ostringstream s;
  s << in.rdbuf();
  return parse_trace(s.str(), path, max_records);
}

}  // namespace prism::workloads
