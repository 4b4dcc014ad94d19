#include "prism/engine/model.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include <fmt/core.h>

#include "prism/kernels/attention.h"
#include "prism/kernels/ops.h"
#include "prism/kernels/threading.h"

namespace prism::engine {
namespace {

template <typename T>
T* grow(std::vector<T>& v, std::size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

bool is_decode(const ForwardEntry& e) {
  return e.tokens.size() == 1 && e.start_pos > 0;
}

}  // namespace

KvCache::KvCache(const ModelConfig& config, int num_blocks, int block_size)
    : num_blocks_(num_blocks), block_size_(block_size) {
  if (num_blocks <= 0 || block_size <= 0)
    throw std::invalid_argument("KvCache: num_blocks and block_size must be positive");
  const kernels::PagedKvLayout layout{.num_blocks = num_blocks,
                                      .block_size = block_size,
                                      .num_kv_heads = config.num_kv_heads,
                                      .head_dim = config.head_dim};
  layers_.reserve(static_cast<std::size_t>(config.num_layers));
  for (int l = 0; l < config.num_layers; ++l) layers_.emplace_back(layout);
}

Model::Model(ModelConfig config, ModelWeights weights)
    : config_(std::move(config)), weights_(std::move(weights)) {
  validate_weights(config_, weights_);
}

void Model::forward(std::span<const ForwardEntry> entries, KvCache& cache,
                    std::vector<float>& logits, StageClock* clock, std::uint64_t step) {
  const ModelConfig& c = config_;
  const int h = c.hidden_size, qkv_dim = c.qkv_dim(), q_dim = c.q_dim(), kv_dim = c.kv_dim();
  const int inter = c.intermediate_size, bs = cache.block_size();

  // Order rows: decode entries first (their q rows form the decode batch),
  // then prefill entries.
  std::vector<std::size_t> order;
  order.reserve(entries.size());
  for (std::size_t i = 0; i < entries.size(); ++i)
    if (is_decode(entries[i])) order.push_back(i);
  const std::size_t num_decode = order.size();
  for (std::size_t i = 0; i < entries.size(); ++i)
    if (!is_decode(entries[i])) order.push_back(i);

  std::size_t total = 0;
  int max_blocks = 1;
  bool any_prefill = false;
  for (const auto& e : entries) {
    if (e.tokens.empty()) throw std::invalid_argument("forward: an entry has no tokens");
    const std::size_t end = static_cast<std::size_t>(e.start_pos) + e.tokens.size();
    if (e.start_pos < 0 || end > static_cast<std::size_t>(c.max_context))
      throw std::invalid_argument(
          fmt::format("forward: positions up to {} exceed the context of {}", end, c.max_context));
    if (e.block_table.size() * static_cast<std::size_t>(bs) < end)
      throw std::invalid_argument(fmt::format(
          "forward: block table of {} pages cannot hold {} tokens", e.block_table.size(), end));
    for (auto b : e.block_table)
      if (b < 0 || b >= cache.num_blocks())
        throw std::invalid_argument(fmt::format("forward: block id {} outside the cache", b));
    for (auto t : e.tokens)
      if (t < 0 || t >= c.vocab_size)
        throw std::invalid_argument(
            fmt::format("forward: token id {} outside the vocabulary of {}", t, c.vocab_size));
    total += e.tokens.size();
    max_blocks = std::max(max_blocks, static_cast<int>(e.block_table.size()));
    if (!is_decode(e)) any_prefill = true;
  }
  if (total == 0) {
    logits.clear();
    return;
  }
  const StageScope forward_scope(clock, any_prefill ? Stage::kPrefill : Stage::kDecode, step);
  const int T = static_cast<int>(total);

  float* residual = grow(residual_, total * h);
  float* normed = grow(normed_, total * h);
  float* qkv = grow(qkv_, total * qkv_dim);
  float* attn = grow(attn_, total * q_dim);
  float* proj = grow(proj_, total * h);
  std::int32_t* positions = grow(positions_, total);
  std::int32_t* slots = grow(slots_, total);

  // Embedding lookup, positions and KV slots, row by row in `order`.
  std::vector<int> logit_rows;
  {
    std::size_t row = 0;
    std::vector<int> last_row_of(entries.size());
    for (std::size_t oi = 0; oi < order.size(); ++oi) {
      const ForwardEntry& e = entries[order[oi]];
      for (std::size_t t = 0; t < e.tokens.size(); ++t, ++row) {
        std::memcpy(residual + row * h,
                    weights_.embed.data() + static_cast<std::size_t>(e.tokens[t]) * h,
                    sizeof(float) * h);
        const int pos = e.start_pos + static_cast<int>(t);
        positions[row] = pos;
        slots[row] = e.block_table[static_cast<std::size_t>(pos / bs)] * bs + pos % bs;
      }
      last_row_of[order[oi]] = static_cast<int>(row) - 1;
    }
    for (std::size_t i = 0; i < entries.size(); ++i)
      if (entries[i].want_logits) logit_rows.push_back(last_row_of[i]);
  }

  // Decode batch: block table and context lengths.
  const int D = static_cast<int>(num_decode);
  std::int32_t* dtable = grow(decode_table_, std::max<std::size_t>(1, num_decode * max_blocks));
  std::int32_t* dlens = grow(decode_lens_, std::max<std::size_t>(1, num_decode));
  for (int d = 0; d < D; ++d) {
    const ForwardEntry& e = entries[order[static_cast<std::size_t>(d)]];
    std::fill(dtable + static_cast<std::size_t>(d) * max_blocks,
              dtable + static_cast<std::size_t>(d + 1) * max_blocks, 0);
    std::copy(e.block_table.begin(), e.block_table.end(),
              dtable + static_cast<std::size_t>(d) * max_blocks);
    dlens[d] = e.start_pos + 1;
  }
  // Prefill batch: query and key ranges, position offsets.
  const std::size_t num_prefill = order.size() - num_decode;
  q_starts_.assign(1, 0);
  kv_starts_.assign(1, 0);
  q_offsets_.clear();
  for (std::size_t oi = num_decode; oi < order.size(); ++oi) {
    const ForwardEntry& e = entries[order[oi]];
    q_starts_.push_back(q_starts_.back() + static_cast<std::int32_t>(e.tokens.size()));
    kv_starts_.push_back(kv_starts_.back() + e.start_pos +
                         static_cast<std::int32_t>(e.tokens.size()));
    q_offsets_.push_back(e.start_pos);
  }
  const std::size_t prefill_kv_tokens = static_cast<std::size_t>(kv_starts_.back());
  float* kbuf = grow(kbuf_, std::max<std::size_t>(1, prefill_kv_tokens * kv_dim));
  float* vbuf = grow(vbuf_, std::max<std::size_t>(1, prefill_kv_tokens * kv_dim));

  const kernels::RopeParams rope{
      .theta = c.rope_theta, .rotary_dim = 0, .style = kernels::RopeStyle::half};
  const kernels::AttentionHeads heads{.num_q_heads = c.num_heads,
                                      .num_kv_heads = c.num_kv_heads,
                                      .head_dim = c.head_dim,
                                      .scale = 0.0f};
  const std::span<const std::int32_t> pos_span(positions, total);
  const std::span<const std::int32_t> slot_span(slots, total);

  for (int l = 0; l < c.num_layers; ++l) {
    const LayerWeights& w = weights_.layers[static_cast<std::size_t>(l)];
    if (l == 0) kernels::rms_norm(residual, w.attn_norm.data(), normed, T, h, c.rms_norm_eps);
    {
      const StageScope scope(clock, Stage::kAttention, step);
      kernels::linear(normed, w.wqkv.data(), qkv, T, qkv_dim, h);
      if (!w.bqkv.empty()) {
        for (int r = 0; r < T; ++r) {
          float* row = qkv + static_cast<std::size_t>(r) * qkv_dim;
          for (int j = 0; j < qkv_dim; ++j) row[j] += w.bqkv[static_cast<std::size_t>(j)];
        }
      }
      kernels::apply_rope(qkv, T, c.num_heads, c.head_dim, pos_span, rope, qkv_dim);
      kernels::apply_rope(qkv + q_dim, T, c.num_kv_heads, c.head_dim, pos_span, rope, qkv_dim);
      const kernels::PagedKvCache layer_cache = cache.layer(l);
      kernels::write_kv_to_pages(layer_cache, qkv + q_dim, qkv + q_dim + kv_dim, slot_span,
                                 qkv_dim);
      if (D > 0) {
        kernels::DecodeAttentionArgs args;
        args.heads = heads;
        args.cache = layer_cache;
        args.block_table = kernels::BlockTable{
            .blocks =
                std::span<const std::int32_t>(dtable, static_cast<std::size_t>(D) * max_blocks),
            .max_blocks_per_seq = max_blocks,
            .context_lens = std::span<const std::int32_t>(dlens, static_cast<std::size_t>(D))};
        args.q = qkv;
        args.out = attn;
        args.q_row_stride = qkv_dim;
        kernels::decode_attention(args);
      }
      if (num_prefill > 0) {
        // Keys of every prefill entry (its cached prefix and this chunk), contiguous.
        for (std::size_t p = 0; p < num_prefill; ++p) {
          const ForwardEntry& e = entries[order[num_decode + p]];
          const int kv_len = kv_starts_[p + 1] - kv_starts_[p];
          kernels::gather_kv_from_pages(layer_cache, e.block_table.data(), kv_len,
                                        kbuf + static_cast<std::size_t>(kv_starts_[p]) * kv_dim,
                                        vbuf + static_cast<std::size_t>(kv_starts_[p]) * kv_dim);
        }
        kernels::PrefillAttentionArgs args;
        args.heads = heads;
        args.batch = kernels::VarlenBatch{
            .q_starts = q_starts_, .kv_starts = kv_starts_, .q_position_offsets = q_offsets_};
        args.q = qkv + static_cast<std::size_t>(D) * qkv_dim;
        args.k = kbuf;
        args.v = vbuf;
        args.out = attn + static_cast<std::size_t>(D) * q_dim;
        args.q_row_stride = qkv_dim;
        args.kv_row_stride = 0;
        kernels::prefill_attention(args);
      }
      kernels::linear(attn, w.wo.data(), proj, T, h, q_dim);
      kernels::add_rms_norm(residual, proj, w.mlp_norm.data(), normed, T, h, c.rms_norm_eps);
    }
    {
      const StageScope scope(clock, Stage::kMlp, step);
      float* gate_up = grow(gate_up_, total * 2 * inter);
      float* act = grow(act_, total * inter);
      kernels::linear(normed, w.w_gate_up.data(), gate_up, T, 2 * inter, h);
      kernels::swiglu_fused(gate_up, act, T, inter);
      kernels::linear(act, w.w_down.data(), proj, T, h, inter);
      const bool last_layer = l + 1 == c.num_layers;
      const float* next_norm =
          last_layer ? weights_.final_norm.data()
                     : weights_.layers[static_cast<std::size_t>(l + 1)].attn_norm.data();
      kernels::add_rms_norm(residual, proj, next_norm, normed, T, h, c.rms_norm_eps);
    }
  }

  // LM head on the rows that need logits only.
  const int L = static_cast<int>(logit_rows.size());
  logits.resize(static_cast<std::size_t>(L) * c.vocab_size);
  if (L == 0) return;
  float* last = grow(last_, static_cast<std::size_t>(L) * h);
  for (int i = 0; i < L; ++i)
    std::memcpy(last + static_cast<std::size_t>(i) * h,
                normed + static_cast<std::size_t>(logit_rows[static_cast<std::size_t>(i)]) * h,
                sizeof(float) * h);
  kernels::linear(last, weights_.lm_head_data(), logits.data(), L, c.vocab_size, h);
}

}  // namespace prism::engine
