// Internal: argument checks shared by the kernels. They throw
// std::invalid_argument with a message naming the function and the field.
#pragma once

#include <cmath>
#include <stdexcept>
#include <string>

#include "prism/kernels/attention.h"

namespace prism::kernels::detail {

inline void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

inline void validate_heads(const AttentionHeads& h, const char* fn) {
  const std::string f(fn);
  require(h.num_q_heads > 0, f + ": heads.num_q_heads must be > 0");
  require(h.num_kv_heads > 0, f + ": heads.num_kv_heads must be > 0");
  require(h.num_q_heads % h.num_kv_heads == 0, f + ": heads.num_q_heads (" +
                                                   std::to_string(h.num_q_heads) +
                                                   ") must be a multiple of heads.num_kv_heads (" +
                                                   std::to_string(h.num_kv_heads) + ")");
  require(h.head_dim > 0, f + ": heads.head_dim must be > 0");
  require(h.scale >= 0.0f && std::isfinite(h.scale), f + ": heads.scale must be finite and >= 0");
}

inline float softmax_scale(const AttentionHeads& h) {
  return h.scale > 0.0f ? h.scale : 1.0f / std::sqrt(static_cast<float>(h.head_dim));
}

}  // namespace prism::kernels::detail
