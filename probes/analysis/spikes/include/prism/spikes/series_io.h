// Iteration series as CSV: the probes' per-iteration breakdown
// (iterations.csv from `prism analyze` / `prism attach`: iteration, start_ns,
// end_ns, duration_ns, <stage>_ns, <stage>_gpu_ns, ...) and Prism's own
// labelled form, which adds the feature columns (prefill_tokens, decode_seqs,
// context_tokens, batch_size) and a `fault` label column.
#pragma once

#include <stdexcept>
#include <string>

#include "prism/spikes/simulator.h"

namespace prism::spikes {

class SeriesError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Parses CSV text; errors name origin, line and column. Stage columns are the
// `<name>_ns` columns other than start/end/duration and `*_gpu_ns` (at most
// kMaxStages; more throws). Missing feature columns leave has_features false.
LabelledRun read_series_csv(const std::string& text, const std::string& origin);
LabelledRun read_series_csv_file(const std::string& path);
std::string write_series_csv(const LabelledRun& run);

}  // namespace prism::spikes
