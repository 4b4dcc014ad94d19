#include "prism/engine/weights.h"

#include <cmath>
#include <stdexcept>

#include <fmt/core.h>

#include "prism/engine/safetensors.h"
#include "prism/kernels/threading.h"

namespace prism::engine {
namespace {

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Uniform on [-a, a] with a = sqrt(3) * stddev; element i depends only on
// (stream, i), so filling in parallel is deterministic.
std::vector<float> random_tensor(std::size_t n, double stddev, std::uint64_t stream) {
  std::vector<float> out(n);
  const double a = std::sqrt(3.0) * stddev;
  constexpr std::int64_t kChunk = 1 << 16;
  const std::int64_t chunks = static_cast<std::int64_t>((n + kChunk - 1) / kChunk);
  kernels::parallel_for(chunks, [&](std::int64_t c) {
    const std::size_t begin = static_cast<std::size_t>(c) * kChunk;
    const std::size_t end = std::min(n, begin + kChunk);
    for (std::size_t i = begin; i < end; ++i) {
      const std::uint64_t r = splitmix64(stream ^ splitmix64(i));
      const double u = static_cast<double>(r >> 11) * (1.0 / 9007199254740992.0);  // [0, 1)
      out[i] = static_cast<float>((2.0 * u - 1.0) * a);
    }
  });
  return out;
}

void check_size(const std::vector<float>& v, std::size_t expected, const std::string& what) {
  if (v.size() != expected)
    throw std::invalid_argument(
        fmt::format("weights: {} has {} values, the config needs {}", what, v.size(), expected));
}

void append(std::vector<float>& dst, const std::vector<float>& src) {
  dst.insert(dst.end(), src.begin(), src.end());
}

}  // namespace

ModelWeights random_weights(const ModelConfig& c, std::uint64_t seed) {
  const auto h = static_cast<std::size_t>(c.hidden_size);
  const auto inter = static_cast<std::size_t>(c.intermediate_size);
  std::uint64_t stream = splitmix64(seed);
  const auto next = [&] { return stream = splitmix64(stream + 1); };
  ModelWeights w;
  w.embed = random_tensor(static_cast<std::size_t>(c.vocab_size) * h, 0.02, next());
  w.layers.resize(static_cast<std::size_t>(c.num_layers));
  const double in_h = 1.0 / std::sqrt(static_cast<double>(h));
  for (auto& l : w.layers) {
    l.attn_norm.assign(h, 1.0f);
    l.mlp_norm.assign(h, 1.0f);
    l.wqkv = random_tensor(static_cast<std::size_t>(c.qkv_dim()) * h, in_h, next());
    if (c.attention_bias)
      l.bqkv = random_tensor(static_cast<std::size_t>(c.qkv_dim()), 0.02, next());
    l.wo = random_tensor(h * static_cast<std::size_t>(c.q_dim()),
                         1.0 / std::sqrt(static_cast<double>(c.q_dim())), next());
    l.w_gate_up = random_tensor(2 * inter * h, in_h, next());
    l.w_down = random_tensor(h * inter, 1.0 / std::sqrt(static_cast<double>(inter)), next());
  }
  w.final_norm.assign(h, 1.0f);
  if (!c.tie_word_embeddings)
    w.lm_head = random_tensor(static_cast<std::size_t>(c.vocab_size) * h, in_h, next());
  return w;
}

void validate_weights(const ModelConfig& c, const ModelWeights& w) {
  const auto h = static_cast<std::size_t>(c.hidden_size);
  const auto inter = static_cast<std::size_t>(c.intermediate_size);
  check_size(w.embed, static_cast<std::size_t>(c.vocab_size) * h, "embed");
  if (w.layers.size() != static_cast<std::size_t>(c.num_layers))
    throw std::invalid_argument(
        fmt::format("weights: {} layers, the config needs {}", w.layers.size(), c.num_layers));
  for (std::size_t i = 0; i < w.layers.size(); ++i) {
    const auto& l = w.layers[i];
    const auto name = [&](const char* t) { return fmt::format("layer {} {}", i, t); };
    check_size(l.attn_norm, h, name("attn_norm"));
    check_size(l.mlp_norm, h, name("mlp_norm"));
    check_size(l.wqkv, static_cast<std::size_t>(c.qkv_dim()) * h, name("wqkv"));
    if (c.attention_bias) check_size(l.bqkv, static_cast<std::size_t>(c.qkv_dim()), name("bqkv"));
    check_size(l.wo, h * static_cast<std::size_t>(c.q_dim()), name("wo"));
    check_size(l.w_gate_up, 2 * inter * h, name("w_gate_up"));
    check_size(l.w_down, h * inter, name("w_down"));
  }
  check_size(w.final_norm, h, "final_norm");
  if (!c.tie_word_embeddings)
    check_size(w.lm_head, static_cast<std::size_t>(c.vocab_size) * h, "lm_head");
}

ModelWeights load_safetensors_weights(const ModelConfig& c, const std::string& path) {
  const SafetensorsFile f(path);
  const std::int64_t h = c.hidden_size, inter = c.intermediate_size, v = c.vocab_size;
  ModelWeights w;
  w.embed = f.read_f32("model.embed_tokens.weight", {v, h});
  w.layers.resize(static_cast<std::size_t>(c.num_layers));
  for (int i = 0; i < c.num_layers; ++i) {
    auto& l = w.layers[static_cast<std::size_t>(i)];
    const std::string p = fmt::format("model.layers.{}.", i);
    l.attn_norm = f.read_f32(p + "input_layernorm.weight", {h});
    l.mlp_norm = f.read_f32(p + "post_attention_layernorm.weight", {h});
    l.wqkv = f.read_f32(p + "self_attn.q_proj.weight", {c.q_dim(), h});
    append(l.wqkv, f.read_f32(p + "self_attn.k_proj.weight", {c.kv_dim(), h}));
    append(l.wqkv, f.read_f32(p + "self_attn.v_proj.weight", {c.kv_dim(), h}));
    if (c.attention_bias) {
      l.bqkv = f.read_f32(p + "self_attn.q_proj.bias", {c.q_dim()});
      append(l.bqkv, f.read_f32(p + "self_attn.k_proj.bias", {c.kv_dim()}));
      append(l.bqkv, f.read_f32(p + "self_attn.v_proj.bias", {c.kv_dim()}));
    }
    l.wo = f.read_f32(p + "self_attn.o_proj.weight", {h, c.q_dim()});
    l.w_gate_up = f.read_f32(p + "mlp.gate_proj.weight", {inter, h});
    append(l.w_gate_up, f.read_f32(p + "mlp.up_proj.weight", {inter, h}));
    l.w_down = f.read_f32(p + "mlp.down_proj.weight", {h, inter});
  }
  w.final_norm = f.read_f32("model.norm.weight", {h});
  if (!c.tie_word_embeddings) {
    w.lm_head = f.read_f32("lm_head.weight", {v, h});
  }
  validate_weights(c, w);
  return w;
}

ModelWeights load_weights_for(const ModelConfig& config, const std::string& name_or_path) {
  const std::string path = weights_path_for(name_or_path);
  if (path.empty()) return random_weights(config, config.seed);
  return load_safetensors_weights(config, path);
}

}  // namespace prism::engine
