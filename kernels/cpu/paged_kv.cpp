#include "prism/kernels/paged_kv.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <string>
#include <utility>

#include "validate.h"

namespace prism::kernels {
namespace {

void validate_layout(const PagedKvLayout& l, const char* fn) {
  const std::string f(fn);
  detail::require(l.num_blocks >= 0, f + ": layout.num_blocks must be >= 0");
  detail::require(l.block_size > 0, f + ": layout.block_size must be > 0");
  detail::require(l.num_kv_heads > 0, f + ": layout.num_kv_heads must be > 0");
  detail::require(l.head_dim > 0, f + ": layout.head_dim must be > 0");
}

}  // namespace

LargeBuffer::LargeBuffer(std::size_t bytes, bool zero) : bytes_(bytes) {
  if (bytes == 0) return;
  constexpr std::size_t kHuge = std::size_t{2} << 20;
  const std::size_t align = bytes >= kHuge ? kHuge : 64;
  if (bytes > std::numeric_limits<std::size_t>::max() - align) throw std::bad_alloc();
  const std::size_t rounded = (bytes + align - 1) / align * align;  // aligned_alloc's rule
  void* p = std::aligned_alloc(align, rounded);
  if (p == nullptr) throw std::bad_alloc();
  // Before the first touch, so that the first writes fault in huge pages.
  huge_ = align == kHuge && madvise(p, rounded, MADV_HUGEPAGE) == 0;
  if (zero) std::memset(p, 0, bytes);
  data_.reset(p);
}

LargeBuffer::LargeBuffer(LargeBuffer&& other) noexcept
    : data_(std::move(other.data_)),
      bytes_(std::exchange(other.bytes_, 0)),
      huge_(std::exchange(other.huge_, false)) {}

LargeBuffer& LargeBuffer::operator=(LargeBuffer&& other) noexcept {
  data_ = std::move(other.data_);
  bytes_ = std::exchange(other.bytes_, 0);
  huge_ = std::exchange(other.huge_, false);
  return *this;
}

void LargeBuffer::Free::operator()(void* p) const {
  std::free(p);
}

void validate_block_table(const PagedKvLayout& layout, const BlockTable& table) {
  validate_layout(layout, "block table");
  detail::require(table.max_blocks_per_seq >= 0, "block table: max_blocks_per_seq must be >= 0");
  const std::size_t batch = table.context_lens.size();
  detail::require(table.blocks.size() >= batch * static_cast<std::size_t>(table.max_blocks_per_seq),
                  "block table: blocks has fewer than batch * max_blocks_per_seq entries");
  for (std::size_t b = 0; b < batch; ++b) {
    const int len = table.context_lens[b];
    const std::string seq = " (sequence " + std::to_string(b) + ")";
    detail::require(len >= 0, "block table: context_lens must be >= 0" + seq);
    const int pages = (len + layout.block_size - 1) / layout.block_size;
    detail::require(pages <= table.max_blocks_per_seq,
                    "block table: context_lens needs " + std::to_string(pages) +
                        " pages, more than max_blocks_per_seq" + seq);
    const std::int32_t* row = table.row(static_cast<int>(b));
    for (int p = 0; p < pages; ++p)
      detail::require(row[p] >= 0 && row[p] < layout.num_blocks,
                      "block table: page id " + std::to_string(row[p]) + " out of range" + seq);
  }
}

void write_kv_to_pages(const PagedKvCache& cache, const float* k, const float* v,
                       std::span<const std::int32_t> slot_mapping, std::int64_t kv_row_stride) {
  const auto& l = cache.layout;
  validate_layout(l, "write_kv_to_pages");
  if (slot_mapping.empty()) return;
  detail::require(cache.k && cache.v && k && v, "write_kv_to_pages: cache and inputs must be set");
  const std::int64_t row = std::int64_t{l.num_kv_heads} * l.head_dim;
  const std::int64_t stride = kv_row_stride ? kv_row_stride : row;
  detail::require(stride >= row, "write_kv_to_pages: kv_row_stride must cover all KV heads");
  const std::int64_t capacity = std::int64_t{l.num_blocks} * l.block_size;
  for (std::size_t t = 0; t < slot_mapping.size(); ++t) {
    const std::int32_t slot = slot_mapping[t];
    if (slot < 0) continue;
    detail::require(slot < capacity, "write_kv_to_pages: slot_mapping[" + std::to_string(t) +
                                         "] = " + std::to_string(slot) + " is past the cache");
    const int block = slot / l.block_size, s = slot % l.block_size;
    for (int h = 0; h < l.num_kv_heads; ++h) {
      const std::size_t off = l.offset(block, h, s);
      std::memcpy(cache.k + off,
                  k + static_cast<std::int64_t>(t) * stride + std::int64_t{h} * l.head_dim,
                  sizeof(float) * l.head_dim);
      std::memcpy(cache.v + off,
                  v + static_cast<std::int64_t>(t) * stride + std::int64_t{h} * l.head_dim,
                  sizeof(float) * l.head_dim);
    }
  }
}

void gather_kv_from_pages(const ConstPagedKvCache& cache, const std::int32_t* block_table_row,
                          int num_tokens, float* k, float* v) {
  const auto& l = cache.layout;
  validate_layout(l, "gather_kv_from_pages");
  detail::require(num_tokens >= 0, "gather_kv_from_pages: num_tokens must be >= 0");
  detail::require(num_tokens == 0 || (block_table_row && k && v && cache.k && cache.v),
                  "gather_kv_from_pages: pointers must be set");
  const std::int64_t row = std::int64_t{l.num_kv_heads} * l.head_dim;
  for (int t = 0; t < num_tokens; ++t) {
    const int block = block_table_row[t / l.block_size];
    detail::require(block >= 0 && block < l.num_blocks,
                    "gather_kv_from_pages: page id out of range");
    for (int h = 0; h < l.num_kv_heads; ++h) {
      const std::size_t off = l.offset(block, h, t % l.block_size);
      std::memcpy(k + t * row + std::int64_t{h} * l.head_dim, cache.k + off,
                  sizeof(float) * l.head_dim);
      std::memcpy(v + t * row + std::int64_t{h} * l.head_dim, cache.v + off,
                  sizeof(float) * l.head_dim);
    }
  }
}

}  // namespace prism::kernels
