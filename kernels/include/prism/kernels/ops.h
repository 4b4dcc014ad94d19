// The non-attention operations of a Llama block: RMSNorm, RoPE, SwiGLU, GEMM.
// fp32, row-major; row strides are in floats, 0 means packed.
#pragma once

#include <cstdint>
#include <span>

namespace prism::kernels {

// out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight, for rows x [rows][dim].
// out may alias x.
void rms_norm(const float* x, const float* weight, float* out, int rows, int dim, float eps,
              std::int64_t x_row_stride = 0, std::int64_t out_row_stride = 0);

// Fused residual add + RMSNorm (the pre-norm pattern of a transformer block):
// residual += x; out = rms_norm(residual). out may alias x.
void add_rms_norm(float* residual, const float* x, const float* weight, float* out, int rows,
                  int dim, float eps);

enum class RopeStyle {
  half,         // rotate the two halves (HF Llama "rotate_half", GPT-NeoX)
  interleaved,  // rotate adjacent pairs (Meta's original Llama, GPT-J)
};

struct RopeParams {
  float theta = 10000.0f;  // base; Llama 3 uses 500000
  int rotary_dim = 0;      // leading dims rotated per head; 0 = head_dim
  RopeStyle style = RopeStyle::half;
};

// Rotates x [num_tokens][num_heads][head_dim] in place; token t has position
// positions[t] (num_tokens entries). Applied to q and to k separately.
void apply_rope(float* x, int num_tokens, int num_heads, int head_dim,
                std::span<const std::int32_t> positions, const RopeParams& params,
                std::int64_t row_stride = 0);

// out[r][i] = silu(gate[r][i]) * up[r][i], silu(x) = x / (1 + e^-x).
void swiglu(const float* gate, const float* up, float* out, int rows, int dim,
            std::int64_t in_row_stride = 0, std::int64_t out_row_stride = 0);

// Same, reading a fused gate_up projection [rows][2 * dim] (gate first).
void swiglu_fused(const float* gate_up, float* out, int rows, int dim);

// Linear layer: y[m][n] = alpha * sum_k x[m][k] * w[n][k] + beta * y[m][n]
// (y = x W^T, W stored [out_features][in_features] like PyTorch), via OpenBLAS
// sgemm. Leading dimensions 0 mean packed.
struct GemmArgs {
  int m = 0, n = 0, k = 0;
  const float* x = nullptr;
  const float* w = nullptr;
  float* y = nullptr;
  float alpha = 1.0f;
  float beta = 0.0f;
  std::int64_t ldx = 0, ldw = 0, ldy = 0;
};
void gemm(const GemmArgs& args);

// Convenience: y = x W^T for x [m][k], w [n][k], y [m][n] packed.
inline void linear(const float* x, const float* w, float* y, int m, int n, int k) {
  gemm(GemmArgs{.m = m, .n = n, .k = k, .x = x, .w = w, .y = y});
}

// bf16 <-> fp32 (round to nearest even), for bf16 weights and KV on the CPU.
std::uint16_t float_to_bf16(float f);
float bf16_to_float(std::uint16_t b);
void convert_to_bf16(const float* in, std::uint16_t* out, std::int64_t n);
void convert_from_bf16(const std::uint16_t* in, float* out, std::int64_t n);

}  // namespace prism::kernels
