// The paged KV cache: fixed-size pages ("blocks") of tokens, addressed per
// sequence through a block table (vLLM's PagedAttention).
//
// Page layout, chosen so that one KV head of one page is a contiguous
// block_size x head_dim tile (what decode streams through):
//   k[block][kv_head][slot][d]   at ((block * num_kv_heads + kv_head) * block_size + slot) *
//   head_dim + d
// and the same for v. Token t of a sequence lives in page
// block_table.row(b)[t / block_size], slot t % block_size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "prism/kernels/large_buffer.h"

namespace prism::kernels {

struct PagedKvLayout {
  int num_blocks = 0;
  int block_size = 16;
  int num_kv_heads = 0;
  int head_dim = 0;

  std::size_t floats_per_block() const {
    return static_cast<std::size_t>(block_size) * num_kv_heads * head_dim;
  }
  std::size_t total_floats() const { return floats_per_block() * num_blocks; }
  std::size_t offset(int block, int kv_head, int slot) const {
    return ((static_cast<std::size_t>(block) * num_kv_heads + kv_head) * block_size + slot) *
           head_dim;
  }
};

struct PagedKvCache {
  PagedKvLayout layout;
  float* k = nullptr;  // layout.total_floats()
  float* v = nullptr;
};

struct ConstPagedKvCache {
  PagedKvLayout layout;
  const float* k = nullptr;
  const float* v = nullptr;

  ConstPagedKvCache() = default;
  ConstPagedKvCache(PagedKvLayout l, const float* k_, const float* v_) : layout(l), k(k_), v(v_) {}
  ConstPagedKvCache(const PagedKvCache& c) : layout(c.layout), k(c.k), v(c.v) {}  // NOLINT
};

// A zero-initialised float array for a KV cache, on a LargeBuffer (huge pages
// from 2 MiB up: decode at 16K measured 2-21% faster, kernels/README.md).
// Move-only; a moved-from array is empty.
class KvArray {
 public:
  KvArray() = default;
  explicit KvArray(std::size_t floats) : buffer_(floats * sizeof(float)) {}
  float* data() { return buffer_.as<float>(); }
  const float* data() const { return buffer_.as<float>(); }
  std::size_t size() const { return buffer_.bytes() / sizeof(float); }

 private:
  LargeBuffer buffer_;
};

// Owns the two arrays of an fp32 paged cache (zero-initialised). Move-only.
class PagedKvStorage {
 public:
  explicit PagedKvStorage(const PagedKvLayout& layout)
      : k_(layout.total_floats()), v_(layout.total_floats()), layout_(layout) {}
  PagedKvCache view() { return PagedKvCache{layout_, k_.data(), v_.data()}; }
  ConstPagedKvCache const_view() const { return ConstPagedKvCache(layout_, k_.data(), v_.data()); }
  const PagedKvLayout& layout() const { return layout_; }

 private:
  KvArray k_, v_;
  PagedKvLayout layout_;
};

// block_table: [batch][max_blocks_per_seq] page ids (entries past a sequence's
// last page are ignored); context_lens: [batch] tokens per sequence.
struct BlockTable {
  std::span<const std::int32_t> blocks;
  int max_blocks_per_seq = 0;
  std::span<const std::int32_t> context_lens;

  int batch() const { return static_cast<int>(context_lens.size()); }
  const std::int32_t* row(int b) const {
    return blocks.data() + static_cast<std::size_t>(b) * max_blocks_per_seq;
  }
};

// Writes token rows into the cache (vLLM's reshape_and_cache):
// k, v [num_tokens][num_kv_heads][head_dim] with row stride kv_row_stride
// (0 = packed); slot_mapping[t] = page * block_size + slot, or -1 to skip.
void write_kv_to_pages(const PagedKvCache& cache, const float* k, const float* v,
                       std::span<const std::int32_t> slot_mapping, std::int64_t kv_row_stride = 0);

// Copies the first num_tokens tokens of one sequence out of the cache into
// contiguous k, v [num_tokens][num_kv_heads][head_dim] (packed): how a prefill
// chunk gets its cached prefix for prefill_attention.
void gather_kv_from_pages(const ConstPagedKvCache& cache, const std::int32_t* block_table_row,
                          int num_tokens, float* k, float* v);

// Validates a cache and block table together; throws std::invalid_argument.
void validate_block_table(const PagedKvLayout& layout, const BlockTable& table);

}  // namespace prism::kernels
