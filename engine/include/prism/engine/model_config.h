// The shape of a Llama-architecture decoder, read from JSON. The keys are
// those of a Hugging Face config.json (hidden_size, num_key_value_heads, ...),
// so a real model's config.json loads as is; Prism adds "name", "tokenizer"
// and "seed". Built-in configs (engine/configs/*.json) are compiled in.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace prism::engine {

struct ModelConfig {
  std::string name;
  std::string description;
  // "bytes", "cl100k_base", "o200k_base", "llama3", or a path to a tokenizer.json.
  std::string tokenizer = "bytes";
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;     // hidden_size / num_heads unless given
  int max_context = 0;  // max_position_embeddings: prompt + output tokens
  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  bool tie_word_embeddings = true;
  bool attention_bias = false;  // q/k/v projections carry a bias (Qwen2)
  int bos_token_id = -1;
  int eos_token_id = -1;
  std::uint64_t seed = 0;  // for random weights

  int q_dim() const { return num_heads * head_dim; }
  int kv_dim() const { return num_kv_heads * head_dim; }
  int qkv_dim() const { return q_dim() + 2 * kv_dim(); }
  std::int64_t parameter_count() const;
  // fp32 bytes streamed per decoded token: every weight except the embedding
  // table (of which one row is read), the lm head counted once.
  std::int64_t weight_bytes_read_per_token() const;
  // fp32 KV bytes per token, all layers, K and V.
  std::int64_t kv_bytes_per_token() const;
  // Multiply-adds per token of the linear layers (excluding attention scores).
  std::int64_t linear_flops_per_token() const;
};

// Parses and validates a config; `origin` names the source in error messages.
// Throws std::invalid_argument naming the file and field.
ModelConfig model_config_from_json(const nlohmann::json& j, std::string_view origin);
nlohmann::json model_config_to_json(const ModelConfig& config);

// Names of the compiled-in configs: tiny, small, llama-3.2-1b, ...
std::vector<std::string> builtin_model_names();

// A built-in name, a .json config file, a directory holding config.json (and
// model.safetensors), or a .safetensors file with config.json beside it.
ModelConfig load_model_config(const std::string& name_or_path);

// Where the weights for name_or_path live, or "" for built-in names (random).
std::string weights_path_for(const std::string& name_or_path);

}  // namespace prism::engine
