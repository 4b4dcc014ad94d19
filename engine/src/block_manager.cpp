#include "prism/engine/block_manager.h"

#include <algorithm>
#include <stdexcept>

#include <fmt/core.h>

namespace prism::engine {
namespace {

std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

}  // namespace

BlockManager::BlockManager(int num_blocks, int block_size, bool prefix_caching)
    : block_size_(block_size), prefix_caching_(prefix_caching) {
  if (num_blocks <= 0 || block_size <= 0)
    throw std::invalid_argument("BlockManager: num_blocks and block_size must be positive");
  blocks_.resize(static_cast<std::size_t>(num_blocks));
  free_.reserve(static_cast<std::size_t>(num_blocks));
  // Hand out low ids first.
  for (int b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

std::uint64_t BlockManager::hash_block(std::uint64_t parent, std::span<const std::int32_t> tokens) {
  std::uint64_t h = mix(parent ^ 0x9e3779b97f4a7c15ull);
  for (const auto t : tokens)
    h = mix(h ^
            (static_cast<std::uint64_t>(static_cast<std::uint32_t>(t)) + 0x632be59bd9b4e019ull));
  return h;
}

std::vector<int> BlockManager::acquire_cached_prefix(std::span<const std::int32_t> tokens,
                                                     int max_blocks) {
  std::vector<int> out;
  if (!prefix_caching_) return out;
  std::uint64_t parent = kRootHash;
  const int full = static_cast<int>(tokens.size()) / block_size_;
  for (int i = 0; i < std::min(full, max_blocks); ++i) {
    const auto chunk = tokens.subspan(static_cast<std::size_t>(i) * block_size_,
                                      static_cast<std::size_t>(block_size_));
    const std::uint64_t h = hash_block(parent, chunk);
    const auto it = cached_.find(h);
    if (it == cached_.end()) break;
    Block& b = blocks_[static_cast<std::size_t>(it->second)];
    if (!std::equal(chunk.begin(), chunk.end(), b.tokens.begin(), b.tokens.end())) break;
    if (b.in_lru) {
      lru_.erase(b.lru_pos);
      b.in_lru = false;
    }
    if (b.refs++ == 0) ++used_;
    out.push_back(it->second);
    parent = h;
  }
  return out;
}

int BlockManager::allocate() {
  int id = -1;
  if (!free_.empty()) {
    id = free_.back();
    free_.pop_back();
  } else if (!lru_.empty()) {
    id = lru_.front();
    lru_.pop_front();
    Block& b = blocks_[static_cast<std::size_t>(id)];
    b.in_lru = false;
    unregister(id);
    ++evictions_;
  } else {
    return -1;
  }
  Block& b = blocks_[static_cast<std::size_t>(id)];
  b.refs = 1;
  ++used_;
  return id;
}

void BlockManager::release(int block) {
  if (block < 0 || block >= num_blocks())
    throw std::invalid_argument(fmt::format("BlockManager: release of unknown block {}", block));
  Block& b = blocks_[static_cast<std::size_t>(block)];
  if (b.refs <= 0)
    throw std::logic_error(
        fmt::format("BlockManager: block {} released more often than taken", block));
  if (--b.refs > 0) return;
  --used_;
  if (b.registered) {
    lru_.push_back(block);
    b.lru_pos = std::prev(lru_.end());
    b.in_lru = true;
  } else {
    free_.push_back(block);
  }
}

std::uint64_t BlockManager::register_full_block(int block, std::uint64_t parent,
                                                std::span<const std::int32_t> tokens) {
  const std::uint64_t h = hash_block(parent, tokens);
  if (!prefix_caching_) return h;
  Block& b = blocks_[static_cast<std::size_t>(block)];
  if (b.registered) return b.hash;
  if (cached_.count(h) != 0) return h;  // same content computed twice; keep the first
  b.registered = true;
  b.hash = h;
  b.tokens.assign(tokens.begin(), tokens.end());
  cached_.emplace(h, block);
  return h;
}

void BlockManager::unregister(int block) {
  Block& b = blocks_[static_cast<std::size_t>(block)];
  if (!b.registered) return;
  const auto it = cached_.find(b.hash);
  if (it != cached_.end() && it->second == block) cached_.erase(it);
  b.registered = false;
  b.tokens.clear();
}

}  // namespace prism::engine
