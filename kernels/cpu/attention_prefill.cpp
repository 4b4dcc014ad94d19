#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>

#include "isa.h"
#include "prefill_tiles.h"
#include "prism/kernels/attention.h"
#include "prism/kernels/threading.h"
#include "validate.h"

namespace prism::kernels {
namespace cpu {

void QueryTile::begin(const QueryTileSpec& spec) {
  spec_ = spec;
  const int d = spec.d;
  qt_.assign(static_cast<std::size_t>(d) * kTileRows, 0.0f);
  o_.assign(static_cast<std::size_t>(kTileRows) * d, 0.0f);
  scratch_.resize(static_cast<std::size_t>(kTileRows) * kTileCols + 64);
  const float s = spec.scale * kLog2e;
  for (int r = 0; r < spec.rows; ++r) {
    const float* row = spec.q + r * spec.q_stride;
    for (int dd = 0; dd < d; ++dd) qt_[static_cast<std::size_t>(dd) * kTileRows + r] = row[dd] * s;
  }
  max_hi_ = -1;
  min_hi_ = std::numeric_limits<int>::max();
  min_lo_ = std::numeric_limits<int>::max();
  max_lo_ = 0;
  sink_ = spec.window > 0 ? spec.sink : 0;
  for (int r = 0; r < kTileRows; ++r) {
    m_[r] = -std::numeric_limits<float>::infinity();
    l_[r] = 0.0f;
    if (r >= spec.rows) {
      hi_[r] = -1;
      lo_[r] = 0;
      continue;
    }
    const int pos = spec.first_position + r;
    hi_[r] = spec.causal ? std::min(pos, spec.kv_len - 1) : spec.kv_len - 1;
    lo_[r] = spec.window > 0 ? std::max(0, pos - spec.window + 1) : 0;
    max_hi_ = std::max(max_hi_, hi_[r]);
    min_hi_ = std::min(min_hi_, hi_[r]);
    min_lo_ = std::min(min_lo_, lo_[r]);
    max_lo_ = std::max(max_lo_, lo_[r]);
  }
  if (spec.rows == 0) min_lo_ = min_hi_ = 0;
}

void QueryTile::run(int key0, int cols, const int* columns, bool masked) {
  PrefillTile t;
  t.q = qt_.data();
  t.rows = spec_.rows;
  t.k = columns != nullptr ? spec_.k : spec_.k + key0 * spec_.kv_stride;
  t.v = columns != nullptr ? spec_.v : spec_.v + key0 * spec_.kv_stride;
  t.kv_stride = spec_.kv_stride;
  t.cols = cols;
  t.key0 = key0;
  t.d = spec_.d;
  t.masked = masked;
  t.hi = hi_;
  t.lo = lo_;
  t.sink = sink_;
  t.columns = columns;
  t.m = m_;
  t.l = l_;
  t.o = o_.data();
  t.scratch = scratch_.data();
  isa_.prefill_tile(t);
}

void QueryTile::keys(int j0, int j1) {
  j1 = std::min(j1, max_hi_ + 1);
  for (int c0 = j0; c0 < j1; c0 += kTileCols) {
    const int c1 = std::min(c0 + kTileCols, j1);
    // Invisible to every row: entirely before every window and past the sink.
    if (c0 >= sink_ && c1 - 1 < min_lo_) continue;
    const bool all_visible = c1 - 1 <= min_hi_ && (c0 >= max_lo_ || c1 <= sink_);
    run(c0, c1 - c0, nullptr, !all_visible);
  }
}

void QueryTile::columns(const std::int32_t* cols, int n) {
  for (int i = 0; i < n; i += kTileCols) {
    run(0, std::min(kTileCols, n - i), cols + i, true);
  }
}

void QueryTile::finish(float* out, std::int64_t out_stride, float* lse, std::int64_t lse_stride) {
  const int d = spec_.d;
  for (int r = 0; r < spec_.rows; ++r) {
    const float l = l_[r];
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    const float* o = o_.data() + static_cast<std::size_t>(r) * d;
    float* dst = out + r * out_stride;
    for (int dd = 0; dd < d; ++dd) dst[dd] = o[dd] * inv;
    if (lse != nullptr) {
      lse[r * lse_stride] =
          l > 0.0f ? (m_[r] + std::log2(l)) * kLn2 : -std::numeric_limits<float>::infinity();
    }
  }
}

}  // namespace cpu

namespace {

struct WorkItem {
  int b, h, tile;
  std::int64_t cost;
};

}  // namespace

void prefill_attention(const PrefillAttentionArgs& a) {
  const auto& heads = a.heads;
  detail::validate_heads(heads, "prefill_attention");
  detail::require(a.q && a.k && a.v && a.out, "prefill_attention: q, k, v and out must be set");
  detail::require(a.mask.sink_tokens >= 0 && a.mask.window_tokens >= 0,
                  "prefill_attention: mask.sink_tokens and mask.window_tokens must be >= 0");
  const auto& qs = a.batch.q_starts;
  const auto& ks = a.batch.kv_starts;
  detail::require(
      qs.size() >= 1 && qs.size() == ks.size(),
      "prefill_attention: batch.q_starts and batch.kv_starts need batch + 1 entries each");
  const int batch = static_cast<int>(qs.size()) - 1;
  detail::require(qs[0] == 0 && ks[0] == 0, "prefill_attention: batch starts must begin at 0");
  detail::require(a.batch.q_position_offsets.empty() ||
                      static_cast<int>(a.batch.q_position_offsets.size()) == batch,
                  "prefill_attention: batch.q_position_offsets needs batch entries or none");
  for (int b = 0; b < batch; ++b) {
    detail::require(qs[b + 1] >= qs[b] && ks[b + 1] >= ks[b],
                    "prefill_attention: batch starts must be non-decreasing (sequence " +
                        std::to_string(b) + ")");
    if (!a.batch.q_position_offsets.empty())
      detail::require(a.batch.q_position_offsets[b] >= 0,
                      "prefill_attention: q_position_offsets must be >= 0");
    else
      detail::require(ks[b + 1] - ks[b] >= qs[b + 1] - qs[b] || !a.mask.causal,
                      "prefill_attention: causal sequence " + std::to_string(b) +
                          " has more queries than keys; pass q_position_offsets");
  }
  const int hq = heads.num_q_heads, hkv = heads.num_kv_heads, d = heads.head_dim;
  const int group = hq / hkv;
  const float scale = detail::softmax_scale(heads);
  const std::int64_t q_stride = a.q_row_stride ? a.q_row_stride : std::int64_t{hq} * d;
  const std::int64_t kv_stride = a.kv_row_stride ? a.kv_row_stride : std::int64_t{hkv} * d;
  detail::require(q_stride >= std::int64_t{hq} * d && kv_stride >= std::int64_t{hkv} * d,
                  "prefill_attention: row strides must cover all heads");
  const std::int64_t out_stride = std::int64_t{hq} * d;

  std::vector<WorkItem> items;
  for (int b = 0; b < batch; ++b) {
    const int q_len = qs[b + 1] - qs[b];
    const int kv_len = ks[b + 1] - ks[b];
    const int offset =
        a.batch.q_position_offsets.empty() ? kv_len - q_len : a.batch.q_position_offsets[b];
    for (int tile = 0; tile * cpu::kTileRows < q_len; ++tile) {
      std::int64_t keys =
          a.mask.causal ? std::min(kv_len, offset + (tile + 1) * cpu::kTileRows) : kv_len;
      if (a.mask.window_tokens > 0)
        keys = std::min<std::int64_t>(keys,
                                      a.mask.window_tokens + cpu::kTileRows + a.mask.sink_tokens);
      for (int h = 0; h < hq; ++h) items.push_back({b, h, tile, keys});
    }
  }
  // Longest first, so the dynamic hand-out ends with short items.
  std::stable_sort(items.begin(), items.end(),
                   [](const WorkItem& x, const WorkItem& y) { return x.cost > y.cost; });

  const cpu::IsaTable& isa = cpu::isa_for(d);
  parallel_for(static_cast<std::int64_t>(items.size()), [&](std::int64_t i) {
    thread_local std::unique_ptr<cpu::QueryTile> tile_state;
    if (!tile_state || &tile_state->isa_table() != &isa)
      tile_state = std::make_unique<cpu::QueryTile>(isa);
    const WorkItem& it = items[static_cast<std::size_t>(i)];
    const int q_len = qs[it.b + 1] - qs[it.b];
    const int kv_len = ks[it.b + 1] - ks[it.b];
    const int offset =
        a.batch.q_position_offsets.empty() ? kv_len - q_len : a.batch.q_position_offsets[it.b];
    const int r0 = it.tile * cpu::kTileRows;
    const int kvh = it.h / group;
    cpu::QueryTileSpec spec;
    spec.q = a.q + (qs[it.b] + r0) * q_stride + std::int64_t{it.h} * d;
    spec.q_stride = q_stride;
    spec.rows = std::min(cpu::kTileRows, q_len - r0);
    spec.d = d;
    spec.scale = scale;
    spec.first_position = offset + r0;
    spec.causal = a.mask.causal;
    spec.kv_len = kv_len;
    spec.sink = a.mask.sink_tokens;
    spec.window = a.mask.window_tokens;
    spec.k = a.k + ks[it.b] * kv_stride + std::int64_t{kvh} * d;
    spec.v = a.v + ks[it.b] * kv_stride + std::int64_t{kvh} * d;
    spec.kv_stride = kv_stride;
    tile_state->begin(spec);
    tile_state->keys(0, kv_len);
    float* out = a.out + (qs[it.b] + r0) * out_stride + std::int64_t{it.h} * d;
    float* lse = a.lse ? a.lse + std::int64_t{qs[it.b] + r0} * hq + it.h : nullptr;
    tile_state->finish(out, out_stride, lse, hq);
  });
}

float merge_attention_partials(const float* partial_out, const float* partial_lse, int num_parts,
                               int dim, float* out) {
  detail::require(num_parts >= 0 && dim > 0, "merge_attention_partials: bad num_parts or dim");
  float m = -std::numeric_limits<float>::infinity();
  for (int i = 0; i < num_parts; ++i) m = std::max(m, partial_lse[i]);
  std::fill(out, out + dim, 0.0f);
  if (m == -std::numeric_limits<float>::infinity()) return m;
  double total = 0.0;
  for (int i = 0; i < num_parts; ++i) total += std::exp(static_cast<double>(partial_lse[i]) - m);
  for (int i = 0; i < num_parts; ++i) {
    const float w = static_cast<float>(std::exp(static_cast<double>(partial_lse[i]) - m) / total);
    if (w == 0.0f) continue;
    for (int j = 0; j < dim; ++j) out[j] += w * partial_out[static_cast<std::size_t>(i) * dim + j];
  }
  return m + static_cast<float>(std::log(total));
}

}  // namespace prism::kernels
