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
  // Every KV head attends to the same token ranges (dense, sink/window,
  // quantized; not Quest). Then a partition covers all KV heads of a run of
  // pages and walks them kStreams pages at a time, head after head, so that it
  // reads each page's K and V (all heads contiguous in the layout) front to
  // back, several pages side by side, instead of one small scattered tile per
  // head after another.
  bool shared_ranges = false;
};

// ranges(b, h, out): fills the ascending token ranges (b, h) attends to.
// run(b, h, pieces, count, work): computes the state of `count` pieces of KV
// head h into work (work.streams says how many pieces to read side by side).
using RangesFn = std::function<void(int b, int h, std::vector<TokenRange>&)>;
using PartitionFn =
    std::function<void(int b, int h, const TokenRange* pieces, int count, const DecodeWork& work)>;

// Pages read side by side (see RowCursor in simd_body.inc), measured on this
// machine (kernels/README.md): scattered single-head tiles (Quest) and pages
// of 32 KB or more per K or V block (d128 with 8 KV heads) do best with 4 (2,
// 3, 6, 8 and 16 were tried); smaller pages (d64 with 1 KV head: 4 KB) with 8,
// since each run is short.
inline constexpr int kStreams = 4;
inline constexpr int kStreamsSmallPages = 8;
inline constexpr std::size_t kSmallPageBytes = std::size_t{32} << 10;

void run_decode(const DecodePlan& plan, const RangesFn& ranges, const PartitionFn& run);

}  // namespace prism::kernels::cpu
