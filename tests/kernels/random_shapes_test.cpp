// Every CPU attention kernel against its fp64 oracle over seeded random
// shapes: lengths 1 and off the tile/page size, GQA ratios 1/4/8, head dims 64
// and 128, partly filled pages, random block sizes and split sizes. Each case
// prints its shape (INFO) so a failure names what to reproduce. Shapes stay
// small: the oracles are O(q * k * d) in fp64 and the suite must stay fast
// under ASan.
#include <catch2/catch.hpp>

#include <algorithm>
#include <random>
#include <vector>

#include "prism/baselines/oracles.h"
#include "prism/kernels/attention.h"
#include "prism/kernels/kv_quant.h"
#include "prism/kernels/sparse.h"
#include "test_util.h"

using namespace prism::kernels;
using prism::baselines::relative_l2_error;
using prism::kernels::testing::random_vector;
using prism::kernels::testing::RandomPagedBatch;

namespace {

constexpr int kRatios[] = {1, 4, 8};
constexpr int kHeadDims[] = {64, 128};

// A length drawn so that edge cases come up often: 1, one off a multiple of
// 16/64, or uniform.
int random_length(std::mt19937& rng, int max_len) {
  switch (std::uniform_int_distribution<int>(0, 3)(rng)) {
    case 0:
      return 1;
    case 1: {
      const int base = std::uniform_int_distribution<int>(1, std::max(1, max_len / 64))(rng) * 64;
      return std::clamp(base + std::uniform_int_distribution<int>(-1, 1)(rng), 1, max_len);
    }
    case 2: {
      const int base = std::uniform_int_distribution<int>(1, std::max(1, max_len / 16))(rng) * 16;
      return std::clamp(base + std::uniform_int_distribution<int>(-1, 1)(rng), 1, max_len);
    }
    default:
      return std::uniform_int_distribution<int>(1, max_len)(rng);
  }
}

template <typename T, std::size_t N>
T pick(std::mt19937& rng, const T (&options)[N]) {
  return options[std::uniform_int_distribution<std::size_t>(0, N - 1)(rng)];
}

}  // namespace

TEST_CASE("Dense prefill matches the oracle over random varlen shapes, masks and cached prefixes") {
  std::mt19937 rng(2024);
  for (int trial = 0; trial < 24; ++trial) {
    const int d = pick(rng, kHeadDims), ratio = pick(rng, kRatios);
    const int hkv = std::uniform_int_distribution<int>(1, 2)(rng), hq = hkv * ratio;
    const int batch = std::uniform_int_distribution<int>(1, 3)(rng);
    std::vector<std::int32_t> qs{0}, ks{0};
    for (int b = 0; b < batch; ++b) {
      const int q_len = random_length(rng, 140);
      const int cached = std::uniform_int_distribution<int>(0, 1)(rng) ? random_length(rng, 90) : 0;
      qs.push_back(qs.back() + q_len);
      ks.push_back(ks.back() + q_len + cached);
    }
    AttentionMask mask;
    const int mask_kind = std::uniform_int_distribution<int>(0, 3)(rng);
    if (mask_kind == 1) {
      mask.window_tokens = random_length(rng, 100);
      mask.sink_tokens = std::uniform_int_distribution<int>(0, 8)(rng);
    } else if (mask_kind == 2) {
      mask.causal = false;
    }
    const auto q = random_vector(static_cast<std::size_t>(qs.back()) * hq * d, 10u + trial, -2, 2);
    const auto k = random_vector(static_cast<std::size_t>(ks.back()) * hkv * d, 20u + trial, -2, 2);
    const auto v = random_vector(static_cast<std::size_t>(ks.back()) * hkv * d, 30u + trial);
    std::vector<float> out(q.size(), 9.0f), ref(q.size(), -9.0f);
    PrefillAttentionArgs a;
    a.heads = {hq, hkv, d, 0.0f};
    a.mask = mask;
    a.batch = {qs, ks};
    a.q = q.data();
    a.k = k.data();
    a.v = v.data();
    a.out = out.data();
    prefill_attention(a);
    a.out = ref.data();
    prism::baselines::reference_prefill_attention(a);
    INFO("trial " << trial << ": d=" << d << " hq=" << hq << " hkv=" << hkv << " batch=" << batch
                  << " total q=" << qs.back() << " kv=" << ks.back() << " mask kind=" << mask_kind
                  << " window=" << mask.window_tokens << " sink=" << mask.sink_tokens);
    CHECK(relative_l2_error(out, ref) < 2e-5);
  }
}

TEST_CASE(
    "Paged decode matches the oracle over random batches, block sizes, splits and partly filled "
    "pages") {
  std::mt19937 rng(4048);
  constexpr int kBlockSizes[] = {1, 7, 16, 32};
  for (int trial = 0; trial < 24; ++trial) {
    const int d = pick(rng, kHeadDims), ratio = pick(rng, kRatios);
    const int hkv = std::uniform_int_distribution<int>(1, 3)(rng), hq = hkv * ratio;
    const int bs = pick(rng, kBlockSizes);
    std::vector<std::int32_t> lens(std::uniform_int_distribution<int>(1, 4)(rng));
    for (auto& len : lens)
      len = std::uniform_int_distribution<int>(0, 5)(rng) == 0 ? 0 : random_length(rng, 300);
    const int split = std::uniform_int_distribution<int>(0, 1)(rng)
                          ? 0
                          : std::uniform_int_distribution<int>(1, 128)(rng);
    AttentionMask mask;
    if (std::uniform_int_distribution<int>(0, 2)(rng) == 0) {
      mask.window_tokens = random_length(rng, 120);
      mask.sink_tokens = std::uniform_int_distribution<int>(0, 6)(rng);
    }
    RandomPagedBatch pb(lens, hq, hkv, d, bs, 500u + trial);
    std::vector<float> out(pb.q.size(), 5.0f), ref(pb.q.size(), -5.0f);
    DecodeAttentionArgs a;
    a.heads = {hq, hkv, d, 0.0f};
    a.mask = mask;
    a.cache = pb.storage->const_view();
    a.block_table = pb.block_table();
    a.q = pb.q.data();
    a.out = out.data();
    a.kv_split_tokens = split;
    decode_attention(a);
    a.out = ref.data();
    prism::baselines::reference_decode_attention(a);
    INFO("trial " << trial << ": d=" << d << " hq=" << hq << " hkv=" << hkv << " block=" << bs
                  << " batch=" << lens.size() << " first len=" << lens[0] << " split=" << split
                  << " window=" << mask.window_tokens << " sink=" << mask.sink_tokens);
    CHECK(relative_l2_error(out, ref) < 2e-5);
  }
}

TEST_CASE("Quantized decode matches its oracle over random shapes and partly filled pages") {
  std::mt19937 rng(6060);
  for (int trial = 0; trial < 12; ++trial) {
    const int d = pick(rng, kHeadDims), ratio = pick(rng, kRatios);
    const int hkv = std::uniform_int_distribution<int>(1, 2)(rng), hq = hkv * ratio;
    const auto bits = trial % 2 ? KvQuantBits::int4 : KvQuantBits::int8;
    std::vector<std::int32_t> lens(std::uniform_int_distribution<int>(1, 3)(rng));
    for (auto& len : lens) len = random_length(rng, 200);
    RandomPagedBatch pb(lens, hq, hkv, d, 16, 700u + trial);
    QuantizedKvStorage qkv(pb.layout, bits);
    quantize_kv_pages(pb.storage->const_view(), pb.block_table(), qkv.view());
    std::vector<float> out(pb.q.size()), ref(pb.q.size());
    QuantizedDecodeArgs a;
    a.heads = {hq, hkv, d, 0.0f};
    a.cache = &qkv.view();
    a.block_table = pb.block_table();
    a.q = pb.q.data();
    a.out = out.data();
    a.kv_split_tokens = std::uniform_int_distribution<int>(0, 64)(rng);
    decode_attention_quantized(a);
    a.out = ref.data();
    prism::baselines::reference_decode_attention_quantized(a);
    INFO("trial " << trial << ": d=" << d << " hq=" << hq << " hkv=" << hkv
                  << " bits=" << (bits == KvQuantBits::int8 ? 8 : 4) << " first len=" << lens[0]);
    CHECK(relative_l2_error(out, ref) < 2e-5);
  }
}

TEST_CASE("Quest attend over random page selections matches the oracle on the same pages") {
  std::mt19937 rng(8080);
  for (int trial = 0; trial < 12; ++trial) {
    const int d = pick(rng, kHeadDims), ratio = pick(rng, kRatios);
    const int hkv = 2, hq = hkv * ratio;
    std::vector<std::int32_t> lens{random_length(rng, 250), random_length(rng, 250)};
    RandomPagedBatch pb(lens, hq, hkv, d, 16, 900u + trial);
    QuestBounds bounds(pb.layout);
    quest_update_bounds(pb.storage->const_view(), pb.block_table(), bounds);
    std::vector<float> scores;
    const AttentionHeads heads{hq, hkv, d, 0.0f};
    quest_page_scores(heads, pb.q.data(), 0, pb.block_table(), bounds, scores);
    PageSelection sel;
    const int top = std::uniform_int_distribution<int>(1, 8)(rng);
    quest_select_pages(scores, pb.block_table(), hkv, top, sel);
    std::vector<float> out(pb.q.size()), ref(pb.q.size());
    DecodeAttentionArgs a;
    a.heads = heads;
    a.cache = pb.storage->const_view();
    a.block_table = pb.block_table();
    a.q = pb.q.data();
    a.out = out.data();
    decode_attention_pages(a, sel);
    a.out = ref.data();
    prism::baselines::reference_decode_attention_pages(a, sel);
    INFO("trial " << trial << ": d=" << d << " hq=" << hq << " lens=" << lens[0] << "," << lens[1]
                  << " top=" << top);
    CHECK(relative_l2_error(out, ref) < 2e-5);
  }
}

TEST_CASE("Block-sparse attention computes exactly its random pattern at random shapes") {
  std::mt19937 rng(1212);
  for (int trial = 0; trial < 12; ++trial) {
    const int d = pick(rng, kHeadDims), ratio = pick(rng, kRatios);
    const int hkv = 1, hq = ratio;
    const int q_len = random_length(rng, 200);
    const int kv_len = q_len + (trial % 3 == 0 ? random_length(rng, 60) : 0);
    const auto q = random_vector(static_cast<std::size_t>(q_len) * hq * d, 40u + trial, -2, 2);
    const auto k = random_vector(static_cast<std::size_t>(kv_len) * hkv * d, 50u + trial, -2, 2);
    const auto v = random_vector(static_cast<std::size_t>(kv_len) * hkv * d, 60u + trial);
    const SparsePrefillInput in{{hq, hkv, d, 0.0f}, q_len, kv_len, q.data(), k.data(), v.data()};
    BlockSparsePattern p;
    if (trial % 2 == 0) {
      FlexPrefillConfig cfg;
      cfg.block_size = trial % 4 == 0 ? 32 : 64;
      cfg.gamma = std::uniform_real_distribution<float>(0.2f, 0.95f)(rng);
      cfg.min_blocks = 1;
      BlockScores scores;
      flexprefill_estimate(in, cfg, scores);
      flexprefill_select(scores, cfg, q_len, kv_len, p);
    } else {
      VerticalSlashConfig cfg;
      cfg.block_size = 64;
      cfg.last_q = std::min(q_len, 16);
      cfg.vertical_size = std::uniform_int_distribution<int>(1, 40)(rng);
      cfg.slash_size = std::uniform_int_distribution<int>(1, 40)(rng);
      cfg.local_diagonals = std::uniform_int_distribution<int>(1, 64)(rng);
      VerticalSlashEstimate est;
      vertical_slash_estimate(in, cfg, est);
      vertical_slash_select(est, cfg, q_len, p);
    }
    std::vector<float> out(q.size(), 3.0f), ref(q.size(), -3.0f);
    block_sparse_attention(in, p, out.data());
    prism::baselines::reference_block_sparse_attention(in, p, ref.data());
    INFO("trial " << trial << ": d=" << d << " hq=" << hq << " q_len=" << q_len
                  << " kv_len=" << kv_len << " density=" << p.density(q_len, kv_len));
    CHECK(relative_l2_error(out, ref) < 2e-5);
  }
}

TEST_CASE("Sink and window with a window covering the whole context equal dense attention") {
  // The streaming method at full budget: every key is inside sink + window.
  SECTION("prefill") {
    const int len = 131, hq = 8, hkv = 2, d = 64;
    const auto q = random_vector(static_cast<std::size_t>(len) * hq * d, 71, -2, 2);
    const auto k = random_vector(static_cast<std::size_t>(len) * hkv * d, 72, -2, 2);
    const auto v = random_vector(static_cast<std::size_t>(len) * hkv * d, 73);
    std::vector<std::int32_t> starts{0, len};
    std::vector<float> windowed(q.size()), dense(q.size());
    PrefillAttentionArgs a;
    a.heads = {hq, hkv, d, 0.0f};
    a.batch = {starts, starts};
    a.q = q.data();
    a.k = k.data();
    a.v = v.data();
    a.out = dense.data();
    prefill_attention(a);
    a.mask.sink_tokens = 4;
    a.mask.window_tokens = len;
    a.out = windowed.data();
    prefill_attention(a);
    CHECK(relative_l2_error(windowed, dense) < 1e-6);
  }
  SECTION("decode") {
    RandomPagedBatch pb({77, 200}, 8, 2, 128, 16, 74);
    std::vector<float> windowed(pb.q.size()), dense(pb.q.size());
    DecodeAttentionArgs a;
    a.heads = {8, 2, 128, 0.0f};
    a.cache = pb.storage->const_view();
    a.block_table = pb.block_table();
    a.q = pb.q.data();
    a.out = dense.data();
    decode_attention(a);
    a.mask.sink_tokens = 4;
    a.mask.window_tokens = 196;  // sink + window == the longest context
    a.out = windowed.data();
    decode_attention(a);
    CHECK(relative_l2_error(windowed, dense) < 1e-6);
  }
}
