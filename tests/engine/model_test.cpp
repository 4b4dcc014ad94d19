#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>

#include <nlohmann/json.hpp>

#include "prism/engine/model.h"
#include "prism/engine/safetensors.h"
#include "prism/kernels/ops.h"
#include "tiny_engine.h"

using namespace prism::engine;
using prism::engine::test::prompt_tokens;
using prism::engine::test::tiny_model;

namespace {

std::vector<std::int32_t> blocks(int first, int count) {
  std::vector<std::int32_t> b(static_cast<std::size_t>(count));
  std::iota(b.begin(), b.end(), first);
  return b;
}

float max_abs_diff(const float* a, const float* b, std::size_t n) {
  float m = 0.0f;
  for (std::size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

float max_abs(const float* a, std::size_t n) {
  float m = 0.0f;
  for (std::size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i]));
  return m;
}

}  // namespace

TEST_CASE("every built-in model config loads and small has about 100M parameters",
          "[engine][config]") {
  const auto names = builtin_model_names();
  for (const char* want : {"tiny", "small", "llama-3.2-1b", "qwen2.5-0.5b", "llama-3.1-8b"})
    REQUIRE(std::find(names.begin(), names.end(), want) != names.end());
  for (const auto& n : names) {
    const ModelConfig c = load_model_config(n);
    CHECK(c.name == n);
    CHECK(c.num_heads % c.num_kv_heads == 0);
  }
  const ModelConfig small = load_model_config("small");
  CHECK(small.parameter_count() > 90'000'000);
  CHECK(small.parameter_count() < 110'000'000);
  // Published parameter counts of the real models.
  CHECK(std::abs(load_model_config("llama-3.1-8b").parameter_count() - 8'030'261'248) < 1'000'000);
  CHECK(std::abs(load_model_config("llama-3.2-1b").parameter_count() - 1'235'814'400) < 1'000'000);
  CHECK(std::abs(load_model_config("qwen2.5-0.5b").parameter_count() - 494'032'768) < 1'000'000);
  CHECK(load_model_config("qwen2.5-0.5b").attention_bias);
}

TEST_CASE("a model config with a bad or missing field is rejected naming the field",
          "[engine][config]") {
  nlohmann::json j = model_config_to_json(load_model_config("tiny"));
  j.erase("hidden_size");
  CHECK_THROWS_WITH(model_config_from_json(j, "cfg.json"),
                    Catch::Contains("cfg.json") && Catch::Contains("hidden_size"));
  j = model_config_to_json(load_model_config("tiny"));
  j["num_key_value_heads"] = 3;
  CHECK_THROWS_WITH(model_config_from_json(j, "cfg.json"), Catch::Contains("num_key_value_heads"));
  j = model_config_to_json(load_model_config("tiny"));
  j["rope_theta"] = "big";
  CHECK_THROWS_WITH(model_config_from_json(j, "cfg.json"), Catch::Contains("rope_theta"));
  CHECK_THROWS_WITH(load_model_config("no-such-model"),
                    Catch::Contains("tiny") && Catch::Contains("small"));
}

TEST_CASE("random weights are the same bytes for the same seed and differ for another",
          "[engine][weights]") {
  const ModelConfig c = load_model_config("tiny");
  const ModelWeights a = random_weights(c, 7), b = random_weights(c, 7), d = random_weights(c, 8);
  CHECK(a.embed == b.embed);
  CHECK(a.layers[1].w_down == b.layers[1].w_down);
  CHECK(a.embed != d.embed);
  REQUIRE_NOTHROW(validate_weights(c, a));
}

TEST_CASE("batched and unbatched logits are equal within tolerance", "[engine][model]") {
  auto model = tiny_model();
  const ModelConfig& c = model->config();
  const auto pa = prompt_tokens(37, 1), pb = prompt_tokens(20, 2), pc = prompt_tokens(5, 3);
  const auto ta = blocks(0, 4), tb = blocks(4, 4), tc = blocks(8, 4);
  const auto V = static_cast<std::size_t>(c.vocab_size);

  // Alone: each sequence in its own cache.
  std::vector<float> alone;
  for (const auto& [p, t] : {std::pair{&pa, &ta}, std::pair{&pb, &tb}, std::pair{&pc, &tc}}) {
    KvCache cache(c, 16);
    std::vector<float> logits;
    const ForwardEntry e{.tokens = *p, .start_pos = 0, .block_table = *t};
    model->forward(std::span(&e, 1), cache, logits);
    REQUIRE(logits.size() == V);
    alone.insert(alone.end(), logits.begin(), logits.end());
  }
  // Together in one step.
  KvCache cache(c, 16);
  std::vector<float> together;
  const ForwardEntry batch[] = {{.tokens = pa, .start_pos = 0, .block_table = ta},
                                {.tokens = pb, .start_pos = 0, .block_table = tb},
                                {.tokens = pc, .start_pos = 0, .block_table = tc}};
  model->forward(batch, cache, together);
  REQUIRE(together.size() == 3 * V);
  CHECK(max_abs(together.data(), together.size()) > 1e-3f);
  CHECK(max_abs_diff(alone.data(), together.data(), 3 * V) <
        1e-4f * std::max(1.0f, max_abs(alone.data(), alone.size())));

  // A decode step of all three against their caches equals decoding each alone.
  const std::int32_t next[] = {11, 22, 33};
  std::vector<float> dec_batch;
  const ForwardEntry dec[] = {
      {.tokens = std::span(next, 1), .start_pos = 37, .block_table = ta},
      {.tokens = std::span(next + 1, 1), .start_pos = 20, .block_table = tb},
      {.tokens = std::span(next + 2, 1), .start_pos = 5, .block_table = tc}};
  model->forward(dec, cache, dec_batch);
  for (int i = 0; i < 3; ++i) {
    std::vector<float> one;
    model->forward(std::span(&dec[i], 1), cache, one);
    CHECK(max_abs_diff(one.data(), dec_batch.data() + static_cast<std::size_t>(i) * V, V) < 1e-4f);
  }
}

TEST_CASE("chunked and unchunked prefill give equal logits", "[engine][model]") {
  auto model = tiny_model();
  const ModelConfig& c = model->config();
  const auto p = prompt_tokens(57, 4);
  const auto table = blocks(0, 4);
  std::vector<float> whole, chunked;
  {
    KvCache cache(c, 4);
    const ForwardEntry e{.tokens = p, .start_pos = 0, .block_table = table};
    model->forward(std::span(&e, 1), cache, whole);
  }
  KvCache cache(c, 4);
  const std::span<const std::int32_t> all(p);
  int pos = 0;
  for (const int n : {16, 9, 1, 31}) {
    const ForwardEntry e{
        .tokens = all.subspan(static_cast<std::size_t>(pos), static_cast<std::size_t>(n)),
        .start_pos = pos,
        .block_table = table,
        .want_logits = pos + n == 57};
    model->forward(std::span(&e, 1), cache, chunked);
    pos += n;
  }
  REQUIRE(pos == 57);
  REQUIRE(chunked.size() == whole.size());
  CHECK(max_abs_diff(whole.data(), chunked.data(), whole.size()) < 1e-4f);
}

TEST_CASE("the forward pass rejects bad token ids, positions and block tables", "[engine][model]") {
  auto model = tiny_model();
  KvCache cache(model->config(), 4);
  std::vector<float> logits;
  const auto table = blocks(0, 1);
  const std::int32_t bad[] = {5, 9999};
  const ForwardEntry e{.tokens = bad, .start_pos = 0, .block_table = table};
  CHECK_THROWS_WITH(model->forward(std::span(&e, 1), cache, logits), Catch::Contains("9999"));
  const auto many = prompt_tokens(17);
  const ForwardEntry e2{.tokens = many, .start_pos = 0, .block_table = table};
  CHECK_THROWS_WITH(model->forward(std::span(&e2, 1), cache, logits),
                    Catch::Contains("block table"));
  const auto table_out = std::vector<std::int32_t>{7};
  const ForwardEntry e3{.tokens = std::span(bad, 1), .start_pos = 0, .block_table = table_out};
  CHECK_THROWS_WITH(model->forward(std::span(&e3, 1), cache, logits),
                    Catch::Contains("block id 7"));
}

// --- safetensors -----------------------------------------------------------

namespace {

enum class Enc { f32, bf16, f16 };

struct TensorOut {
  std::string name;
  std::vector<std::int64_t> shape;
  std::vector<float> values;
  Enc enc = Enc::f32;
};

std::uint16_t float_to_f16(float f) {  // round to nearest even; test values are normal and small
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const int exp = static_cast<int>((x >> 23) & 0xff) - 127 + 15;
  std::uint32_t mant = x & 0x7fffffu;
  if (exp <= 0) return static_cast<std::uint16_t>(sign);
  std::uint32_t h = sign | (static_cast<std::uint32_t>(exp) << 10) | (mant >> 13);
  const std::uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return static_cast<std::uint16_t>(h);
}

// Writes a safetensors file the way the format specifies: u64 LE header
// length, JSON header, raw little-endian tensor bytes.
void write_safetensors(const std::string& path, const std::vector<TensorOut>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  for (const auto& t : tensors) {
    const std::size_t begin = data.size();
    for (const float v : t.values) {
      if (t.enc == Enc::f32) {
        data.append(reinterpret_cast<const char*>(&v), 4);
      } else {
        const std::uint16_t h =
            t.enc == Enc::bf16 ? prism::kernels::float_to_bf16(v) : float_to_f16(v);
        data.append(reinterpret_cast<const char*>(&h), 2);
      }
    }
    header[t.name] = {{"dtype", t.enc == Enc::f32    ? "F32"
                                : t.enc == Enc::bf16 ? "BF16"
                                                     : "F16"},
                      {"shape", t.shape},
                      {"data_offsets", {begin, data.size()}}};
  }
  header["__metadata__"] = {{"format", "pt"}};
  const std::string h = header.dump();
  const std::uint64_t n = h.size();
  std::ofstream out(path, std::ios::binary);
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
  out << h << data;
}

std::vector<TensorOut> hf_tensors(const ModelConfig& c, const ModelWeights& w) {
  const std::int64_t h = c.hidden_size, inter = c.intermediate_size;
  const auto slice = [](const std::vector<float>& v, std::size_t begin, std::size_t n) {
    return std::vector<float>(v.begin() + static_cast<std::ptrdiff_t>(begin),
                              v.begin() + static_cast<std::ptrdiff_t>(begin + n));
  };
  std::vector<TensorOut> t;
  t.push_back({"model.embed_tokens.weight", {c.vocab_size, h}, w.embed, Enc::bf16});
  for (int i = 0; i < c.num_layers; ++i) {
    const auto& l = w.layers[static_cast<std::size_t>(i)];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    const std::size_t q = static_cast<std::size_t>(c.q_dim() * h),
                      kv = static_cast<std::size_t>(c.kv_dim() * h);
    t.push_back({p + "input_layernorm.weight", {h}, l.attn_norm});
    t.push_back({p + "post_attention_layernorm.weight", {h}, l.mlp_norm});
    t.push_back({p + "self_attn.q_proj.weight", {c.q_dim(), h}, slice(l.wqkv, 0, q), Enc::f16});
    t.push_back({p + "self_attn.k_proj.weight", {c.kv_dim(), h}, slice(l.wqkv, q, kv)});
    t.push_back({p + "self_attn.v_proj.weight", {c.kv_dim(), h}, slice(l.wqkv, q + kv, kv)});
    t.push_back({p + "self_attn.o_proj.weight", {h, c.q_dim()}, l.wo});
    const std::size_t gi = static_cast<std::size_t>(inter * h);
    t.push_back({p + "mlp.gate_proj.weight", {inter, h}, slice(l.w_gate_up, 0, gi)});
    t.push_back({p + "mlp.up_proj.weight", {inter, h}, slice(l.w_gate_up, gi, gi), Enc::bf16});
    t.push_back({p + "mlp.down_proj.weight", {h, inter}, l.w_down});
  }
  t.push_back({"model.norm.weight", {h}, w.final_norm});
  return t;
}

std::string temp_path(const std::string& name) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("prism_engine_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

}  // namespace

TEST_CASE("safetensors weights in f32, bf16 and f16 load into the model's layout",
          "[engine][safetensors]") {
  const ModelConfig c = load_model_config("tiny");
  const ModelWeights w = random_weights(c, 99);
  const std::string path = temp_path("tiny.safetensors");
  write_safetensors(path, hf_tensors(c, w));

  const SafetensorsFile f(path);
  CHECK(f.metadata().at("format") == "pt");
  CHECK(f.find("model.layers.1.mlp.up_proj.weight")->dtype == TensorDtype::kBF16);

  const ModelWeights loaded = load_safetensors_weights(c, path);
  REQUIRE(loaded.embed.size() == w.embed.size());
  // f32 tensors are exact; bf16 within 2^-8 relative, f16 within 2^-11.
  CHECK(loaded.layers[0].w_down == w.layers[0].w_down);
  for (std::size_t i = 0; i < w.embed.size(); ++i)
    REQUIRE(std::fabs(loaded.embed[i] - w.embed[i]) <= std::fabs(w.embed[i]) / 256.0f + 1e-30f);
  const std::size_t q = static_cast<std::size_t>(c.q_dim() * c.hidden_size);
  for (std::size_t i = 0; i < q; ++i)
    REQUIRE(std::fabs(loaded.layers[1].wqkv[i] - w.layers[1].wqkv[i]) <=
            std::fabs(w.layers[1].wqkv[i]) / 2048.0f +
                6.2e-5f /* the writer flushes f16 subnormals */);
  CHECK(std::equal(loaded.layers[1].wqkv.begin() + static_cast<std::ptrdiff_t>(q),
                   loaded.layers[1].wqkv.end(),
                   w.layers[1].wqkv.begin() + static_cast<std::ptrdiff_t>(q)));
  // The loaded model runs.
  Model model(c, loaded);
  KvCache cache(c, 2);
  std::vector<float> logits;
  const auto p = prompt_tokens(10);
  const auto table = blocks(0, 1);
  const ForwardEntry e{.tokens = p, .start_pos = 0, .block_table = table};
  model.forward(std::span(&e, 1), cache, logits);
  CHECK(logits.size() == static_cast<std::size_t>(c.vocab_size));
  CHECK(f16_to_float(0x3c00) == 1.0f);
  CHECK(f16_to_float(0xc000) == -2.0f);
  CHECK(f16_to_float(0x0001) == std::ldexp(1.0f, -24));
}

TEST_CASE("a broken safetensors file is rejected naming the file and tensor",
          "[engine][safetensors]") {
  const ModelConfig c = load_model_config("tiny");
  const ModelWeights w = random_weights(c, 3);
  auto tensors = hf_tensors(c, w);

  SECTION("missing tensor") {
    tensors.pop_back();
    const std::string path = temp_path("missing.safetensors");
    write_safetensors(path, tensors);
    CHECK_THROWS_WITH(load_safetensors_weights(c, path), Catch::Contains("missing.safetensors") &&
                                                             Catch::Contains("model.norm.weight"));
  }
  SECTION("wrong shape") {
    tensors[0].shape = {c.hidden_size, c.vocab_size};
    const std::string path = temp_path("shape.safetensors");
    write_safetensors(path, tensors);
    CHECK_THROWS_WITH(load_safetensors_weights(c, path),
                      Catch::Contains("embed_tokens") && Catch::Contains("expected"));
  }
  SECTION("truncated data") {
    const std::string path = temp_path("trunc.safetensors");
    write_safetensors(path, tensors);
    std::filesystem::resize_file(path, std::filesystem::file_size(path) - 10);
    CHECK_THROWS_WITH(SafetensorsFile(path), Catch::Contains("outside the data section"));
  }
  SECTION("header length past the end") {
    const std::string path = temp_path("hdr.safetensors");
    std::ofstream(path, std::ios::binary) << std::string("\xff\xff\xff\x00\x00\x00\x00\x00{}", 10);
    CHECK_THROWS_WITH(SafetensorsFile(path), Catch::Contains("header length"));
  }
  SECTION("header is not JSON") {
    const std::string path = temp_path("json.safetensors");
    std::ofstream(path, std::ios::binary)
        << std::string("\x04\x00\x00\x00\x00\x00\x00\x00{{{{", 12);
    CHECK_THROWS_WITH(SafetensorsFile(path), Catch::Contains("not valid JSON"));
  }
  SECTION("unsupported dtype") {
    const std::string path = temp_path("dtype.safetensors");
    const std::string h = R"({"x":{"dtype":"I8","shape":[1],"data_offsets":[0,1]}})";
    std::string bytes(8, '\0');
    bytes[0] = static_cast<char>(h.size());
    std::ofstream(path, std::ios::binary) << bytes << h << "a";
    CHECK_THROWS_WITH(SafetensorsFile(path), Catch::Contains("\"x\"") && Catch::Contains("I8"));
  }
}
