#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "prism/kernels/sparse.h"
#include "prism/kernels/threading.h"
#include "validate.h"

namespace prism::kernels {

QuestBounds::QuestBounds(const PagedKvLayout& l)
    : layout(l),
      key_min(static_cast<std::size_t>(l.num_blocks) * l.num_kv_heads * l.head_dim, 0.0f),
      key_max(key_min.size(), 0.0f) {}

void quest_update_bounds(const ConstPagedKvCache& cache, const BlockTable& table,
                         QuestBounds& bounds) {
  const auto& l = cache.layout;
  detail::require(cache.k != nullptr, "quest_update_bounds: cache.k must be set");
  detail::require(bounds.layout.num_blocks == l.num_blocks &&
                      bounds.layout.num_kv_heads == l.num_kv_heads &&
                      bounds.layout.head_dim == l.head_dim &&
                      bounds.key_min.size() ==
                          static_cast<std::size_t>(l.num_blocks) * l.num_kv_heads * l.head_dim,
                  "quest_update_bounds: bounds were built for another layout");
  validate_block_table(l, table);
  std::vector<std::pair<int, int>> pages;  // (page id, valid tokens)
  for (int b = 0; b < table.batch(); ++b) {
    const int len = table.context_lens[b];
    for (int p = 0; p * l.block_size < len; ++p)
      pages.push_back({table.row(b)[p], std::min(l.block_size, len - p * l.block_size)});
  }
  const int d = l.head_dim;
  parallel_for(static_cast<std::int64_t>(pages.size()), [&](std::int64_t i) {
    const auto [block, valid] = pages[static_cast<std::size_t>(i)];
    for (int h = 0; h < l.num_kv_heads; ++h) {
      const float* k = cache.k + l.offset(block, h, 0);
      float* lo =
          bounds.key_min.data() + (static_cast<std::size_t>(block) * l.num_kv_heads + h) * d;
      float* hi =
          bounds.key_max.data() + (static_cast<std::size_t>(block) * l.num_kv_heads + h) * d;
      std::copy(k, k + d, lo);
      std::copy(k, k + d, hi);
      for (int t = 1; t < valid; ++t)
        for (int c = 0; c < d; ++c) {
          lo[c] = std::min(lo[c], k[t * d + c]);
          hi[c] = std::max(hi[c], k[t * d + c]);
        }
    }
  });
}

void quest_page_scores(const AttentionHeads& heads, const float* q, std::int64_t q_row_stride,
                       const BlockTable& table, const QuestBounds& bounds,
                       std::vector<float>& scores) {
  detail::validate_heads(heads, "quest_page_scores");
  detail::require(q != nullptr, "quest_page_scores: q must be set");
  const auto& l = bounds.layout;
  detail::require(l.num_kv_heads == heads.num_kv_heads && l.head_dim == heads.head_dim,
                  "quest_page_scores: bounds layout differs from heads");
  validate_block_table(l, table);
  const int hq = heads.num_q_heads, hkv = heads.num_kv_heads, d = heads.head_dim, group = hq / hkv;
  const std::int64_t qs = q_row_stride ? q_row_stride : std::int64_t{hq} * d;
  const int mb = table.max_blocks_per_seq;
  scores.assign(static_cast<std::size_t>(table.batch()) * hkv * mb,
                -std::numeric_limits<float>::infinity());
  parallel_for(static_cast<std::int64_t>(table.batch()) * hkv, [&](std::int64_t idx) {
    const int b = static_cast<int>(idx / hkv), h = static_cast<int>(idx % hkv);
    const int pages = (table.context_lens[b] + l.block_size - 1) / l.block_size;
    float* out = scores.data() + static_cast<std::size_t>(idx) * mb;
    for (int p = 0; p < pages; ++p) {
      const std::size_t base = (static_cast<std::size_t>(table.row(b)[p]) * hkv + h) * d;
      const float* lo = bounds.key_min.data() + base;
      const float* hi = bounds.key_max.data() + base;
      // kLanes independent partial sums: without them the float sum is one
      // serial dependency chain (no -ffast-math), with them it vectorises.
      constexpr int kLanes = 16;
      float acc[kLanes] = {};
      for (int g = 0; g < group; ++g) {
        const float* qv = q + b * qs + std::int64_t{h * group + g} * d;
        int c = 0;
        for (; c + kLanes <= d; c += kLanes)
          for (int j = 0; j < kLanes; ++j)
            acc[j] += std::max(qv[c + j] * lo[c + j], qv[c + j] * hi[c + j]);
        for (; c < d; ++c) acc[c % kLanes] += std::max(qv[c] * lo[c], qv[c] * hi[c]);
      }
      float s = 0.0f;
      for (float x : acc) s += x;
      out[p] = s;
    }
  });
}

void quest_select_pages(const std::vector<float>& scores, const BlockTable& table, int num_kv_heads,
                        int top_k_pages, PageSelection& sel) {
  detail::require(num_kv_heads > 0, "quest_select_pages: num_kv_heads must be > 0");
  detail::require(top_k_pages >= 1, "quest_select_pages: top_k_pages must be >= 1");
  const int mb = table.max_blocks_per_seq;
  detail::require(scores.size() == static_cast<std::size_t>(table.batch()) * num_kv_heads * mb,
                  "quest_select_pages: scores has the wrong size for the table");
  sel.batch = table.batch();
  sel.num_kv_heads = num_kv_heads;
  sel.max_pages = std::max(1, mb);
  sel.pages.assign(static_cast<std::size_t>(sel.batch) * num_kv_heads * sel.max_pages, -1);
  sel.counts.assign(static_cast<std::size_t>(sel.batch) * num_kv_heads, 0);
  // Block size is not part of scores: page count comes from the -inf tail.
  for (int b = 0; b < table.batch(); ++b)
    for (int h = 0; h < num_kv_heads; ++h) {
      const std::size_t idx = static_cast<std::size_t>(b) * num_kv_heads + h;
      const float* s = scores.data() + idx * mb;
      int pages = 0;
      while (pages < mb && s[pages] != -std::numeric_limits<float>::infinity()) ++pages;
      if (table.context_lens[b] == 0) pages = 0;
      std::int32_t* out = sel.pages.data() + idx * sel.max_pages;
      if (pages <= top_k_pages) {
        std::iota(out, out + pages, 0);
        sel.counts[idx] = pages;
        continue;
      }
      // The newest page always, then the best of the rest.
      std::vector<std::int32_t> order(pages - 1);
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(
          order.begin(), order.begin() + (top_k_pages - 1), order.end(),
          [s](std::int32_t x, std::int32_t y) { return s[x] > s[y] || (s[x] == s[y] && x < y); });
      order.resize(top_k_pages - 1);
      order.push_back(pages - 1);
      std::sort(order.begin(), order.end());
      std::copy(order.begin(), order.end(), out);
      sel.counts[idx] = top_k_pages;
    }
}

}  // namespace prism::kernels
