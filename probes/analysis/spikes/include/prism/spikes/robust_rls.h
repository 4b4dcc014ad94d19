// Recursive least squares with exponential forgetting and per-sample weights:
// minimises sum_i lambda^(t-i) w_i (y_i - theta'x_i)^2 online in O(d^2) per
// sample. The caller supplies robust weights (Huber, bisquare) so outliers
// pull the fit little or not at all.
#pragma once

#include <array>
#include <cstdint>

namespace prism::spikes {

inline constexpr int kMaxModelDim = 6;

struct RlsOptions {
  double forgetting = 0.999;      // lambda in (0, 1]; memory ~ 1 / (1 - lambda) samples
  double initial_variance = 1e6;  // P(0) = initial_variance * I: a weak prior at theta = 0
  double max_trace = 1e9;         // P is rescaled when its trace exceeds this (windup guard)
};

class RobustRls {
 public:
  RobustRls() : RobustRls(1) {}
  explicit RobustRls(int dim, RlsOptions options = {});

  int dim() const { return dim_; }
  double predict(const double* x) const;
  // One weighted sample; weight <= 0 leaves the model untouched.
  void update(const double* x, double y, double weight);
  const std::array<double, kMaxModelDim>& coefficients() const { return theta_; }
  uint64_t samples() const { return samples_; }

 private:
  int dim_;
  RlsOptions options_;
  std::array<double, kMaxModelDim> theta_{};
  std::array<double, kMaxModelDim * kMaxModelDim> p_{};
  uint64_t samples_ = 0;
};

// Robust weights for a standardized residual u = r / scale.
double huber_weight(double u, double c);
double bisquare_weight(double u, double c);

}  // namespace prism::spikes
