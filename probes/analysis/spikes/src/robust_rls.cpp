#include "prism/spikes/robust_rls.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace prism::spikes {

RobustRls::RobustRls(int dim, RlsOptions options) : dim_(dim), options_(options) {
  if (dim < 1 || dim > kMaxModelDim)
    throw std::invalid_argument("RobustRls: dimension out of range");
  if (!(options.forgetting > 0 && options.forgetting <= 1))
    throw std::invalid_argument("RobustRls: forgetting must be in (0, 1]");
  for (int i = 0; i < dim_; ++i)
    p_[static_cast<size_t>(i * kMaxModelDim + i)] = options.initial_variance;
}

double RobustRls::predict(const double* x) const {
  double y = 0;
  for (int i = 0; i < dim_; ++i) y += theta_[static_cast<size_t>(i)] * x[i];
  return y;
}

void RobustRls::update(const double* x, double y, double weight) {
  if (!(weight > 0) || !std::isfinite(y)) return;
  const int n = dim_;
  // px = P x; P is symmetric.
  std::array<double, kMaxModelDim> px{};
  double xpx = 0;
  for (int i = 0; i < n; ++i) {
    double s = 0;
    const double* row = &p_[static_cast<size_t>(i * kMaxModelDim)];
    for (int j = 0; j < n; ++j) s += row[j] * x[j];
    px[static_cast<size_t>(i)] = s;
    xpx += x[i] * s;
  }
  // Weighted sample: gain k = P x / (lambda / w + x'P x).
  const double lambda = options_.forgetting;
  const double denom = lambda / weight + xpx;
  if (!(denom > 0)) return;
  const double err = y - predict(x);
  const double inv = 1.0 / denom;
  double trace = 0;
  for (int i = 0; i < n; ++i) {
    const double ki = px[static_cast<size_t>(i)] * inv;
    theta_[static_cast<size_t>(i)] += ki * err;
    double* row = &p_[static_cast<size_t>(i * kMaxModelDim)];
    for (int j = 0; j < n; ++j) row[j] = (row[j] - ki * px[static_cast<size_t>(j)]) / lambda;
    trace += row[i];
  }
  // Keep P symmetric: the plain update drifts numerically over long runs.
  for (int i = 0; i < n; ++i)
    for (int j = i + 1; j < n; ++j) {
      double& a = p_[static_cast<size_t>(i * kMaxModelDim + j)];
      double& b = p_[static_cast<size_t>(j * kMaxModelDim + i)];
      a = b = 0.5 * (a + b);
    }
  if (trace > options_.max_trace) {
    const double f = options_.max_trace / trace;
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) p_[static_cast<size_t>(i * kMaxModelDim + j)] *= f;
  }
  ++samples_;
}

double huber_weight(double u, double c) {
  const double a = std::fabs(u);
  return a <= c ? 1.0 : c / a;
}

double bisquare_weight(double u, double c) {
  const double a = std::fabs(u);
  if (a >= c) return 0.0;
  const double t = 1.0 - (a / c) * (a / c);
  return t * t;
}

}  // namespace prism::spikes
