// Device discovery, buffers, conversion copies and the L2 flush.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <vector>

#include "common.cuh"

namespace prism::kernels::cuda {

using detail::check;

bool device_available(std::string* reason) {
  static std::once_flag once;
  static bool ok = false;
  static std::string why;
  std::call_once(once, [] {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      why = std::string("no usable CUDA driver or device (") + cudaGetErrorString(e) + ")";
      cudaGetLastError();
    } else if (n == 0) {
      why = "no CUDA device present";
    } else {
      ok = true;
    }
  });
  if (!ok && reason) *reason = why;
  return ok;
}

std::string device_name(int device) {
  cudaDeviceProp p{};
  check(cudaGetDeviceProperties(&p, device), "cudaGetDeviceProperties");
  return p.name;
}

DeviceBuffer::DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
  if (bytes > 0) check(cudaMalloc(&ptr_, bytes), "cudaMalloc");
}
DeviceBuffer::~DeviceBuffer() {
  if (ptr_) cudaFree(ptr_);
}
DeviceBuffer::DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) {
  o.ptr_ = nullptr;
  o.bytes_ = 0;
}
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) cudaFree(ptr_);
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

DeviceBuffer upload_bytes(const void* host, std::size_t bytes) {
  DeviceBuffer b(bytes);
  if (bytes) check(cudaMemcpy(b.data(), host, bytes, cudaMemcpyHostToDevice), "cudaMemcpy H2D");
  return b;
}

DeviceBuffer upload(const float* host, std::size_t n, DType dtype) {
  if (dtype == DType::fp32) return upload_bytes(host, n * sizeof(float));
  std::vector<std::uint16_t> tmp(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (dtype == DType::bf16) {
      const __nv_bfloat16 b = __float2bfloat16(host[i]);
      std::memcpy(&tmp[i], &b, 2);
    } else {
      const __half h = __float2half(host[i]);
      std::memcpy(&tmp[i], &h, 2);
    }
  }
  return upload_bytes(tmp.data(), n * 2);
}

void download(const DeviceBuffer& buffer, std::size_t n, DType dtype, float* host) {
  detail::require(buffer.bytes() >= n * detail::element_bytes(dtype), "download: buffer too small");
  if (dtype == DType::fp32) {
    check(cudaMemcpy(host, buffer.data(), n * 4, cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
    return;
  }
  std::vector<std::uint16_t> tmp(n);
  check(cudaMemcpy(tmp.data(), buffer.data(), n * 2, cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
  for (std::size_t i = 0; i < n; ++i) {
    if (dtype == DType::bf16) {
      __nv_bfloat16 b;
      std::memcpy(&b, &tmp[i], 2);
      host[i] = __bfloat162float(b);
    } else {
      __half h;
      std::memcpy(&h, &tmp[i], 2);
      host[i] = __half2float(h);
    }
  }
}

void synchronize() {
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
}

void flush_l2(void* stream) {
  static std::mutex mu;
  static DeviceBuffer scratch;
  std::lock_guard<std::mutex> lock(mu);
  if (scratch.bytes() == 0) {
    int dev = 0, l2 = 0;
    check(cudaGetDevice(&dev), "cudaGetDevice");
    check(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev), "cudaDeviceGetAttribute");
    scratch = DeviceBuffer(static_cast<std::size_t>(std::max(l2, 1 << 20)) * 2);
  }
  check(cudaMemsetAsync(scratch.data(), 0, scratch.bytes(), detail::stream_of(stream)),
        "cudaMemsetAsync");
}

}  // namespace prism::kernels::cuda
