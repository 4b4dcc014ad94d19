// Naive oracles for every kernel of prism_kernels: plain loops, fp64
// accumulation, no tiling, no threads. They take the kernels' own argument
// structs, so a test runs kernel and oracle on the same arguments. They are
// slow by design: O(q * k * d) with doubles; keep shapes small.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "prism/kernels/attention.h"
#include "prism/kernels/kv_quant.h"
#include "prism/kernels/ops.h"
#include "prism/kernels/paged_kv.h"
#include "prism/kernels/sparse.h"

namespace prism::baselines {

// Dense prefill: honours the mask (causal, sink, window), position offsets,
// GQA, row strides; writes out and, if set, lse.
void reference_prefill_attention(const kernels::PrefillAttentionArgs& args);

// Paged decode with the mask's sink/window token subset.
void reference_decode_attention(const kernels::DecodeAttentionArgs& args);

// Decode over the selected pages only.
void reference_decode_attention_pages(const kernels::DecodeAttentionArgs& args,
                                      const kernels::PageSelection& selection);

// Quantized decode: dequantises every page, then attends in fp64.
void reference_decode_attention_quantized(const kernels::QuantizedDecodeArgs& args);

// Exactly the (query, key) pairs a block-sparse pattern names (tiles expanded,
// columns added), intersected with causality.
void reference_block_sparse_attention(const kernels::SparsePrefillInput& input,
                                      const kernels::BlockSparsePattern& pattern, float* out);

// Attention probabilities of one query over keys [0, kv_len) of one head of a
// single sequence (the rows used for recall of top-mass keys). q points at the
// query's head vector, k at key 0 of the KV head, rows kv_stride apart.
std::vector<double> reference_attention_probs(const float* q, const float* k, int kv_len,
                                              std::int64_t kv_stride, int head_dim, float scale,
                                              int visible_keys);

void reference_rms_norm(const float* x, const float* weight, float* out, int rows, int dim,
                        float eps);
void reference_rope(float* x, int num_tokens, int num_heads, int head_dim,
                    std::span<const std::int32_t> positions, const kernels::RopeParams& params);
void reference_swiglu(const float* gate, const float* up, float* out, int rows, int dim);
// y = x W^T, x [m][k], w [n][k], y [m][n].
void reference_gemm(const float* x, const float* w, float* y, int m, int n, int k);

// Per-element reconstruction of KIVI quantization (what quantize_kv_page
// should produce), for checking the quantizer itself: keys per channel over
// the page's valid tokens, values per token.
struct ReferenceQuantized {
  std::vector<float> k, v;            // [valid_tokens][head_dim] for one (page, KV head)
  std::vector<float> k_step, v_step;  // k_step [head_dim], v_step [valid_tokens]: scale
};
ReferenceQuantized reference_quantize_page_head(const float* k_rows, const float* v_rows,
                                                int valid_tokens, int head_dim, int bits);

// Relative L2 error ||a - b|| / ||b|| (0 when both are zero).
double relative_l2_error(std::span<const float> a, std::span<const float> reference);

}  // namespace prism::baselines
