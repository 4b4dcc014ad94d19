#include "prism/workloads/stats.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <unordered_set>

#include "prism/workloads/workload_json.h"

namespace prism::workloads {
namespace {

LengthSummary summarize(std::vector<std::uint64_t> values) {
  LengthSummary s;
  s.count = values.size();
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  for (auto v : values) {
    s.total += v;
    s.histogram.add(v);
  }
  s.min = values.front();
  s.max = values.back();
  s.mean = static_cast<double>(s.total) / static_cast<double>(values.size());
  auto q = [&](double p) {  // type-7 (linear) quantile
    const double h = (static_cast<double>(values.size()) - 1) * p;
    const auto lo = static_cast<std::size_t>(h);
    const auto hi = std::min(lo + 1, values.size() - 1);
    return static_cast<double>(values[lo]) +
           (h - static_cast<double>(lo)) * static_cast<double>(values[hi] - values[lo]);
  };
  s.p50 = q(0.5);
  s.p90 = q(0.9);
  s.p99 = q(0.99);
  return s;
}

std::string line(const char* fmt, auto... args) {
  char buf[256];
  std::snprintf(buf, sizeof buf, fmt, args...);
  return buf;
}

std::string summary_line(const char* label, const LengthSummary& s) {
  return line("  %-14s n=%llu  min=%llu  mean=%.1f  p50=%.0f  p90=%.0f  p99=%.0f  max=%llu\n",
              label, static_cast<unsigned long long>(s.count),
              static_cast<unsigned long long>(s.min), s.mean, s.p50, s.p90, s.p99,
              static_cast<unsigned long long>(s.max));
}

std::string histogram_lines(const LengthSummary& s) {
  std::string out;
  std::uint64_t peak = 0;
  for (auto c : s.histogram.counts) peak = std::max(peak, c);
  for (std::size_t i = 0; i < s.histogram.counts.size(); ++i) {
    const auto c = s.histogram.counts[i];
    if (c == 0) continue;
    const int bar =
        peak ? static_cast<int>(40.0 * static_cast<double>(c) / static_cast<double>(peak) + 0.5)
             : 0;
    out +=
        line("    [%8llu, %8llu)  %8llu  %s\n",
             static_cast<unsigned long long>(Histogram::lower_bound(i)),
             static_cast<unsigned long long>(Histogram::lower_bound(i + 1) == 1 ? 2 : (2ull << i)),
             static_cast<unsigned long long>(c),
             std::string(static_cast<std::size_t>(std::max(bar, 1)), '#').c_str());
  }
  return out;
}

}  // namespace

void Histogram::add(std::uint64_t v) {
  const std::size_t bucket = v <= 1 ? 0 : static_cast<std::size_t>(std::bit_width(v) - 1);
  if (counts.size() <= bucket) counts.resize(bucket + 1, 0);
  ++counts[bucket];
}

WorkloadStats compute_stats(const Workload& w) {
  WorkloadStats st;
  st.sessions = w.sessions.size();
  std::unordered_set<std::string_view> seen;
  std::vector<std::uint64_t> prompts, outputs, depths;
  for (const auto& s : w.sessions) {
    depths.push_back(s.requests.size());
    if (!s.requests.empty())
      st.first_arrival_span_s =
          std::max(st.first_arrival_span_s, s.requests.front().arrival_offset_s);
    for (const auto& r : s.requests) {
      ++st.requests;
      std::uint64_t prompt = 0;
      bool in_prefix = true;
      for (const auto& g : r.segments) {
        const auto n = g.tokens.size();
        prompt += n;
        st.tokens_by_provenance[std::string(provenance_name(g.provenance))] += n;
        if (seen.insert(g.content_id).second) {
          st.distinct_prompt_tokens += n;
          in_prefix = false;
        } else {
          st.reused_prompt_tokens += n;
          if (in_prefix) st.reused_prefix_tokens += n;
        }
      }
      st.prompt_tokens += prompt;
      st.output_tokens += r.output_tokens;
      prompts.push_back(prompt);
      outputs.push_back(r.output_tokens);
    }
  }
  st.distinct_segments = seen.size();
  if (st.prompt_tokens) {
    st.reuse_ratio =
        static_cast<double>(st.reused_prompt_tokens) / static_cast<double>(st.prompt_tokens);
    st.prefix_reuse_ratio =
        static_cast<double>(st.reused_prefix_tokens) / static_cast<double>(st.prompt_tokens);
  }
  st.prompt_lengths = summarize(std::move(prompts));
  st.output_lengths = summarize(std::move(outputs));
  st.session_depth = summarize(std::move(depths));
  return st;
}

std::string format_stats(const Workload& w, const WorkloadStats& st) {
  std::string out;
  out += line("workload      %s (kind %s, seed %llu, tokenizer %s)\n", w.name.c_str(),
              w.kind.c_str(), static_cast<unsigned long long>(w.seed), w.tokenizer.c_str());
  if (!w.description.empty()) out += "description   " + w.description + "\n";
  out += line("arrivals      %s", std::string(arrival_kind_name(w.arrival.kind)).c_str());
  switch (w.arrival.kind) {
    case ArrivalKind::kClosedLoop:
      out += line(", concurrency %u", w.arrival.concurrency);
      break;
    case ArrivalKind::kPoisson:
      out += line(", %.3g req/s", w.arrival.rate_per_s);
      break;
    case ArrivalKind::kGamma:
      out += line(", %.3g req/s, burstiness %.3g", w.arrival.rate_per_s, w.arrival.burstiness);
      break;
    case ArrivalKind::kTrace:
      out += line(", time scale %.3g", w.arrival.time_scale);
      break;
  }
  out += line(", first arrivals span %.3f s\n", st.first_arrival_span_s);
  out += line("requests      %zu in %zu sessions\n", st.requests, st.sessions);
  out += line("tokens        prompt %llu, output %llu, distinct prompt %llu in %zu segments\n",
              static_cast<unsigned long long>(st.prompt_tokens),
              static_cast<unsigned long long>(st.output_tokens),
              static_cast<unsigned long long>(st.distinct_prompt_tokens), st.distinct_segments);
  out += line("reuse ratio   %.4f (tokens in segments seen earlier / all prompt tokens)\n",
              st.reuse_ratio);
  out += line("prefix reuse  %.4f (of it, in a request's leading run of seen segments)\n",
              st.prefix_reuse_ratio);
  out += "by provenance";
  for (const auto& [k, v] : st.tokens_by_provenance)
    out += line("  %s %llu", k.c_str(), static_cast<unsigned long long>(v));
  out += "\n";
  out += "lengths\n";
  out += summary_line("prompt", st.prompt_lengths);
  out += summary_line("output", st.output_lengths);
  out += summary_line("session depth", st.session_depth);
  out += "prompt length histogram\n" + histogram_lines(st.prompt_lengths);
  out += "output length histogram\n" + histogram_lines(st.output_lengths);
  out += "session depth histogram\n" + histogram_lines(st.session_depth);
  return out;
}

}  // namespace prism::workloads
