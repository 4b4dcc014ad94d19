// CUDA RMSNorm, RoPE, SwiGLU and the cuBLAS GEMM baseline.
#include <cublas_v2.h>

#include <cmath>
#include <mutex>
#include <string>

#include "common.cuh"

namespace prism::kernels::cuda {
namespace {

using detail::check;
using detail::from_float;
using detail::require;
using detail::to_float;

template <typename T>
__global__ void rms_norm_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                T* __restrict__ out, int dim, float eps) {
  __shared__ float partial[32];
  const long long row = blockIdx.x;
  const T* xr = x + row * dim;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    const float v = to_float(xr[i]);
    ss += v * v;
  }
  ss = detail::warp_sum(ss);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < blockDim.x / 32 ? partial[threadIdx.x] : 0.0f;
    v = detail::warp_sum(v);
    if (threadIdx.x == 0) partial[0] = v;
  }
  __syncthreads();
  const float inv = rsqrtf(partial[0] / dim + eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x)
    out[row * dim + i] = from_float<T>(to_float(xr[i]) * inv * to_float(w[i]));
}

// Half-style rotation (HF Llama): pairs (i, i + head_dim / 2).
template <typename T>
__global__ void rope_kernel(T* x, int num_heads, int head_dim, const std::int32_t* positions,
                            float theta) {
  const int t = blockIdx.x;
  const int half = head_dim / 2;
  const float pos = static_cast<float>(positions[t]);
  for (int idx = threadIdx.x; idx < num_heads * half; idx += blockDim.x) {
    const int h = idx / half, i = idx % half;
    const float freq = powf(theta, -2.0f * i / head_dim);
    float s, c;
    sincosf(pos * freq, &s, &c);
    T* v = x + (static_cast<long long>(t) * num_heads + h) * head_dim;
    const float a = to_float(v[i]), b = to_float(v[i + half]);
    v[i] = from_float<T>(a * c - b * s);
    v[i + half] = from_float<T>(b * c + a * s);
  }
}

template <typename T>
__global__ void swiglu_kernel(const T* __restrict__ gate, const T* __restrict__ up,
                              T* __restrict__ out, long long n) {
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long long>(gridDim.x) * blockDim.x) {
    const float g = to_float(gate[i]);
    out[i] = from_float<T>(g / (1.0f + __expf(-g)) * to_float(up[i]));
  }
}

cublasHandle_t handle() {
  static std::once_flag once;
  static cublasHandle_t h = nullptr;
  std::call_once(once, [] {
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cublasCreate failed");
  });
  return h;
}

}  // namespace

void rms_norm(const void* x, const void* weight, void* out, int rows, int dim, float eps,
              DType dtype, void* stream) {
  require(rows >= 0 && dim > 0, "cuda::rms_norm: rows must be >= 0 and dim > 0");
  if (rows == 0) return;
  require(x && weight && out, "cuda::rms_norm: pointers must be set");
  detail::dispatch(dtype, [&]<typename T>() {
    rms_norm_kernel<T><<<rows, 256, 0, detail::stream_of(stream)>>>(
        static_cast<const T*>(x), static_cast<const T*>(weight), static_cast<T*>(out), dim, eps);
  });
  check(cudaGetLastError(), "rms_norm launch");
}

void apply_rope(void* x, int num_tokens, int num_heads, int head_dim, const std::int32_t* positions,
                float theta, DType dtype, void* stream) {
  require(num_tokens >= 0 && num_heads > 0 && head_dim > 0 && head_dim % 2 == 0,
          "cuda::apply_rope: bad shape (head_dim must be even)");
  require(theta > 0.0f, "cuda::apply_rope: theta must be > 0");
  if (num_tokens == 0) return;
  require(x && positions, "cuda::apply_rope: pointers must be set");
  detail::dispatch(dtype, [&]<typename T>() {
    rope_kernel<T><<<num_tokens, 128, 0, detail::stream_of(stream)>>>(static_cast<T*>(x), num_heads,
                                                                      head_dim, positions, theta);
  });
  check(cudaGetLastError(), "rope launch");
}

void swiglu(const void* gate, const void* up, void* out, int rows, int dim, DType dtype,
            void* stream) {
  require(rows >= 0 && dim > 0, "cuda::swiglu: rows must be >= 0 and dim > 0");
  if (rows == 0) return;
  require(gate && up && out, "cuda::swiglu: pointers must be set");
  const long long n = static_cast<long long>(rows) * dim;
  const int blocks = static_cast<int>(std::min<long long>((n + 255) / 256, 65535));
  detail::dispatch(dtype, [&]<typename T>() {
    swiglu_kernel<T><<<blocks, 256, 0, detail::stream_of(stream)>>>(
        static_cast<const T*>(gate), static_cast<const T*>(up), static_cast<T*>(out), n);
  });
  check(cudaGetLastError(), "swiglu launch");
}

void gemm(const void* x, const void* w, void* y, int m, int n, int k, DType dtype, void* stream) {
  require(m >= 0 && n >= 0 && k > 0, "cuda::gemm: m, n >= 0 and k > 0 required");
  if (m == 0 || n == 0) return;
  require(x && w && y, "cuda::gemm: pointers must be set");
  const cudaDataType_t t = dtype == DType::bf16   ? CUDA_R_16BF
                           : dtype == DType::fp16 ? CUDA_R_16F
                                                  : CUDA_R_32F;
  const float alpha = 1.0f, beta = 0.0f;
  cublasHandle_t h = handle();
  if (cublasSetStream(h, detail::stream_of(stream)) != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error("cublasSetStream failed");
  // Row-major y[m][n] = x[m][k] w[n][k]^T is column-major y^T = w * x^T.
  const cublasStatus_t s = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &alpha, w, t, k, x, t,
                                        k, &beta, y, t, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (s != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error("cublasGemmEx failed: status " + std::to_string(static_cast<int>(s)));
}

}  // namespace prism::kernels::cuda
