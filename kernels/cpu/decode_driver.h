// Internal: the split-KV decode driver shared by dense, sink/window, Quest
// (selected pages) and quantized decode. The caller says which token ranges
// each (sequence, KV head) attends to; the driver cuts them into page-aligned
// partitions, runs partitions in parallel and merges them by log-sum-exp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include "isa.h"
#include "prism/kernels/paged_kv.h"
#include "prism/kernels/threading.h"

namespace prism::kernels::cpu {

struct TokenRange {
  int begin = 0;
  int end = 0;
};

struct DecodePlan {
  int batch = 0;
  int num_q_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int block_size = 16;
  float scale = 1.0f;
  const float* q = nullptr;
  std::int64_t q_stride = 0;
  float* out = nullptr;
  int kv_split_tokens = 0;
};

// ranges(b, h, out): fills the ascending token ranges (b, h) attends to.
// run(b, h, pieces, work): computes one partition's state into work.
using RangesFn = std::function<void(int b, int h, std::vector<TokenRange>&)>;
using PartitionFn =
    std::function<void(int b, int h, const TokenRange* pieces, int count, const DecodeWork& work)>;

void run_decode(const DecodePlan& plan, const RangesFn& ranges, const PartitionFn& run);

}  // namespace prism::kernels::cpu
