#include "prism/results/samples.h"

#include <algorithm>
#include <limits>

namespace prism::results {

bool counts_as_measured(const Observation& o) {
  return !o.warmup && o.status == RequestStatus::kOk;
}

RequestSamples per_request_samples(const Observation& o) {
  RequestSamples s;
  if (!counts_as_measured(o)) return s;
  s.e2e_s = o.completed_s - o.scheduled_s;
  const auto& t = o.token_times_s;
  if (t.empty()) return s;
  s.ttft_s = t.front() - o.scheduled_s;
  if (t.size() >= 2) {
    s.tpot_s = (t.back() - t.front()) / static_cast<double>(t.size() - 1);
    s.itl_s.reserve(t.size() - 1);
    for (std::size_t i = 1; i < t.size(); ++i) s.itl_s.push_back(t[i] - t[i - 1]);
  }
  return s;
}

RunSamples collect_samples(std::span<const Observation> observations) {
  RunSamples r;
  bool first = true;
  for (const auto& o : observations) {
    if (o.warmup) continue;
    ++r.requests;
    if (first) {
      r.first_scheduled_s = o.scheduled_s;
      r.last_completed_s = o.completed_s;
      first = false;
    }
    r.first_scheduled_s = std::min(r.first_scheduled_s, o.scheduled_s);
    r.last_completed_s = std::max(r.last_completed_s, o.completed_s);
    if (o.status != RequestStatus::kOk) {
      ++r.failed;
      continue;
    }
    ++r.succeeded;
    const RequestSamples s = per_request_samples(o);
    if (s.ttft_s) r.ttft_s.push_back(*s.ttft_s);
    if (s.tpot_s) r.tpot_s.push_back(*s.tpot_s);
    if (s.e2e_s) r.e2e_s.push_back(*s.e2e_s);
    r.itl_s.insert(r.itl_s.end(), s.itl_s.begin(), s.itl_s.end());
    r.prompt_tokens.push_back(static_cast<double>(o.prompt_tokens));
    r.ttft_by_request.push_back(s.ttft_s.value_or(std::numeric_limits<double>::quiet_NaN()));
    r.tpot_by_request.push_back(s.tpot_s.value_or(std::numeric_limits<double>::quiet_NaN()));
    r.e2e_by_request.push_back(*s.e2e_s);
    r.output_tokens += o.completion_tokens != 0 ? o.completion_tokens : o.token_times_s.size();
    r.input_tokens += o.prompt_tokens;
  }
  return r;
}

void sort_samples(RunSamples& samples) {
  for (auto* v : {&samples.ttft_s, &samples.tpot_s, &samples.itl_s, &samples.e2e_s})
    std::sort(v->begin(), v->end());
  samples.sorted = true;
}

const std::vector<double>& samples_of(const RunSamples& samples, Quantity quantity) {
  switch (quantity) {
    case Quantity::kTtft:
      return samples.ttft_s;
    case Quantity::kTpot:
      return samples.tpot_s;
    case Quantity::kItl:
      return samples.itl_s;
    case Quantity::kE2e:
      break;
  }
  return samples.e2e_s;
}

}  // namespace prism::results
