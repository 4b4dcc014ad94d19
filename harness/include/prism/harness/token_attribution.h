// Which output tokens arrived in which chunk. A streamed chunk may carry
// several tokens (servers batch under load, speculative decoding emits runs).
// Chunks counted exactly (per-chunk usage, token ids, a tokenizer) keep their
// counts; the rest share what the server's final usage says remains,
// proportionally to their text, each getting at least one token while there
// are enough to go round.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace prism::harness {

struct ChunkArrival {
  std::int64_t t_ns = 0;
  std::uint32_t tokens = 1;
  bool exact = false;
  std::uint32_t text_bytes = 0;
};

// Per-chunk token counts. Without a reported total the chunks' own counts
// stand; with one, the counts sum to it.
std::vector<std::uint32_t> attribute_tokens(std::span<const ChunkArrival> chunks,
                                            std::optional<std::uint32_t> reported_total);

// Arrival time of every output token, seconds relative to `origin_ns`: a chunk
// of k tokens contributes k entries at its arrival time.
std::vector<double> token_times(std::span<const ChunkArrival> chunks,
                                std::span<const std::uint32_t> counts, std::int64_t origin_ns);

}  // namespace prism::harness
