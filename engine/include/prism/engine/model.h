// The Llama-architecture forward pass over a flattened batch: every sequence
// contributes the tokens it computes this step (a whole prompt, a prefill
// chunk, or one decode token), attending to the KV already in its pages.
// Decode entries (one token after a cached prefix) go through paged decode
// attention; prefill entries through varlen causal attention with a position
// offset, so prefill chunks and decodes share one step (Sarathi-Serve).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "prism/engine/model_config.h"
#include "prism/engine/stages.h"
#include "prism/engine/weights.h"
#include "prism/kernels/paged_kv.h"

namespace prism::engine {

// The paged KV cache of all layers: the same block id addresses the same
// tokens in every layer.
class KvCache {
 public:
  KvCache(const ModelConfig& config, int num_blocks, int block_size = 16);
  int num_blocks() const { return num_blocks_; }
  int block_size() const { return block_size_; }
  kernels::PagedKvCache layer(int l) { return layers_[static_cast<std::size_t>(l)].view(); }
  kernels::ConstPagedKvCache const_layer(int l) const {
    return layers_[static_cast<std::size_t>(l)].const_view();
  }

 private:
  int num_blocks_;
  int block_size_;
  std::vector<kernels::PagedKvStorage> layers_;
};

struct ForwardEntry {
  std::span<const std::int32_t> tokens;       // tokens computed this step (>= 1)
  int start_pos = 0;                          // tokens of the sequence already in the cache
  std::span<const std::int32_t> block_table;  // pages covering start_pos + tokens.size()
  bool want_logits = true;                    // logits of the last token
};

class Model {
 public:
  Model(ModelConfig config, ModelWeights weights);
  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }

  // Runs the entries as one batch, writes their KV into `cache`, and fills
  // `logits` with [entries wanting logits][vocab] rows, in entry order.
  // Not thread-safe (one engine thread owns a model). Throws
  // std::invalid_argument for token ids outside the vocabulary, positions past
  // the context, or block tables too short.
  void forward(std::span<const ForwardEntry> entries, KvCache& cache, std::vector<float>& logits,
               StageClock* clock = nullptr, std::uint64_t step = 0);

 private:
  ModelConfig config_;
  ModelWeights weights_;
  // Workspaces, grown on demand and reused across steps.
  std::vector<float> residual_, normed_, qkv_, attn_, proj_, gate_up_, act_, kbuf_, vbuf_, last_;
  std::vector<std::int32_t> positions_, slots_, decode_table_, decode_lens_, q_starts_, kv_starts_,
      q_offsets_;
};

}  // namespace prism::engine
