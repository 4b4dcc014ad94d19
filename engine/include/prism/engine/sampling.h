// Sampling: greedy (temperature 0) or temperature + nucleus (top-p) with a
// seed. The random draw for output token i of a request depends only on
// (seed, i), so batching, chunking and preemption never change the output.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace prism::engine {

struct SamplingParams {
  float temperature = 0.0f;           // 0: greedy
  float top_p = 1.0f;                 // (0, 1]
  std::optional<std::uint64_t> seed;  // unset: the engine derives one from the request id
  int max_tokens = 16;
  bool ignore_eos = false;
  std::vector<std::int32_t> stop_token_ids;  // besides the model's eos
};

// Picks a token from `logits` (only the first `allowed_vocab` entries are
// eligible: padded vocabularies have rows no tokenizer can decode).
std::int32_t sample_token(std::span<const float> logits, int allowed_vocab, float temperature,
                          float top_p, std::uint64_t seed, std::uint64_t draw_index,
                          std::vector<std::pair<float, std::int32_t>>& scratch);

}  // namespace prism::engine
