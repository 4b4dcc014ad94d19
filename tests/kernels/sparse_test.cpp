#include <catch2/catch.hpp>

#include <vector>

#include "prism/baselines/oracles.h"
#include "prism/kernels/sparse.h"
#include "test_util.h"

using namespace prism::kernels;
using prism::baselines::relative_l2_error;
using prism::kernels::testing::random_vector;
using prism::kernels::testing::RandomPagedBatch;

namespace {

struct SparseData {
  int q_len, kv_len, hq, hkv, d;
  std::vector<float> q, k, v;
  SparsePrefillInput input() const {
    return SparsePrefillInput{{hq, hkv, d, 0.0f}, q_len, kv_len, q.data(), k.data(), v.data()};
  }
};

SparseData make_data(int q_len, int kv_len, int hq, int hkv, int d, std::uint32_t seed) {
  SparseData s{q_len, kv_len, hq, hkv, d, {}, {}, {}};
  s.q = random_vector(static_cast<std::size_t>(q_len) * hq * d, seed, -2, 2);
  s.k = random_vector(static_cast<std::size_t>(kv_len) * hkv * d, seed + 1, -2, 2);
  s.v = random_vector(static_cast<std::size_t>(kv_len) * hkv * d, seed + 2);
  return s;
}

std::vector<float> dense(const SparseData& s) {
  std::vector<float> out(s.q.size());
  std::vector<std::int32_t> qs{0, s.q_len}, ks{0, s.kv_len};
  PrefillAttentionArgs a;
  a.heads = {s.hq, s.hkv, s.d, 0.0f};
  a.batch = {qs, ks};
  a.q = s.q.data();
  a.k = s.k.data();
  a.v = s.v.data();
  a.out = out.data();
  prism::baselines::reference_prefill_attention(a);
  return out;
}

}  // namespace

TEST_CASE("Block top-k with gamma 1 selects every causal tile and equals dense attention") {
  for (int ratio : {1, 4}) {
    const auto s = make_data(150, 150, 2 * ratio, 2, 64, 100u + ratio);
    FlexPrefillConfig cfg;
    cfg.block_size = 32;
    cfg.gamma = 1.0f;
    BlockScores scores;
    flexprefill_estimate(s.input(), cfg, scores);
    BlockSparsePattern p;
    flexprefill_select(scores, cfg, s.q_len, s.kv_len, p);
    CHECK(p.density(s.q_len, s.kv_len) == Approx(1.0));
    std::vector<float> out(s.q.size());
    block_sparse_attention(s.input(), p, out.data());
    CHECK(relative_l2_error(out, dense(s)) < 2e-5);
  }
}

TEST_CASE(
    "Block top-k keeps the sink and diagonal tiles and matches the oracle on its own pattern") {
  const auto s = make_data(200, 260, 4, 1, 128, 110);
  FlexPrefillConfig cfg;
  cfg.block_size = 64;
  cfg.gamma = 0.3f;
  cfg.min_blocks = 1;
  BlockScores scores;
  flexprefill_estimate(s.input(), cfg, scores);
  // Each query tile's pooled probabilities sum to one over its causal tiles.
  for (int qb = 0; qb < scores.num_q_blocks; ++qb) {
    double sum = 0.0;
    for (int kb = 0; kb < scores.num_k_blocks; ++kb)
      sum += scores.probs[qb * scores.num_k_blocks + kb];
    CHECK(sum == Approx(1.0).epsilon(1e-5));
  }
  BlockSparsePattern p;
  flexprefill_select(scores, cfg, s.q_len, s.kv_len, p);
  for (int qb = 0; qb < p.num_q_blocks; ++qb) {
    std::vector<int> listed(p.key_blocks.begin() + p.block_offsets[qb],
                            p.key_blocks.begin() + p.block_offsets[qb + 1]);
    CHECK(listed.front() == 0);
    const int diag = (60 + std::min(200, (qb + 1) * 64) - 1) / 64;
    CHECK(listed.back() == diag);
  }
  const double density = p.density(s.q_len, s.kv_len);
  CHECK(density > 0.0);
  CHECK(density < 1.0);
  std::vector<float> out(s.q.size()), ref(s.q.size());
  block_sparse_attention(s.input(), p, out.data());
  prism::baselines::reference_block_sparse_attention(s.input(), p, ref.data());
  CHECK(relative_l2_error(out, ref) < 2e-5);
}

TEST_CASE("Vertical-slash with budgets covering every key equals dense attention") {
  const auto s = make_data(130, 130, 8, 2, 64, 120);
  VerticalSlashConfig cfg;
  cfg.last_q = 16;
  cfg.vertical_size = 130;
  cfg.slash_size = 130;
  cfg.block_size = 32;
  VerticalSlashEstimate est;
  vertical_slash_estimate(s.input(), cfg, est);
  BlockSparsePattern p;
  vertical_slash_select(est, cfg, s.q_len, p);
  CHECK(p.density(s.q_len, s.kv_len) == Approx(1.0));
  std::vector<float> out(s.q.size());
  block_sparse_attention(s.input(), p, out.data());
  CHECK(relative_l2_error(out, dense(s)) < 2e-5);
}

TEST_CASE(
    "Vertical-slash estimate spreads each estimated query's unit mass over columns and diagonals") {
  const auto s = make_data(40, 100, 2, 1, 64, 130);
  VerticalSlashConfig cfg;
  cfg.last_q = 8;
  VerticalSlashEstimate est;
  vertical_slash_estimate(s.input(), cfg, est);
  double vsum = 0.0, ssum = 0.0;
  for (int j = 0; j < 100; ++j) {
    vsum += est.vertical[j];
    ssum += est.slash[j];
  }
  CHECK(vsum == Approx(8.0).epsilon(1e-4));
  CHECK(ssum == Approx(8.0).epsilon(1e-4));
}

TEST_CASE("Vertical-slash with small budgets computes exactly its pattern, columns outside tiles") {
  const auto s = make_data(300, 300, 4, 2, 64, 140);
  VerticalSlashConfig cfg;
  cfg.last_q = 32;
  cfg.vertical_size = 20;
  cfg.slash_size = 10;
  cfg.block_size = 64;
  cfg.local_diagonals = 4;
  VerticalSlashEstimate est;
  vertical_slash_estimate(s.input(), cfg, est);
  BlockSparsePattern p;
  vertical_slash_select(est, cfg, s.q_len, p);
  // No column falls inside a listed tile of its query tile.
  for (std::size_t idx = 0; idx + 1 < p.block_offsets.size(); ++idx)
    for (int c = p.column_offsets[idx]; c < p.column_offsets[idx + 1]; ++c)
      for (int x = p.block_offsets[idx]; x < p.block_offsets[idx + 1]; ++x)
        CHECK(p.columns[c] / 64 != p.key_blocks[x]);
  CHECK(p.density(s.q_len, s.kv_len) < 1.0);
  std::vector<float> out(s.q.size()), ref(s.q.size());
  block_sparse_attention(s.input(), p, out.data());
  prism::baselines::reference_block_sparse_attention(s.input(), p, ref.data());
  CHECK(relative_l2_error(out, ref) < 2e-5);
}

TEST_CASE("Block-sparse attention rejects a pattern built for another shape") {
  const auto s = make_data(64, 64, 2, 1, 64, 150);
  BlockSparsePattern p;
  p.block_size = 64;
  p.num_heads = 2;
  p.num_q_blocks = 3;
  std::vector<float> out(s.q.size());
  CHECK_THROWS_WITH(block_sparse_attention(s.input(), p, out.data()),
                    Catch::Contains("num_q_blocks"));
  p.num_q_blocks = 1;
  p.block_offsets = {0, 1, 2};
  p.key_blocks = {0, 5};
  CHECK_THROWS_WITH(block_sparse_attention(s.input(), p, out.data()),
                    Catch::Contains("past kv_len"));
}

TEST_CASE("Quest bounds hold every key of a page, partly filled pages included") {
  RandomPagedBatch pb({37, 16}, 4, 2, 64, 16, 160);
  QuestBounds bounds(pb.layout);
  quest_update_bounds(pb.storage->const_view(), pb.block_table(), bounds);
  const auto cache = pb.storage->const_view();
  for (int b = 0; b < 2; ++b)
    for (int t = 0; t < pb.lens[b]; ++t) {
      const int page = pb.table[b * pb.max_blocks + t / 16];
      for (int h = 0; h < 2; ++h) {
        const float* k = cache.k + pb.layout.offset(page, h, t % 16);
        const std::size_t base = (static_cast<std::size_t>(page) * 2 + h) * 64;
        for (int c = 0; c < 64; ++c) {
          CHECK(k[c] >= bounds.key_min[base + c]);
          CHECK(k[c] <= bounds.key_max[base + c]);
        }
      }
    }
}

TEST_CASE("Quest page scores are upper bounds of the true query-key scores") {
  RandomPagedBatch pb({70}, 1, 1, 64, 16, 170);
  QuestBounds bounds(pb.layout);
  quest_update_bounds(pb.storage->const_view(), pb.block_table(), bounds);
  std::vector<float> scores;
  quest_page_scores({1, 1, 64, 0.0f}, pb.q.data(), 0, pb.block_table(), bounds, scores);
  REQUIRE(scores.size() == static_cast<std::size_t>(pb.max_blocks));
  const auto cache = pb.storage->const_view();
  for (int t = 0; t < 70; ++t) {
    const float* k = cache.k + pb.layout.offset(pb.table[t / 16], 0, t % 16);
    float dot = 0.0f;
    for (int c = 0; c < 64; ++c) dot += pb.q[c] * k[c];
    CHECK(dot <= scores[t / 16] + 1e-4f);
  }
}

TEST_CASE("Quest with a full page budget equals dense decode") {
  for (int ratio : {1, 4, 8}) {
    RandomPagedBatch pb({100, 1, 33}, 2 * ratio, 2, 128, 16, 180u + ratio);
    const int hq = 2 * ratio;
    QuestBounds bounds(pb.layout);
    quest_update_bounds(pb.storage->const_view(), pb.block_table(), bounds);
    std::vector<float> scores;
    quest_page_scores({hq, 2, 128, 0.0f}, pb.q.data(), 0, pb.block_table(), bounds, scores);
    PageSelection sel;
    quest_select_pages(scores, pb.block_table(), 2, 1000, sel);
    DecodeAttentionArgs a;
    a.heads = {hq, 2, 128, 0.0f};
    a.cache = pb.storage->const_view();
    a.block_table = pb.block_table();
    a.q = pb.q.data();
    std::vector<float> out(pb.q.size()), ref(pb.q.size());
    a.out = out.data();
    decode_attention_pages(a, sel);
    a.out = ref.data();
    prism::baselines::reference_decode_attention(a);
    CHECK(relative_l2_error(out, ref) < 2e-5);
  }
}

TEST_CASE("Quest top-k keeps the newest page and the highest-bound pages") {
  RandomPagedBatch pb({160}, 4, 1, 64, 16, 190);
  QuestBounds bounds(pb.layout);
  quest_update_bounds(pb.storage->const_view(), pb.block_table(), bounds);
  std::vector<float> scores;
  quest_page_scores({4, 1, 64, 0.0f}, pb.q.data(), 0, pb.block_table(), bounds, scores);
  PageSelection sel;
  quest_select_pages(scores, pb.block_table(), 1, 3, sel);
  REQUIRE(sel.count(0, 0) == 3);
  const std::int32_t* pages = sel.list(0, 0);
  CHECK(pages[2] == 9);  // the last of 10 pages
  // The two others are the best two of pages 0..8.
  std::vector<float> rest(scores.begin(), scores.begin() + 9);
  std::sort(rest.rbegin(), rest.rend());
  CHECK(std::min(scores[pages[0]], scores[pages[1]]) >= rest[1]);
  DecodeAttentionArgs a;
  a.heads = {4, 1, 64, 0.0f};
  a.cache = pb.storage->const_view();
  a.block_table = pb.block_table();
  a.q = pb.q.data();
  std::vector<float> out(pb.q.size()), ref(pb.q.size());
  a.out = out.data();
  decode_attention_pages(a, sel);
  a.out = ref.data();
  prism::baselines::reference_decode_attention_pages(a, sel);
  CHECK(relative_l2_error(out, ref) < 2e-5);
  CHECK_THROWS_AS(quest_select_pages(scores, pb.block_table(), 1, 0, sel), std::invalid_argument);
}
