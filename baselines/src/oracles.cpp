#include "prism/baselines/oracles.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <stdexcept>

namespace prism::baselines {
namespace {

using kernels::AttentionHeads;

double scale_of(const AttentionHeads& h) {
  return h.scale > 0.0f ? h.scale : 1.0 / std::sqrt(static_cast<double>(h.head_dim));
}

// Softmax-weighted sum over the listed keys; writes zeros when none.
// key(j) and value(j) return pointers to head_dim floats.
template <typename KeyFn, typename ValFn>
double attend(const float* q, int d, double scale, const std::vector<int>& keys, KeyFn key,
              ValFn value, float* out) {
  std::vector<double> s(keys.size());
  double m = -std::numeric_limits<double>::infinity();
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const float* kr = key(keys[i]);
    double acc = 0.0;
    for (int x = 0; x < d; ++x) acc += static_cast<double>(q[x]) * kr[x];
    s[i] = acc * scale;
    m = std::max(m, s[i]);
  }
  std::vector<double> o(d, 0.0);
  double l = 0.0;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const double p = std::exp(s[i] - m);
    l += p;
    const float* vr = value(keys[i]);
    for (int x = 0; x < d; ++x) o[x] += p * vr[x];
  }
  for (int x = 0; x < d; ++x) out[x] = l > 0.0 ? static_cast<float>(o[x] / l) : 0.0f;
  return keys.empty() ? -std::numeric_limits<double>::infinity() : m + std::log(l);
}

bool visible(int key, int pos, const kernels::AttentionMask& mask, int kv_len) {
  if (key >= kv_len) return false;
  if (mask.causal && key > pos) return false;
  if (mask.window_tokens > 0 && key <= pos - mask.window_tokens && key >= mask.sink_tokens)
    return false;
  return true;
}

}  // namespace

void reference_prefill_attention(const kernels::PrefillAttentionArgs& a) {
  const auto& h = a.heads;
  const int hq = h.num_q_heads, hkv = h.num_kv_heads, d = h.head_dim, group = hq / hkv;
  const double scale = scale_of(h);
  const std::int64_t qs = a.q_row_stride ? a.q_row_stride : std::int64_t{hq} * d;
  const std::int64_t ks = a.kv_row_stride ? a.kv_row_stride : std::int64_t{hkv} * d;
  const int batch = static_cast<int>(a.batch.q_starts.size()) - 1;
  for (int b = 0; b < batch; ++b) {
    const int q0 = a.batch.q_starts[b], q_len = a.batch.q_starts[b + 1] - q0;
    const int k0 = a.batch.kv_starts[b], kv_len = a.batch.kv_starts[b + 1] - k0;
    const int offset =
        a.batch.q_position_offsets.empty() ? kv_len - q_len : a.batch.q_position_offsets[b];
    for (int i = 0; i < q_len; ++i) {
      std::vector<int> keys;
      for (int j = 0; j < kv_len; ++j)
        if (visible(j, offset + i, a.mask, kv_len)) keys.push_back(j);
      for (int head = 0; head < hq; ++head) {
        const int kvh = head / group;
        const auto key = [&](int j) { return a.k + (k0 + j) * ks + std::int64_t{kvh} * d; };
        const auto val = [&](int j) { return a.v + (k0 + j) * ks + std::int64_t{kvh} * d; };
        const double lse =
            attend(a.q + (q0 + i) * qs + std::int64_t{head} * d, d, scale, keys, key, val,
                   a.out + (std::int64_t{q0} + i) * hq * d + std::int64_t{head} * d);
        if (a.lse) a.lse[(std::int64_t{q0} + i) * hq + head] = static_cast<float>(lse);
      }
    }
  }
}

namespace {

void decode_with_keys(const kernels::DecodeAttentionArgs& a,
                      const std::function<std::vector<int>(int b, int kvh)>& keys_of) {
  const auto& h = a.heads;
  const int hq = h.num_q_heads, hkv = h.num_kv_heads, d = h.head_dim, group = hq / hkv;
  const double scale = scale_of(h);
  const std::int64_t qs = a.q_row_stride ? a.q_row_stride : std::int64_t{hq} * d;
  const auto& l = a.cache.layout;
  for (int b = 0; b < a.block_table.batch(); ++b) {
    const std::int32_t* row = a.block_table.row(b);
    for (int head = 0; head < hq; ++head) {
      const int kvh = head / group;
      const auto keys = keys_of(b, kvh);
      const auto key = [&](int t) {
        return a.cache.k + l.offset(row[t / l.block_size], kvh, t % l.block_size);
      };
      const auto val = [&](int t) {
        return a.cache.v + l.offset(row[t / l.block_size], kvh, t % l.block_size);
      };
      attend(a.q + b * qs + std::int64_t{head} * d, d, scale, keys, key, val,
             a.out + (std::int64_t{b} * hq + head) * d);
    }
  }
}

}  // namespace

void reference_decode_attention(const kernels::DecodeAttentionArgs& a) {
  decode_with_keys(a, [&](int b, int) {
    const int len = a.block_table.context_lens[b];
    std::vector<int> keys;
    kernels::AttentionMask mask = a.mask;
    mask.causal = true;
    for (int t = 0; t < len; ++t)
      if (visible(t, len - 1, mask, len)) keys.push_back(t);
    return keys;
  });
}

void reference_decode_attention_pages(const kernels::DecodeAttentionArgs& a,
                                      const kernels::PageSelection& sel) {
  const int bs = a.cache.layout.block_size;
  decode_with_keys(a, [&](int b, int kvh) {
    const int len = a.block_table.context_lens[b];
    std::vector<int> keys;
    for (int i = 0; i < sel.count(b, kvh); ++i) {
      const int page = sel.list(b, kvh)[i];
      for (int t = page * bs; t < std::min(len, (page + 1) * bs); ++t) keys.push_back(t);
    }
    std::sort(keys.begin(), keys.end());
    return keys;
  });
}

void reference_decode_attention_quantized(const kernels::QuantizedDecodeArgs& a) {
  const auto& qc = *a.cache;
  const auto& l = qc.layout;
  kernels::PagedKvStorage fp(l);
  for (int b = 0; b < a.block_table.batch(); ++b) {
    const int len = a.block_table.context_lens[b];
    for (int p = 0; p * l.block_size < len; ++p)
      kernels::dequantize_kv_page(qc, a.block_table.row(b)[p],
                                  std::min(l.block_size, len - p * l.block_size), fp.view());
  }
  kernels::DecodeAttentionArgs d;
  d.heads = a.heads;
  d.cache = fp.const_view();
  d.block_table = a.block_table;
  d.q = a.q;
  d.out = a.out;
  d.q_row_stride = a.q_row_stride;
  reference_decode_attention(d);
}

void reference_block_sparse_attention(const kernels::SparsePrefillInput& in,
                                      const kernels::BlockSparsePattern& p, float* out) {
  const auto& h = in.heads;
  const int hq = h.num_q_heads, hkv = h.num_kv_heads, d = h.head_dim, group = hq / hkv;
  const double scale = scale_of(h);
  const int offset = in.kv_len - in.q_len;
  for (int head = 0; head < hq; ++head) {
    const int kvh = head / group;
    for (int i = 0; i < in.q_len; ++i) {
      const int qb = i / p.block_size;
      const std::size_t idx = static_cast<std::size_t>(head) * p.num_q_blocks + qb;
      std::vector<int> keys;
      for (int x = p.block_offsets[idx]; x < p.block_offsets[idx + 1]; ++x) {
        const int kb = p.key_blocks[x];
        for (int j = kb * p.block_size; j < std::min(in.kv_len, (kb + 1) * p.block_size); ++j)
          if (j <= offset + i) keys.push_back(j);
      }
      if (!p.column_offsets.empty())
        for (int x = p.column_offsets[idx]; x < p.column_offsets[idx + 1]; ++x)
          if (p.columns[x] <= offset + i) keys.push_back(p.columns[x]);
      std::sort(keys.begin(), keys.end());
      keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
      const std::int64_t ks = std::int64_t{hkv} * d;
      attend(
          in.q + (std::int64_t{i} * hq + head) * d, d, scale, keys,
          [&](int j) { return in.k + j * ks + std::int64_t{kvh} * d; },
          [&](int j) { return in.v + j * ks + std::int64_t{kvh} * d; },
          out + (std::int64_t{i} * hq + head) * d);
    }
  }
}

std::vector<double> reference_attention_probs(const float* q, const float* k, int kv_len,
                                              std::int64_t kv_stride, int head_dim, float scale,
                                              int visible_keys) {
  std::vector<double> p(kv_len, 0.0);
  const int n = std::min(kv_len, visible_keys);
  double m = -std::numeric_limits<double>::infinity();
  for (int j = 0; j < n; ++j) {
    double acc = 0.0;
    for (int x = 0; x < head_dim; ++x) acc += static_cast<double>(q[x]) * k[j * kv_stride + x];
    p[j] = acc * scale;
    m = std::max(m, p[j]);
  }
  double sum = 0.0;
  for (int j = 0; j < n; ++j) {
    p[j] = std::exp(p[j] - m);
    sum += p[j];
  }
  for (int j = 0; j < n; ++j) p[j] /= sum;
  return p;
}

void reference_rms_norm(const float* x, const float* weight, float* out, int rows, int dim,
                        float eps) {
  for (int r = 0; r < rows; ++r) {
    double ss = 0.0;
    for (int i = 0; i < dim; ++i) ss += static_cast<double>(x[r * dim + i]) * x[r * dim + i];
    const double inv = 1.0 / std::sqrt(ss / dim + eps);
    for (int i = 0; i < dim; ++i)
      out[r * dim + i] = static_cast<float>(x[r * dim + i] * inv * weight[i]);
  }
}

void reference_rope(float* x, int num_tokens, int num_heads, int head_dim,
                    std::span<const std::int32_t> positions, const kernels::RopeParams& params) {
  const int rot = params.rotary_dim ? params.rotary_dim : head_dim;
  const int half = rot / 2;
  for (int t = 0; t < num_tokens; ++t)
    for (int h = 0; h < num_heads; ++h) {
      float* v = x + (static_cast<std::int64_t>(t) * num_heads + h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const double freq = std::pow(static_cast<double>(params.theta), -2.0 * i / rot);
        const double ang = positions[t] * freq;
        const int ia = params.style == kernels::RopeStyle::half ? i : 2 * i;
        const int ib = params.style == kernels::RopeStyle::half ? i + half : 2 * i + 1;
        const double a = v[ia], b = v[ib];
        v[ia] = static_cast<float>(a * std::cos(ang) - b * std::sin(ang));
        v[ib] = static_cast<float>(b * std::cos(ang) + a * std::sin(ang));
      }
    }
}

void reference_swiglu(const float* gate, const float* up, float* out, int rows, int dim) {
  for (std::int64_t i = 0; i < std::int64_t{rows} * dim; ++i) {
    const double g = gate[i];
    out[i] = static_cast<float>(g / (1.0 + std::exp(-g)) * up[i]);
  }
}

void reference_gemm(const float* x, const float* w, float* y, int m, int n, int k) {
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double acc = 0.0;
      for (int x_ = 0; x_ < k; ++x_) acc += static_cast<double>(x[i * k + x_]) * w[j * k + x_];
      y[i * n + j] = static_cast<float>(acc);
    }
}

ReferenceQuantized reference_quantize_page_head(const float* k_rows, const float* v_rows,
                                                int valid_tokens, int head_dim, int bits) {
  const double levels = (1 << bits) - 1;
  ReferenceQuantized r;
  r.k.resize(static_cast<std::size_t>(valid_tokens) * head_dim);
  r.v.resize(r.k.size());
  r.k_step.resize(head_dim);
  r.v_step.resize(valid_tokens);
  for (int c = 0; c < head_dim; ++c) {
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (int t = 0; t < valid_tokens; ++t) {
      lo = std::min<double>(lo, k_rows[t * head_dim + c]);
      hi = std::max<double>(hi, k_rows[t * head_dim + c]);
    }
    const double step = (hi - lo) / levels;
    r.k_step[c] = static_cast<float>(step);
    for (int t = 0; t < valid_tokens; ++t) {
      const double code = step > 0 ? std::nearbyint((k_rows[t * head_dim + c] - lo) / step) : 0.0;
      r.k[t * head_dim + c] = static_cast<float>(code * step + lo);
    }
  }
  for (int t = 0; t < valid_tokens; ++t) {
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (int c = 0; c < head_dim; ++c) {
      lo = std::min<double>(lo, v_rows[t * head_dim + c]);
      hi = std::max<double>(hi, v_rows[t * head_dim + c]);
    }
    const double step = (hi - lo) / levels;
    r.v_step[t] = static_cast<float>(step);
    for (int c = 0; c < head_dim; ++c) {
      const double code = step > 0 ? std::nearbyint((v_rows[t * head_dim + c] - lo) / step) : 0.0;
      r.v[t * head_dim + c] = static_cast<float>(code * step + lo);
    }
  }
  return r;
}

double relative_l2_error(std::span<const float> a, std::span<const float> ref) {
  if (a.size() != ref.size()) throw std::invalid_argument("relative_l2_error: sizes differ");
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double e = static_cast<double>(a[i]) - ref[i];
    num += e * e;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  if (den == 0.0) return num == 0.0 ? 0.0 : std::numeric_limits<double>::infinity();
  return std::sqrt(num / den);
}

}  // namespace prism::baselines
