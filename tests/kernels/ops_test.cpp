#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "prism/baselines/oracles.h"
#include "prism/kernels/ops.h"
#include "prism/kernels/threading.h"
#include "test_util.h"

using namespace prism::kernels;
using prism::baselines::relative_l2_error;
using prism::kernels::testing::random_vector;

TEST_CASE("RMSNorm matches the oracle for odd and vector-multiple widths") {
  for (int dim : {1, 7, 64, 4096 + 3}) {
    for (int rows : {1, 5}) {
      const auto x = random_vector(static_cast<std::size_t>(rows) * dim, dim + rows, -3, 3);
      const auto w = random_vector(dim, dim + 1);
      std::vector<float> out(x.size()), ref(x.size());
      rms_norm(x.data(), w.data(), out.data(), rows, dim, 1e-5f);
      prism::baselines::reference_rms_norm(x.data(), w.data(), ref.data(), rows, dim, 1e-5f);
      INFO("dim=" << dim);
      CHECK(relative_l2_error(out, ref) < 1e-6);
    }
  }
}

TEST_CASE("Fused residual add and RMSNorm updates the residual and normalises it") {
  const int rows = 3, dim = 96;
  auto res = random_vector(rows * dim, 1);
  const auto x = random_vector(rows * dim, 2), w = random_vector(dim, 3);
  std::vector<float> expected_res(res), out(res.size()), ref(res.size());
  for (std::size_t i = 0; i < res.size(); ++i) expected_res[i] += x[i];
  add_rms_norm(res.data(), x.data(), w.data(), out.data(), rows, dim, 1e-6f);
  prism::baselines::reference_rms_norm(expected_res.data(), w.data(), ref.data(), rows, dim, 1e-6f);
  CHECK(relative_l2_error(res, expected_res) == 0.0);
  CHECK(relative_l2_error(out, ref) < 1e-6);
}

TEST_CASE(
    "RoPE rotates both styles like the oracle, with large positions and partial rotary dims") {
  for (auto style : {RopeStyle::half, RopeStyle::interleaved}) {
    for (int rot : {0, 32}) {
      const int tokens = 5, heads = 3, d = 64;
      auto x = random_vector(static_cast<std::size_t>(tokens) * heads * d, 10);
      auto ref = x;
      std::vector<std::int32_t> pos{0, 1, 17, 4095, 131071};
      RopeParams p{500000.0f, rot, style};
      apply_rope(x.data(), tokens, heads, d, pos, p);
      prism::baselines::reference_rope(ref.data(), tokens, heads, d, pos, p);
      CHECK(relative_l2_error(x, ref) < 1e-6);
    }
  }
}

TEST_CASE("RoPE at position zero is the identity and preserves norms elsewhere") {
  auto x = random_vector(2 * 128, 11);
  const auto orig = x;
  std::vector<std::int32_t> pos{0, 999};
  apply_rope(x.data(), 2, 1, 128, pos, RopeParams{});
  for (int i = 0; i < 128; ++i) CHECK(x[i] == orig[i]);
  double n0 = 0, n1 = 0;
  for (int i = 128; i < 256; ++i) {
    n0 += orig[i] * orig[i];
    n1 += x[i] * x[i];
  }
  CHECK(n1 == Approx(n0).epsilon(1e-5));
  CHECK_THROWS_WITH(
      apply_rope(x.data(), 2, 1, 128, std::span<const std::int32_t>(pos.data(), 1), RopeParams{}),
      Catch::Contains("positions"));
}

TEST_CASE("SwiGLU matches the oracle including large-magnitude gates") {
  const int rows = 4, dim = 333;
  const auto gate = random_vector(rows * dim, 20, -30, 30), up = random_vector(rows * dim, 21);
  std::vector<float> out(gate.size()), ref(gate.size());
  swiglu(gate.data(), up.data(), out.data(), rows, dim);
  prism::baselines::reference_swiglu(gate.data(), up.data(), ref.data(), rows, dim);
  CHECK(relative_l2_error(out, ref) < 1e-6);
  std::vector<float> fused(rows * 2 * dim), out2(out.size());
  for (int r = 0; r < rows; ++r)
    for (int i = 0; i < dim; ++i) {
      fused[r * 2 * dim + i] = gate[r * dim + i];
      fused[r * 2 * dim + dim + i] = up[r * dim + i];
    }
  swiglu_fused(fused.data(), out2.data(), rows, dim);
  CHECK(relative_l2_error(out2, ref) < 1e-6);
}

TEST_CASE("GEMM computes y = x W^T like the oracle, with beta accumulation") {
  for (auto [m, n, k] : {std::tuple{1, 1, 1}, std::tuple{3, 17, 64}, std::tuple{33, 65, 129}}) {
    const auto x = random_vector(static_cast<std::size_t>(m) * k, m + 1);
    const auto w = random_vector(static_cast<std::size_t>(n) * k, n + 2);
    std::vector<float> y(static_cast<std::size_t>(m) * n), ref(y.size());
    linear(x.data(), w.data(), y.data(), m, n, k);
    prism::baselines::reference_gemm(x.data(), w.data(), ref.data(), m, n, k);
    CHECK(relative_l2_error(y, ref) < 1e-5);
    gemm(GemmArgs{
        .m = m, .n = n, .k = k, .x = x.data(), .w = w.data(), .y = y.data(), .beta = 1.0f});
    for (auto& r : ref) r *= 2.0f;
    CHECK(relative_l2_error(y, ref) < 1e-5);
  }
  CHECK_THROWS_AS(gemm(GemmArgs{.m = -1}), std::invalid_argument);
}

TEST_CASE("bf16 conversion rounds to nearest even and keeps NaN and infinities") {
  CHECK(bf16_to_float(float_to_bf16(1.0f)) == 1.0f);
  CHECK(bf16_to_float(float_to_bf16(-2.5f)) == -2.5f);
  CHECK(std::isinf(bf16_to_float(float_to_bf16(INFINITY))));
  CHECK(std::isnan(bf16_to_float(float_to_bf16(NAN))));
  // 1 + 2^-8 is halfway between two bf16 values: ties go to the even one (1.0).
  CHECK(bf16_to_float(float_to_bf16(1.0f + 1.0f / 256)) == 1.0f);
  CHECK(bf16_to_float(float_to_bf16(1.0f + 3.0f / 256)) == 1.0f + 4.0f / 256);
}

TEST_CASE("The thread pool runs every item once and rethrows a body's exception") {
  std::vector<int> hits(1000, 0);
  parallel_for(1000, [&](std::int64_t i) { hits[static_cast<std::size_t>(i)]++; });
  for (int h : hits) CHECK(h == 1);
  CHECK_THROWS_WITH(parallel_for(100,
                                 [](std::int64_t i) {
                                   if (i == 42) throw std::runtime_error("item 42");
                                 }),
                    "item 42");
  CHECK_THROWS_AS(set_kernel_threads(0), std::invalid_argument);
  CHECK(std::string(kernel_isa()).size() > 0);
}
