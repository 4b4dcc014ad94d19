#include "prism/kernels/ops.h"

#include <cblas.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "isa.h"
#include "prism/kernels/threading.h"
#include "validate.h"

namespace prism::kernels {
namespace {

// Rows per parallel item: enough work per item to amortise the hand-out.
std::int64_t rows_per_item(int dim) {
  return std::max<std::int64_t>(1, 16384 / std::max(1, dim));
}

template <typename F>
void for_rows(int rows, int dim, F&& f) {
  const std::int64_t per = rows_per_item(dim);
  const std::int64_t items = (rows + per - 1) / per;
  if (items <= 1) {
    for (int r = 0; r < rows; ++r) f(r);
    return;
  }
  parallel_for(items, [&](std::int64_t i) {
    const std::int64_t r1 = std::min<std::int64_t>(rows, (i + 1) * per);
    for (std::int64_t r = i * per; r < r1; ++r) f(static_cast<int>(r));
  });
}

}  // namespace

void rms_norm(const float* x, const float* weight, float* out, int rows, int dim, float eps,
              std::int64_t x_row_stride, std::int64_t out_row_stride) {
  detail::require(rows >= 0 && dim > 0, "rms_norm: rows must be >= 0 and dim > 0");
  detail::require(rows == 0 || (x && weight && out), "rms_norm: pointers must be set");
  detail::require(eps >= 0.0f, "rms_norm: eps must be >= 0");
  const std::int64_t xs = x_row_stride ? x_row_stride : dim;
  const std::int64_t os = out_row_stride ? out_row_stride : dim;
  const auto& isa = cpu::isa();
  for_rows(rows, dim, [&](int r) { isa.rms_norm_row(x + r * xs, weight, out + r * os, dim, eps); });
}

void add_rms_norm(float* residual, const float* x, const float* weight, float* out, int rows,
                  int dim, float eps) {
  detail::require(rows >= 0 && dim > 0, "add_rms_norm: rows must be >= 0 and dim > 0");
  detail::require(rows == 0 || (residual && x && weight && out),
                  "add_rms_norm: pointers must be set");
  const auto& isa = cpu::isa();
  for_rows(rows, dim, [&](int r) {
    float* res = residual + static_cast<std::int64_t>(r) * dim;
    const float* xr = x + static_cast<std::int64_t>(r) * dim;
    for (int i = 0; i < dim; ++i) res[i] += xr[i];
    isa.rms_norm_row(res, weight, out + static_cast<std::int64_t>(r) * dim, dim, eps);
  });
}

void apply_rope(float* x, int num_tokens, int num_heads, int head_dim,
                std::span<const std::int32_t> positions, const RopeParams& params,
                std::int64_t row_stride) {
  detail::require(num_tokens >= 0 && num_heads > 0 && head_dim > 0,
                  "apply_rope: num_tokens >= 0, num_heads > 0 and head_dim > 0 required");
  const int rot = params.rotary_dim ? params.rotary_dim : head_dim;
  detail::require(rot > 0 && rot <= head_dim && rot % 2 == 0,
                  "apply_rope: rotary_dim must be even and <= head_dim");
  detail::require(params.theta > 0.0f, "apply_rope: theta must be > 0");
  detail::require(static_cast<int>(positions.size()) == num_tokens,
                  "apply_rope: positions needs num_tokens entries");
  const std::int64_t stride = row_stride ? row_stride : std::int64_t{num_heads} * head_dim;
  const int half = rot / 2;
  // inv_freq[i] = theta^(-2i/rot), computed in double once per call.
  std::vector<double> inv_freq(half);
  for (int i = 0; i < half; ++i)
    inv_freq[i] = std::pow(static_cast<double>(params.theta), -2.0 * i / rot);
  for_rows(num_tokens, num_heads * head_dim, [&](int t) {
    thread_local std::vector<float> cs;
    cs.resize(2 * static_cast<std::size_t>(half));
    const double pos = positions[t];
    for (int i = 0; i < half; ++i) {
      const double a = pos * inv_freq[i];
      cs[i] = static_cast<float>(std::cos(a));
      cs[half + i] = static_cast<float>(std::sin(a));
    }
    for (int h = 0; h < num_heads; ++h) {
      float* v = x + t * stride + std::int64_t{h} * head_dim;
      if (params.style == RopeStyle::half) {
        for (int i = 0; i < half; ++i) {
          const float a = v[i], b = v[i + half];
          v[i] = a * cs[i] - b * cs[half + i];
          v[i + half] = b * cs[i] + a * cs[half + i];
        }
      } else {
        for (int i = 0; i < half; ++i) {
          const float a = v[2 * i], b = v[2 * i + 1];
          v[2 * i] = a * cs[i] - b * cs[half + i];
          v[2 * i + 1] = b * cs[i] + a * cs[half + i];
        }
      }
    }
  });
}

void swiglu(const float* gate, const float* up, float* out, int rows, int dim,
            std::int64_t in_row_stride, std::int64_t out_row_stride) {
  detail::require(rows >= 0 && dim > 0, "swiglu: rows must be >= 0 and dim > 0");
  detail::require(rows == 0 || (gate && up && out), "swiglu: pointers must be set");
  const std::int64_t is = in_row_stride ? in_row_stride : dim;
  const std::int64_t os = out_row_stride ? out_row_stride : dim;
  const auto& isa = cpu::isa();
  for_rows(rows, dim,
           [&](int r) { isa.swiglu_row(gate + r * is, up + r * is, out + r * os, dim); });
}

void swiglu_fused(const float* gate_up, float* out, int rows, int dim) {
  detail::require(rows >= 0 && dim > 0, "swiglu_fused: rows must be >= 0 and dim > 0");
  detail::require(rows == 0 || (gate_up && out), "swiglu_fused: pointers must be set");
  swiglu(gate_up, gate_up + dim, out, rows, dim, 2 * std::int64_t{dim}, dim);
}

void gemm(const GemmArgs& a) {
  detail::require(a.m >= 0 && a.n >= 0 && a.k >= 0, "gemm: m, n and k must be >= 0");
  if (a.m == 0 || a.n == 0) return;
  detail::require(a.y && (a.k == 0 || (a.x && a.w)), "gemm: x, w and y must be set");
  const std::int64_t ldx = a.ldx ? a.ldx : a.k;
  const std::int64_t ldw = a.ldw ? a.ldw : a.k;
  const std::int64_t ldy = a.ldy ? a.ldy : a.n;
  detail::require(ldx >= a.k && ldw >= a.k && ldy >= a.n, "gemm: leading dimensions too small");
  if (a.k == 0) {
    for (int i = 0; i < a.m; ++i)
      for (int j = 0; j < a.n; ++j)
        a.y[i * ldy + j] = a.beta == 0.0f ? 0.0f : a.beta * a.y[i * ldy + j];
    return;
  }
  if (a.m == 1) {
    // One row (single-sequence decode): a matrix-vector product. OpenBLAS
    // 0.3.21's sgemm runs its packed GEMM path even for m = 1, which costs
    // about twice the CPU time of sgemv for the same weight bytes.
    cblas_sgemv(CblasRowMajor, CblasNoTrans, a.n, a.k, a.alpha, a.w, static_cast<int>(ldw), a.x, 1,
                a.beta, a.y, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, a.m, a.n, a.k, a.alpha, a.x,
              static_cast<int>(ldx), a.w, static_cast<int>(ldw), a.beta, a.y,
              static_cast<int>(ldy));
}

std::uint16_t float_to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return static_cast<std::uint16_t>((u >> 16) | 0x40);  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

float bf16_to_float(std::uint16_t b) {
  const std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

void convert_to_bf16(const float* in, std::uint16_t* out, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = float_to_bf16(in[i]);
}

void convert_from_bf16(const std::uint16_t* in, float* out, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = bf16_to_float(in[i]);
}

}  // namespace prism::kernels
