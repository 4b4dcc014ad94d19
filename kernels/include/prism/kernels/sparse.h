// Training-free sparse attention, each method split into the stages that the
// literature's tables lump together, so a table (or a probe) can show what the
// selection costs next to what it saves:
//
//   method            estimate                       select                     attend
//   sink + window     -                              (the mask itself) prefill/decode_attention
//                                                                               with AttentionMask
//   Quest (decode)    quest_update_bounds (per page, quest_select_pages decode_attention_pages
//                     when a page changes) +         (top-k pages by upper
//                     quest_page_scores              bound, GQA-group summed)
//   vertical-slash    vertical_slash_estimate (last  vertical_slash_select block_sparse_attention
//   (MInference)      queries vs all keys)           (top-k columns/diagonals)
//   FlexPrefill-style flexprefill_estimate (pooled   flexprefill_select block_sparse_attention
//   block top-k       query/key blocks, softmax)     (cumulative mass >= gamma)
//
// With a full budget every method attends to every key and equals dense.
#pragma once

#include <cstdint>
#include <vector>

#include "prism/kernels/attention.h"
#include "prism/kernels/paged_kv.h"

namespace prism::kernels {

// ---------------------------------------------------------------- Quest ----

// Per-page, per-KV-head, per-channel key bounds: [num_blocks][num_kv_heads][head_dim].
struct QuestBounds {
  PagedKvLayout layout;
  std::vector<float> key_min;
  std::vector<float> key_max;

  explicit QuestBounds(const PagedKvLayout& l = {});
};

// Recomputes the bounds of every page of every sequence in the table (only
// the valid slots of each sequence's last page). An engine calls it for the
// page a new token landed in; benchmarks time it separately.
void quest_update_bounds(const ConstPagedKvCache& cache, const BlockTable& table,
                         QuestBounds& bounds);

// Estimate: upper bound of q.k over each page, sum_d max(q_d*min_d, q_d*max_d),
// summed over the query heads of a GQA group.
// scores [batch][num_kv_heads][max_blocks_per_seq]; pages past a sequence's end get -inf.
void quest_page_scores(const AttentionHeads& heads, const float* q, std::int64_t q_row_stride,
                       const BlockTable& table, const QuestBounds& bounds,
                       std::vector<float>& scores);

// Pages each (sequence, KV head) attends to, as logical page indices into the
// sequence's block-table row, ascending.
struct PageSelection {
  int batch = 0;
  int num_kv_heads = 0;
  int max_pages = 0;                 // capacity per (sequence, KV head)
  std::vector<std::int32_t> pages;   // [batch][num_kv_heads][max_pages]
  std::vector<std::int32_t> counts;  // [batch][num_kv_heads]

  const std::int32_t* list(int b, int h) const {
    return pages.data() + (static_cast<std::size_t>(b) * num_kv_heads + h) * max_pages;
  }
  int count(int b, int h) const { return counts[static_cast<std::size_t>(b) * num_kv_heads + h]; }
};

// Select: the top_k_pages pages by score, always including the sequence's last
// page (the newest tokens, as Quest does). top_k_pages >= number of pages
// selects everything.
void quest_select_pages(const std::vector<float>& scores, const BlockTable& table, int num_kv_heads,
                        int top_k_pages, PageSelection& selection);

// Attend: decode attention restricted to the selected pages (split-KV over the
// selection, log-sum-exp merge). args.mask must be the default.
void decode_attention_pages(const DecodeAttentionArgs& args, const PageSelection& selection);

// ------------------------------------------------------- sparse prefill ----

// One sequence's prefill: q [q_len][num_q_heads][head_dim], k, v
// [kv_len][num_kv_heads][head_dim] (packed), causal, query i at position
// kv_len - q_len + i.
struct SparsePrefillInput {
  AttentionHeads heads;
  int q_len = 0;
  int kv_len = 0;
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
};

// A block-sparse pattern per query head: for each query tile of block_size
// queries, the key tiles to compute in full and, optionally, single key
// columns outside those tiles (MInference's vertical lines). The causal mask
// is applied inside tiles, so a pattern may list tiles past the diagonal.
struct BlockSparsePattern {
  int block_size = 64;
  int num_heads = 0;
  int num_q_blocks = 0;
  int num_k_blocks = 0;
  std::vector<std::int32_t> block_offsets;   // [num_heads * num_q_blocks + 1]
  std::vector<std::int32_t> key_blocks;      // ascending within each (head, query tile)
  std::vector<std::int32_t> column_offsets;  // [num_heads * num_q_blocks + 1] or empty
  std::vector<std::int32_t> columns;         // ascending, never inside a listed key tile

  // Fraction of the causal (query, key) pairs that the pattern computes.
  double density(int q_len, int kv_len) const;
};

// Attend stage for vertical-slash and block top-k. out [q_len][num_q_heads][head_dim].
void block_sparse_attention(const SparsePrefillInput& input, const BlockSparsePattern& pattern,
                            float* out);

// Vertical-slash (MInference). Defaults follow the paper's per-head budgets.
struct VerticalSlashConfig {
  int last_q = 64;           // queries used to estimate the pattern
  int vertical_size = 1000;  // key columns kept per head
  int slash_size = 6096;     // diagonals kept per head
  int block_size = 64;
  int sink_columns = 4;      // always kept (attention sinks)
  int local_diagonals = 64;  // most recent diagonals always kept
};

struct VerticalSlashEstimate {
  int num_heads = 0;
  int kv_len = 0;
  std::vector<float> vertical;  // [num_heads][kv_len]: attention mass per key column
  std::vector<float> slash;     // [num_heads][kv_len]: mass per diagonal offset (pos(q) - key)
};

void vertical_slash_estimate(const SparsePrefillInput& input, const VerticalSlashConfig& config,
                             VerticalSlashEstimate& estimate);
void vertical_slash_select(const VerticalSlashEstimate& estimate, const VerticalSlashConfig& config,
                           int q_len, BlockSparsePattern& pattern);

// FlexPrefill-style query-aware block selection: mean-pool queries and keys per
// tile, softmax the pooled scores per query tile, keep the smallest set of key
// tiles whose mass reaches gamma (plus the first and the diagonal tile).
struct FlexPrefillConfig {
  int block_size = 64;
  float gamma = 0.95f;  // cumulative attention mass to cover; 1 keeps every tile
  int min_blocks = 2;   // per query tile, when available
};

struct BlockScores {
  int num_heads = 0;
  int num_q_blocks = 0;
  int num_k_blocks = 0;
  std::vector<float> probs;  // [num_heads][num_q_blocks][num_k_blocks], causal tiles only
};

void flexprefill_estimate(const SparsePrefillInput& input, const FlexPrefillConfig& config,
                          BlockScores& scores);
void flexprefill_select(const BlockScores& scores, const FlexPrefillConfig& config, int q_len,
                        int kv_len, BlockSparsePattern& pattern);

}  // namespace prism::kernels
