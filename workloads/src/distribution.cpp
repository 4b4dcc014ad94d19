#include "prism/workloads/distribution.h"

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "prism/workloads/trace.h"
#include "prism/workloads/workload_json.h"

namespace prism::workloads {
namespace {

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (true) {
    const auto p = s.find(sep, start);
    out.emplace_back(
        s.substr(start, p == std::string_view::npos ? std::string_view::npos : p - start));
    if (p == std::string_view::npos) return out;
    start = p + 1;
  }
}

double number(const std::string& s, const std::string& what, const std::string& text) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || !std::isfinite(v))
    throw WorkloadError(what + ": \"" + text + "\": \"" + s + "\" is not a number");
  return v;
}

}  // namespace

Distribution Distribution::fixed(double v) {
  Distribution d;
  d.kind = Kind::kFixed;
  d.a = v;
  d.text = std::to_string(v);
  if (v == std::floor(v) && std::fabs(v) < 1e15) d.text = std::to_string(static_cast<long long>(v));
  return d;
}

Distribution Distribution::parse(std::string_view text_view, const std::string& what) {
  const std::string text(text_view);
  Distribution d;
  d.text = text;
  auto bad = [&](const std::string& why) {
    return WorkloadError(what + ": \"" + text + "\": " + why);
  };
  const auto parts = split(text, ':');
  const std::string& name = parts[0];
  auto args = [&](std::size_t n) {
    if (parts.size() != n + 1)
      throw bad("expected " + std::to_string(n) + " parameter(s) after \"" + name + ":\"");
  };
  if (parts.size() == 1) {
    d.kind = Kind::kFixed;
    d.a = number(name, what, text);
  } else if (name == "fixed") {
    args(1);
    d.kind = Kind::kFixed;
    d.a = number(parts[1], what, text);
  } else if (name == "uniform") {
    args(2);
    d.kind = Kind::kUniform;
    d.a = number(parts[1], what, text);
    d.b = number(parts[2], what, text);
    if (d.b < d.a) throw bad("the upper bound is below the lower bound");
  } else if (name == "normal") {
    args(2);
    d.kind = Kind::kNormal;
    d.a = number(parts[1], what, text);
    d.b = number(parts[2], what, text);
    if (d.b < 0) throw bad("the standard deviation must not be negative");
  } else if (name == "lognormal") {
    args(2);
    d.kind = Kind::kLognormal;
    d.a = number(parts[1], what, text);
    d.b = number(parts[2], what, text);
    if (d.a <= 0) throw bad("the median must be positive");
    if (d.b < 0) throw bad("sigma must not be negative");
  } else if (name == "exponential") {
    args(1);
    d.kind = Kind::kExponential;
    d.a = number(parts[1], what, text);
    if (d.a <= 0) throw bad("the mean must be positive");
  } else if (name == "empirical") {
    // empirical:PATH[:input|output]; PATH may not contain ':'.
    if (parts.size() < 2 || parts.size() > 3) throw bad("expected empirical:PATH[:input|output]");
    const std::string column = parts.size() == 3 ? parts[2] : "input";
    if (column != "input" && column != "output") throw bad("the column must be input or output");
    const Trace trace = read_trace(parts[1]);
    d.kind = Kind::kEmpirical;
    for (const auto& r : trace.records)
      d.samples.push_back(column == "input" ? r.input_tokens : r.output_tokens);
  } else {
    throw bad(
        "unknown distribution \"" + name +
        "\" (expected a number, fixed, uniform, normal, lognormal, exponential or empirical)");
  }
  if ((d.kind == Kind::kFixed || d.kind == Kind::kUniform || d.kind == Kind::kNormal) && d.a < 0)
    throw bad("lengths and times must not be negative");
  return d;
}

double Distribution::draw(Rng& rng) const {
  switch (kind) {
    case Kind::kFixed:
      return a;
    case Kind::kUniform:
      return a + (b - a) * rng.uniform();
    case Kind::kNormal:
      return a + b * rng.normal();
    case Kind::kLognormal:
      return a * std::exp(b * rng.normal());
    case Kind::kExponential:
      return rng.exponential(a);
    case Kind::kEmpirical:
      return samples[rng.below(samples.size())];
  }
  return a;
}

std::uint32_t Distribution::draw_length(Rng& rng) const {
  double v;
  if (kind == Kind::kUniform) {  // integers in [ceil(a), floor(b)], each equally likely
    const double lo = std::ceil(a), hi = std::floor(b);
    v = hi >= lo ? lo + static_cast<double>(rng.below(static_cast<std::uint64_t>(hi - lo) + 1))
                 : std::round(a);
  } else {
    v = std::round(draw(rng));
  }
  if (!(v >= 1)) return 1;
  if (v > 4e9) return 4000000000u;
  return static_cast<std::uint32_t>(v);
}

double Distribution::draw_time(Rng& rng) const {
  const double v = draw(rng);
  return v > 0 ? v : 0.0;
}

double Distribution::mean() const {
  switch (kind) {
    case Kind::kFixed:
      return a;
    case Kind::kUniform:
      return (a + b) / 2;
    case Kind::kNormal:
      return a;
    case Kind::kLognormal:
      return a * std::exp(b * b / 2);
    case Kind::kExponential:
      return a;
    case Kind::kEmpirical: {
      double s = 0;
      for (double x : samples) s += x;
      return samples.empty() ? 0 : s / static_cast<double>(samples.size());
    }
  }
  return a;
}

}  // namespace prism::workloads
