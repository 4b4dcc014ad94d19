// Internal: runs one tile of query rows of one head through the ISA's
// prefill_tile over any set of keys (contiguous ranges or gathered columns).
// Shared by dense prefill and the block-sparse attend stage.
#pragma once

#include <cstdint>
#include <vector>

#include "isa.h"

namespace prism::kernels::cpu {

struct QueryTileSpec {
  const float* q = nullptr;  // first query row of the tile, head already offset
  std::int64_t q_stride = 0;
  int rows = 0;  // <= kTileRows
  int d = 0;
  float scale = 0.0f;      // softmax scale (natural)
  int first_position = 0;  // position of the tile's first query
  bool causal = true;
  int kv_len = 0;
  int sink = 0;              // with window: keys below sink stay visible
  int window = 0;            // 0: no window
  const float* k = nullptr;  // key 0 of this KV head; rows kv_stride apart
  const float* v = nullptr;
  std::int64_t kv_stride = 0;
};

class QueryTile {
 public:
  explicit QueryTile(const IsaTable& isa) : isa_(isa) {}

  void begin(const QueryTileSpec& spec);
  // Keys [j0, j1), in chunks of kTileCols; chunks no row can see are skipped.
  void keys(int j0, int j1);
  // Gathered keys (ascending absolute indices).
  void columns(const std::int32_t* cols, int n);
  // Normalised output rows (stride out_stride) and optional lse (stride lse_stride).
  void finish(float* out, std::int64_t out_stride, float* lse, std::int64_t lse_stride);

  const IsaTable& isa_table() const { return isa_; }
  int max_visible_key() const { return max_hi_; }
  int min_window_start() const { return min_lo_; }

 private:
  void run(int key0, int cols, const int* columns, bool masked);

  const IsaTable& isa_;
  QueryTileSpec spec_;
  std::vector<float> qt_, o_, scratch_;
  alignas(64) float m_[kTileRows];
  alignas(64) float l_[kTileRows];
  alignas(64) int hi_[kTileRows];
  alignas(64) int lo_[kTileRows];
  int max_hi_ = -1, min_hi_ = -1, min_lo_ = 0, max_lo_ = 0, sink_ = 0;
};

}  // namespace prism::kernels::cpu
