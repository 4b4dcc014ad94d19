// Length and time distributions for generators, written as short text so the
// command line and the recorded parameters use one syntax:
//   "512" or "fixed:512"        always 512
//   "uniform:128:1024"          uniform in [128, 1024]
//   "normal:1024:256"           mean 1024, standard deviation 256
//   "lognormal:1024:0.5"        median 1024, sigma of the log 0.5
//   "exponential:2.5"           mean 2.5 (think times)
//   "empirical:PATH:input"      resampled from a trace's input (or output) lengths
// Lengths are rounded and clamped to at least 1; times to at least 0.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "prism/workloads/random.h"

namespace prism::workloads {

struct Distribution {
  enum class Kind { kFixed, kUniform, kNormal, kLognormal, kExponential, kEmpirical };
  Kind kind = Kind::kFixed;
  double a = 0.0;               // fixed value, low, mean or median
  double b = 0.0;               // high, standard deviation or sigma
  std::vector<double> samples;  // empirical
  std::string text;             // the spelling it was parsed from

  static Distribution fixed(double v);
  // Throws WorkloadError("<what>: ...") on bad syntax or impossible values.
  static Distribution parse(std::string_view text, const std::string& what);

  double draw(Rng& rng) const;
  std::uint32_t draw_length(Rng& rng) const;  // >= 1
  double draw_time(Rng& rng) const;           // >= 0
  double mean() const;
};

}  // namespace prism::workloads
