#include "prism/kernels/kv_quant.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "decode_driver.h"
#include "validate.h"

namespace prism::kernels {
namespace {

int levels(KvQuantBits bits) {
  return bits == KvQuantBits::int8 ? 255 : 15;
}

void require_view(const QuantizedPagedKvCache& c, const char* fn) {
  const std::string f(fn);
  detail::require(c.k_codes && c.v_codes && c.k_scale && c.k_min && c.v_scale && c.v_min,
                  f + ": quantized cache arrays must be set");
  detail::require(c.bits == KvQuantBits::int8 || c.bits == KvQuantBits::int4,
                  f + ": bits must be int8 or int4");
  detail::require(c.bits == KvQuantBits::int8 || c.layout.head_dim % 2 == 0,
                  f + ": int4 needs an even head_dim");
}

std::uint8_t quantize(float x, float lo, float inv_step, int max_code) {
  const float c = std::nearbyint((x - lo) * inv_step);
  return static_cast<std::uint8_t>(std::clamp(static_cast<int>(c), 0, max_code));
}

}  // namespace

double QuantizedPagedKvCache::bytes_per_token_head() const {
  // Codes for K and V, the per-token value scale and minimum, and the page's
  // per-channel key scale and minimum spread over its tokens.
  return 2.0 * row_bytes() + 2.0 * sizeof(float) +
         2.0 * sizeof(float) * layout.head_dim / layout.block_size;
}

QuantizedKvStorage::QuantizedKvStorage(const PagedKvLayout& layout, KvQuantBits bits) {
  QuantizedPagedKvCache v;
  v.layout = layout;
  v.bits = bits;
  detail::require(bits == KvQuantBits::int8 || layout.head_dim % 2 == 0,
                  "QuantizedKvStorage: int4 needs an even head_dim");
  const std::size_t heads = static_cast<std::size_t>(layout.num_blocks) * layout.num_kv_heads;
  const std::size_t rows = heads * layout.block_size;
  k_codes_.assign(rows * v.row_bytes(), 0);
  v_codes_.assign(rows * v.row_bytes(), 0);
  k_scale_.assign(heads * layout.head_dim, 0.0f);
  k_min_.assign(heads * layout.head_dim, 0.0f);
  v_scale_.assign(rows, 0.0f);
  v_min_.assign(rows, 0.0f);
  v.k_codes = k_codes_.data();
  v.v_codes = v_codes_.data();
  v.k_scale = k_scale_.data();
  v.k_min = k_min_.data();
  v.v_scale = v_scale_.data();
  v.v_min = v_min_.data();
  view_ = v;
}

void quantize_kv_page(const ConstPagedKvCache& src, int block, int valid,
                      QuantizedPagedKvCache& dst) {
  require_view(dst, "quantize_kv_page");
  const auto& l = dst.layout;
  detail::require(src.layout.num_kv_heads == l.num_kv_heads && src.layout.head_dim == l.head_dim &&
                      src.layout.block_size == l.block_size &&
                      src.layout.num_blocks == l.num_blocks,
                  "quantize_kv_page: source and target layouts differ");
  detail::require(block >= 0 && block < l.num_blocks, "quantize_kv_page: block out of range");
  detail::require(valid >= 0 && valid <= l.block_size,
                  "quantize_kv_page: valid_tokens out of range");
  const int d = l.head_dim, max_code = levels(dst.bits), rb = dst.row_bytes();
  const bool int4 = dst.bits == KvQuantBits::int4;
  for (int h = 0; h < l.num_kv_heads; ++h) {
    const float* k = src.k + l.offset(block, h, 0);
    const float* v = src.v + l.offset(block, h, 0);
    const std::size_t head = static_cast<std::size_t>(block) * l.num_kv_heads + h;
    float* kscale = dst.k_scale + head * d;
    float* kmin = dst.k_min + head * d;
    std::uint8_t* kc = dst.k_codes + head * l.block_size * rb;
    std::uint8_t* vc = dst.v_codes + head * l.block_size * rb;
    float* vscale = dst.v_scale + head * l.block_size;
    float* vmin = dst.v_min + head * l.block_size;
    std::fill(kc, kc + static_cast<std::size_t>(l.block_size) * rb, 0);
    std::fill(vc, vc + static_cast<std::size_t>(l.block_size) * rb, 0);
    // Keys: per channel over the page's valid tokens.
    for (int c = 0; c < d; ++c) {
      float lo = std::numeric_limits<float>::infinity(), hi = -lo;
      for (int t = 0; t < valid; ++t) {
        lo = std::min(lo, k[t * d + c]);
        hi = std::max(hi, k[t * d + c]);
      }
      if (valid == 0) lo = hi = 0.0f;
      const float step = (hi - lo) / max_code;
      kscale[c] = step;
      kmin[c] = lo;
      const float inv = step > 0.0f ? 1.0f / step : 0.0f;
      for (int t = 0; t < valid; ++t) {
        const std::uint8_t code = quantize(k[t * d + c], lo, inv, max_code);
        if (!int4)
          kc[t * rb + c] = code;
        else if (c < d / 2)
          kc[t * rb + c] |= code;
        else
          kc[t * rb + c - d / 2] |= static_cast<std::uint8_t>(code << 4);
      }
    }
    // Values: per token.
    for (int t = 0; t < l.block_size; ++t) {
      if (t >= valid) {
        vscale[t] = vmin[t] = 0.0f;
        continue;
      }
      float lo = std::numeric_limits<float>::infinity(), hi = -lo;
      for (int c = 0; c < d; ++c) {
        lo = std::min(lo, v[t * d + c]);
        hi = std::max(hi, v[t * d + c]);
      }
      const float step = (hi - lo) / max_code;
      vscale[t] = step;
      vmin[t] = lo;
      const float inv = step > 0.0f ? 1.0f / step : 0.0f;
      for (int c = 0; c < d; ++c) {
        const std::uint8_t code = quantize(v[t * d + c], lo, inv, max_code);
        if (!int4)
          vc[t * rb + c] = code;
        else if (c < d / 2)
          vc[t * rb + c] |= code;
        else
          vc[t * rb + c - d / 2] |= static_cast<std::uint8_t>(code << 4);
      }
    }
  }
}

void quantize_kv_pages(const ConstPagedKvCache& src, const BlockTable& table,
                       QuantizedPagedKvCache& dst) {
  require_view(dst, "quantize_kv_pages");
  validate_block_table(dst.layout, table);
  const int bs = dst.layout.block_size;
  std::vector<std::pair<int, int>> pages;
  for (int b = 0; b < table.batch(); ++b) {
    const int len = table.context_lens[b];
    for (int p = 0; p * bs < len; ++p)
      pages.push_back({table.row(b)[p], std::min(bs, len - p * bs)});
  }
  parallel_for(static_cast<std::int64_t>(pages.size()), [&](std::int64_t i) {
    quantize_kv_page(src, pages[static_cast<std::size_t>(i)].first,
                     pages[static_cast<std::size_t>(i)].second, dst);
  });
}

void dequantize_kv_page(const QuantizedPagedKvCache& src, int block, int valid,
                        const PagedKvCache& dst) {
  require_view(src, "dequantize_kv_page");
  const auto& l = src.layout;
  detail::require(block >= 0 && block < l.num_blocks, "dequantize_kv_page: block out of range");
  detail::require(valid >= 0 && valid <= l.block_size,
                  "dequantize_kv_page: valid_tokens out of range");
  detail::require(dst.k && dst.v && dst.layout.num_blocks == l.num_blocks &&
                      dst.layout.num_kv_heads == l.num_kv_heads &&
                      dst.layout.head_dim == l.head_dim && dst.layout.block_size == l.block_size,
                  "dequantize_kv_page: target layout differs");
  const int d = l.head_dim, rb = src.row_bytes();
  const bool int4 = src.bits == KvQuantBits::int4;
  const auto code_at = [&](const std::uint8_t* row, int c) -> int {
    if (!int4) return row[c];
    return c < d / 2 ? (row[c] & 15) : (row[c - d / 2] >> 4);
  };
  for (int h = 0; h < l.num_kv_heads; ++h) {
    const std::size_t head = static_cast<std::size_t>(block) * l.num_kv_heads + h;
    float* k = dst.k + l.offset(block, h, 0);
    float* v = dst.v + l.offset(block, h, 0);
    for (int t = 0; t < valid; ++t) {
      const std::uint8_t* kr = src.k_codes + (head * l.block_size + t) * rb;
      const std::uint8_t* vr = src.v_codes + (head * l.block_size + t) * rb;
      for (int c = 0; c < d; ++c) {
        k[t * d + c] = code_at(kr, c) * src.k_scale[head * d + c] + src.k_min[head * d + c];
        v[t * d + c] = code_at(vr, c) * src.v_scale[head * l.block_size + t] +
                       src.v_min[head * l.block_size + t];
      }
    }
  }
}

void decode_attention_quantized(const QuantizedDecodeArgs& a) {
  detail::validate_heads(a.heads, "decode_attention_quantized");
  detail::require(a.cache != nullptr && a.q && a.out,
                  "decode_attention_quantized: cache, q and out must be set");
  const QuantizedPagedKvCache& c = *a.cache;
  require_view(c, "decode_attention_quantized");
  detail::require(
      c.layout.num_kv_heads == a.heads.num_kv_heads && c.layout.head_dim == a.heads.head_dim,
      "decode_attention_quantized: cache layout differs from heads");
  validate_block_table(c.layout, a.block_table);
  cpu::DecodePlan p;
  p.batch = a.block_table.batch();
  p.num_q_heads = a.heads.num_q_heads;
  p.num_kv_heads = a.heads.num_kv_heads;
  p.head_dim = a.heads.head_dim;
  p.block_size = c.layout.block_size;
  p.scale = detail::softmax_scale(a.heads);
  p.q = a.q;
  p.q_stride =
      a.q_row_stride ? a.q_row_stride : std::int64_t{a.heads.num_q_heads} * a.heads.head_dim;
  p.out = a.out;
  p.kv_split_tokens = a.kv_split_tokens;
  p.shared_ranges = true;
  const int d = a.heads.head_dim;
  const int bits = c.bits == KvQuantBits::int8 ? 8 : 4;
  const cpu::IsaTable& isa = cpu::isa_for(bits == 8 ? d : d / 2);
  const auto ranges = [&a](int b, int, std::vector<cpu::TokenRange>& r) {
    r.clear();
    if (a.block_table.context_lens[b] > 0) r.push_back({0, a.block_table.context_lens[b]});
  };
  const auto run = [&](int b, int h, const cpu::TokenRange* pieces, int count,
                       const cpu::DecodeWork& w0) {
    thread_local std::vector<cpu::QuantSegment> segs;
    segs.clear();
    const auto& l = c.layout;
    const int rb = c.row_bytes();
    for (int i = 0; i < count; ++i) {
      const int page = pieces[i].begin / l.block_size, slot = pieces[i].begin % l.block_size;
      const std::size_t head =
          static_cast<std::size_t>(a.block_table.row(b)[page]) * l.num_kv_heads + h;
      cpu::QuantSegment s;
      s.k_codes = c.k_codes + (head * l.block_size + slot) * rb;
      s.v_codes = c.v_codes + (head * l.block_size + slot) * rb;
      s.k_scale = c.k_scale + head * d;
      s.k_min = c.k_min + head * d;
      s.v_scale = c.v_scale + head * l.block_size + slot;
      s.v_min = c.v_min + head * l.block_size + slot;
      s.n = pieces[i].end - pieces[i].begin;
      segs.push_back(s);
    }
    cpu::DecodeWork w = w0;
    w.bits = bits;
    isa.decode_quant_segments(w, segs.data(), static_cast<int>(segs.size()));
  };
  cpu::run_decode(p, ranges, run);
}

}  // namespace prism::kernels
