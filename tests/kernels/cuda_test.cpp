// CUDA kernels against the CPU fp64 oracles. Built only with the CUDA
// toolkit; every test skips (with the reason, as a warning) when no device.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "prism/baselines/oracles.h"
#include "prism/kernels/cuda.h"
#include "prism/kernels/ops.h"
#include "prism/kernels/sparse.h"
#include "test_util.h"

using namespace prism::kernels;
namespace cu = prism::kernels::cuda;
using prism::baselines::relative_l2_error;
using prism::kernels::testing::random_vector;
using prism::kernels::testing::RandomPagedBatch;

namespace {

bool gpu_or_skip() {
  std::string reason;
  if (cu::device_available(&reason)) return true;
  WARN("SKIPPED: no CUDA device: " << reason);
  return false;
}

// Rounds to what the device sees, so the oracle gets the same inputs.
std::vector<float> rounded(std::vector<float> v, cu::DType t) {
  if (t == cu::DType::bf16)
    for (auto& x : v) x = bf16_to_float(float_to_bf16(x));
  if (t == cu::DType::fp16) {
    auto dev = cu::upload(v.data(), v.size(), t);
    cu::download(dev, v.size(), t, v.data());
  }
  return v;
}

double tolerance(cu::DType t) {
  return t == cu::DType::fp32 ? 1e-5 : t == cu::DType::fp16 ? 2e-3 : 1e-2;
}

}  // namespace

TEST_CASE(
    "CUDA prefill attention matches the oracle for bf16, fp16 and fp32, GQA and ragged batches") {
  if (!gpu_or_skip()) return;
  for (auto t : {cu::DType::bf16, cu::DType::fp16, cu::DType::fp32}) {
    for (int d : {64, 128}) {
      const int hq = 8, hkv = 2;
      std::vector<std::int32_t> qs{0, 1, 71, 200}, ks{0, 1, 90, 219};
      const auto q = rounded(random_vector(200 * hq * d, 1), t);
      const auto k = rounded(random_vector(219 * hkv * d, 2), t);
      const auto v = rounded(random_vector(219 * hkv * d, 3), t);
      auto dq = cu::upload(q.data(), q.size(), t), dk = cu::upload(k.data(), k.size(), t),
           dv = cu::upload(v.data(), v.size(), t), dout = cu::DeviceBuffer(q.size() * 4);
      auto dqs = cu::upload_bytes(qs.data(), qs.size() * 4),
           dks = cu::upload_bytes(ks.data(), ks.size() * 4);
      cu::PrefillAttentionArgs a;
      a.heads = {hq, hkv, d, 0.0f};
      a.batch = 3;
      a.q_starts = static_cast<const std::int32_t*>(dqs.data());
      a.kv_starts = static_cast<const std::int32_t*>(dks.data());
      a.max_q_len = 129;
      a.q = dq.data();
      a.k = dk.data();
      a.v = dv.data();
      a.out = dout.data();
      a.dtype = t;
      cu::prefill_attention(a);
      std::vector<float> out(q.size()), ref(q.size());
      cu::download(dout, out.size(), t, out.data());
      PrefillAttentionArgs r;
      r.heads = a.heads;
      r.batch = {qs, ks};
      r.q = q.data();
      r.k = k.data();
      r.v = v.data();
      r.out = ref.data();
      prism::baselines::reference_prefill_attention(r);
      INFO("d=" << d);
      CHECK(relative_l2_error(out, ref) < tolerance(t));
    }
  }
}

TEST_CASE("CUDA paged decode attention matches the oracle with partly filled pages and split-KV") {
  if (!gpu_or_skip()) return;
  for (int split : {0, 32, 100}) {
    const int hq = 16, hkv = 2, d = 128;
    RandomPagedBatch pb({1, 300, 33}, hq, hkv, d, 16, 40u + split);
    const auto view = pb.storage->const_view();
    const auto n = pb.layout.total_floats();
    auto dk = cu::upload(view.k, n, cu::DType::bf16), dv = cu::upload(view.v, n, cu::DType::bf16);
    std::vector<float> kr(n), vr(n);
    cu::download(dk, n, cu::DType::bf16, kr.data());
    cu::download(dv, n, cu::DType::bf16, vr.data());
    const auto q = rounded(pb.q, cu::DType::bf16);
    auto dq = cu::upload(q.data(), q.size(), cu::DType::bf16),
         dout = cu::DeviceBuffer(q.size() * 2);
    auto dt = cu::upload_bytes(pb.table.data(), pb.table.size() * 4);
    auto dl = cu::upload_bytes(pb.lens.data(), pb.lens.size() * 4);
    cu::DecodeAttentionArgs a;
    a.heads = {hq, hkv, d, 0.0f};
    a.layout = pb.layout;
    a.k_cache = dk.data();
    a.v_cache = dv.data();
    a.batch = 3;
    a.block_table = static_cast<const std::int32_t*>(dt.data());
    a.max_blocks_per_seq = pb.max_blocks;
    a.context_lens = static_cast<const std::int32_t*>(dl.data());
    a.max_context_len = 300;
    a.q = dq.data();
    a.out = dout.data();
    a.kv_split_tokens = split;
    cu::decode_attention(a);
    std::vector<float> out(q.size()), ref(q.size());
    cu::download(dout, out.size(), cu::DType::bf16, out.data());
    DecodeAttentionArgs r;
    r.heads = a.heads;
    r.cache = ConstPagedKvCache(pb.layout, kr.data(), vr.data());
    r.block_table = pb.block_table();
    r.q = q.data();
    r.out = ref.data();
    prism::baselines::reference_decode_attention(r);
    INFO("split=" << split);
    CHECK(relative_l2_error(out, ref) < 1e-2);
  }
}

TEST_CASE(
    "CUDA paged decode (cp.async two-stage pipeline) matches the oracle over dtypes, head dims, "
    "GQA ratios, block sizes and ranges that end mid-tile") {
  if (!gpu_or_skip()) return;
  struct Case {
    cu::DType dtype;
    int d, hq, hkv, block_size, split;
  };
  // Lengths 1, 31, 33 and 1000 end inside a 32-key tile; block size 7 puts
  // page boundaries inside tiles; split 64 makes many two-tile ranges, split 0
  // the default; fp32 d256 with GQA 8 is the largest shared-memory stage.
  const Case cases[] = {{cu::DType::bf16, 128, 32, 8, 16, 0}, {cu::DType::fp16, 64, 8, 8, 7, 64},
                        {cu::DType::fp32, 128, 4, 1, 16, 64}, {cu::DType::bf16, 64, 8, 1, 32, 0},
                        {cu::DType::fp32, 256, 16, 2, 16, 0}, {cu::DType::fp16, 128, 16, 4, 7, 0}};
  for (const Case& c : cases) {
    RandomPagedBatch pb({1, 31, 33, 1000}, c.hq, c.hkv, c.d, c.block_size, 90u + c.d + c.hq);
    const auto view = pb.storage->const_view();
    const auto n = pb.layout.total_floats();
    auto dk = cu::upload(view.k, n, c.dtype), dv = cu::upload(view.v, n, c.dtype);
    std::vector<float> kr(n), vr(n);
    cu::download(dk, n, c.dtype, kr.data());
    cu::download(dv, n, c.dtype, vr.data());
    const auto q = rounded(pb.q, c.dtype);
    auto dq = cu::upload(q.data(), q.size(), c.dtype);
    auto dout = cu::DeviceBuffer(q.size() * (c.dtype == cu::DType::fp32 ? 4 : 2));
    auto dt = cu::upload_bytes(pb.table.data(), pb.table.size() * 4);
    auto dl = cu::upload_bytes(pb.lens.data(), pb.lens.size() * 4);
    cu::DecodeAttentionArgs a;
    a.heads = {c.hq, c.hkv, c.d, 0.0f};
    a.dtype = c.dtype;
    a.layout = pb.layout;
    a.k_cache = dk.data();
    a.v_cache = dv.data();
    a.batch = 4;
    a.block_table = static_cast<const std::int32_t*>(dt.data());
    a.max_blocks_per_seq = pb.max_blocks;
    a.context_lens = static_cast<const std::int32_t*>(dl.data());
    a.max_context_len = 1000;
    a.q = dq.data();
    a.out = dout.data();
    a.kv_split_tokens = c.split;
    cu::decode_attention(a);
    std::vector<float> out(q.size()), ref(q.size());
    cu::download(dout, out.size(), c.dtype, out.data());
    DecodeAttentionArgs r;
    r.heads = a.heads;
    r.cache = ConstPagedKvCache(pb.layout, kr.data(), vr.data());
    r.block_table = pb.block_table();
    r.q = q.data();
    r.out = ref.data();
    prism::baselines::reference_decode_attention(r);
    INFO("d=" << c.d << " hq=" << c.hq << " hkv=" << c.hkv << " block=" << c.block_size
              << " split=" << c.split);
    CHECK(relative_l2_error(out, ref) < tolerance(c.dtype));
  }
}

TEST_CASE("CUDA block-sparse attention computes exactly the pattern the CPU selected") {
  if (!gpu_or_skip()) return;
  const int q_len = 200, kv_len = 260, hq = 4, hkv = 1, d = 64;
  const auto q = rounded(random_vector(q_len * hq * d, 5), cu::DType::fp32);
  const auto k = random_vector(kv_len * hkv * d, 6), v = random_vector(kv_len * hkv * d, 7);
  const SparsePrefillInput in{{hq, hkv, d, 0.0f}, q_len, kv_len, q.data(), k.data(), v.data()};
  VerticalSlashConfig cfg;
  cfg.last_q = 32;
  cfg.vertical_size = 20;
  cfg.slash_size = 10;
  VerticalSlashEstimate est;
  vertical_slash_estimate(in, cfg, est);
  BlockSparsePattern p;
  vertical_slash_select(est, cfg, q_len, p);
  auto up = [](const std::vector<std::int32_t>& x) {
    return cu::upload_bytes(x.data(), x.size() * 4);
  };
  auto bo = up(p.block_offsets), kb = up(p.key_blocks), co = up(p.column_offsets),
       cc = up(p.columns);
  auto dq = cu::upload(q.data(), q.size(), cu::DType::fp32),
       dk = cu::upload(k.data(), k.size(), cu::DType::fp32),
       dv = cu::upload(v.data(), v.size(), cu::DType::fp32), dout = cu::DeviceBuffer(q.size() * 4);
  cu::BlockSparseArgs a;
  a.heads = in.heads;
  a.q_len = q_len;
  a.kv_len = kv_len;
  a.block_size = p.block_size;
  a.num_q_blocks = p.num_q_blocks;
  a.block_offsets = static_cast<const std::int32_t*>(bo.data());
  a.key_blocks = static_cast<const std::int32_t*>(kb.data());
  a.column_offsets = static_cast<const std::int32_t*>(co.data());
  a.columns = static_cast<const std::int32_t*>(cc.data());
  a.q = dq.data();
  a.k = dk.data();
  a.v = dv.data();
  a.out = dout.data();
  a.dtype = cu::DType::fp32;
  cu::block_sparse_attention(a);
  std::vector<float> out(q.size()), ref(q.size());
  cu::download(dout, out.size(), cu::DType::fp32, out.data());
  prism::baselines::reference_block_sparse_attention(in, p, ref.data());
  CHECK(relative_l2_error(out, ref) < 1e-5);
}

TEST_CASE("CUDA RMSNorm, RoPE, SwiGLU and cuBLAS GEMM match the oracles") {
  if (!gpu_or_skip()) return;
  const auto t = cu::DType::fp32;
  {
    const int rows = 5, dim = 4099;
    const auto x = random_vector(rows * dim, 1), w = random_vector(dim, 2);
    auto dx = cu::upload(x.data(), x.size(), t), dw = cu::upload(w.data(), w.size(), t),
         dout = cu::DeviceBuffer(x.size() * 4);
    cu::rms_norm(dx.data(), dw.data(), dout.data(), rows, dim, 1e-5f, t);
    std::vector<float> out(x.size()), ref(x.size());
    cu::download(dout, out.size(), t, out.data());
    prism::baselines::reference_rms_norm(x.data(), w.data(), ref.data(), rows, dim, 1e-5f);
    CHECK(relative_l2_error(out, ref) < 1e-5);
  }
  {
    const int tokens = 4, heads = 3, d = 128;
    auto x = random_vector(tokens * heads * d, 3);
    std::vector<std::int32_t> pos{0, 5, 100, 4000};
    auto dx = cu::upload(x.data(), x.size(), t);
    auto dp = cu::upload_bytes(pos.data(), pos.size() * 4);
    cu::apply_rope(dx.data(), tokens, heads, d, static_cast<const std::int32_t*>(dp.data()),
                   10000.0f, t);
    std::vector<float> out(x.size());
    cu::download(dx, out.size(), t, out.data());
    prism::baselines::reference_rope(x.data(), tokens, heads, d, pos, RopeParams{});
    CHECK(relative_l2_error(out, x) < 1e-4);
  }
  {
    const int rows = 3, dim = 1000;
    const auto g = random_vector(rows * dim, 4, -8, 8), u = random_vector(rows * dim, 5);
    auto dg = cu::upload(g.data(), g.size(), t), du = cu::upload(u.data(), u.size(), t),
         dout = cu::DeviceBuffer(g.size() * 4);
    cu::swiglu(dg.data(), du.data(), dout.data(), rows, dim, t);
    std::vector<float> out(g.size()), ref(g.size());
    cu::download(dout, out.size(), t, out.data());
    prism::baselines::reference_swiglu(g.data(), u.data(), ref.data(), rows, dim);
    CHECK(relative_l2_error(out, ref) < 1e-5);
  }
  for (auto gt : {cu::DType::bf16, cu::DType::fp32}) {
    const int m = 33, n = 65, k = 128;
    const auto x = rounded(random_vector(m * k, 6), gt), w = rounded(random_vector(n * k, 7), gt);
    auto dx = cu::upload(x.data(), x.size(), gt), dw = cu::upload(w.data(), w.size(), gt),
         dy = cu::DeviceBuffer(static_cast<std::size_t>(m) * n * 4);
    cu::gemm(dx.data(), dw.data(), dy.data(), m, n, k, gt);
    std::vector<float> y(m * n), ref(m * n);
    cu::download(dy, y.size(), gt, y.data());
    prism::baselines::reference_gemm(x.data(), w.data(), ref.data(), m, n, k);
    CHECK(relative_l2_error(y, ref) < tolerance(gt));
  }
}

TEST_CASE("CUDA launches reject bad shapes before touching the device") {
  cu::PrefillAttentionArgs a;
  a.heads = {3, 2, 64, 0.0f};
  a.batch = 1;
  a.max_q_len = 1;
  CHECK_THROWS_AS(cu::prefill_attention(a), std::invalid_argument);
  cu::DecodeAttentionArgs d;
  d.heads = {4, 1, 64, 0.0f};
  d.layout = PagedKvLayout{1, 16, 2, 64};
  d.batch = 1;
  CHECK_THROWS_WITH(cu::decode_attention(d), Catch::Contains("layout differs"));
}
