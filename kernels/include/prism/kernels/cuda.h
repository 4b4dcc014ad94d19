// CUDA implementations of the kernels (built only when PRISM_HAVE_CUDA; target
// prism_kernels_cuda). Same shapes and layouts as the CPU interfaces
// (attention.h, paged_kv.h, ops.h, kv_quant.h), on device pointers, with bf16
// or fp16 inputs and outputs and fp32 accumulation. The header needs no CUDA
// headers: streams are passed as void* (cudaStream_t), null = default stream.
// Every launch checks its arguments and throws std::invalid_argument; CUDA
// errors throw std::runtime_error naming the call.
#pragma once

#include <cstdint>
#include <string>

#include "prism/kernels/attention.h"
#include "prism/kernels/kv_quant.h"
#include "prism/kernels/paged_kv.h"

namespace prism::kernels::cuda {

enum class DType { bf16, fp16, fp32 };

// True when a CUDA device can be used; otherwise reason says why (no driver,
// no device, toolkit not built in). Cheap after the first call.
bool device_available(std::string* reason = nullptr);
std::string device_name(int device = 0);

// Device memory helpers (RAII buffer and host <-> device conversion copies).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* data() const { return ptr_; }
  std::size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

// Uploads n fp32 values converted to dtype; downloads converting back.
DeviceBuffer upload(const float* host, std::size_t n, DType dtype);
void download(const DeviceBuffer& buffer, std::size_t n, DType dtype, float* host);
DeviceBuffer upload_bytes(const void* host, std::size_t bytes);
void synchronize();

// Device-side views; pointers are device pointers with element type `dtype`.
struct PrefillAttentionArgs {
  AttentionHeads heads;
  AttentionMask mask;
  int batch = 0;
  const std::int32_t* q_starts = nullptr;   // device, batch + 1
  const std::int32_t* kv_starts = nullptr;  // device, batch + 1
  int max_q_len = 0;                        // largest q_len in the batch (grid size)
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* out = nullptr;
  DType dtype = DType::bf16;
  void* stream = nullptr;
};
void prefill_attention(const PrefillAttentionArgs& args);

struct DecodeAttentionArgs {
  AttentionHeads heads;
  PagedKvLayout layout;
  const void* k_cache = nullptr;  // device, layout of paged_kv.h
  const void* v_cache = nullptr;
  int batch = 0;
  const std::int32_t* block_table = nullptr;  // device [batch][max_blocks_per_seq]
  int max_blocks_per_seq = 0;
  const std::int32_t* context_lens = nullptr;  // device [batch]
  int max_context_len = 0;
  const void* q = nullptr;  // [batch][num_q_heads][head_dim]
  void* out = nullptr;
  DType dtype = DType::bf16;
  int kv_split_tokens = 0;    // 0 = choose from the SM count
  void* workspace = nullptr;  // decode_workspace_bytes(); null = allocate internally
  void* stream = nullptr;
};
std::size_t decode_workspace_bytes(const DecodeAttentionArgs& args);
void decode_attention(const DecodeAttentionArgs& args);

// Block-sparse prefill (attend stage of vertical-slash / block top-k), one
// sequence; pattern arrays are device copies of BlockSparsePattern's vectors.
struct BlockSparseArgs {
  AttentionHeads heads;
  int q_len = 0, kv_len = 0, block_size = 64;
  int num_q_blocks = 0;
  const std::int32_t* block_offsets = nullptr;
  const std::int32_t* key_blocks = nullptr;
  const std::int32_t* column_offsets = nullptr;  // may be null
  const std::int32_t* columns = nullptr;
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* out = nullptr;
  DType dtype = DType::bf16;
  void* stream = nullptr;
};
void block_sparse_attention(const BlockSparseArgs& args);

void rms_norm(const void* x, const void* weight, void* out, int rows, int dim, float eps,
              DType dtype, void* stream = nullptr);
void apply_rope(void* x, int num_tokens, int num_heads, int head_dim, const std::int32_t* positions,
                float theta, DType dtype, void* stream = nullptr);
void swiglu(const void* gate, const void* up, void* out, int rows, int dim, DType dtype,
            void* stream = nullptr);

// cuBLAS GEMM, the vendor baseline: y[m][n] = x[m][k] * w[n][k]^T, fp32 accumulation.
void gemm(const void* x, const void* w, void* y, int m, int n, int k, DType dtype,
          void* stream = nullptr);

// Fills `bytes` of a scratch buffer to evict the L2 before a cold-cache timing.
void flush_l2(void* stream = nullptr);

}  // namespace prism::kernels::cuda
