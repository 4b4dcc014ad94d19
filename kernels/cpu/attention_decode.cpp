#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "decode_driver.h"
#include "prism/kernels/attention.h"
#include "prism/kernels/sparse.h"
#include "validate.h"

namespace prism::kernels {
namespace cpu {
namespace {

struct Partition {
  int b, h;
  std::size_t first_piece, num_pieces;
  int tokens;
};

}  // namespace

namespace {

// Cuts ascending token ranges into page-aligned pieces and groups them into
// partitions of about `split` tokens that end at page boundaries.
void partition_ranges(const std::vector<TokenRange>& ranges, int bs, int split, int b, int h,
                      std::vector<TokenRange>& pieces, std::vector<Partition>& parts) {
  Partition cur{b, h, pieces.size(), 0, 0};
  int cur_page = -1;
  for (const auto& r : ranges) {
    int t = r.begin;
    while (t < r.end) {
      const int page = t / bs;
      if (cur.tokens >= split && page != cur_page) {
        parts.push_back(cur);
        cur = Partition{b, h, pieces.size(), 0, 0};
      }
      const int end = std::min(r.end, (page + 1) * bs);
      pieces.push_back({t, end});
      cur.num_pieces++;
      cur.tokens += end - t;
      cur_page = page;
      t = end;
    }
  }
  parts.push_back(cur);  // possibly empty: produces zeros
}

}  // namespace

void run_decode(const DecodePlan& plan, const RangesFn& ranges, const PartitionFn& run) {
  const int hkv = plan.num_kv_heads;
  const int group = plan.num_q_heads / hkv;
  const int d = plan.head_dim;
  const int bs = plan.block_size;
  const bool shared = plan.shared_ranges;

  // Ranges per (sequence, KV head); with shared ranges only head 0's are asked for.
  const int range_heads = shared ? 1 : hkv;
  std::vector<std::vector<TokenRange>> per_head(static_cast<std::size_t>(plan.batch) * range_heads);
  std::int64_t total_tokens = 0;  // summed over KV heads
  for (int b = 0; b < plan.batch; ++b)
    for (int h = 0; h < range_heads; ++h) {
      auto& r = per_head[static_cast<std::size_t>(b) * range_heads + h];
      ranges(b, h, r);
      for (const auto& x : r) total_tokens += (x.end - x.begin) * (shared ? hkv : 1);
    }

  // Partition size (tokens per KV head): enough partitions to keep every
  // thread busy (about four per thread), never below four pages, whole pages.
  int split = plan.kv_split_tokens;
  if (split <= 0) {
    const std::int64_t target = 4 * static_cast<std::int64_t>(kernel_threads());
    const std::int64_t per_head_total = shared ? total_tokens / hkv : total_tokens;
    split =
        static_cast<int>(std::max<std::int64_t>(4 * bs, (per_head_total + target - 1) / target));
  }
  split = std::max(bs, (split + bs - 1) / bs * bs);

  std::vector<TokenRange> pieces;
  std::vector<Partition> parts;
  std::vector<std::size_t> first_part(per_head.size() + 1, 0);
  for (std::size_t idx = 0; idx < per_head.size(); ++idx) {
    first_part[idx] = parts.size();
    const int b = static_cast<int>(idx / range_heads), h = static_cast<int>(idx % range_heads);
    partition_ranges(per_head[idx], bs, split, b, shared ? -1 : h, pieces, parts);
  }
  first_part.back() = parts.size();

  // Partial states: m (log2), l, o per partition, KV head it covers and query
  // head of the group.
  const std::size_t state = static_cast<std::size_t>(group) * (d + 2);
  const std::size_t part_state = state * static_cast<std::size_t>(shared ? hkv : 1);
  std::vector<float> partial(parts.size() * part_state);
  std::vector<float> q_scaled(static_cast<std::size_t>(plan.batch) * plan.num_q_heads * d);
  const float s = plan.scale * kLog2e;
  for (int b = 0; b < plan.batch; ++b)
    for (int h = 0; h < plan.num_q_heads; ++h)
      for (int i = 0; i < d; ++i)
        q_scaled[(static_cast<std::size_t>(b) * plan.num_q_heads + h) * d + i] =
            plan.q[b * plan.q_stride + static_cast<std::int64_t>(h) * d + i] * s;

  const std::size_t page_bytes = sizeof(float) * static_cast<std::size_t>(bs) * hkv * d;
  const std::size_t streams =
      static_cast<std::size_t>(page_bytes >= kSmallPageBytes ? kStreams : kStreamsSmallPages);
  parallel_for(static_cast<std::int64_t>(parts.size()), [&](std::int64_t i) {
    thread_local std::vector<float> scratch;
    scratch.resize(static_cast<std::size_t>(group) * 64 + 2 * 64 * static_cast<std::size_t>(d) +
                   256);
    const Partition& p = parts[static_cast<std::size_t>(i)];
    const auto work_for = [&](int h) {
      float* st = partial.data() + static_cast<std::size_t>(i) * part_state +
                  (shared ? static_cast<std::size_t>(h) * state : 0);
      DecodeWork w;
      w.q = q_scaled.data() + (static_cast<std::size_t>(p.b) * plan.num_q_heads + h * group) * d;
      w.g = group;
      w.d = d;
      w.m = st;
      w.l = st + group;
      w.o = st + 2 * group;
      w.scratch = scratch.data();
      return w;
    };
    if (!shared) {
      // Pieces here are single pages (Quest's selection) scattered over the
      // cache: read kStreams of them side by side.
      DecodeWork w = work_for(p.h);
      w.streams = kStreams;
      run(p.b, p.h, pieces.data() + p.first_piece, static_cast<int>(p.num_pieces), w);
      return;
    }
    float* st = partial.data() + static_cast<std::size_t>(i) * part_state;
    for (int h = 0; h < hkv; ++h) {
      float* sh = st + static_cast<std::size_t>(h) * state;
      std::fill(sh, sh + group, -std::numeric_limits<float>::infinity());
      std::fill(sh + group, sh + state, 0.0f);
    }
    // Steps of kStreams pages; within a step, KV head after KV head, the
    // step's tiles of that head are read side by side (DecodeWork::streams).
    // A page holds all KV heads contiguously, so each page is read front to
    // back over the step, `streams` runs at once.
    for (std::size_t k = 0; k < p.num_pieces; k += streams) {
      const std::size_t count = std::min(streams, p.num_pieces - k);
      for (int h = 0; h < hkv; ++h) {
        DecodeWork w = work_for(h);
        w.init = false;
        w.streams = static_cast<int>(count);
        run(p.b, h, pieces.data() + p.first_piece + k, static_cast<int>(count), w);
      }
    }
  });

  // Merge the partitions of each (sequence, KV head).
  parallel_for(static_cast<std::int64_t>(plan.batch) * hkv, [&](std::int64_t idx) {
    const int b = static_cast<int>(idx / hkv), h = static_cast<int>(idx % hkv);
    const std::size_t list = static_cast<std::size_t>(shared ? b : idx);
    const std::size_t p0 = first_part[list], p1 = first_part[list + 1];
    const std::size_t head_off = shared ? static_cast<std::size_t>(h) * state : 0;
    for (int g = 0; g < group; ++g) {
      float* out = plan.out + (static_cast<std::int64_t>(b) * plan.num_q_heads + h * group + g) * d;
      float m = -std::numeric_limits<float>::infinity();
      for (std::size_t p = p0; p < p1; ++p) m = std::max(m, partial[p * part_state + head_off + g]);
      std::fill(out, out + d, 0.0f);
      if (m == -std::numeric_limits<float>::infinity()) continue;
      float l = 0.0f;
      for (std::size_t p = p0; p < p1; ++p) {
        const float* st = partial.data() + p * part_state + head_off;
        if (st[g] == -std::numeric_limits<float>::infinity()) continue;
        const float w = std::exp2(st[g] - m);
        l += w * st[group + g];
        const float* o = st + 2 * group + static_cast<std::size_t>(g) * d;
        for (int i = 0; i < d; ++i) out[i] += w * o[i];
      }
      const float inv = l > 0.0f ? 1.0f / l : 0.0f;
      for (int i = 0; i < d; ++i) out[i] *= inv;
    }
  });
}

}  // namespace cpu

namespace {

void validate_decode(const DecodeAttentionArgs& a, const char* fn) {
  detail::validate_heads(a.heads, fn);
  const std::string f(fn);
  detail::require(a.q && a.out, f + ": q and out must be set");
  detail::require(a.cache.k && a.cache.v, f + ": cache.k and cache.v must be set");
  detail::require(a.cache.layout.num_kv_heads == a.heads.num_kv_heads,
                  f + ": cache.layout.num_kv_heads differs from heads.num_kv_heads");
  detail::require(a.cache.layout.head_dim == a.heads.head_dim,
                  f + ": cache.layout.head_dim differs from heads.head_dim");
  detail::require(a.mask.sink_tokens >= 0 && a.mask.window_tokens >= 0,
                  f + ": mask.sink_tokens and mask.window_tokens must be >= 0");
  validate_block_table(a.cache.layout, a.block_table);
  detail::require(a.kv_split_tokens >= 0, f + ": kv_split_tokens must be >= 0");
  detail::require(
      a.q_row_stride == 0 || a.q_row_stride >= std::int64_t{a.heads.num_q_heads} * a.heads.head_dim,
      f + ": q_row_stride must cover all query heads");
}

cpu::DecodePlan plan_of(const DecodeAttentionArgs& a) {
  cpu::DecodePlan p;
  p.batch = a.block_table.batch();
  p.num_q_heads = a.heads.num_q_heads;
  p.num_kv_heads = a.heads.num_kv_heads;
  p.head_dim = a.heads.head_dim;
  p.block_size = a.cache.layout.block_size;
  p.scale = detail::softmax_scale(a.heads);
  p.q = a.q;
  p.q_stride =
      a.q_row_stride ? a.q_row_stride : std::int64_t{a.heads.num_q_heads} * a.heads.head_dim;
  p.out = a.out;
  p.kv_split_tokens = a.kv_split_tokens;
  return p;
}

// Turns token ranges of one (sequence, KV head) into page segments.
cpu::PartitionFn fp32_partition(const DecodeAttentionArgs& a) {
  const cpu::IsaTable& isa = cpu::isa_for(a.heads.head_dim);
  return
      [&a, &isa](int b, int h, const cpu::TokenRange* pieces, int count, const cpu::DecodeWork& w) {
        thread_local std::vector<cpu::KvSegment> segs;
        segs.clear();
        const auto& layout = a.cache.layout;
        const std::int32_t* row = a.block_table.row(b);
        for (int i = 0; i < count; ++i) {
          const int page = pieces[i].begin / layout.block_size;
          const int slot = pieces[i].begin % layout.block_size;
          const std::size_t off = layout.offset(row[page], h, slot);
          segs.push_back({a.cache.k + off, a.cache.v + off, pieces[i].end - pieces[i].begin});
        }
        isa.decode_segments(w, segs.data(), static_cast<int>(segs.size()));
      };
}

}  // namespace

void decode_attention(const DecodeAttentionArgs& a) {
  validate_decode(a, "decode_attention");
  const AttentionMask mask = a.mask;
  const auto ranges = [&a, mask](int b, int, std::vector<cpu::TokenRange>& r) {
    r.clear();
    const int len = a.block_table.context_lens[b];
    if (mask.window_tokens <= 0 || len <= mask.window_tokens + mask.sink_tokens) {
      if (len > 0) r.push_back({0, len});
      return;
    }
    if (mask.sink_tokens > 0) r.push_back({0, mask.sink_tokens});
    r.push_back({len - mask.window_tokens, len});
  };
  cpu::DecodePlan plan = plan_of(a);
  plan.shared_ranges = true;
  cpu::run_decode(plan, ranges, fp32_partition(a));
}

void decode_attention_pages(const DecodeAttentionArgs& a, const PageSelection& sel) {
  validate_decode(a, "decode_attention_pages");
  detail::require(a.mask.window_tokens == 0 && a.mask.sink_tokens == 0,
                  "decode_attention_pages: mask must be the default (the selection is the mask)");
  detail::require(sel.batch == a.block_table.batch() && sel.num_kv_heads == a.heads.num_kv_heads,
                  "decode_attention_pages: selection shape differs from the batch");
  const int bs = a.cache.layout.block_size;
  const auto ranges = [&a, &sel, bs](int b, int h, std::vector<cpu::TokenRange>& r) {
    r.clear();
    const int len = a.block_table.context_lens[b];
    const std::int32_t* pages = sel.list(b, h);
    for (int i = 0; i < sel.count(b, h); ++i) {
      const int begin = pages[i] * bs;
      const int end = std::min(len, begin + bs);
      if (begin >= end) continue;
      if (!r.empty() && r.back().end == begin)
        r.back().end = end;
      else
        r.push_back({begin, end});
    }
  };
  cpu::run_decode(plan_of(a), ranges, fp32_partition(a));
}

}  // namespace prism::kernels
