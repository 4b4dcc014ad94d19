#include "prism/engine/model_config.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <fmt/core.h>

#include "builtin_configs.h"

namespace prism::engine {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

[[noreturn]] void fail(std::string_view origin, std::string_view field, std::string_view why) {
  throw std::invalid_argument(fmt::format("{}: field \"{}\": {}", origin, field, why));
}

int positive_int(const json& j, std::string_view origin, const char* key, bool required = true,
                 int fallback = 0) {
  if (!j.contains(key)) {
    if (required) fail(origin, key, "missing");
    return fallback;
  }
  const json& v = j.at(key);
  if (!v.is_number_integer()) fail(origin, key, "must be an integer");
  const auto x = v.get<std::int64_t>();
  if (x <= 0 || x > (std::int64_t{1} << 30)) fail(origin, key, "must be positive");
  return static_cast<int>(x);
}

double number(const json& j, std::string_view origin, const char* key, double fallback) {
  if (!j.contains(key)) return fallback;
  const json& v = j.at(key);
  if (!v.is_number()) fail(origin, key, "must be a number");
  return v.get<double>();
}

int token_id(const json& j, std::string_view origin, const char* key) {
  if (!j.contains(key) || j.at(key).is_null()) return -1;
  const json& v = j.at(key);
  // HF allows a list of eos ids; the first is the one generation stops on.
  if (v.is_array() && !v.empty() && v.front().is_number_integer()) return v.front().get<int>();
  if (!v.is_number_integer()) fail(origin, key, "must be an integer token id");
  return v.get<int>();
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("{}: cannot open", path.string()));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

ModelConfig parse_text(std::string_view text, std::string_view origin) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    throw std::invalid_argument(fmt::format("{}: invalid JSON: {}", origin, e.what()));
  }
  return model_config_from_json(j, origin);
}

}  // namespace

std::int64_t ModelConfig::parameter_count() const {
  const std::int64_t h = hidden_size;
  std::int64_t per_layer =
      h * qkv_dim() + static_cast<std::int64_t>(q_dim()) * h + 3 * h * intermediate_size + 2 * h;
  if (attention_bias) per_layer += qkv_dim();
  std::int64_t n = static_cast<std::int64_t>(vocab_size) * h + num_layers * per_layer + h;
  if (!tie_word_embeddings) n += static_cast<std::int64_t>(vocab_size) * h;
  return n;
}

std::int64_t ModelConfig::weight_bytes_read_per_token() const {
  const std::int64_t h = hidden_size;
  std::int64_t per_layer =
      h * qkv_dim() + static_cast<std::int64_t>(q_dim()) * h + 3 * h * intermediate_size + 2 * h;
  if (attention_bias) per_layer += qkv_dim();
  const std::int64_t floats = num_layers * per_layer + h /*final norm*/ +
                              static_cast<std::int64_t>(vocab_size) * h /*lm head*/ +
                              h /*embedding row*/;
  return floats * 4;
}

std::int64_t ModelConfig::kv_bytes_per_token() const {
  return static_cast<std::int64_t>(num_layers) * 2 * kv_dim() * 4;
}

std::int64_t ModelConfig::linear_flops_per_token() const {
  const std::int64_t h = hidden_size;
  const std::int64_t per_layer =
      h * qkv_dim() + static_cast<std::int64_t>(q_dim()) * h + 3 * h * intermediate_size;
  return 2 * (num_layers * per_layer + static_cast<std::int64_t>(vocab_size) * h);
}

ModelConfig model_config_from_json(const json& j, std::string_view origin) {
  if (!j.is_object()) throw std::invalid_argument(fmt::format("{}: not a JSON object", origin));
  ModelConfig c;
  if (j.contains("architectures")) {
    const json& a = j.at("architectures");
    if (!a.is_array()) fail(origin, "architectures", "must be an array");
    for (const auto& arch : a) {
      const std::string s = arch.is_string() ? arch.get<std::string>() : "";
      if (s != "LlamaForCausalLM" && s != "Qwen2ForCausalLM" && s != "MistralForCausalLM")
        fail(origin, "architectures",
             fmt::format("unsupported architecture {} (Llama, Qwen2, Mistral)", arch.dump()));
    }
  }
  if (j.contains("name") && j.at("name").is_string()) c.name = j.at("name").get<std::string>();
  if (j.contains("_name_or_path") && c.name.empty() && j.at("_name_or_path").is_string())
    c.name = j.at("_name_or_path").get<std::string>();
  if (j.contains("description") && j.at("description").is_string())
    c.description = j.at("description").get<std::string>();
  if (j.contains("tokenizer")) {
    if (!j.at("tokenizer").is_string()) fail(origin, "tokenizer", "must be a string");
    c.tokenizer = j.at("tokenizer").get<std::string>();
  }
  c.vocab_size = positive_int(j, origin, "vocab_size");
  c.hidden_size = positive_int(j, origin, "hidden_size");
  c.intermediate_size = positive_int(j, origin, "intermediate_size");
  c.num_layers = positive_int(j, origin, "num_hidden_layers");
  c.num_heads = positive_int(j, origin, "num_attention_heads");
  c.num_kv_heads = positive_int(j, origin, "num_key_value_heads", false, c.num_heads);
  if (c.hidden_size % c.num_heads != 0 && !j.contains("head_dim"))
    fail(origin, "num_attention_heads", "must divide hidden_size when head_dim is not given");
  c.head_dim = positive_int(j, origin, "head_dim", false, c.hidden_size / c.num_heads);
  if (c.num_heads % c.num_kv_heads != 0)
    fail(origin, "num_key_value_heads", "must divide num_attention_heads");
  c.max_context = positive_int(j, origin, "max_position_embeddings", false, 4096);
  c.rms_norm_eps = static_cast<float>(number(j, origin, "rms_norm_eps", 1e-5));
  if (!(c.rms_norm_eps > 0.0f)) fail(origin, "rms_norm_eps", "must be positive");
  c.rope_theta = static_cast<float>(number(j, origin, "rope_theta", 10000.0));
  if (!(c.rope_theta > 1.0f)) fail(origin, "rope_theta", "must be greater than 1");
  if (j.contains("tie_word_embeddings")) {
    if (!j.at("tie_word_embeddings").is_boolean())
      fail(origin, "tie_word_embeddings", "must be a boolean");
    c.tie_word_embeddings = j.at("tie_word_embeddings").get<bool>();
  } else {
    c.tie_word_embeddings = false;  // HF's default for Llama
  }
  if (j.contains("attention_bias")) {
    if (!j.at("attention_bias").is_boolean()) fail(origin, "attention_bias", "must be a boolean");
    c.attention_bias = j.at("attention_bias").get<bool>();
  } else if (j.contains("model_type") && j.at("model_type") == "qwen2") {
    c.attention_bias = true;
  }
  c.bos_token_id = token_id(j, origin, "bos_token_id");
  c.eos_token_id = token_id(j, origin, "eos_token_id");
  if (c.eos_token_id >= c.vocab_size) fail(origin, "eos_token_id", "outside vocab_size");
  if (c.bos_token_id >= c.vocab_size) fail(origin, "bos_token_id", "outside vocab_size");
  if (j.contains("seed")) {
    if (!j.at("seed").is_number_unsigned()) fail(origin, "seed", "must be a non-negative integer");
    c.seed = j.at("seed").get<std::uint64_t>();
  }
  if (c.name.empty()) c.name = std::string(origin);
  return c;
}

json model_config_to_json(const ModelConfig& c) {
  return json{{"name", c.name},
              {"description", c.description},
              {"tokenizer", c.tokenizer},
              {"vocab_size", c.vocab_size},
              {"hidden_size", c.hidden_size},
              {"intermediate_size", c.intermediate_size},
              {"num_hidden_layers", c.num_layers},
              {"num_attention_heads", c.num_heads},
              {"num_key_value_heads", c.num_kv_heads},
              {"head_dim", c.head_dim},
              {"max_position_embeddings", c.max_context},
              {"rms_norm_eps", c.rms_norm_eps},
              {"rope_theta", c.rope_theta},
              {"tie_word_embeddings", c.tie_word_embeddings},
              {"attention_bias", c.attention_bias},
              {"bos_token_id", c.bos_token_id},
              {"eos_token_id", c.eos_token_id},
              {"seed", c.seed},
              {"parameters", c.parameter_count()}};
}

std::vector<std::string> builtin_model_names() {
  std::vector<std::string> names;
  for (const auto& [name, text] : detail::builtin_config_texts()) names.emplace_back(name);
  return names;
}

ModelConfig load_model_config(const std::string& name_or_path) {
  for (const auto& [name, text] : detail::builtin_config_texts()) {
    if (name == name_or_path) return parse_text(text, fmt::format("built-in config {}", name));
  }
  const fs::path p(name_or_path);
  std::error_code ec;
  if (fs::is_directory(p, ec)) {
    const fs::path cfg = p / "config.json";
    if (!fs::exists(cfg))
      throw std::invalid_argument(fmt::format("{}: no config.json in model directory", p.string()));
    ModelConfig c = parse_text(read_text(cfg), cfg.string());
    const fs::path tok = p / "tokenizer.json";
    if (fs::exists(tok) && !c.tokenizer.empty() && c.tokenizer == "bytes")
      c.tokenizer = tok.string();
    return c;
  }
  if (fs::is_regular_file(p, ec)) {
    if (p.extension() == ".safetensors") {
      const fs::path cfg = p.parent_path() / "config.json";
      if (!fs::exists(cfg))
        throw std::invalid_argument(
            fmt::format("{}: no config.json beside the safetensors file", p.string()));
      return parse_text(read_text(cfg), cfg.string());
    }
    return parse_text(read_text(p), p.string());
  }
  std::string names;
  for (const auto& n : builtin_model_names()) names += (names.empty() ? "" : ", ") + n;
  throw std::invalid_argument(fmt::format(
      "unknown model \"{}\": not a built-in name ({}) nor an existing file or directory",
      name_or_path, names));
}

std::string weights_path_for(const std::string& name_or_path) {
  for (const auto& [name, text] : detail::builtin_config_texts()) {
    if (name == name_or_path) return "";
  }
  const fs::path p(name_or_path);
  std::error_code ec;
  if (fs::is_directory(p, ec)) {
    const fs::path w = p / "model.safetensors";
    return fs::exists(w) ? w.string() : "";
  }
  if (p.extension() == ".safetensors") return p.string();
  // A config file: weights beside it, if any.
  const fs::path w = p.parent_path() / "model.safetensors";
  return fs::exists(w, ec) ? w.string() : "";
}

}  // namespace prism::engine
