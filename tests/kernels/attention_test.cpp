#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <utility>
#include <vector>

#include "prism/baselines/oracles.h"
#include "prism/kernels/attention.h"
#include "prism/kernels/threading.h"
#include "test_util.h"

using namespace prism::kernels;
using prism::baselines::relative_l2_error;
using prism::kernels::testing::random_vector;
using prism::kernels::testing::RandomPagedBatch;

namespace {

struct PrefillCase {
  std::vector<std::int32_t> q_lens, kv_lens;
  int hq, hkv, d;
  AttentionMask mask{};
  std::vector<std::int32_t> offsets{};
};

// Runs kernel and oracle on the same random inputs; returns the relative L2 error.
double prefill_error(const PrefillCase& c, std::uint32_t seed, double* lse_error = nullptr) {
  std::vector<std::int32_t> qs{0}, ks{0};
  for (std::size_t b = 0; b < c.q_lens.size(); ++b) {
    qs.push_back(qs.back() + c.q_lens[b]);
    ks.push_back(ks.back() + c.kv_lens[b]);
  }
  const auto q = random_vector(static_cast<std::size_t>(qs.back()) * c.hq * c.d, seed, -2, 2);
  const auto k = random_vector(static_cast<std::size_t>(ks.back()) * c.hkv * c.d, seed + 1, -2, 2);
  const auto v = random_vector(static_cast<std::size_t>(ks.back()) * c.hkv * c.d, seed + 2);
  std::vector<float> out(q.size(), 7.0f), ref(q.size(), -7.0f);
  std::vector<float> lse(static_cast<std::size_t>(qs.back()) * c.hq), ref_lse(lse.size());
  PrefillAttentionArgs a;
  a.heads = {c.hq, c.hkv, c.d, 0.0f};
  a.mask = c.mask;
  a.batch = {qs, ks, c.offsets};
  a.q = q.data();
  a.k = k.data();
  a.v = v.data();
  a.out = out.data();
  a.lse = lse.data();
  prefill_attention(a);
  a.out = ref.data();
  a.lse = ref_lse.data();
  prism::baselines::reference_prefill_attention(a);
  if (lse_error) {
    double worst = 0.0;
    for (std::size_t i = 0; i < lse.size(); ++i) {
      if (std::isinf(ref_lse[i])) {
        worst = std::max(worst, std::isinf(lse[i]) ? 0.0 : 1.0);
        continue;
      }
      worst = std::max(worst, std::abs(static_cast<double>(lse[i]) - ref_lse[i]));
    }
    *lse_error = worst;
  }
  return relative_l2_error(out, ref);
}

}  // namespace

TEST_CASE("Dense prefill attention matches the fp64 oracle across head dims and GQA ratios") {
  for (int d : {64, 128}) {
    for (int ratio : {1, 4, 8}) {
      const int hkv = ratio == 8 ? 1 : 2;
      PrefillCase c{{77}, {77}, hkv * ratio, hkv, d};
      double lse_err = 0.0;
      INFO("d=" << d << " ratio=" << ratio);
      CHECK(prefill_error(c, 11u + d + ratio, &lse_err) < 2e-5);
      CHECK(lse_err < 1e-4);
    }
  }
}

TEST_CASE("Dense prefill handles length one, ragged batches and lengths off the tile size") {
  PrefillCase c{{1, 65, 130, 3}, {1, 65, 130, 3}, 4, 2, 64};
  CHECK(prefill_error(c, 3) < 2e-5);
  PrefillCase single{{1}, {1}, 2, 1, 128};
  CHECK(prefill_error(single, 4) < 2e-5);
}

TEST_CASE("A prefill chunk attends to cached keys through the implicit position offset") {
  // 40 new queries after 100 cached tokens: kv_len 140, queries at 100..139.
  PrefillCase c{{40, 5}, {140, 69}, 8, 2, 64};
  CHECK(prefill_error(c, 5) < 2e-5);
}

TEST_CASE("Explicit query position offsets move the causal diagonal") {
  // Offsets smaller than kv_len - q_len: later keys are invisible to early queries.
  PrefillCase c{{30, 17}, {90, 64}, 4, 4, 64, {}, {10, 0}};
  CHECK(prefill_error(c, 6) < 2e-5);
}

TEST_CASE("Non-causal prefill sees every key") {
  PrefillCase c{{33}, {70}, 4, 1, 64};
  c.mask.causal = false;
  CHECK(prefill_error(c, 8) < 2e-5);
}

TEST_CASE(
    "Sink and window masks in prefill match the oracle, including windows smaller than a tile") {
  for (int window : {1, 17, 100}) {
    PrefillCase c{{200}, {200}, 4, 2, 64};
    c.mask.sink_tokens = 4;
    c.mask.window_tokens = window;
    INFO("window=" << window);
    CHECK(prefill_error(c, 9u + window) < 2e-5);
  }
}

TEST_CASE(
    "Prefill with a head dim that is not a multiple of the vector width falls back correctly") {
  PrefillCase c{{20}, {20}, 2, 1, 36};
  CHECK(prefill_error(c, 10) < 2e-5);
  PrefillCase odd{{9}, {9}, 1, 1, 7};
  CHECK(prefill_error(odd, 12) < 2e-5);
}

TEST_CASE("Prefill results do not depend on the thread count") {
  PrefillCase c{{150}, {150}, 4, 2, 64};
  const double multi = prefill_error(c, 13);
  const int before = kernel_threads();
  set_kernel_threads(1);
  const double single = prefill_error(c, 13);
  set_kernel_threads(before);
  CHECK(multi == Approx(single).margin(1e-12));
}

TEST_CASE("Prefill rejects inconsistent arguments with a message naming the field") {
  std::vector<float> buf(64 * 4);
  std::vector<std::int32_t> qs{0, 2}, ks{0, 2};
  PrefillAttentionArgs a;
  a.heads = {3, 2, 64, 0.0f};
  a.batch = {qs, ks};
  a.q = a.k = a.v = buf.data();
  a.out = buf.data();
  CHECK_THROWS_WITH(prefill_attention(a), Catch::Contains("num_kv_heads"));
  a.heads = {2, 2, 64, 0.0f};
  std::vector<std::int32_t> bad{0, 3, 2};
  std::vector<std::int32_t> bad_k{0, 3, 4};
  a.batch = {bad, bad_k};
  CHECK_THROWS_WITH(prefill_attention(a), Catch::Contains("non-decreasing"));
  std::vector<std::int32_t> more_q{0, 4}, fewer_k{0, 2};
  a.batch = {more_q, fewer_k};
  CHECK_THROWS_WITH(prefill_attention(a), Catch::Contains("q_position_offsets"));
  a.batch = {qs, ks};
  a.out = nullptr;
  CHECK_THROWS_AS(prefill_attention(a), std::invalid_argument);
}

namespace {

double decode_error(RandomPagedBatch& pb, int hq, int hkv, int d, AttentionMask mask, int split) {
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
  return relative_l2_error(out, ref);
}

}  // namespace

TEST_CASE("Paged decode attention matches the oracle with partly filled pages and GQA") {
  for (int d : {64, 128}) {
    for (int ratio : {1, 4, 8}) {
      const int hkv = 2, hq = hkv * ratio;
      RandomPagedBatch pb({1, 16, 17, 150}, hq, hkv, d, 16, 21u + d + ratio);
      INFO("d=" << d << " ratio=" << ratio);
      CHECK(decode_error(pb, hq, hkv, d, {}, 0) < 2e-5);
    }
  }
}

TEST_CASE("Split-KV decode gives the same result for every partition size") {
  RandomPagedBatch pb({300, 33}, 8, 2, 64, 16, 31);
  for (int split : {1, 16, 48, 100, 4096}) {
    INFO("split=" << split);
    CHECK(decode_error(pb, 8, 2, 64, {}, split) < 2e-5);
  }
}

TEST_CASE("Decode with block sizes other than 16") {
  for (int bs : {1, 7, 32}) {
    RandomPagedBatch pb({50, 3}, 4, 1, 64, bs, 41u + bs);
    INFO("block size " << bs);
    CHECK(decode_error(pb, 4, 1, 64, {}, 0) < 2e-5);
  }
}

TEST_CASE("Sink and window decode attend to exactly the first and the newest tokens") {
  RandomPagedBatch pb({300, 20, 0}, 4, 2, 128, 16, 51);
  AttentionMask m;
  m.sink_tokens = 4;
  m.window_tokens = 64;
  CHECK(decode_error(pb, 4, 2, 128, m, 32) < 2e-5);
}

TEST_CASE(
    "Decode reading several pages side by side matches the oracle at long contexts, with steps "
    "that end in partial pages and windows that start mid-page") {
  // Partitions of 5 and 7 pages leave steps of fewer pages than are read side
  // by side; 4099 tokens end in a partial page; block size 32 puts more than a
  // chunk's rows into one step; block size 7 cuts pages off the 16-token grid.
  for (int bs : {7, 16, 32}) {
    RandomPagedBatch pb({4099, 1, 2048}, 8, 2, 128, bs, 81u + bs);
    for (int split : {0, 5 * bs, 7 * bs}) {
      INFO("block size " << bs << " split " << split);
      CHECK(decode_error(pb, 8, 2, 128, {}, split) < 2e-5);
      AttentionMask m;
      m.sink_tokens = 3;
      m.window_tokens = 1000;
      CHECK(decode_error(pb, 8, 2, 128, m, split) < 2e-5);
    }
  }
}

TEST_CASE("The paged cache's arrays start zeroed, 64-byte aligned, 2 MiB aligned from 2 MiB up") {
  const auto aligned = [](const float* p, std::uintptr_t a) {
    return reinterpret_cast<std::uintptr_t>(p) % a == 0;
  };
  PagedKvStorage small(PagedKvLayout{3, 7, 1, 5});  // 105 floats: not a multiple of 64 bytes
  CHECK(aligned(small.const_view().k, 64));
  CHECK(aligned(small.const_view().v, 64));
  for (std::size_t i = 0; i < small.layout().total_floats(); ++i)
    REQUIRE((small.const_view().k[i] == 0.0f && small.const_view().v[i] == 0.0f));
  PagedKvStorage large(PagedKvLayout{300, 16, 2, 64});  // 2.3 MiB per array
  CHECK(aligned(large.const_view().k, std::uintptr_t{2} << 20));
  CHECK(aligned(large.const_view().v, std::uintptr_t{2} << 20));
  CHECK(large.const_view().k[large.layout().total_floats() - 1] == 0.0f);
  // Move keeps the arrays (the engine holds one storage per layer in a vector).
  const float* k = large.const_view().k;
  PagedKvStorage moved(std::move(large));
  CHECK(moved.const_view().k == k);
  PagedKvStorage empty(PagedKvLayout{0, 16, 1, 64});
  CHECK(empty.layout().total_floats() == 0);
}

TEST_CASE("A large buffer is aligned as promised, and a moved-from one is empty") {
  LargeBuffer none;
  CHECK(none.data() == nullptr);
  CHECK(none.bytes() == 0);
  LargeBuffer small(100);
  CHECK(reinterpret_cast<std::uintptr_t>(small.data()) % 64 == 0);
  CHECK_FALSE(small.huge_pages_requested());
  for (std::size_t i = 0; i < small.bytes(); ++i) REQUIRE(small.as<unsigned char>()[i] == 0);
  LargeBuffer big((std::size_t{2} << 20) + 8, /*zero=*/false);
  CHECK(reinterpret_cast<std::uintptr_t>(big.data()) % (std::uintptr_t{2} << 20) == 0);
  // Where the kernel has transparent huge pages at all, the request must have been made.
  if (std::ifstream("/sys/kernel/mm/transparent_hugepage/enabled").good())
    CHECK(big.huge_pages_requested());
  LargeBuffer zeroed((std::size_t{3} << 20) + 12);
  CHECK(zeroed.as<unsigned char>()[zeroed.bytes() - 1] == 0);
  CHECK(zeroed.as<unsigned char>()[std::size_t{2} << 20] == 0);
  CHECK_THROWS_AS(LargeBuffer(std::numeric_limits<std::size_t>::max() - 16), std::bad_alloc);
  big.as<double>()[0] = 1.5;  // writable end to end, though not zeroed
  big.as<unsigned char>()[big.bytes() - 1] = 7;
  void* const p = big.data();
  LargeBuffer moved(std::move(big));
  CHECK(moved.data() == p);
  CHECK(moved.bytes() == (std::size_t{2} << 20) + 8);
  CHECK(moved.as<double>()[0] == 1.5);
  CHECK(big.data() ==
        nullptr);  // NOLINT(bugprone-use-after-move): the moved-from state is the point
  CHECK(big.bytes() == 0);
  LargeBuffer assigned;
  assigned = std::move(moved);
  CHECK(assigned.data() == p);
  CHECK(moved.bytes() == 0);  // NOLINT(bugprone-use-after-move)
  KvArray kv(1000);
  KvArray kv_moved(std::move(kv));
  CHECK(kv_moved.size() == 1000);
  CHECK(kv.size() == 0);  // NOLINT(bugprone-use-after-move): KvArray's size follows its storage
  CHECK(kv.data() == nullptr);
}

TEST_CASE("Decode of an empty sequence writes zeros") {
  RandomPagedBatch pb({0}, 2, 1, 64, 16, 61);
  std::vector<float> out(pb.q.size(), 3.0f);
  DecodeAttentionArgs a;
  a.heads = {2, 1, 64, 0.0f};
  a.cache = pb.storage->const_view();
  a.block_table = pb.block_table();
  a.q = pb.q.data();
  a.out = out.data();
  decode_attention(a);
  for (float x : out) CHECK(x == 0.0f);
}

TEST_CASE("Decode rejects a block table that points outside the cache") {
  RandomPagedBatch pb({20}, 2, 1, 64, 16, 71);
  pb.table[1] = pb.layout.num_blocks;
  std::vector<float> out(pb.q.size());
  DecodeAttentionArgs a;
  a.heads = {2, 1, 64, 0.0f};
  a.cache = pb.storage->const_view();
  a.block_table = pb.block_table();
  a.q = pb.q.data();
  a.out = out.data();
  CHECK_THROWS_WITH(decode_attention(a), Catch::Contains("out of range"));
}

TEST_CASE("Partial attention results merge by log-sum-exp into the full result") {
  // Two halves of the keys, computed separately with their lse, merge to the whole.
  const int d = 64, n = 90;
  const auto q = random_vector(d, 81), k = random_vector(n * d, 82), v = random_vector(n * d, 83);
  std::vector<std::int32_t> qs{0, 1}, k_all{0, n}, k_a{0, 40}, k_b{0, n - 40};
  std::vector<float> full(d), parts(2 * d), lse(2), full_lse(1), merged(d);
  PrefillAttentionArgs a;
  a.heads = {1, 1, d, 0.0f};
  a.mask.causal = false;
  a.q = q.data();
  a.batch = {qs, k_all};
  a.k = k.data();
  a.v = v.data();
  a.out = full.data();
  a.lse = full_lse.data();
  prefill_attention(a);
  a.batch = {qs, k_a};
  a.out = parts.data();
  a.lse = lse.data();
  prefill_attention(a);
  a.batch = {qs, k_b};
  a.k = k.data() + 40 * d;
  a.v = v.data() + 40 * d;
  a.out = parts.data() + d;
  a.lse = lse.data() + 1;
  prefill_attention(a);
  const float merged_lse = merge_attention_partials(parts.data(), lse.data(), 2, d, merged.data());
  CHECK(relative_l2_error(merged, full) < 1e-5);
  CHECK(merged_lse == Approx(full_lse[0]).epsilon(1e-5));
}
