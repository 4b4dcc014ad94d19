// KIVI-style asymmetric KV-cache quantization on the paged layout:
// keys per channel (each page's tokens share a scale and minimum per channel,
// so a page is KIVI's token group), values per token (each token's head_dim
// values share a scale and minimum). Codes are unsigned: x ~ code * scale + min,
// scale = (max - min) / (2^bits - 1), so each element is off by at most scale / 2.
// int4 codes pack two channels per byte: byte i of a row holds channel i in its
// low nibble and channel i + head_dim / 2 in its high nibble (head_dim even), so
// unpacking needs no shuffles.
//
// Dequantization is fused into decode: q.k = sum_d (q_d * kscale_d) * code_d +
// sum_d q_d * kmin_d, and p.v = sum_t (p_t * vscale_t) * code_t + sum_t p_t * vmin_t.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "prism/kernels/attention.h"
#include "prism/kernels/paged_kv.h"

namespace prism::kernels {

enum class KvQuantBits : int { int8 = 8, int4 = 4 };

struct QuantizedPagedKvCache {
  PagedKvLayout layout;
  KvQuantBits bits = KvQuantBits::int8;
  std::uint8_t* k_codes = nullptr;  // [block][kv_head][slot][row_bytes()]
  float* k_scale = nullptr;         // [block][kv_head][head_dim]
  float* k_min = nullptr;           // [block][kv_head][head_dim]
  std::uint8_t* v_codes = nullptr;  // [block][kv_head][slot][row_bytes()]
  float* v_scale = nullptr;         // [block][kv_head][slot]
  float* v_min = nullptr;           // [block][kv_head][slot]

  int row_bytes() const {
    return bits == KvQuantBits::int8 ? layout.head_dim : (layout.head_dim + 1) / 2;
  }
  // Bytes of codes and metadata per token per KV head (what decode streams).
  double bytes_per_token_head() const;
};

// Owns the arrays of a quantized cache.
class QuantizedKvStorage {
 public:
  QuantizedKvStorage(const PagedKvLayout& layout, KvQuantBits bits);
  QuantizedPagedKvCache& view() { return view_; }
  const QuantizedPagedKvCache& view() const { return view_; }

 private:
  std::vector<std::uint8_t> k_codes_, v_codes_;
  std::vector<float> k_scale_, k_min_, v_scale_, v_min_;
  QuantizedPagedKvCache view_;
};

// Quantizes every page of every sequence of the table from an fp32 cache with
// the same layout (only the valid slots of each last page; a page that grows
// is re-quantized, KIVI's full-precision residual group in paged form).
void quantize_kv_pages(const ConstPagedKvCache& source, const BlockTable& table,
                       QuantizedPagedKvCache& target);

// Quantizes one page's first valid_tokens slots.
void quantize_kv_page(const ConstPagedKvCache& source, int block, int valid_tokens,
                      QuantizedPagedKvCache& target);

// Reconstructs a page's first valid_tokens slots into an fp32 cache (tests, accuracy).
void dequantize_kv_page(const QuantizedPagedKvCache& source, int block, int valid_tokens,
                        const PagedKvCache& target);

struct QuantizedDecodeArgs {
  AttentionHeads heads;
  const QuantizedPagedKvCache* cache = nullptr;
  BlockTable block_table;
  const float* q = nullptr;
  float* out = nullptr;
  std::int64_t q_row_stride = 0;
  int kv_split_tokens = 0;  // as in DecodeAttentionArgs
};

// Paged split-KV decode attention reading the quantized cache directly.
void decode_attention_quantized(const QuantizedDecodeArgs& args);

}  // namespace prism::kernels
