// Per-request latency samples derived from observations. This is the one
// definition of TTFT, TPOT, ITL and E2E in Prism; the harness's metrics, the
// store, tables and the compare gate all call it.
//
//   ttft = first token arrival - scheduled time   (queueing and lateness count:
//          no coordinated omission)
//   e2e  = completion - scheduled time
//   tpot = (last token - first token) / (tokens - 1), requests with >= 2 tokens
//   itl  = gaps between consecutive token arrivals
//
// Only successful, non-warmup requests yield samples.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "prism/results/observation.h"

namespace prism::results {

struct RequestSamples {
  std::optional<double> ttft_s;
  std::optional<double> tpot_s;
  std::optional<double> e2e_s;
  std::vector<double> itl_s;
};

// Samples of one request; all empty for warmup or failed requests.
RequestSamples per_request_samples(const Observation& observation);
bool counts_as_measured(const Observation& observation);  // ok and not warmup

// Every measured request's samples of a run, one vector per quantity, in
// request order (unsorted). prompt_tokens and e2e_by_request are aligned with
// each other (one entry per measured request) for latency-by-context plots.
struct RunSamples {
  std::vector<double> ttft_s;
  std::vector<double> tpot_s;
  std::vector<double> e2e_s;
  std::vector<double> itl_s;
  std::vector<double> prompt_tokens;    // one per measured request
  std::vector<double> ttft_by_request;  // aligned with prompt_tokens (NaN when no token)
  std::vector<double> tpot_by_request;  // aligned with prompt_tokens (NaN when < 2 tokens)
  std::vector<double> e2e_by_request;   // aligned with prompt_tokens
  std::size_t requests = 0;             // all non-warmup requests
  std::size_t succeeded = 0;
  std::size_t failed = 0;
  std::uint64_t output_tokens = 0;  // measured requests
  std::uint64_t input_tokens = 0;
  double first_scheduled_s = 0.0;  // measurement window
  double last_completed_s = 0.0;
  double duration_s() const { return last_completed_s - first_scheduled_s; }
  // True after sort_samples(): ttft_s, tpot_s, itl_s and e2e_s are each
  // ascending (the *_by_request vectors keep request order), so metrics need
  // not sort copies.
  bool sorted = false;
};

void sort_samples(RunSamples& samples);

RunSamples collect_samples(std::span<const Observation> observations);

// Which per-request quantity a metric name's prefix names.
enum class Quantity { kTtft, kTpot, kItl, kE2e };
const std::vector<double>& samples_of(const RunSamples& samples, Quantity quantity);

}  // namespace prism::results
