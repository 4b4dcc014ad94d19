#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "prism/baselines/oracles.h"
#include "prism/kernels/kv_quant.h"
#include "test_util.h"

using namespace prism::kernels;
using prism::baselines::relative_l2_error;
using prism::kernels::testing::RandomPagedBatch;

TEST_CASE(
    "KIVI quantization reconstructs every element within half a step, keys per channel and values "
    "per token") {
  for (auto bits : {KvQuantBits::int8, KvQuantBits::int4}) {
    RandomPagedBatch pb({37}, 2, 2, 64, 16, 300);
    QuantizedKvStorage qs(pb.layout, bits);
    quantize_kv_pages(pb.storage->const_view(), pb.block_table(), qs.view());
    PagedKvStorage back(pb.layout);
    const auto src = pb.storage->const_view();
    for (int p = 0; p < 3; ++p) {
      const int page = pb.table[p];
      const int valid = std::min(16, 37 - p * 16);
      dequantize_kv_page(qs.view(), page, valid, back.view());
      for (int h = 0; h < 2; ++h) {
        const auto ref = prism::baselines::reference_quantize_page_head(
            src.k + pb.layout.offset(page, h, 0), src.v + pb.layout.offset(page, h, 0), valid, 64,
            bits == KvQuantBits::int8 ? 8 : 4);
        const float* k = back.const_view().k + pb.layout.offset(page, h, 0);
        const float* v = back.const_view().v + pb.layout.offset(page, h, 0);
        const float* k0 = src.k + pb.layout.offset(page, h, 0);
        const float* v0 = src.v + pb.layout.offset(page, h, 0);
        for (int t = 0; t < valid; ++t)
          for (int c = 0; c < 64; ++c) {
            // The stated bound: |x - x_hat| <= step / 2 (plus float rounding).
            CHECK(std::abs(k[t * 64 + c] - k0[t * 64 + c]) <= ref.k_step[c] * 0.5f + 1e-6f);
            CHECK(std::abs(v[t * 64 + c] - v0[t * 64 + c]) <= ref.v_step[t] * 0.5f + 1e-6f);
            CHECK(k[t * 64 + c] == Approx(ref.k[t * 64 + c]).margin(1e-5));
            CHECK(v[t * 64 + c] == Approx(ref.v[t * 64 + c]).margin(1e-5));
          }
      }
    }
  }
}

TEST_CASE(
    "Quantized decode with fused dequantization matches attention over the dequantized cache") {
  for (auto bits : {KvQuantBits::int8, KvQuantBits::int4}) {
    for (int d : {64, 128}) {
      for (int ratio : {1, 4, 8}) {
        const int hkv = 2, hq = hkv * ratio;
        RandomPagedBatch pb({1, 50, 16}, hq, hkv, d, 16, 310u + d + ratio);
        QuantizedKvStorage qs(pb.layout, bits);
        quantize_kv_pages(pb.storage->const_view(), pb.block_table(), qs.view());
        QuantizedDecodeArgs a;
        a.heads = {hq, hkv, d, 0.0f};
        a.cache = &qs.view();
        a.block_table = pb.block_table();
        a.q = pb.q.data();
        std::vector<float> out(pb.q.size()), ref(pb.q.size());
        a.out = out.data();
        a.kv_split_tokens = 16;
        decode_attention_quantized(a);
        a.out = ref.data();
        prism::baselines::reference_decode_attention_quantized(a);
        INFO("bits=" << static_cast<int>(bits) << " d=" << d << " ratio=" << ratio);
        CHECK(relative_l2_error(out, ref) < 2e-5);
      }
    }
  }
}

TEST_CASE("Quantized decode stays within the stated error of full-precision decode") {
  // Stated bounds for uniform random K/V in [-1, 1]: relative L2 error of the
  // attention output below 2% for int8 and 25% for int4.
  RandomPagedBatch pb({200}, 8, 2, 128, 16, 320);
  DecodeAttentionArgs full;
  full.heads = {8, 2, 128, 0.0f};
  full.cache = pb.storage->const_view();
  full.block_table = pb.block_table();
  full.q = pb.q.data();
  std::vector<float> exact(pb.q.size());
  full.out = exact.data();
  decode_attention(full);
  for (auto [bits, bound] :
       {std::pair{KvQuantBits::int8, 0.02}, std::pair{KvQuantBits::int4, 0.25}}) {
    QuantizedKvStorage qs(pb.layout, bits);
    quantize_kv_pages(pb.storage->const_view(), pb.block_table(), qs.view());
    QuantizedDecodeArgs a;
    a.heads = full.heads;
    a.cache = &qs.view();
    a.block_table = pb.block_table();
    a.q = pb.q.data();
    std::vector<float> out(pb.q.size());
    a.out = out.data();
    decode_attention_quantized(a);
    const double err = relative_l2_error(out, exact);
    INFO("bits=" << static_cast<int>(bits) << " error=" << err);
    CHECK(err < bound);
    CHECK(err > 0.0);
  }
}

TEST_CASE("Quantized storage reports its streamed bytes and rejects odd head dims for int4") {
  PagedKvLayout l{4, 16, 2, 128};
  QuantizedKvStorage q8(l, KvQuantBits::int8), q4(l, KvQuantBits::int4);
  CHECK(q8.view().bytes_per_token_head() < 2.0 * 128 * 4 / 3);
  CHECK(q4.view().bytes_per_token_head() < q8.view().bytes_per_token_head());
  CHECK_THROWS_AS(QuantizedKvStorage(PagedKvLayout{4, 16, 2, 7}, KvQuantBits::int4),
                  std::invalid_argument);
}
