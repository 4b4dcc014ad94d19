// Helpers shared by the kernel tests: seeded random tensors and paged caches.
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "prism/kernels/paged_kv.h"

namespace prism::kernels::testing {

inline std::vector<float> random_vector(std::size_t n, std::uint32_t seed, float lo = -1.0f,
                                        float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// A paged cache holding `lens[b]` tokens per sequence in shuffled pages, filled
// from random contiguous K/V so a test can compare against the same data.
struct RandomPagedBatch {
  PagedKvLayout layout;
  std::vector<std::int32_t> lens;
  int max_blocks = 0;
  std::vector<std::int32_t> table;
  std::unique_ptr<PagedKvStorage> storage;
  std::vector<float> q;

  RandomPagedBatch(std::vector<std::int32_t> lens_, int hq, int hkv, int d, int block_size,
                   std::uint32_t seed)
      : lens(std::move(lens_)) {
    int pages = 0;
    for (int len : lens) {
      const int p = (len + block_size - 1) / block_size;
      max_blocks = std::max(max_blocks, p);
      pages += p;
    }
    max_blocks = std::max(max_blocks, 1);
    layout = PagedKvLayout{pages + 3, block_size, hkv, d};  // spare pages stay unused
    storage = std::make_unique<PagedKvStorage>(layout);
    std::vector<std::int32_t> ids(layout.num_blocks);
    std::iota(ids.begin(), ids.end(), 0);
    std::mt19937 rng(seed);
    std::shuffle(ids.begin(), ids.end(), rng);
    table.assign(lens.size() * max_blocks, -1);
    int next = 0;
    for (std::size_t b = 0; b < lens.size(); ++b) {
      const int p = (lens[b] + block_size - 1) / block_size;
      for (int i = 0; i < p; ++i) table[b * max_blocks + i] = ids[next++];
      const auto k = random_vector(static_cast<std::size_t>(lens[b]) * hkv * d, seed + 101 * b);
      const auto v = random_vector(static_cast<std::size_t>(lens[b]) * hkv * d, seed + 211 * b);
      std::vector<std::int32_t> slots(lens[b]);
      for (int t = 0; t < lens[b]; ++t)
        slots[t] = table[b * max_blocks + t / block_size] * block_size + t % block_size;
      write_kv_to_pages(storage->view(), k.data(), v.data(), slots);
    }
    q = random_vector(lens.size() * static_cast<std::size_t>(hq) * d, seed + 7);
  }

  BlockTable block_table() const { return BlockTable{table, max_blocks, lens}; }
};

}  // namespace prism::kernels::testing
