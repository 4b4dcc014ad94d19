// The robust latency model: recursive least squares with forgetting and
// Huber weights recovers known linear relations, with and without outliers,
// and the detector's per-stage models recover the simulator's cost model.
#include <cmath>
#include <random>
#include <stdexcept>

#include <catch2/catch.hpp>

#include "prism/spikes/detector.h"
#include "prism/spikes/robust_rls.h"
#include "prism/spikes/simulator.h"

using namespace prism::spikes;

namespace {

// y = 3 + 2 x1 - 1 x2 + 0.5 x3, x ~ U(0, 4).
constexpr double kTruth[4] = {3.0, 2.0, -1.0, 0.5};

double truth_at(const double* x) {
  double y = 0;
  for (int i = 0; i < 4; ++i) y += kTruth[i] * x[i];
  return y;
}

// Feeds n samples; every outlier_every-th sample gets +outlier added. With
// robust=true the weight is Huber's on the residual over a running scale, as
// the detector does.
RobustRls fit(int n, int outlier_every, double outlier, bool robust, uint64_t seed = 7) {
  RlsOptions o;
  o.forgetting = 1.0;
  RobustRls m(4, o);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 4.0);
  std::normal_distribution<double> noise(0.0, 0.05);
  double scale = 1.0;
  for (int t = 0; t < n; ++t) {
    double x[4] = {1.0, u(rng), u(rng), u(rng)};
    double y = truth_at(x) + noise(rng);
    if (outlier_every > 0 && t % outlier_every == outlier_every - 1) y += outlier;
    double w = 1.0;
    if (robust && t >= 50) {
      const double r = y - m.predict(x);
      w = huber_weight(r / scale, 1.5);
      scale += 0.02 * (std::min(std::fabs(r), 3.0 * scale) - scale);
    }
    m.update(x, y, w);
  }
  return m;
}

}  // namespace

TEST_CASE("recursive least squares recovers the coefficients of a noisy linear relation",
          "[spikes][model]") {
  const RobustRls m = fit(2000, 0, 0, false);
  for (int i = 0; i < 4; ++i)
    CHECK(m.coefficients()[static_cast<size_t>(i)] == Approx(kTruth[i]).margin(0.02));
  CHECK(m.samples() == 2000);
  const double x[4] = {1, 1, 2, 3};
  CHECK(m.predict(x) == Approx(3 + 2 - 2 + 1.5).margin(0.03));
}

TEST_CASE("Huber weights keep the fit on the truth when a tenth of the samples are outliers",
          "[spikes][model]") {
  // Every 10th sample is 40 units too high (latency spikes in the training data).
  const RobustRls robust = fit(4000, 10, 40.0, true);
  for (int i = 0; i < 4; ++i)
    CHECK(robust.coefficients()[static_cast<size_t>(i)] == Approx(kTruth[i]).margin(0.25));
  // Least squares without weights is pulled up by the outliers' mean (about +4).
  const RobustRls plain = fit(4000, 10, 40.0, false);
  CHECK(plain.coefficients()[0] > kTruth[0] + 2.0);
  CHECK(std::fabs(robust.coefficients()[0] - kTruth[0]) <
        std::fabs(plain.coefficients()[0] - kTruth[0]) / 4);
}

TEST_CASE("forgetting lets the model follow a relation that changed", "[spikes][model]") {
  RlsOptions o;
  o.forgetting = 0.98;
  RobustRls m(2, o);
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (int t = 0; t < 1000; ++t) {
    const double x[2] = {1.0, u(rng)};
    m.update(x, 1.0 + 2.0 * x[1], 1.0);
  }
  CHECK(m.coefficients()[1] == Approx(2.0).margin(1e-6));
  for (int t = 0; t < 1000; ++t) {
    const double x[2] = {1.0, u(rng)};
    m.update(x, 5.0 + 4.0 * x[1], 1.0);
  }
  CHECK(m.coefficients()[0] == Approx(5.0).margin(1e-3));
  CHECK(m.coefficients()[1] == Approx(4.0).margin(1e-3));
}

TEST_CASE("a sample with zero weight or a non-finite target leaves the model untouched",
          "[spikes][model]") {
  RobustRls m(2);
  const double x[2] = {1.0, 2.0};
  m.update(x, 10.0, 1.0);
  const auto before = m.coefficients();
  m.update(x, 1e9, 0.0);
  m.update(x, std::nan(""), 1.0);
  m.update(x, INFINITY, 1.0);
  CHECK(m.coefficients() == before);
  CHECK(m.samples() == 1);
}

TEST_CASE("robust weights: Huber is 1 inside c and c/|u| beyond; bisquare reaches 0 at c",
          "[spikes][model]") {
  CHECK(huber_weight(0.5, 2.0) == 1.0);
  CHECK(huber_weight(-2.0, 2.0) == 1.0);
  CHECK(huber_weight(4.0, 2.0) == Approx(0.5));
  CHECK(huber_weight(-8.0, 2.0) == Approx(0.25));
  CHECK(bisquare_weight(0.0, 4.0) == 1.0);
  CHECK(bisquare_weight(2.0, 4.0) == Approx(0.5625));
  CHECK(bisquare_weight(4.0, 4.0) == 0.0);
  CHECK(bisquare_weight(-9.0, 4.0) == 0.0);
}

TEST_CASE("the model rejects a dimension or forgetting factor out of range", "[spikes][model]") {
  CHECK_THROWS_AS(RobustRls(0), std::invalid_argument);
  CHECK_THROWS_AS(RobustRls(kMaxModelDim + 1), std::invalid_argument);
  RlsOptions o;
  o.forgetting = 0;
  CHECK_THROWS_AS(RobustRls(2, o), std::invalid_argument);
  o.forgetting = 1.5;
  CHECK_THROWS_AS(RobustRls(2, o), std::invalid_argument);
}

TEST_CASE("the detector's stage models recover the simulator's per-stage cost model",
          "[spikes][model]") {
  // Pure workload variation: the only relation in the data is the cost model
  // (plus noise and, for attention, an unmodelled prefill term).
  SimulatorConfig sc;
  sc.seed = 5;
  sc.iterations = 8000;
  sc.faults = false;
  const LabelledRun run = simulate(sc);
  DetectorConfig dc;
  dc.stages = run.series.stages;
  Detector d(dc);
  for (const IterationRecord& r : run.series.iterations) d.observe(r);

  // Coefficients are per scaled feature: c_prefill * 512, c_decode * 32, ...
  const auto& costs = simulator_costs();
  for (const char* stage : {"mlp", "sample", "schedule"}) {
    const size_t s =
        static_cast<size_t>(std::find(run.series.stages.begin(), run.series.stages.end(), stage) -
                            run.series.stages.begin());
    INFO("stage " << stage);
    const auto& theta = d.stage_model(static_cast<int>(s)).coefficients();
    const StageCost& c = costs[s];
    // decode_seqs and batch_size move together (batch = decodes + prefills), so
    // only their sum is identifiable; prefill and context are separate.
    const double want_prefill = c.prefill * dc.feature_scale[0];
    const double want_context = c.context * dc.feature_scale[2];
    const double want_per_seq = c.decode * dc.feature_scale[1] + c.batch * dc.feature_scale[3];
    INFO("theta " << theta[0] << " " << theta[1] << " " << theta[2] << " " << theta[3] << " "
                  << theta[4]);
    CHECK(theta[1] == Approx(want_prefill).epsilon(0.05).margin(2000));
    CHECK(theta[3] == Approx(want_context).margin(2000));
    CHECK(theta[2] + theta[4] == Approx(want_per_seq).epsilon(0.05).margin(2000));
    CHECK(theta[0] == Approx(c.c0).margin(6000));
  }
  // The whole-iteration model predicts a typical iteration within a few percent.
  IterationFeatures f;
  f.prefill_tokens = 256;
  f.decode_seqs = 24;
  f.context_tokens = 30000;
  f.batch_size = 26;
  double truth = 0;
  for (const StageCost& c : costs) truth += c.at(f);
  double x[kMaxModelDim];
  d.basis(f, x);
  CHECK(d.total_model().predict(x) == Approx(truth).epsilon(0.08));
}
