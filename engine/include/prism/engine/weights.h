// The weights of a Llama-architecture decoder in fp32, laid out for the
// kernels: linear weights [out_features][in_features] (PyTorch order), the
// q/k/v projections fused row-wise into one [q + k + v][hidden] matrix and
// gate/up into one [2 * intermediate][hidden] matrix, so each block runs
// three GEMMs instead of seven.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "prism/engine/model_config.h"

namespace prism::engine {

struct LayerWeights {
  std::vector<float> attn_norm;  // [hidden]
  std::vector<float> wqkv;       // [q_dim + 2 kv_dim][hidden]
  std::vector<float> bqkv;       // [q_dim + 2 kv_dim], empty without attention_bias
  std::vector<float> wo;         // [hidden][q_dim]
  std::vector<float> mlp_norm;   // [hidden]
  std::vector<float> w_gate_up;  // [2 intermediate][hidden], gate rows first
  std::vector<float> w_down;     // [hidden][intermediate]
};

struct ModelWeights {
  std::vector<float> embed;  // [vocab][hidden]
  std::vector<LayerWeights> layers;
  std::vector<float> final_norm;  // [hidden]
  std::vector<float> lm_head;     // [vocab][hidden]; empty when tied to embed

  const float* lm_head_data() const { return lm_head.empty() ? embed.data() : lm_head.data(); }
};

// Seeded random weights: the same config and seed give the same bytes on
// every machine. Linear weights are uniform with variance 1 / in_features,
// the embedding has standard deviation 0.02, norms are 1.
ModelWeights random_weights(const ModelConfig& config, std::uint64_t seed);

// Loads Hugging Face Llama / Qwen2 tensor names (model.layers.N.self_attn.q_proj.weight, ...)
// from a safetensors file, converting to fp32 and checking every shape.
ModelWeights load_safetensors_weights(const ModelConfig& config, const std::string& path);

// Throws std::invalid_argument when a tensor's size does not match the config.
void validate_weights(const ModelConfig& config, const ModelWeights& weights);

// Random weights for built-in names, the safetensors file otherwise.
ModelWeights load_weights_for(const ModelConfig& config, const std::string& name_or_path);

}  // namespace prism::engine
