#include "prism/baselines/kernel_report.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "prism/baselines/oracles.h"
#include "prism/kernels/attention.h"
#include "prism/kernels/kv_quant.h"
#include "prism/kernels/paged_kv.h"
#include "prism/kernels/sparse.h"
#include "prism/kernels/threading.h"

#ifdef PRISM_HAVE_CUDA
#include "prism/kernels/cuda.h"
#endif

namespace prism::baselines {
namespace {

namespace k = prism::kernels;

// ------------------------------------------------------------ structured data

// Per-KV-head directions: a RoPE-rotated local component (first half of the
// head), a sink direction and a heavy-hitter direction (second half).
class StructuredAttention {
 public:
  StructuredAttention(int num_kv_heads, int head_dim, std::uint32_t seed)
      : hkv_(num_kv_heads), d_(head_dim), seed_(seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> n(0.0f, 1.0f);
    std::uniform_real_distribution<float> u(0.5f, 1.2f);
    const int half = d_ / 2;
    dirs_.resize(static_cast<std::size_t>(hkv_) * 3 * d_, 0.0f);
    for (int h = 0; h < hkv_; ++h) {
      for (int which = 0; which < 3; ++which) {
        float* v = dirs_.data() + (static_cast<std::size_t>(h) * 3 + which) * d_;
        const int lo = which == 0 ? 0 : half, hi = which == 0 ? half : d_;
        double norm = 0;
        for (int i = lo; i < hi; ++i) {
          v[i] = n(rng);
          norm += v[i] * v[i];
        }
        for (int i = lo; i < hi; ++i) v[i] = static_cast<float>(v[i] / std::sqrt(norm));
      }
      local_.push_back(u(rng));
    }
  }

  // Rows [n][heads][head_dim] for tokens at positions first..first+n-1.
  // Query heads map to KV heads by GQA group (heads / hkv per group).
  void fill(std::vector<float>& out, int n, int first, int heads, bool query,
            std::uint32_t salt) const {
    out.resize(static_cast<std::size_t>(n) * heads * d_);
    const int group = heads / hkv_;
    const float sqrt_d = std::sqrt(static_cast<float>(d_));
    // Logit strengths (after the 1/sqrt(d) scale): local up to 8, sinks 10,
    // heavy hitters 7; key noise is smaller than query noise so the diffuse
    // background stays a minority of the mass, as in trained models.
    const float a = std::sqrt(8.0f * sqrt_d), b = std::sqrt(10.0f * sqrt_d),
                hh = std::sqrt(7.0f * sqrt_d);
    const float noise_scale = query ? 1.0f : 0.5f;
    const int quarter = d_ / 4;
    k::parallel_for(n, [&](std::int64_t t) {
      std::mt19937 rng(seed_ * 2654435761u + salt * 97u + static_cast<std::uint32_t>(t) * 7919u);
      std::normal_distribution<float> noise(0.0f, 1.0f);
      const int pos = first + static_cast<int>(t);
      const bool heavy =
          (static_cast<std::uint32_t>(pos) * 2246822519u >> 24) < 2;  // ~0.8% of keys
      for (int h = 0; h < heads; ++h) {
        const int kvh = h / group;
        const float* local = dirs_.data() + (static_cast<std::size_t>(kvh) * 3) * d_;
        const float* sink = local + d_;
        const float* hit = sink + d_;
        float* row = out.data() + (static_cast<std::size_t>(t) * heads + h) * d_;
        for (int i = 0; i < d_; ++i) row[i] = noise_scale * noise(rng);
        const float la = a * local_[kvh];
        for (int i = 0; i < quarter; ++i) {
          const double freq = std::pow(10000.0, -static_cast<double>(i) / quarter);
          const double ang = pos * freq;
          const float c = static_cast<float>(std::cos(ang)), s = static_cast<float>(std::sin(ang));
          const float x = local[i], y = local[i + quarter];
          row[i] += la * (x * c - y * s);
          row[i + quarter] += la * (y * c + x * s);
        }
        const bool sinky = query || pos < 4;
        const bool hitty = query || heavy;
        for (int i = d_ / 2; i < d_; ++i) {
          if (sinky) row[i] += b * sink[i];
          if (hitty) row[i] += hh * hit[i];
        }
      }
    });
  }

 private:
  int hkv_, d_;
  std::uint32_t seed_;
  std::vector<float> dirs_;
  std::vector<float> local_;
};

// Values: a shared per-head mean plus noise (value states of trained models
// have a strong common component; zero-mean values would make every output a
// near-zero average and relative errors meaningless).
std::vector<float> structured_values(int tokens, int heads, int d, std::uint32_t seed) {
  std::vector<float> v(static_cast<std::size_t>(tokens) * heads * d);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> mean(static_cast<std::size_t>(heads) * d);
  for (auto& x : mean) x = u(rng);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = mean[i % mean.size()] + u(rng);
  return v;
}

// ------------------------------------------------------------------ timing

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// One run first; long stages (> 0.3 s) keep it, short ones are warmed up by
// it and then timed `reps` times (median).
double time_stage(int reps, const std::function<void()>& f) {
  const double t0 = now();
  f();
  const double first = now() - t0;
  if (first > 0.3 || reps <= 1) return first;
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const double s = now();
    f();
    t.push_back(now() - s);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// ------------------------------------------------------------------ recall

// Fraction of the keys carrying the top `mass` of the probabilities that the
// method attends to.
double top_mass_recall(const std::vector<double>& probs, const std::function<bool(int)>& attended,
                       double mass = 0.9) {
  std::vector<int> order(probs.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int x, int y) { return probs[x] > probs[y]; });
  double cum = 0.0;
  int top = 0, hit = 0;
  for (int j : order) {
    if (cum >= mass) break;
    cum += probs[j];
    ++top;
    if (attended(j)) ++hit;
  }
  return top > 0 ? static_cast<double>(hit) / top : 1.0;
}

bool pattern_has(const k::BlockSparsePattern& p, int head, int qi, int key) {
  const std::size_t idx = static_cast<std::size_t>(head) * p.num_q_blocks + qi / p.block_size;
  const auto b0 = p.key_blocks.begin() + p.block_offsets[idx];
  const auto b1 = p.key_blocks.begin() + p.block_offsets[idx + 1];
  if (std::binary_search(b0, b1, key / p.block_size)) return true;
  if (p.column_offsets.empty()) return false;
  const auto c0 = p.columns.begin() + p.column_offsets[idx];
  const auto c1 = p.columns.begin() + p.column_offsets[idx + 1];
  return std::binary_search(c0, c1, key);
}

bool wants(const KernelReportOptions& o, const std::string& m) {
  return m == "dense" || o.methods.empty() ||
         std::find(o.methods.begin(), o.methods.end(), m) != o.methods.end();
}

std::string stage_text(const MethodRow& r) {
  std::string s;
  for (const auto& st : r.stages) {
    if (!s.empty()) s += " + ";
    s += fmt::format("{} {:.2f}{}", st.name, st.seconds * 1e3, st.once ? "*" : "");
  }
  return s;
}

void finish_row(MethodRow& r) {
  r.total_seconds = 0;
  for (const auto& s : r.stages)
    if (!s.once) r.total_seconds += s.seconds;
}

// ------------------------------------------------------------------ prefill

void run_prefill(const KernelReportOptions& o, const KernelWorkloadShape& sh,
                 const StructuredAttention& gen, const DevicePeaks* peaks,
                 std::vector<MethodRow>& rows) {
  const int q_len = sh.prefill_q_len, kv_len = sh.prefill_kv_len, hq = sh.num_q_heads,
            hkv = sh.num_kv_heads, d = sh.head_dim;
  const int offset = kv_len - q_len;
  std::vector<float> q, kk;
  gen.fill(q, q_len, offset, hq, true, 11);
  gen.fill(kk, kv_len, 0, hkv, false, 12);
  const auto v = structured_values(kv_len, hkv, d, o.seed + 13);
  const k::SparsePrefillInput input{{hq, hkv, d, 0.0f}, q_len,     kv_len,
                                    q.data(),           kk.data(), v.data()};
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));

  // Sample queries for recall: evenly spaced, the last included.
  std::vector<int> sample;
  for (int i = 1; i <= 8; ++i) sample.push_back(std::max(0, q_len * i / 8 - 1));
  std::vector<std::vector<double>> probs;  // [sample][head]
  for (int qi : sample)
    for (int h = 0; h < hq; ++h)
      probs.push_back(
          reference_attention_probs(q.data() + (static_cast<std::size_t>(qi) * hq + h) * d,
                                    kk.data() + static_cast<std::size_t>(h / (hq / hkv)) * d,
                                    kv_len, std::int64_t{hkv} * d, d, scale, offset + qi + 1));
  const auto recall_of = [&](const std::function<bool(int head, int qi, int key)>& has) {
    double sum = 0;
    std::size_t x = 0;
    for (int qi : sample)
      for (int h = 0; h < hq; ++h, ++x)
        sum += top_mass_recall(probs[x], [&](int key) { return has(h, qi, key); });
    return sum / static_cast<double>(probs.size());
  };

  std::vector<float> dense_out(q.size());
  std::vector<std::int32_t> qs{0, q_len}, ks{0, kv_len};
  const auto prefill = [&](const k::AttentionMask& mask, float* out) {
    k::PrefillAttentionArgs a;
    a.heads = input.heads;
    a.mask = mask;
    a.batch = {qs, ks};
    a.q = q.data();
    a.k = kk.data();
    a.v = v.data();
    a.out = out;
    k::prefill_attention(a);
  };
  const auto add_roofline = [&](MethodRow& r, double attend_seconds) {
    if (!peaks) return;
    const auto rl =
        roofline(prefill_attention_cost(q_len, kv_len, hq, hkv, d, 4.0, r.attended_fraction),
                 *peaks, attend_seconds);
    r.roofline_percent = rl.percent_of_roofline;
    r.memory_bound = rl.memory_bound;
  };

  MethodRow dense{"prefill", "dense"};
  dense.stages.push_back(
      {"attend", time_stage(o.repetitions, [&] { prefill({}, dense_out.data()); })});
  finish_row(dense);
  dense.speedup = 1.0;
  add_roofline(dense, dense.total_seconds);
  rows.push_back(dense);
  const auto accuracy = [&](MethodRow& r, const std::vector<float>& out) {
    r.relative_l2_error = relative_l2_error(out, dense_out);
    r.speedup = dense.total_seconds / r.total_seconds;
  };

  if (wants(o, "sink-window")) {
    k::AttentionMask m;
    m.sink_tokens = 16;
    m.window_tokens = std::max(256, kv_len / 8);
    std::vector<float> out(q.size());
    MethodRow r{"prefill", "sink-window"};
    r.stages.push_back({"attend", time_stage(o.repetitions, [&] { prefill(m, out.data()); })});
    finish_row(r);
    double pairs = 0;
    for (int i = 0; i < q_len; ++i) {
      const int pos = offset + i;
      pairs += std::min(pos + 1, m.sink_tokens + m.window_tokens) -
               std::max(0, std::min(m.sink_tokens, pos - m.window_tokens + 1));
    }
    r.attended_fraction = pairs / causal_pairs(q_len, kv_len);
    accuracy(r, out);
    r.recall = recall_of([&](int, int qi, int key) {
      return key < m.sink_tokens || key > offset + qi - m.window_tokens;
    });
    add_roofline(r, r.total_seconds);
    rows.push_back(r);
  }

  const auto sparse_row = [&](const std::string& name, const std::function<void()>& estimate,
                              const std::function<void()>& select,
                              const k::BlockSparsePattern& pattern) {
    std::vector<float> out(q.size());
    MethodRow r{"prefill", name};
    r.stages.push_back({"estimate", time_stage(o.repetitions, estimate)});
    r.stages.push_back({"select", time_stage(o.repetitions, select)});
    const double attend =
        time_stage(o.repetitions, [&] { k::block_sparse_attention(input, pattern, out.data()); });
    r.stages.push_back({"attend", attend});
    finish_row(r);
    r.attended_fraction = pattern.density(q_len, kv_len);
    accuracy(r, out);
    r.recall = recall_of([&](int h, int qi, int key) { return pattern_has(pattern, h, qi, key); });
    add_roofline(r, attend);
    rows.push_back(r);
  };

  if (wants(o, "vertical-slash")) {
    k::VerticalSlashConfig cfg;
    cfg.vertical_size = std::max(64, kv_len / 32);
    cfg.slash_size = std::max(64, kv_len / 32);
    k::VerticalSlashEstimate est;
    k::BlockSparsePattern pattern;
    sparse_row(
        "vertical-slash", [&] { k::vertical_slash_estimate(input, cfg, est); },
        [&] { k::vertical_slash_select(est, cfg, q_len, pattern); }, pattern);
  }
  if (wants(o, "block-topk")) {
    k::FlexPrefillConfig cfg;
    cfg.gamma = 0.9f;
    k::BlockScores scores;
    k::BlockSparsePattern pattern;
    sparse_row(
        "block-topk", [&] { k::flexprefill_estimate(input, cfg, scores); },
        [&] { k::flexprefill_select(scores, cfg, q_len, kv_len, pattern); }, pattern);
  }
}

// ------------------------------------------------------------------- decode

void run_decode(const KernelReportOptions& o, const KernelWorkloadShape& sh,
                const StructuredAttention& gen, const DevicePeaks* peaks,
                std::vector<MethodRow>& rows) {
  const int batch = sh.decode_batch, ctx = sh.decode_context, hq = sh.num_q_heads,
            hkv = sh.num_kv_heads, d = sh.head_dim, bs = sh.block_size;
  const int pages = (ctx + bs - 1) / bs;
  k::PagedKvLayout layout{batch * pages, bs, hkv, d};
  k::PagedKvStorage cache(layout);
  std::vector<std::int32_t> table(static_cast<std::size_t>(batch) * pages), lens(batch, ctx);
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), std::mt19937(o.seed + 21));
  std::vector<float> q(static_cast<std::size_t>(batch) * hq * d);
  std::vector<std::vector<float>> keys(batch);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  for (int b = 0; b < batch; ++b) {
    gen.fill(keys[b], ctx, 0, hkv, false, 100 + b);
    const auto v = structured_values(ctx, hkv, d, o.seed + 200 + b);
    std::vector<float> qb;
    gen.fill(qb, 1, ctx - 1, hq, true, 300 + b);
    std::copy(qb.begin(), qb.end(), q.begin() + static_cast<std::size_t>(b) * hq * d);
    std::vector<std::int32_t> slots(ctx);
    for (int t = 0; t < ctx; ++t) slots[t] = table[b * pages + t / bs] * bs + t % bs;
    k::write_kv_to_pages(cache.view(), keys[b].data(), v.data(), slots);
  }
  const k::BlockTable bt{table, pages, lens};
  std::vector<std::vector<double>> probs;  // [batch][head]
  for (int b = 0; b < batch; ++b)
    for (int h = 0; h < hq; ++h)
      probs.push_back(
          reference_attention_probs(q.data() + (static_cast<std::size_t>(b) * hq + h) * d,
                                    keys[b].data() + static_cast<std::size_t>(h / (hq / hkv)) * d,
                                    ctx, std::int64_t{hkv} * d, d, scale, ctx));
  keys.clear();
  const auto recall_of = [&](const std::function<bool(int b, int h, int key)>& has) {
    double sum = 0;
    for (int b = 0; b < batch; ++b)
      for (int h = 0; h < hq; ++h)
        sum += top_mass_recall(probs[static_cast<std::size_t>(b) * hq + h],
                               [&](int key) { return has(b, h, key); });
    return sum / (static_cast<double>(batch) * hq);
  };

  k::DecodeAttentionArgs args;
  args.heads = {hq, hkv, d, 0.0f};
  args.cache = cache.const_view();
  args.block_table = bt;
  args.q = q.data();
  const auto add_roofline = [&](MethodRow& r, double seconds, double kv_bytes) {
    if (!peaks) return;
    const auto rl =
        roofline(decode_attention_cost(batch, ctx, hq, hkv, d, kv_bytes, r.attended_fraction),
                 *peaks, seconds);
    r.roofline_percent = rl.percent_of_roofline;
    r.memory_bound = rl.memory_bound;
  };

  std::vector<float> dense_out(q.size());
  MethodRow dense{"decode", "dense"};
  args.out = dense_out.data();
  dense.stages.push_back({"attend", time_stage(o.repetitions, [&] { k::decode_attention(args); })});
  finish_row(dense);
  dense.speedup = 1.0;
  add_roofline(dense, dense.total_seconds, 2.0 * d * 4);
  rows.push_back(dense);
  const auto accuracy = [&](MethodRow& r, const std::vector<float>& out) {
    r.relative_l2_error = relative_l2_error(out, dense_out);
    r.speedup = dense.total_seconds / r.total_seconds;
  };
  const int budget = std::max(4 * bs, ctx / 8);

  if (wants(o, "sink-window")) {
    std::vector<float> out(q.size());
    auto a = args;
    a.out = out.data();
    a.mask.sink_tokens = 16;
    a.mask.window_tokens = budget - 16;
    MethodRow r{"decode", "sink-window"};
    r.stages.push_back({"attend", time_stage(o.repetitions, [&] { k::decode_attention(a); })});
    finish_row(r);
    r.attended_fraction = std::min(1.0, static_cast<double>(budget) / ctx);
    accuracy(r, out);
    r.recall =
        recall_of([&](int, int, int key) { return key < 16 || key >= ctx - a.mask.window_tokens; });
    add_roofline(r, r.total_seconds, 2.0 * d * 4);
    rows.push_back(r);
  }
  if (wants(o, "quest")) {
    std::vector<float> out(q.size());
    auto a = args;
    a.out = out.data();
    k::QuestBounds bounds(layout);
    std::vector<float> scores;
    k::PageSelection sel;
    const int top = std::max(1, budget / bs);
    MethodRow r{"decode", "quest"};
    r.stages.push_back(
        {"bounds", time_stage(1, [&] { k::quest_update_bounds(cache.const_view(), bt, bounds); }),
         true});
    r.stages.push_back({"estimate", time_stage(o.repetitions, [&] {
                          k::quest_page_scores(args.heads, q.data(), 0, bt, bounds, scores);
                        })});
    r.stages.push_back({"select", time_stage(o.repetitions, [&] {
                          k::quest_select_pages(scores, bt, hkv, top, sel);
                        })});
    const double attend = time_stage(o.repetitions, [&] { k::decode_attention_pages(a, sel); });
    r.stages.push_back({"attend", attend});
    finish_row(r);
    double selected = 0;
    for (int b = 0; b < batch; ++b)
      for (int h = 0; h < hkv; ++h) selected += std::min(ctx, sel.count(b, h) * bs);
    r.attended_fraction = selected / (static_cast<double>(batch) * hkv * ctx);
    accuracy(r, out);
    r.recall = recall_of([&](int b, int h, int key) {
      const std::int32_t* l = sel.list(b, h / (hq / hkv));
      return std::binary_search(l, l + sel.count(b, h / (hq / hkv)), key / bs);
    });
    add_roofline(r, attend, 2.0 * d * 4);
    rows.push_back(r);
  }
  for (const auto& [name, bits] : {std::pair{"kivi-int8", k::KvQuantBits::int8},
                                   std::pair{"kivi-int4", k::KvQuantBits::int4}}) {
    if (!wants(o, name)) continue;
    std::vector<float> out(q.size());
    k::QuantizedKvStorage qkv(layout, bits);
    MethodRow r{"decode", name};
    r.stages.push_back(
        {"quantize",
         time_stage(1, [&] { k::quantize_kv_pages(cache.const_view(), bt, qkv.view()); }), true});
    k::QuantizedDecodeArgs a;
    a.heads = args.heads;
    a.cache = &qkv.view();
    a.block_table = bt;
    a.q = q.data();
    a.out = out.data();
    const double attend = time_stage(o.repetitions, [&] { k::decode_attention_quantized(a); });
    r.stages.push_back({"attend", attend});
    finish_row(r);
    accuracy(r, out);
    r.recall = 1.0;  // every key is read, at lower precision
    add_roofline(r, attend, qkv.view().bytes_per_token_head());
    rows.push_back(r);
  }
}

}  // namespace

KernelWorkloadShape kernel_workload_shape(const std::string& workload, int context) {
  if (context < 0) throw std::invalid_argument("kernel workload: context must be >= 0");
  KernelWorkloadShape s;
  s.workload = workload;
  if (workload == "long-context") {
    const int ctx = context ? context : 8192;
    s.prefill_q_len = s.prefill_kv_len = ctx;
    s.decode_batch = 1;
    s.decode_context = context ? context : 32768;
    s.description = "one long document: full prefill, then decode at long context";
  } else if (workload == "rag") {
    const int ctx = context ? context : 4096;
    s.prefill_q_len = s.prefill_kv_len = ctx;
    s.decode_batch = 8;
    s.decode_context = ctx;
    s.description = "retrieved chunks + question: prefill of the whole prompt, batched decode";
  } else if (workload == "multi-turn") {
    const int ctx = context ? context : 6144;
    s.prefill_kv_len = ctx;
    s.prefill_q_len = std::max(1, ctx / 6);
    s.decode_batch = 4;
    s.decode_context = ctx;
    s.description =
        "a new turn prefilled against the cached history (chunk attends to cached KV), batched "
        "decode";
  } else {
    throw std::invalid_argument("unknown kernel workload '" + workload +
                                "' (expected long-context, rag or multi-turn)");
  }
  return s;
}

const std::vector<std::string>& kernel_method_names() {
  static const std::vector<std::string> names{
      "dense", "sink-window", "quest", "vertical-slash", "block-topk", "kivi-int8", "kivi-int4"};
  return names;
}

KernelReport run_kernel_report(const KernelReportOptions& o) {
  for (const auto& m : o.methods)
    if (std::find(kernel_method_names().begin(), kernel_method_names().end(), m) ==
        kernel_method_names().end())
      throw std::invalid_argument("unknown method '" + m +
                                  "' (expected one of dense, sink-window, quest, "
                                  "vertical-slash, block-topk, kivi-int8, kivi-int4)");
  if (o.repetitions < 1) throw std::invalid_argument("repetitions must be >= 1");
  KernelReport rep;
  rep.shape = kernel_workload_shape(o.workload, o.context);
  rep.device = o.device;
  if (o.device == "cuda") {
#ifdef PRISM_HAVE_CUDA
    std::string reason;
    if (!k::cuda::device_available(&reason)) throw std::runtime_error("--device cuda: " + reason);
#endif
    throw std::runtime_error(
        "--device cuda: the comparison table runs the CPU kernels only in this build; "
        "time the CUDA kernels with bench_kernels_cuda");
  }
  if (o.device != "cpu")
    throw std::invalid_argument("unknown device '" + o.device + "' (expected cpu or cuda)");
  rep.isa = k::kernel_isa();
  rep.threads = k::kernel_threads();
  if (o.measure_peaks) {
    rep.peaks = measure_cpu_peaks();
    rep.has_peaks = true;
  }
  const StructuredAttention gen(rep.shape.num_kv_heads, rep.shape.head_dim, o.seed);
  const DevicePeaks* peaks = rep.has_peaks ? &rep.peaks : nullptr;
  run_prefill(o, rep.shape, gen, peaks, rep.rows);
  run_decode(o, rep.shape, gen, peaks, rep.rows);
  return rep;
}

std::string format_kernel_report(const KernelReport& r) {
  const auto& s = r.shape;
  std::string out = fmt::format(
      "prism kernels: workload {} ({})\n"
      "  heads {}q/{}kv, head dim {}, fp32 on {} ({} threads, {})\n"
      "  prefill: {} queries over {} keys; decode: batch {} x {} tokens, pages of {}\n",
      s.workload, s.description, s.num_q_heads, s.num_kv_heads, s.head_dim, r.device, r.threads,
      r.isa, s.prefill_q_len, s.prefill_kv_len, s.decode_batch, s.decode_context, s.block_size);
  out += r.has_peaks ? fmt::format("  roofline peaks: {}\n", r.peaks.source)
                     : std::string("  roofline: not measured (--no-peaks)\n");
  out += fmt::format("\n{:<8} {:<15} {:>10} {:>8} {:>9} {:>10} {:>9} {:>8}  {}\n", "phase",
                     "method", "total ms", "speedup", "attended", "%roofline", "rel L2", "recall",
                     "stages (ms)");
  for (const auto& row : r.rows) {
    const std::string roof =
        r.has_peaks ? fmt::format("{:.1f}{}", row.roofline_percent, row.memory_bound ? " m" : " c")
                    : std::string("-");
    out += fmt::format("{:<8} {:<15} {:>10.2f} {:>7.2f}x {:>8.1f}% {:>10} {:>9.2e} {:>8.3f}  {}\n",
                       row.phase, row.method, row.total_seconds * 1e3, row.speedup,
                       row.attended_fraction * 100.0, roof, row.relative_l2_error, row.recall,
                       stage_text(row));
  }
  out +=
      "\n  attended: share of dense's (query, key) pairs computed; %roofline: attend stage vs the "
      "roofline bound\n"
      "  (m = memory-bound, c = compute-bound); rel L2: ||out - dense|| / ||dense||; recall: share "
      "of the keys\n"
      "  carrying 90% of dense attention mass that the method attends to; * = once per page, not "
      "per step.\n";
  return out;
}

std::string kernel_report_json(const KernelReport& r) {
  nlohmann::json j;
  j["workload"] = r.shape.workload;
  j["shape"] = {{"num_q_heads", r.shape.num_q_heads},
                {"num_kv_heads", r.shape.num_kv_heads},
                {"head_dim", r.shape.head_dim},
                {"prefill_q_len", r.shape.prefill_q_len},
                {"prefill_kv_len", r.shape.prefill_kv_len},
                {"decode_batch", r.shape.decode_batch},
                {"decode_context", r.shape.decode_context},
                {"block_size", r.shape.block_size}};
  j["device"] = r.device;
  j["isa"] = r.isa;
  j["threads"] = r.threads;
  if (r.has_peaks)
    j["peaks"] = {{"flops_per_s", r.peaks.flops_per_s},
                  {"bytes_per_s", r.peaks.bytes_per_s},
                  {"source", r.peaks.source}};
  j["rows"] = nlohmann::json::array();
  for (const auto& row : r.rows) {
    nlohmann::json stages = nlohmann::json::array();
    for (const auto& st : row.stages)
      stages.push_back({{"name", st.name}, {"seconds", st.seconds}, {"once", st.once}});
    j["rows"].push_back({{"phase", row.phase},
                         {"method", row.method},
                         {"stages", stages},
                         {"total_seconds", row.total_seconds},
                         {"speedup", row.speedup},
                         {"attended_fraction", row.attended_fraction},
                         {"roofline_percent",
                          r.has_peaks ? nlohmann::json(row.roofline_percent) : nlohmann::json()},
                         {"memory_bound", row.memory_bound},
                         {"relative_l2_error", row.relative_l2_error},
                         {"recall_top90_mass", row.recall}});
  }
  return j.dump(2);
}

}  // namespace prism::baselines
