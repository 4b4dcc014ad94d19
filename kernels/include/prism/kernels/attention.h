// Dense attention: causal prefill over a variable-length batch and paged decode.
//
// Layouts (all fp32 on the CPU, row-major, token-major like FlashAttention):
//   q    [total_q_tokens][num_q_heads][head_dim]     row stride q_row_stride floats
//   k, v [total_kv_tokens][num_kv_heads][head_dim]   row stride kv_row_stride floats
//   out  [total_q_tokens][num_q_heads][head_dim]     contiguous
// A row stride of 0 means "packed" (heads * head_dim); a larger stride lets a
// caller pass slices of a fused QKV projection without copying.
// GQA: query head h reads KV head h / (num_q_heads / num_kv_heads).
//
// Every function validates its arguments and throws std::invalid_argument with
// a message naming the offending field; nothing is checked per element.
#pragma once

#include <cstdint>
#include <span>

#include "prism/kernels/paged_kv.h"

namespace prism::kernels {

struct AttentionHeads {
  int num_q_heads = 0;
  int num_kv_heads = 0;  // divides num_q_heads; equal for MHA, 1 for MQA
  int head_dim = 0;      // any positive size; 64 and 128 have tuned paths
  float scale = 0.0f;    // softmax scale; 0 means 1 / sqrt(head_dim)
};

// Restricts which keys a query may see, on top of causality. Zero disables.
// sink_tokens: the first keys of the sequence stay visible (StreamingLLM).
// window_tokens: a query at position p sees keys (p - window_tokens, p].
struct AttentionMask {
  bool causal = true;
  int sink_tokens = 0;
  int window_tokens = 0;
};

// Variable-length batch. Sequence b owns queries [q_starts[b], q_starts[b+1])
// and keys [kv_starts[b], kv_starts[b+1]). Both spans have batch + 1 entries,
// start at 0 and are non-decreasing.
//
// Query positions: query i of sequence b sits at position
//   q_position_offsets[b] + i        when q_position_offsets is given (batch entries),
//   kv_len(b) - q_len(b) + i          otherwise (the queries are the newest tokens).
// A causal query at position p sees keys j <= p. This is how a prefill chunk
// attends to the KV already cached for earlier chunks: pass all keys of the
// sequence (cached + chunk) and only the chunk's queries.
struct VarlenBatch {
  std::span<const std::int32_t> q_starts;
  std::span<const std::int32_t> kv_starts;
  std::span<const std::int32_t> q_position_offsets = {};
};

struct PrefillAttentionArgs {
  AttentionHeads heads;
  AttentionMask mask;
  VarlenBatch batch;
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  float* out = nullptr;
  std::int64_t q_row_stride = 0;   // floats between consecutive query tokens; 0 = packed
  std::int64_t kv_row_stride = 0;  // floats between consecutive key/value tokens; 0 = packed
  // Optional: log-sum-exp of the scaled scores per (query token, head),
  // [total_q_tokens][num_q_heads]; -inf for a query that sees no key.
  float* lse = nullptr;
};

// FlashAttention-style tiled attention with online softmax, fp32 accumulation,
// multi-threaded over (sequence, head, query tile). A query that sees no key
// produces zeros.
void prefill_attention(const PrefillAttentionArgs& args);

// Decode: one new query token per sequence against its paged KV cache.
//   q   [batch][num_q_heads][head_dim]   row stride q_row_stride (0 = packed)
//   out [batch][num_q_heads][head_dim]
// Sequence b has context_lens[b] tokens in pages block_table.row(b).
struct DecodeAttentionArgs {
  AttentionHeads heads;
  AttentionMask mask;  // causal is implied; sink/window select a token subset
  ConstPagedKvCache cache;
  BlockTable block_table;
  const float* q = nullptr;
  float* out = nullptr;
  std::int64_t q_row_stride = 0;
  // Split-KV (FlashDecoding): each (sequence, KV head) is cut into partitions
  // of this many tokens (rounded up to whole pages), computed in parallel and
  // merged with their log-sum-exp. 0 picks a size from the thread count.
  int kv_split_tokens = 0;
};

void decode_attention(const DecodeAttentionArgs& args);

// Merges partial attention results computed over disjoint key sets:
// out = sum_i exp(lse_i - lse) * out_i with lse = log(sum_i exp(lse_i)).
// partial_out [num_parts][dim], partial_lse [num_parts]; returns the merged lse.
float merge_attention_partials(const float* partial_out, const float* partial_lse, int num_parts,
                               int dim, float* out);

}  // namespace prism::kernels
