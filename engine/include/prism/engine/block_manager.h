// Allocation of KV pages (blocks of block_size tokens) with reference counts,
// and the prefix cache: a full block whose tokens have been computed is
// registered under a hash of (parent block hash, its tokens); a later
// sequence with the same prefix takes a reference on the cached blocks
// instead of recomputing them. Unreferenced cached blocks stay in an LRU list
// and are evicted (least recently released first) only when a fresh block is
// needed and the free list is empty.
#pragma once

#include <cstdint>
#include <list>
#include <span>
#include <unordered_map>
#include <vector>

namespace prism::engine {

class BlockManager {
 public:
  static constexpr std::uint64_t kRootHash = 0x7072697366636163ull;  // parent of block 0

  BlockManager(int num_blocks, int block_size, bool prefix_caching);

  int num_blocks() const { return static_cast<int>(blocks_.size()); }
  int block_size() const { return block_size_; }
  bool prefix_caching() const { return prefix_caching_; }
  // Blocks an allocate() can return now: free ones plus evictable cached ones.
  int available_blocks() const { return static_cast<int>(free_.size() + lru_.size()); }
  // Blocks referenced by at least one sequence.
  int used_blocks() const { return used_; }
  // Unreferenced blocks that still hold a cached prefix.
  int cached_idle_blocks() const { return static_cast<int>(lru_.size()); }

  static std::uint64_t hash_block(std::uint64_t parent, std::span<const std::int32_t> tokens);

  // Longest run of cached full blocks that starts `tokens`, at most
  // max_blocks; takes a reference on each. Empty without prefix caching.
  std::vector<int> acquire_cached_prefix(std::span<const std::int32_t> tokens, int max_blocks);

  // A fresh block with one reference, evicting the LRU cached block when the
  // free list is empty; -1 when every block is referenced.
  int allocate();

  // Drops one reference; at zero the block becomes evictable (if registered)
  // or free.
  void release(int block);

  // Records that `block` holds the full block of `tokens` whose parent hash is
  // `parent`; returns the block's hash. A no-op (still returning the hash)
  // without prefix caching or when another block already holds that content.
  std::uint64_t register_full_block(int block, std::uint64_t parent,
                                    std::span<const std::int32_t> tokens);

  // Prefix-cache statistics: prompt tokens looked up and tokens found cached.
  std::uint64_t queried_tokens() const { return queried_tokens_; }
  std::uint64_t hit_tokens() const { return hit_tokens_; }
  void count_query(std::uint64_t queried, std::uint64_t hit) {
    queried_tokens_ += queried;
    hit_tokens_ += hit;
  }
  std::uint64_t evictions() const { return evictions_; }

 private:
  struct Block {
    int refs = 0;
    bool registered = false;
    std::uint64_t hash = 0;
    std::vector<std::int32_t> tokens;  // content of a registered block, to rule out collisions
    std::list<int>::iterator lru_pos;
    bool in_lru = false;
  };
  void unregister(int block);

  int block_size_;
  bool prefix_caching_;
  std::vector<Block> blocks_;
  std::vector<int> free_;
  std::list<int> lru_;  // front = least recently released
  std::unordered_map<std::uint64_t, int> cached_;
  int used_ = 0;
  std::uint64_t queried_tokens_ = 0, hit_tokens_ = 0, evictions_ = 0;
};

}  // namespace prism::engine
