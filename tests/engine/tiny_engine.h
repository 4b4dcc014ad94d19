// Test helpers: the tiny model with the byte tokenizer, built in milliseconds.
#pragma once

#include <memory>
#include <vector>

#include "prism/engine/engine.h"
#include "prism/engine/weights.h"
#include "prism/workloads/tokenizer.h"

namespace prism::engine::test {

inline std::shared_ptr<Model> tiny_model() {
  static const ModelConfig config = load_model_config("tiny");
  static const ModelWeights weights = random_weights(config, config.seed);
  return std::make_shared<Model>(config, weights);
}

inline std::shared_ptr<const workloads::Tokenizer> byte_tokenizer() {
  static const std::shared_ptr<const workloads::Tokenizer> tok = workloads::make_byte_tokenizer();
  return tok;
}

inline std::unique_ptr<Engine> tiny_engine(EngineOptions options = {}) {
  if (options.kv_cache_blocks == 0) options.kv_cache_blocks = 256;
  return std::make_unique<Engine>(tiny_model(), byte_tokenizer(), options);
}

// Deterministic pseudo-random prompt of n tokens in [0, 256).
inline std::vector<std::int32_t> prompt_tokens(int n, std::uint32_t salt = 1) {
  std::vector<std::int32_t> out;
  std::uint32_t x = 2463534242u ^ (salt * 0x9e3779b9u);
  for (int i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    out.push_back(static_cast<std::int32_t>(x % 256));
  }
  return out;
}

// Runs requests to completion on the calling thread; returns each request's outputs.
struct Collected {
  std::vector<std::int32_t> tokens;
  std::string text;
  RequestOutput last;
  int callbacks = 0;
};

}  // namespace prism::engine::test
