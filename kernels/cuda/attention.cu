// CUDA attention: dense causal prefill (varlen, GQA, sink/window mask), paged
// split-KV decode with a log-sum-exp merge, and the block-sparse attend stage.
//
// Design: a warp owns one query row; lane j scores key j of a 32-key tile held
// in shared memory, the online softmax runs with warp shuffles, and each lane
// accumulates head_dim / 32 output channels in fp32 registers. Blocks hold
// several query rows (prefill) or the query heads of one GQA group (decode),
// so every K/V tile loaded from global memory is reused by all of them.
// This is a SIMT reference implementation (bf16/fp16/fp32 in, fp32
// accumulation); it does not use tensor cores, so it is not FlashAttention-2
// class on prefill. Decode is bandwidth-bound and reads each K/V row once per
// GQA group.
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <string>

#include "common.cuh"

namespace prism::kernels::cuda {
namespace {

using detail::check;
using detail::from_float;
using detail::require;
using detail::to_float;
using detail::warp_max;
using detail::warp_sum;

constexpr int kTile = 32;        // keys per shared-memory tile
constexpr int kPrefillRows = 8;  // query rows (warps) per prefill block

// Online-softmax state of one query row, spread over a warp.
template <int D>
struct RowState {
  float m = -INFINITY;
  float l = 0.0f;
  float o[D / 32];

  __device__ void init() {
#pragma unroll
    for (int x = 0; x < D / 32; ++x) o[x] = 0.0f;
  }

  // s: this lane's (scaled) score for key `lane` of the tile, -inf if masked.
  // vs: the tile's values [kTile][D] in shared memory.
  template <typename V>
  __device__ void consume(float s, const V* vs, int lane) {
    const float tile_max = warp_max(s);
    const float m_new = fmaxf(m, tile_max);
    if (m_new == -INFINITY) return;  // nothing visible yet
    const float alpha = m == -INFINITY ? 0.0f : __expf(m - m_new);
    const float p = s == -INFINITY ? 0.0f : __expf(s - m_new);
    l = l * alpha + warp_sum(p);
#pragma unroll
    for (int x = 0; x < D / 32; ++x) o[x] *= alpha;
    for (int j = 0; j < kTile; ++j) {
      const float pj = __shfl_sync(0xffffffffu, p, j);
      if (pj == 0.0f) continue;  // warp-uniform
#pragma unroll
      for (int x = 0; x < D / 32; ++x) o[x] += pj * to_float(vs[j * D + lane + 32 * x]);
    }
    m = m_new;
  }

  template <typename T>
  __device__ void write(T* out, int lane) const {
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
    for (int x = 0; x < D / 32; ++x) out[lane + 32 * x] = from_float<T>(o[x] * inv);
  }
};

// q . k for the key row this lane owns (ks row stride D + 1 avoids bank conflicts).
template <int D>
__device__ float dot_row(const float* q, const float* krow) {
  float acc = 0.0f;
#pragma unroll 8
  for (int i = 0; i < D; ++i) acc += q[i] * krow[i];
  return acc;
}

// Loads keys/values rows [0, n) of a tile into shared memory; row r comes
// from k_row(r) / v_row(r) (global pointers to D elements).
template <typename T, int D, typename RowFn>
__device__ void load_tile(float* ks, float* vs, int n, RowFn row_of) {
  for (int idx = threadIdx.x; idx < kTile * D; idx += blockDim.x) {
    const int r = idx / D, c = idx % D;
    float kx = 0.0f, vx = 0.0f;
    if (r < n) {
      const auto rows = row_of(r);
      kx = to_float(rows.first[c]);
      vx = to_float(rows.second[c]);
    }
    ks[r * (D + 1) + c] = kx;
    vs[r * D + c] = vx;
  }
}

struct PrefillParams {
  int hq, hkv, batch;
  float scale;
  bool causal;
  int sink, window;
  const std::int32_t* q_starts;
  const std::int32_t* kv_starts;
};

template <typename T, int D>
__global__ void prefill_kernel(PrefillParams p, const T* __restrict__ q, const T* __restrict__ k,
                               const T* __restrict__ v, T* __restrict__ out) {
  extern __shared__ float smem[];
  float* ks = smem;                  // [kTile][D + 1]
  float* vs = ks + kTile * (D + 1);  // [kTile][D]
  float* qs = vs + kTile * D;        // [kPrefillRows][D]
  const int b = blockIdx.z, h = blockIdx.y;
  const int q0 = p.q_starts[b], q_len = p.q_starts[b + 1] - q0;
  const int k0 = p.kv_starts[b], kv_len = p.kv_starts[b + 1] - k0;
  const int row0 = blockIdx.x * kPrefillRows;
  if (row0 >= q_len) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int i = row0 + warp;
  const bool valid = i < q_len;
  const int offset = kv_len - q_len;
  const int pos = offset + i;
  const int kvh = h / (p.hq / p.hkv);
  for (int c = lane; c < D; c += 32)
    qs[warp * D + c] =
        valid ? to_float(q[(static_cast<long long>(q0 + i) * p.hq + h) * D + c]) * p.scale : 0.0f;
  const int last_row = min(q_len - 1, row0 + kPrefillRows - 1);
  const int max_key = p.causal ? min(kv_len - 1, offset + last_row) : kv_len - 1;
  const int min_lo = p.window > 0 ? max(0, offset + row0 - p.window + 1) : 0;
  RowState<D> st;
  st.init();
  for (int t0 = 0; t0 <= max_key; t0 += kTile) {
    if (p.window > 0 && t0 >= p.sink && t0 + kTile - 1 < min_lo) continue;  // block-uniform
    const int n = min(kTile, kv_len - t0);
    __syncthreads();
    load_tile<T, D>(ks, vs, n, [&](int r) {
      const long long row = (static_cast<long long>(k0 + t0 + r) * p.hkv + kvh) * D;
      return std::pair<const T*, const T*>(k + row, v + row);
    });
    __syncthreads();
    const int key = t0 + lane;
    bool vis = valid && lane < n && (!p.causal || key <= pos);
    if (p.window > 0 && key <= pos - p.window && key >= p.sink) vis = false;
    const float s = vis ? dot_row<D>(qs + warp * D, ks + lane * (D + 1)) : -INFINITY;
    st.consume(s, vs, lane);
  }
  if (valid) st.write(out + (static_cast<long long>(q0 + i) * p.hq + h) * D, lane);
}

struct DecodeParams {
  int hq, hkv, batch, block_size, max_blocks, split, num_splits;
  float scale;
  const std::int32_t* block_table;
  const std::int32_t* context_lens;
};

// Grid (num_splits, hkv, batch); one warp per query head of the GQA group.
template <typename T, int D>
__global__ void decode_kernel(DecodeParams p, const T* __restrict__ q, const T* __restrict__ kc,
                              const T* __restrict__ vc, float* __restrict__ partial) {
  extern __shared__ float smem[];
  float* ks = smem;
  float* vs = ks + kTile * (D + 1);
  float* qs = vs + kTile * D;  // [group][D]
  const int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int group = p.hq / p.hkv;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int head = h * group + warp;
  const int len = p.context_lens[b];
  const int t_begin = split * p.split, t_end = min(len, t_begin + p.split);
  for (int c = lane; c < D; c += 32)
    qs[warp * D + c] = to_float(q[(static_cast<long long>(b) * p.hq + head) * D + c]) * p.scale;
  const std::int32_t* row = p.block_table + static_cast<long long>(b) * p.max_blocks;
  RowState<D> st;
  st.init();
  for (int t0 = t_begin; t0 < t_end; t0 += kTile) {
    const int n = min(kTile, t_end - t0);
    __syncthreads();
    load_tile<T, D>(ks, vs, n, [&](int r) {
      const int t = t0 + r;
      const long long off =
          ((static_cast<long long>(row[t / p.block_size]) * p.hkv + h) * p.block_size +
           t % p.block_size) *
          D;
      return std::pair<const T*, const T*>(kc + off, vc + off);
    });
    __syncthreads();
    const float s = lane < n ? dot_row<D>(qs + warp * D, ks + lane * (D + 1)) : -INFINITY;
    st.consume(s, vs, lane);
  }
  // Partial: [batch][hq][num_splits][D + 2] = (o unnormalised, m, l).
  float* dst =
      partial + ((static_cast<long long>(b) * p.hq + head) * p.num_splits + split) * (D + 2);
#pragma unroll
  for (int x = 0; x < D / 32; ++x) dst[lane + 32 * x] = st.o[x];
  if (lane == 0) {
    dst[D] = st.m;
    dst[D + 1] = st.l;
  }
}

// ------------------------------------------------- pipelined decode ----
// The same work as decode_kernel, but the K/V tiles travel global -> shared
// memory as 16-byte cp.async copies (sm_80+) into two stages: tile i + 1 is in
// flight while tile i is scored and accumulated, so the loads of a block
// overlap its math instead of alternating with it. Elements stay in their
// storage type in shared memory (converted when read). K rows are padded by
// 16 bytes so that 8 lanes reading 16-byte pieces of 8 different rows hit
// different banks. Rows past the end of the range are zero-filled by the copy
// (src-size 0) and masked out of the softmax.
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool valid) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem),
               "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

template <typename T, int D>
struct PipeLayout {
  static constexpr int kChunk = 16 / static_cast<int>(sizeof(T));  // elements per copy
  static constexpr int kChunksPerRow = D / kChunk;
  static constexpr int kKStride = D + kChunk;  // padded K row, elements
  static constexpr int kStage = kTile * (kKStride + D);
  static std::size_t smem_bytes(int group) {
    return sizeof(T) * 2 * static_cast<std::size_t>(kStage) +
           sizeof(float) * static_cast<std::size_t>(group) * D;
  }
};

// q . k for one key row in shared memory, read 16 bytes at a time.
template <typename T, int D>
__device__ float dot_row_chunks(const float* q, const T* krow) {
  constexpr int C = PipeLayout<T, D>::kChunk;
  float acc = 0.0f;
#pragma unroll 4
  for (int i = 0; i < D; i += C) {
    const uint4 raw = *reinterpret_cast<const uint4*>(krow + i);
    T e[C];
    memcpy(e, &raw, sizeof raw);
#pragma unroll
    for (int j = 0; j < C; ++j) acc += q[i + j] * to_float(e[j]);
  }
  return acc;
}

// Grid (num_splits, hkv, batch); one warp per query head of the GQA group.
template <typename T, int D>
__global__ void decode_pipelined_kernel(DecodeParams p, const T* __restrict__ q,
                                        const T* __restrict__ kc, const T* __restrict__ vc,
                                        float* __restrict__ partial) {
  using L = PipeLayout<T, D>;
  extern __shared__ __align__(16) unsigned char smem_bytes_raw[];
  T* const stage0 = reinterpret_cast<T*>(smem_bytes_raw);
  float* const qs = reinterpret_cast<float*>(stage0 + 2 * L::kStage);  // [group][D]
  const int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int group = p.hq / p.hkv;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int head = h * group + warp;
  const int len = p.context_lens[b];
  const int t_begin = split * p.split, t_end = min(len, t_begin + p.split);
  const int num_tiles = t_end > t_begin ? (t_end - t_begin + kTile - 1) / kTile : 0;
  for (int c = lane; c < D; c += 32)
    qs[warp * D + c] = to_float(q[(static_cast<long long>(b) * p.hq + head) * D + c]) * p.scale;
  const std::int32_t* row = p.block_table + static_cast<long long>(b) * p.max_blocks;

  // Issues the copies of tile `tile` into stage `stage` as one commit group.
  const auto issue = [&](int tile, int stage) {
    T* ks = stage0 + stage * L::kStage;
    T* vs = ks + kTile * L::kKStride;
    const int t0 = t_begin + tile * kTile;
    const int n = min(kTile, t_end - t0);
    for (int c = threadIdx.x; c < kTile * L::kChunksPerRow; c += blockDim.x) {
      const int r = c / L::kChunksPerRow, col = (c % L::kChunksPerRow) * L::kChunk;
      const bool valid = r < n;
      long long off = 0;
      if (valid) {
        const int t = t0 + r;
        off = ((static_cast<long long>(row[t / p.block_size]) * p.hkv + h) * p.block_size +
               t % p.block_size) *
                  D +
              col;
      }
      cp_async_16(ks + r * L::kKStride + col, kc + off, valid);
      cp_async_16(vs + r * D + col, vc + off, valid);
    }
    cp_async_commit();
  };

  RowState<D> st;
  st.init();
  if (num_tiles > 0) issue(0, 0);
  for (int tile = 0; tile < num_tiles; ++tile) {
    const int stage = tile & 1;
    if (tile + 1 < num_tiles) {
      issue(tile + 1, stage ^ 1);  // that stage was released by the barrier ending tile - 1
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // tile's copies (and, on the first tile, qs) visible to all
    const T* ks = stage0 + stage * L::kStage;
    const T* vs = ks + kTile * L::kKStride;
    const int n = min(kTile, t_end - (t_begin + tile * kTile));
    const float s =
        lane < n ? dot_row_chunks<T, D>(qs + warp * D, ks + lane * L::kKStride) : -INFINITY;
    st.consume(s, vs, lane);
    __syncthreads();  // the stage is free for the copies issued next iteration
  }
  float* dst =
      partial + ((static_cast<long long>(b) * p.hq + head) * p.num_splits + split) * (D + 2);
#pragma unroll
  for (int x = 0; x < D / 32; ++x) dst[lane + 32 * x] = st.o[x];
  if (lane == 0) {
    dst[D] = st.m;
    dst[D + 1] = st.l;
  }
}

template <typename T, int D>
__global__ void decode_merge_kernel(DecodeParams p, const float* __restrict__ partial,
                                    T* __restrict__ out) {
  const int head = blockIdx.x, b = blockIdx.y;
  const float* src = partial + (static_cast<long long>(b) * p.hq + head) * p.num_splits * (D + 2);
  float m = -INFINITY;
  for (int s = 0; s < p.num_splits; ++s) m = fmaxf(m, src[s * (D + 2) + D]);
  for (int c = threadIdx.x; c < D; c += blockDim.x) {
    float acc = 0.0f, l = 0.0f;
    if (m != -INFINITY) {
      for (int s = 0; s < p.num_splits; ++s) {
        const float ms = src[s * (D + 2) + D];
        if (ms == -INFINITY) continue;
        const float w = __expf(ms - m);
        acc += w * src[s * (D + 2) + c];
        l += w * src[s * (D + 2) + D + 1];
      }
    }
    out[(static_cast<long long>(b) * p.hq + head) * D + c] =
        from_float<T>(l > 0.0f ? acc / l : 0.0f);
  }
}

struct SparseParams {
  int hq, hkv, q_len, kv_len, block_size, num_q_blocks;
  float scale;
  const std::int32_t* block_offsets;
  const std::int32_t* key_blocks;
  const std::int32_t* column_offsets;
  const std::int32_t* columns;
};

// Grid (ceil(q_len / kPrefillRows), hq): rows of one block belong to one
// pattern query tile (block_size is a multiple of kPrefillRows).
template <typename T, int D>
__global__ void block_sparse_kernel(SparseParams p, const T* __restrict__ q,
                                    const T* __restrict__ k, const T* __restrict__ v,
                                    T* __restrict__ out) {
  extern __shared__ float smem[];
  float* ks = smem;
  float* vs = ks + kTile * (D + 1);
  float* qs = vs + kTile * D;
  __shared__ int cols[kTile];
  const int h = blockIdx.y, row0 = blockIdx.x * kPrefillRows;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int i = row0 + warp;
  const bool valid = i < p.q_len;
  const int offset = p.kv_len - p.q_len, pos = offset + i;
  const int kvh = h / (p.hq / p.hkv);
  for (int c = lane; c < D; c += 32)
    qs[warp * D + c] =
        valid ? to_float(q[(static_cast<long long>(i) * p.hq + h) * D + c]) * p.scale : 0.0f;
  const int idx = h * p.num_q_blocks + row0 / p.block_size;
  RowState<D> st;
  st.init();
  const auto row_ptrs = [&](int key) {
    const long long r = (static_cast<long long>(key) * p.hkv + kvh) * D;
    return std::pair<const T*, const T*>(k + r, v + r);
  };
  for (int x = p.block_offsets[idx]; x < p.block_offsets[idx + 1]; ++x) {
    const int kb0 = p.key_blocks[x] * p.block_size, kb1 = min(p.kv_len, kb0 + p.block_size);
    for (int t0 = kb0; t0 < kb1; t0 += kTile) {
      const int n = min(kTile, kb1 - t0);
      __syncthreads();
      load_tile<T, D>(ks, vs, n, [&](int r) { return row_ptrs(t0 + r); });
      __syncthreads();
      const int key = t0 + lane;
      const float s = valid && lane < n && key <= pos
                          ? dot_row<D>(qs + warp * D, ks + lane * (D + 1))
                          : -INFINITY;
      st.consume(s, vs, lane);
    }
  }
  if (p.column_offsets != nullptr) {
    const int c0 = p.column_offsets[idx], c1 = p.column_offsets[idx + 1];
    for (int t0 = c0; t0 < c1; t0 += kTile) {
      const int n = min(kTile, c1 - t0);
      __syncthreads();
      if (threadIdx.x < kTile)
        cols[threadIdx.x] = threadIdx.x < n ? p.columns[t0 + threadIdx.x] : 0;
      __syncthreads();
      load_tile<T, D>(ks, vs, n, [&](int r) { return row_ptrs(cols[r]); });
      __syncthreads();
      const float s = valid && lane < n && cols[lane] <= pos
                          ? dot_row<D>(qs + warp * D, ks + lane * (D + 1))
                          : -INFINITY;
      st.consume(s, vs, lane);
    }
  }
  if (valid) st.write(out + (static_cast<long long>(i) * p.hq + h) * D, lane);
}

std::size_t smem_bytes(int d, int rows) {
  return sizeof(float) * (static_cast<std::size_t>(kTile) * (d + 1) +
                          static_cast<std::size_t>(kTile) * d + static_cast<std::size_t>(rows) * d);
}

// Calls f.template operator()<D>() for the supported head dims.
template <typename F>
void dispatch_head_dim(int d, F&& f) {
  switch (d) {
    case 64:
      f.template operator()<64>();
      break;
    case 128:
      f.template operator()<128>();
      break;
    case 256:
      f.template operator()<256>();
      break;
    case 32:
      f.template operator()<32>();
      break;
    case 96:
      f.template operator()<96>();
      break;
    default:
      throw std::invalid_argument("cuda attention: head_dim must be one of 32, 64, 96, 128, 256");
  }
}

template <typename K>
void set_smem(K kernel, std::size_t bytes) {
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(bytes)),
        "cudaFuncSetAttribute");
}

float scale_of(const AttentionHeads& h) {
  return h.scale > 0.0f ? h.scale : 1.0f / std::sqrt(static_cast<float>(h.head_dim));
}

void validate_heads(const AttentionHeads& h, const char* fn) {
  const std::string f(fn);
  require(h.num_q_heads > 0 && h.num_kv_heads > 0 && h.num_q_heads % h.num_kv_heads == 0,
          f + ": num_q_heads must be a positive multiple of num_kv_heads");
  require(h.head_dim > 0, f + ": head_dim must be > 0");
}

}  // namespace

void prefill_attention(const PrefillAttentionArgs& a) {
  validate_heads(a.heads, "cuda::prefill_attention");
  require(a.batch >= 0 && a.max_q_len >= 0,
          "cuda::prefill_attention: batch and max_q_len must be >= 0");
  if (a.batch == 0 || a.max_q_len == 0) return;
  require(a.q && a.k && a.v && a.out && a.q_starts && a.kv_starts,
          "cuda::prefill_attention: pointers must be set");
  PrefillParams p{a.heads.num_q_heads,  a.heads.num_kv_heads, a.batch,
                  scale_of(a.heads),    a.mask.causal,        a.mask.sink_tokens,
                  a.mask.window_tokens, a.q_starts,           a.kv_starts};
  const dim3 grid((a.max_q_len + kPrefillRows - 1) / kPrefillRows, a.heads.num_q_heads, a.batch);
  dispatch_head_dim(a.heads.head_dim, [&]<int D>() {
    detail::dispatch(a.dtype, [&]<typename T>() {
      const std::size_t smem = smem_bytes(D, kPrefillRows);
      set_smem(prefill_kernel<T, D>, smem);
      prefill_kernel<T, D><<<grid, 32 * kPrefillRows, smem, detail::stream_of(a.stream)>>>(
          p, static_cast<const T*>(a.q), static_cast<const T*>(a.k), static_cast<const T*>(a.v),
          static_cast<T*>(a.out));
    });
  });
  check(cudaGetLastError(), "prefill_kernel launch");
}

namespace {

int sm_count() {
  int dev = 0, sms = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev),
        "cudaDeviceGetAttribute");
  return sms;
}

struct DeviceLimits {
  int major = 0;
  std::size_t max_smem_optin = 0;
};

// The current device's compute capability and opt-in shared memory per block.
const DeviceLimits& device_limits() {
  thread_local int cached_dev = -1;
  thread_local DeviceLimits limits;
  int dev = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  if (dev != cached_dev) {
    int major = 0, smem = 0;
    check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev),
          "cudaDeviceGetAttribute");
    check(cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev),
          "cudaDeviceGetAttribute");
    limits = {major, static_cast<std::size_t>(smem)};
    cached_dev = dev;
  }
  return limits;
}

DecodeParams decode_params(const DecodeAttentionArgs& a) {
  DecodeParams p{};
  p.hq = a.heads.num_q_heads;
  p.hkv = a.heads.num_kv_heads;
  p.batch = a.batch;
  p.block_size = a.layout.block_size;
  p.max_blocks = a.max_blocks_per_seq;
  p.scale = scale_of(a.heads);
  p.block_table = a.block_table;
  p.context_lens = a.context_lens;
  int split = a.kv_split_tokens;
  if (split <= 0) {
    // Enough (sequence, KV head, split) blocks for two waves of the SMs.
    const long long blocks = static_cast<long long>(a.batch) * a.heads.num_kv_heads;
    const long long want = std::max<long long>(1, (2LL * sm_count() + blocks - 1) / blocks);
    split = static_cast<int>(std::max<long long>(256, (a.max_context_len + want - 1) / want));
  }
  p.split = (split + kTile - 1) / kTile * kTile;
  p.num_splits = std::max(1, (a.max_context_len + p.split - 1) / p.split);
  return p;
}

}  // namespace

std::size_t decode_workspace_bytes(const DecodeAttentionArgs& a) {
  const DecodeParams p = decode_params(a);
  return sizeof(float) * static_cast<std::size_t>(a.batch) * a.heads.num_q_heads * p.num_splits *
         (a.heads.head_dim + 2);
}

void decode_attention(const DecodeAttentionArgs& a) {
  validate_heads(a.heads, "cuda::decode_attention");
  require(a.layout.num_kv_heads == a.heads.num_kv_heads && a.layout.head_dim == a.heads.head_dim,
          "cuda::decode_attention: layout differs from heads");
  require(a.heads.num_q_heads / a.heads.num_kv_heads <= 32,
          "cuda::decode_attention: GQA group above 32");
  require(a.batch >= 0 && a.max_context_len >= 0,
          "cuda::decode_attention: batch and max_context_len must be >= 0");
  if (a.batch == 0) return;
  require(a.q && a.out && a.k_cache && a.v_cache && a.block_table && a.context_lens,
          "cuda::decode_attention: pointers must be set");
  const DecodeParams p = decode_params(a);
  DeviceBuffer own;
  float* partial = static_cast<float*>(a.workspace);
  if (!partial) {
    own = DeviceBuffer(decode_workspace_bytes(a));
    partial = static_cast<float*>(own.data());
  }
  const int group = a.heads.num_q_heads / a.heads.num_kv_heads;
  const dim3 grid(p.num_splits, a.heads.num_kv_heads, a.batch);
  const DeviceLimits& dev = device_limits();
  const bool aligned = reinterpret_cast<std::uintptr_t>(a.k_cache) % 16 == 0 &&
                       reinterpret_cast<std::uintptr_t>(a.v_cache) % 16 == 0;
  dispatch_head_dim(a.heads.head_dim, [&]<int D>() {
    detail::dispatch(a.dtype, [&]<typename T>() {
      // The cp.async pipeline where it can run (sm_80+, 16-byte aligned caches,
      // two stages fit in shared memory); the single-stage kernel otherwise.
      const std::size_t pipe_smem = PipeLayout<T, D>::smem_bytes(group);
      if (dev.major >= 8 && aligned && pipe_smem <= dev.max_smem_optin) {
        set_smem(decode_pipelined_kernel<T, D>, pipe_smem);
        decode_pipelined_kernel<T, D><<<grid, 32 * group, pipe_smem, detail::stream_of(a.stream)>>>(
            p, static_cast<const T*>(a.q), static_cast<const T*>(a.k_cache),
            static_cast<const T*>(a.v_cache), partial);
      } else {
        const std::size_t smem = smem_bytes(D, group);
        set_smem(decode_kernel<T, D>, smem);
        decode_kernel<T, D><<<grid, 32 * group, smem, detail::stream_of(a.stream)>>>(
            p, static_cast<const T*>(a.q), static_cast<const T*>(a.k_cache),
            static_cast<const T*>(a.v_cache), partial);
      }
      decode_merge_kernel<T, D>
          <<<dim3(a.heads.num_q_heads, a.batch), std::min(D, 128), 0,
             detail::stream_of(a.stream)>>>(p, partial, static_cast<T*>(a.out));
    });
  });
  check(cudaGetLastError(), "decode_kernel launch");
  if (own.data())
    check(cudaStreamSynchronize(detail::stream_of(a.stream)), "decode workspace sync");
}

void block_sparse_attention(const BlockSparseArgs& a) {
  validate_heads(a.heads, "cuda::block_sparse_attention");
  require(a.block_size > 0 && a.block_size % kPrefillRows == 0,
          "cuda::block_sparse_attention: block_size must be a multiple of 8");
  require(a.q_len >= 0 && a.kv_len >= a.q_len,
          "cuda::block_sparse_attention: need 0 <= q_len <= kv_len");
  if (a.q_len == 0) return;
  require(a.q && a.k && a.v && a.out && a.block_offsets && a.key_blocks,
          "cuda::block_sparse_attention: pointers must be set");
  require((a.column_offsets == nullptr) == (a.columns == nullptr),
          "cuda::block_sparse_attention: column_offsets and columns go together");
  SparseParams p{a.heads.num_q_heads, a.heads.num_kv_heads, a.q_len,           a.kv_len,
                 a.block_size,        a.num_q_blocks,       scale_of(a.heads), a.block_offsets,
                 a.key_blocks,        a.column_offsets,     a.columns};
  const dim3 grid((a.q_len + kPrefillRows - 1) / kPrefillRows, a.heads.num_q_heads);
  dispatch_head_dim(a.heads.head_dim, [&]<int D>() {
    detail::dispatch(a.dtype, [&]<typename T>() {
      const std::size_t smem = smem_bytes(D, kPrefillRows);
      set_smem(block_sparse_kernel<T, D>, smem);
      block_sparse_kernel<T, D><<<grid, 32 * kPrefillRows, smem, detail::stream_of(a.stream)>>>(
          p, static_cast<const T*>(a.q), static_cast<const T*>(a.k), static_cast<const T*>(a.v),
          static_cast<T*>(a.out));
    });
  });
  check(cudaGetLastError(), "block_sparse_kernel launch");
}

}  // namespace prism::kernels::cuda
