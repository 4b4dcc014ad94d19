// Internal: the hot loops of the CPU kernels, compiled once per instruction
// set (isa_avx512.cpp, isa_avx2.cpp, isa_generic.cpp all include
// simd_body.inc) and picked at run time from what the CPU supports.
#pragma once

#include <cstdint>

namespace prism::kernels::cpu {

inline constexpr int kTileRows = 64;  // query rows per prefill tile
inline constexpr int kTileCols = 64;  // keys per prefill tile
inline constexpr float kLog2e = 1.4426950408889634f;
inline constexpr float kLn2 = 0.6931471805599453f;

// One (query tile, key tile) step of FlashAttention's online softmax; scores
// live in the log2 domain (q is prescaled by scale * log2(e)).
struct PrefillTile {
  const float* q = nullptr;  // [round_up(rows, 4)][d] packed, prescaled, padded rows zero
  int rows = 0;
  const float* k = nullptr;  // first key of the tile; rows kv_stride apart
  const float* v = nullptr;
  std::int64_t kv_stride = 0;
  int cols = 0;  // keys in the tile (<= kTileCols)
  int key0 = 0;  // absolute index of the tile's first key
  int d = 0;
  bool masked = false;           // when false every (row, key) pair is visible
  const int* hi = nullptr;       // per row: last visible key (absolute), -1 = none
  const int* lo = nullptr;       // per row: first visible key of the window
  int sink = 0;                  // keys below sink are visible even if below lo
  const int* columns = nullptr;  // when set: the tile's keys are these absolute indices (gathered)
  float* m = nullptr;            // [rows] running max (log2 domain)
  float* l = nullptr;            // [rows] running sum
  float* o = nullptr;            // [rows][d] unnormalised output
  float* scratch = nullptr;      // kTileRows * kTileCols + d * kTileCols floats
};

// A contiguous run of tokens of one KV head (part of a page): n rows of d floats.
struct KvSegment {
  const float* k = nullptr;
  const float* v = nullptr;
  int n = 0;
};

struct QuantSegment {
  const std::uint8_t* k_codes = nullptr;  // n rows of row_bytes
  const std::uint8_t* v_codes = nullptr;
  const float* k_scale = nullptr;  // [d] per channel (the page's)
  const float* k_min = nullptr;
  const float* v_scale = nullptr;  // [n] per token
  const float* v_min = nullptr;
  int n = 0;
};

// Decode over a list of segments for a GQA group of g query heads.
// Outputs the unnormalised state: m[g] (log2 domain), l[g], o[g][d].
struct DecodeWork {
  const float* q = nullptr;  // [g][d] prescaled by scale * log2(e)
  int g = 0;
  int d = 0;
  int bits = 8;  // quantized only
  float* m = nullptr;
  float* l = nullptr;
  float* o = nullptr;
  float* scratch = nullptr;  // >= g * 64 + 2 * 64 * d floats
  bool init = true;          // false: continue from the state in m, l, o
  // fp32 decode: segments read side by side, `streams` at a time (RowCursor).
  int streams = 1;
};

struct IsaTable {
  const char* name;
  int width;  // floats per vector
  void (*prefill_tile)(const PrefillTile&);
  void (*decode_segments)(const DecodeWork&, const KvSegment*, int);
  void (*decode_quant_segments)(const DecodeWork&, const QuantSegment*, int);
  // y[i] = dot(a, b) over n floats
  float (*dot)(const float*, const float*, int);
  // rms norm of one row
  void (*rms_norm_row)(const float* x, const float* w, float* out, int n, float eps);
  void (*swiglu_row)(const float* gate, const float* up, float* out, int n);
};

const IsaTable& isa();

namespace avx512 {
const IsaTable& table();
}
namespace avx2 {
const IsaTable& table();
}
namespace generic {
const IsaTable& table();
}
namespace scalar {
const IsaTable& table();
}

// The table to use for vectors of head_dim floats: the chosen ISA when its
// width divides head_dim, else the widest that does.
const IsaTable& isa_for(int head_dim);

}  // namespace prism::kernels::cpu
