#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>
#include <string>

#include "isa.h"
#include "prefill_tiles.h"
#include "prism/kernels/sparse.h"
#include "prism/kernels/threading.h"
#include "validate.h"

namespace prism::kernels {
namespace {

void validate_input(const SparsePrefillInput& in, const char* fn) {
  const std::string f(fn);
  detail::validate_heads(in.heads, fn);
  detail::require(in.q_len >= 0 && in.kv_len >= in.q_len,
                  f + ": need 0 <= q_len <= kv_len (queries are the newest tokens)");
  detail::require(in.q_len == 0 || (in.q && in.k && in.v), f + ": q, k and v must be set");
}

void validate_pattern(const BlockSparsePattern& p, const SparsePrefillInput& in, const char* fn) {
  const std::string f(fn);
  detail::require(p.block_size > 0, f + ": pattern.block_size must be > 0");
  detail::require(p.num_heads == in.heads.num_q_heads,
                  f + ": pattern.num_heads differs from num_q_heads");
  detail::require(p.num_q_blocks == (in.q_len + p.block_size - 1) / p.block_size,
                  f + ": pattern.num_q_blocks does not match q_len");
  const std::size_t tiles = static_cast<std::size_t>(p.num_heads) * p.num_q_blocks;
  detail::require(p.block_offsets.size() == tiles + 1,
                  f + ": pattern.block_offsets needs heads * q blocks + 1 entries");
  detail::require(p.block_offsets.back() == static_cast<std::int32_t>(p.key_blocks.size()),
                  f + ": pattern.block_offsets does not end at key_blocks.size()");
  for (std::int32_t kb : p.key_blocks)
    detail::require(kb >= 0 && kb * p.block_size < std::max(in.kv_len, 1),
                    f + ": pattern.key_blocks has a tile past kv_len");
  if (!p.column_offsets.empty()) {
    detail::require(p.column_offsets.size() == tiles + 1,
                    f + ": pattern.column_offsets needs heads * q blocks + 1 entries");
    detail::require(p.column_offsets.back() == static_cast<std::int32_t>(p.columns.size()),
                    f + ": pattern.column_offsets does not end at columns.size()");
    for (std::int32_t c : p.columns)
      detail::require(c >= 0 && c < in.kv_len, f + ": pattern.columns has a key past kv_len");
  }
}

// Visible (query, key) pairs for queries at positions [p0, p1] and keys [k0, k1).
std::int64_t causal_pairs(std::int64_t p0, std::int64_t p1, std::int64_t k0, std::int64_t k1) {
  std::int64_t total = 0;
  // Rows that see the whole range, rows that see part, rows that see nothing.
  const std::int64_t full_from = std::max(p0, k1 - 1);
  if (full_from <= p1) total += (p1 - full_from + 1) * (k1 - k0);
  const std::int64_t part_lo = std::max(p0, k0), part_hi = std::min(p1, k1 - 2);
  if (part_lo <= part_hi) {
    // Row p sees p - k0 + 1 keys.
    const std::int64_t a = part_lo - k0 + 1, b = part_hi - k0 + 1;
    total += (a + b) * (b - a + 1) / 2;
  }
  return total;
}

}  // namespace

double BlockSparsePattern::density(int q_len, int kv_len) const {
  const std::int64_t offset = kv_len - q_len;
  const double all =
      static_cast<double>(num_heads) *
      (static_cast<double>(q_len) * offset + static_cast<double>(q_len) * (q_len + 1) / 2.0);
  if (all <= 0) return 0.0;
  double used = 0.0;
  for (int h = 0; h < num_heads; ++h)
    for (int qb = 0; qb < num_q_blocks; ++qb) {
      const std::size_t idx = static_cast<std::size_t>(h) * num_q_blocks + qb;
      const std::int64_t p0 = offset + std::int64_t{qb} * block_size;
      const std::int64_t p1 =
          offset + std::min<std::int64_t>(q_len, std::int64_t{qb + 1} * block_size) - 1;
      for (int x = block_offsets[idx]; x < block_offsets[idx + 1]; ++x) {
        const std::int64_t k0 = std::int64_t{key_blocks[x]} * block_size;
        const std::int64_t k1 = std::min<std::int64_t>(kv_len, k0 + block_size);
        used += static_cast<double>(causal_pairs(p0, p1, k0, k1));
      }
      if (!column_offsets.empty())
        for (int x = column_offsets[idx]; x < column_offsets[idx + 1]; ++x)
          used += static_cast<double>(causal_pairs(p0, p1, columns[x], columns[x] + 1));
    }
  return used / all;
}

void block_sparse_attention(const SparsePrefillInput& in, const BlockSparsePattern& p, float* out) {
  validate_input(in, "block_sparse_attention");
  validate_pattern(p, in, "block_sparse_attention");
  detail::require(in.q_len == 0 || out != nullptr, "block_sparse_attention: out must be set");
  const int hq = in.heads.num_q_heads, hkv = in.heads.num_kv_heads, d = in.heads.head_dim;
  const int group = hq / hkv;
  const float scale = detail::softmax_scale(in.heads);
  const int offset = in.kv_len - in.q_len;
  const int bs = p.block_size;
  const int sub_tiles = (bs + cpu::kTileRows - 1) / cpu::kTileRows;

  struct Item {
    int h, qb, sub;
    std::int64_t cost;
  };
  std::vector<Item> items;
  for (int h = 0; h < hq; ++h)
    for (int qb = 0; qb < p.num_q_blocks; ++qb) {
      const std::size_t idx = static_cast<std::size_t>(h) * p.num_q_blocks + qb;
      std::int64_t cost = std::int64_t{p.block_offsets[idx + 1] - p.block_offsets[idx]} * bs;
      if (!p.column_offsets.empty()) cost += p.column_offsets[idx + 1] - p.column_offsets[idx];
      for (int s = 0; s < sub_tiles; ++s)
        if (qb * bs + s * cpu::kTileRows < std::min(in.q_len, (qb + 1) * bs))
          items.push_back({h, qb, s, cost});
    }
  std::stable_sort(items.begin(), items.end(),
                   [](const Item& x, const Item& y) { return x.cost > y.cost; });

  const cpu::IsaTable& isa = cpu::isa_for(d);
  const std::int64_t qs = std::int64_t{hq} * d, ks = std::int64_t{hkv} * d;
  parallel_for(static_cast<std::int64_t>(items.size()), [&](std::int64_t i) {
    thread_local std::unique_ptr<cpu::QueryTile> tile;
    if (!tile || &tile->isa_table() != &isa) tile = std::make_unique<cpu::QueryTile>(isa);
    const Item& it = items[static_cast<std::size_t>(i)];
    const int r0 = it.qb * bs + it.sub * cpu::kTileRows;
    const int r1 = std::min({in.q_len, (it.qb + 1) * bs, r0 + cpu::kTileRows});
    const int kvh = it.h / group;
    cpu::QueryTileSpec spec;
    spec.q = in.q + r0 * qs + std::int64_t{it.h} * d;
    spec.q_stride = qs;
    spec.rows = r1 - r0;
    spec.d = d;
    spec.scale = scale;
    spec.first_position = offset + r0;
    spec.causal = true;
    spec.kv_len = in.kv_len;
    spec.k = in.k + std::int64_t{kvh} * d;
    spec.v = in.v + std::int64_t{kvh} * d;
    spec.kv_stride = ks;
    tile->begin(spec);
    const std::size_t idx = static_cast<std::size_t>(it.h) * p.num_q_blocks + it.qb;
    // Merge runs of adjacent key tiles so chunks are as full as possible.
    int x = p.block_offsets[idx];
    const int x1 = p.block_offsets[idx + 1];
    while (x < x1) {
      int y = x + 1;
      while (y < x1 && p.key_blocks[y] == p.key_blocks[y - 1] + 1) ++y;
      tile->keys(p.key_blocks[x] * bs, std::min(in.kv_len, (p.key_blocks[y - 1] + 1) * bs));
      x = y;
    }
    if (!p.column_offsets.empty()) {
      const int c0 = p.column_offsets[idx], c1 = p.column_offsets[idx + 1];
      // Columns past the tile's last visible key contribute nothing.
      const std::int32_t* end =
          std::upper_bound(p.columns.data() + c0, p.columns.data() + c1, tile->max_visible_key());
      tile->columns(p.columns.data() + c0, static_cast<int>(end - (p.columns.data() + c0)));
    }
    tile->finish(out + r0 * qs + std::int64_t{it.h} * d, qs, nullptr, 0);
  });
}

// ------------------------------------------------------------ vertical-slash

void vertical_slash_estimate(const SparsePrefillInput& in, const VerticalSlashConfig& cfg,
                             VerticalSlashEstimate& est) {
  validate_input(in, "vertical_slash_estimate");
  detail::require(cfg.last_q >= 1, "vertical_slash_estimate: last_q must be >= 1");
  const int hq = in.heads.num_q_heads, hkv = in.heads.num_kv_heads, d = in.heads.head_dim;
  const int group = hq / hkv;
  const float scale = detail::softmax_scale(in.heads);
  const int offset = in.kv_len - in.q_len;
  const int nq = std::min(cfg.last_q, in.q_len);
  const int first = in.q_len - nq;
  est.num_heads = hq;
  est.kv_len = in.kv_len;
  est.vertical.assign(static_cast<std::size_t>(hq) * in.kv_len, 0.0f);
  est.slash.assign(static_cast<std::size_t>(hq) * in.kv_len, 0.0f);
  if (nq == 0) return;
  const int visible = offset + in.q_len;  // keys the last query sees
  parallel_for(hq, [&](std::int64_t h) {
    std::vector<float> s(static_cast<std::size_t>(nq) * visible);
    // Scores of the last nq queries against every key: one sgemm per head.
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, visible, d, scale,
                in.q + (std::int64_t{first} * hq + h) * d, hq * d,
                in.k + (h / group) * std::int64_t{d}, hkv * d, 0.0f, s.data(), visible);
    float* vert = est.vertical.data() + h * in.kv_len;
    float* slash = est.slash.data() + h * in.kv_len;
    for (int r = 0; r < nq; ++r) {
      const int pos = offset + first + r;
      float* row = s.data() + static_cast<std::size_t>(r) * visible;
      float m = -std::numeric_limits<float>::infinity();
      for (int j = 0; j <= pos; ++j) m = std::max(m, row[j]);
      double sum = 0.0;
      for (int j = 0; j <= pos; ++j) {
        row[j] = std::exp(row[j] - m);
        sum += row[j];
      }
      const float inv = static_cast<float>(1.0 / sum);
      for (int j = 0; j <= pos; ++j) {
        const float p = row[j] * inv;
        vert[j] += p;
        slash[pos - j] += p;
      }
    }
  });
}

namespace {

std::vector<std::int32_t> top_indices(const float* score, int n, int k, int always_first) {
  std::vector<std::int32_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  k = std::min(k, n);
  const int forced = std::min(always_first, n);
  // Forced indices sort first by giving them +inf.
  auto key = [&](std::int32_t i) {
    return i < forced ? std::numeric_limits<float>::infinity() : score[i];
  };
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](std::int32_t a, std::int32_t b) {
    const float x = key(a), y = key(b);
    return x > y || (x == y && a < b);
  });
  idx.resize(k);
  std::sort(idx.begin(), idx.end());
  return idx;
}

}  // namespace

void vertical_slash_select(const VerticalSlashEstimate& est, const VerticalSlashConfig& cfg,
                           int q_len, BlockSparsePattern& p) {
  detail::require(cfg.block_size > 0, "vertical_slash_select: block_size must be > 0");
  detail::require(cfg.vertical_size >= 0 && cfg.slash_size >= 0,
                  "vertical_slash_select: vertical_size and slash_size must be >= 0");
  detail::require(q_len >= 0 && q_len <= est.kv_len,
                  "vertical_slash_select: q_len must be in [0, kv_len]");
  const int kv_len = est.kv_len, bs = cfg.block_size, offset = kv_len - q_len;
  p.block_size = bs;
  p.num_heads = est.num_heads;
  p.num_q_blocks = (q_len + bs - 1) / bs;
  p.num_k_blocks = (kv_len + bs - 1) / bs;
  p.block_offsets.assign(1, 0);
  p.column_offsets.assign(1, 0);
  p.key_blocks.clear();
  p.columns.clear();
  std::vector<char> covered(p.num_k_blocks);
  for (int h = 0; h < est.num_heads; ++h) {
    const auto verticals = top_indices(est.vertical.data() + static_cast<std::size_t>(h) * kv_len,
                                       kv_len, cfg.vertical_size, cfg.sink_columns);
    const auto slashes = top_indices(est.slash.data() + static_cast<std::size_t>(h) * kv_len,
                                     kv_len, cfg.slash_size, cfg.local_diagonals);
    for (int qb = 0; qb < p.num_q_blocks; ++qb) {
      const int p0 = offset + qb * bs;
      const int p1 = offset + std::min(q_len, (qb + 1) * bs) - 1;
      std::fill(covered.begin(), covered.end(), 0);
      // A diagonal at distance s crosses keys [p0 - s, p1 - s].
      for (const int s : slashes) {
        const int k0 = p0 - s, k1 = p1 - s;
        if (k1 < 0) break;  // slashes ascend: the rest are further out
        for (int kb = std::max(0, k0) / bs; kb <= k1 / bs; ++kb) covered[kb] = 1;
      }
      for (int kb = 0; kb < p.num_k_blocks; ++kb)
        if (covered[kb]) p.key_blocks.push_back(kb);
      p.block_offsets.push_back(static_cast<std::int32_t>(p.key_blocks.size()));
      for (const int c : verticals) {
        if (c > p1) break;
        if (!covered[c / bs]) p.columns.push_back(c);
      }
      p.column_offsets.push_back(static_cast<std::int32_t>(p.columns.size()));
    }
  }
}

// --------------------------------------------------------------- FlexPrefill

void flexprefill_estimate(const SparsePrefillInput& in, const FlexPrefillConfig& cfg,
                          BlockScores& out) {
  validate_input(in, "flexprefill_estimate");
  detail::require(cfg.block_size > 0, "flexprefill_estimate: block_size must be > 0");
  const int hq = in.heads.num_q_heads, hkv = in.heads.num_kv_heads, d = in.heads.head_dim;
  const int group = hq / hkv, bs = cfg.block_size;
  const float scale = detail::softmax_scale(in.heads);
  const int offset = in.kv_len - in.q_len;
  const int nqb = (in.q_len + bs - 1) / bs, nkb = (in.kv_len + bs - 1) / bs;
  out.num_heads = hq;
  out.num_q_blocks = nqb;
  out.num_k_blocks = nkb;
  out.probs.assign(static_cast<std::size_t>(hq) * nqb * nkb, 0.0f);
  // Mean-pooled keys per KV head: [hkv][nkb][d].
  std::vector<float> pk(static_cast<std::size_t>(hkv) * nkb * d, 0.0f);
  parallel_for(static_cast<std::int64_t>(hkv) * nkb, [&](std::int64_t i) {
    const int h = static_cast<int>(i / nkb), kb = static_cast<int>(i % nkb);
    const int k0 = kb * bs, k1 = std::min(in.kv_len, k0 + bs);
    float* dst = pk.data() + static_cast<std::size_t>(i) * d;
    for (int j = k0; j < k1; ++j)
      for (int c = 0; c < d; ++c) dst[c] += in.k[(std::int64_t{j} * hkv + h) * d + c];
    for (int c = 0; c < d; ++c) dst[c] /= static_cast<float>(k1 - k0);
  });
  parallel_for(hq, [&](std::int64_t h) {
    std::vector<float> pq(static_cast<std::size_t>(nqb) * d, 0.0f);
    for (int qb = 0; qb < nqb; ++qb) {
      const int r0 = qb * bs, r1 = std::min(in.q_len, r0 + bs);
      float* dst = pq.data() + static_cast<std::size_t>(qb) * d;
      for (int r = r0; r < r1; ++r)
        for (int c = 0; c < d; ++c) dst[c] += in.q[(std::int64_t{r} * hq + h) * d + c];
      for (int c = 0; c < d; ++c) dst[c] /= static_cast<float>(r1 - r0);
    }
    float* probs = out.probs.data() + static_cast<std::size_t>(h) * nqb * nkb;
    // Pooled scores for every (query tile, key tile) in one sgemm.
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nqb, nkb, d, scale, pq.data(), d,
                pk.data() + static_cast<std::size_t>(h / group) * nkb * d, d, 0.0f, probs, nkb);
    for (int qb = 0; qb < nqb; ++qb) {
      float* row = probs + static_cast<std::size_t>(qb) * nkb;
      const int last = (offset + std::min(in.q_len, (qb + 1) * bs) - 1) / bs;  // causal tiles only
      float m = -std::numeric_limits<float>::infinity();
      for (int kb = 0; kb <= last; ++kb) m = std::max(m, row[kb]);
      double sum = 0.0;
      for (int kb = 0; kb <= last; ++kb) {
        row[kb] = std::exp(row[kb] - m);
        sum += row[kb];
      }
      for (int kb = 0; kb < nkb; ++kb)
        row[kb] = kb <= last ? static_cast<float>(row[kb] / sum) : 0.0f;
    }
  });
}

void flexprefill_select(const BlockScores& s, const FlexPrefillConfig& cfg, int q_len, int kv_len,
                        BlockSparsePattern& p) {
  detail::require(cfg.gamma >= 0.0f && cfg.gamma <= 1.0f,
                  "flexprefill_select: gamma must be in [0, 1]");
  detail::require(cfg.block_size > 0 && cfg.min_blocks >= 0,
                  "flexprefill_select: bad block_size or min_blocks");
  const int bs = cfg.block_size, offset = kv_len - q_len;
  detail::require(
      s.num_q_blocks == (q_len + bs - 1) / bs && s.num_k_blocks == (kv_len + bs - 1) / bs,
      "flexprefill_select: scores were estimated for another shape or block size");
  p.block_size = bs;
  p.num_heads = s.num_heads;
  p.num_q_blocks = s.num_q_blocks;
  p.num_k_blocks = s.num_k_blocks;
  p.block_offsets.assign(1, 0);
  p.key_blocks.clear();
  p.column_offsets.clear();
  p.columns.clear();
  std::vector<std::int32_t> order;
  std::vector<char> keep(s.num_k_blocks);
  for (int h = 0; h < s.num_heads; ++h)
    for (int qb = 0; qb < s.num_q_blocks; ++qb) {
      const float* row =
          s.probs.data() + (static_cast<std::size_t>(h) * s.num_q_blocks + qb) * s.num_k_blocks;
      const int first_diag = (offset + qb * bs) / bs;
      const int last = (offset + std::min(q_len, (qb + 1) * bs) - 1) / bs;
      std::fill(keep.begin(), keep.end(), 0);
      keep[0] = 1;                                               // the attention sink
      for (int kb = first_diag; kb <= last; ++kb) keep[kb] = 1;  // the diagonal
      if (cfg.gamma >= 1.0f) {
        std::fill(keep.begin(), keep.begin() + last + 1, 1);
      } else {
        order.resize(last + 1);
        std::iota(order.begin(), order.end(), 0);
        std::sort(order.begin(), order.end(), [row](std::int32_t a, std::int32_t b) {
          return row[a] > row[b] || (row[a] == row[b] && a < b);
        });
        double mass = 0.0;
        int taken = 0;
        for (const std::int32_t kb : order) {
          if (mass >= cfg.gamma && taken >= cfg.min_blocks) break;
          keep[kb] = 1;
          mass += row[kb];
          ++taken;
        }
      }
      for (int kb = 0; kb <= last; ++kb)
        if (keep[kb]) p.key_blocks.push_back(kb);
      p.block_offsets.push_back(static_cast<std::int32_t>(p.key_blocks.size()));
    }
}

}  // namespace prism::kernels
