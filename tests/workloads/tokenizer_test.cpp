#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "prism/workloads/pretokenizer.h"
#include "prism/workloads/tokenizer.h"
#include "prism/workloads/workload_json.h"

using namespace prism::workloads;
using Ids = std::vector<std::int32_t>;

namespace {

std::string cache_dir() {
  const char* env = std::getenv("PRISM_CACHE");
  return env && *env ? env : ".cache";
}

// Loads a named tokenizer, or returns null after a WARN when its npm file is
// missing (scripts/setup fetches it; CI always has it).
std::unique_ptr<Tokenizer> load_or_skip(const std::string& name) {
  const std::string file = tokenizer_file_for(name);
  if (!std::filesystem::exists(file)) {
    WARN("SKIPPED: " << file << " missing (run scripts/setup to fetch tokenizer files)");
    return nullptr;
  }
  return load_tokenizer(name);
}

struct Vector {
  std::string sample;
  Ids ids;
};

// gpt-tokenizer's TestPlans.txt: blocks of "EncodingName: / Sample: / Encoded: [..]".
std::vector<Vector> test_plan(const std::string& encoding) {
  std::ifstream in(cache_dir() + "/npm/node_modules/gpt-tokenizer/data/TestPlans.txt");
  std::vector<Vector> out;
  std::string line, current;
  Vector v;
  while (std::getline(in, line)) {
    if (line.rfind("EncodingName: ", 0) == 0)
      current = line.substr(14);
    else if (line.rfind("Sample: ", 0) == 0)
      v.sample = line.substr(8);
    else if (line.rfind("Encoded: [", 0) == 0 && current == encoding) {
      v.ids.clear();
      std::string body = line.substr(10, line.size() - 11);
      std::stringstream s(body);
      std::string item;
      while (std::getline(s, item, ',')) v.ids.push_back(std::stoi(item));
      out.push_back(v);
    }
  }
  return out;
}

void check_plan(const std::string& encoding, std::size_t expected_vectors) {
  auto tok = load_or_skip(encoding);
  if (!tok) return;
  const auto plan = test_plan(encoding);
  REQUIRE(plan.size() == expected_vectors);
  for (const auto& v : plan) {
    INFO(encoding << " sample: \"" << v.sample << "\"");
    CHECK(tok->encode(v.sample) == v.ids);
    CHECK(tok->decode(v.ids) == v.sample);
  }
}

}  // namespace

TEST_CASE("cl100k_base encodes every gpt-tokenizer test vector exactly", "[tokenizer]") {
  check_plan("cl100k_base", 64);
}

TEST_CASE("o200k_base encodes every gpt-tokenizer test vector exactly", "[tokenizer]") {
  check_plan("o200k_base", 57);
}

TEST_CASE("r50k_base and p50k_base encode their gpt-tokenizer test vectors exactly",
          "[tokenizer]") {
  check_plan("r50k_base", 64);
  check_plan("p50k_base", 64);
}

TEST_CASE("Llama-3 tokenizer.json encodes known words to their vocabulary ids", "[tokenizer]") {
  auto tok = load_or_skip("llama3");
  if (!tok) return;
  CHECK(tok->vocab_size() == 128256);
  CHECK(tok->encode("Hello world") == Ids{9906, 1917});
  CHECK(tok->encode("Hello, world!") == Ids{9906, 11, 1917, 0});
  CHECK(tok->encode("The quick brown fox.") == Ids{791, 4062, 14198, 39935, 13});
  CHECK(tok->encode("12345") == Ids{4513, 1774});  // digits split in threes
  CHECK(tok->encode("the cat's") == Ids{1820, 8415, 596});
  CHECK(tok->bos_token() == 128000);
  CHECK(tok->eos_token() == 128001);
}

TEST_CASE("Special tokens are text unless allowed", "[tokenizer]") {
  auto tok = load_or_skip("llama3");
  if (!tok) return;
  CHECK(tok->encode("<|begin_of_text|>Hello", true) == Ids{128000, 9906});
  const auto plain = tok->encode("<|begin_of_text|>Hello");
  CHECK(plain.size() > 2);
  CHECK(tok->decode(plain) == "<|begin_of_text|>Hello");
  CHECK(tok->is_special(128000));
  CHECK_FALSE(tok->is_special(9906));
}

TEST_CASE("Encode then decode gives back the text for every tokenizer", "[tokenizer]") {
  const std::string text =
      "  Prism's   tokenizer:\n\n\tcaf\xC3\xA9 na\xC3\xAFve \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E "
      "12345678 \xF0\x9F\x8C\x8D!!\r\n//comments  x=1; AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAb "
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa   ";
  for (const char* name : {"bytes", "cl100k_base", "o200k_base", "llama3"}) {
    auto tok = std::string(name) == "bytes" ? make_byte_tokenizer() : load_or_skip(name);
    if (!tok) continue;
    INFO(name);
    const auto ids = tok->encode(text);
    CHECK(tok->decode(ids) == text);
    // Encoding is deterministic and the cache does not change results.
    CHECK(tok->encode(text) == ids);
  }
}

TEST_CASE("Long pieces merge the same way as short ones", "[tokenizer]") {
  auto tok = load_or_skip("cl100k_base");
  if (!tok) return;
  // A long run of one letter goes through the heap merge; it must equal the
  // concatenation tiktoken gives (each "aaaaaaaa" block is one token).
  const std::string eight(8, 'a');
  const auto block = tok->encode(eight);
  REQUIRE(block.size() == 1);
  const auto long_ids = tok->encode(std::string(64, 'a'));
  CHECK(long_ids == Ids(8, block[0]));
}

TEST_CASE("The byte tokenizer maps each byte to its value", "[tokenizer]") {
  auto tok = make_byte_tokenizer();
  CHECK(tok->name() == "bytes");
  CHECK(tok->encode("Hi\xFF") == Ids{72, 105, 255});
  CHECK(tok->encode("a<|endoftext|>", true) == Ids{97, 256});
  CHECK(tok->encode("<|e").size() == 3);
  CHECK(tok->decode(Ids{72, 105}) == "Hi");
  CHECK(tok->eos_token() == 256);
  CHECK(tok->vocab_size() == 257);
  CHECK_THROWS_AS(tok->decode(Ids{300}), std::out_of_range);
}

TEST_CASE("Decoding an id outside the vocabulary is an error", "[tokenizer][errors]") {
  auto tok = load_or_skip("cl100k_base");
  if (!tok) return;
  CHECK_THROWS_WITH(tok->decode(Ids{100261}),
                    "token id 100261 is not in the cl100k_base vocabulary");
  CHECK_THROWS_WITH(tok->decode(Ids{-1}), "token id -1 is not in the cl100k_base vocabulary");
}

TEST_CASE("The o200k pre-tokenizer splits case changes and contractions like its regex",
          "[tokenizer]") {
  std::vector<Piece> pieces;
  const std::string text = "HelloWorld don't  CAPSlock\n\n x/\n";
  pretokenize(PreTokenizerKind::kO200k, text, pieces);
  std::vector<std::string> got;
  for (const auto& p : pieces) got.push_back(text.substr(p.begin, p.end - p.begin));
  CHECK(got == std::vector<std::string>{"Hello", "World", " don't", " ", " CAPSlock", "\n\n", " x",
                                        "/\n"});
  pretokenize(PreTokenizerKind::kCl100k, text, pieces);
  got.clear();
  for (const auto& p : pieces) got.push_back(text.substr(p.begin, p.end - p.begin));
  CHECK(got == std::vector<std::string>{"HelloWorld", " don", "'t", " ", " CAPSlock", "\n\n", " x",
                                        "/\n"});
}

TEST_CASE("Unicode classes come from the generated table", "[tokenizer]") {
  CHECK(unicode_class('A') == 1);
  CHECK(unicode_class('z') == 2);
  CHECK(unicode_class(0x00E9) == 2);   // é
  CHECK(unicode_class(0x65E5) == 5);   // 日 (Lo)
  CHECK(unicode_class(0x0301) == 6);   // combining acute (M)
  CHECK(unicode_class(0x0663) == 7);   // Arabic-Indic three (N)
  CHECK(unicode_class(0x1F30D) == 0);  // 🌍
  CHECK(unicode_is_space(0x3000));
  CHECK_FALSE(unicode_is_space(0x200B));
}

TEST_CASE("Unknown tokenizers and bad tokenizer files are reported clearly",
          "[tokenizer][errors]") {
  CHECK_THROWS_WITH(load_tokenizer("no-such-tokenizer"),
                    Catch::Contains("tokenizer \"no-such-tokenizer\": not a known name"));
  const auto dir = std::filesystem::temp_directory_path();
  const std::string bad = (dir / "prism_bad_cl100k_base.tiktoken").string();
  std::ofstream(bad) << "IQ== 0\nIg== x1\n";
  CHECK_THROWS_WITH(load_tiktoken(bad, "cl100k_base"),
                    bad + ":2: rank: expected a non-negative integer, got \"x1\"");
  std::ofstream(bad) << "!!!! 0\n";
  CHECK_THROWS_WITH(load_tiktoken(bad, "cl100k_base"), bad + ":1: token: invalid base64");
  const std::string json = (dir / "prism_bad_tokenizer.json").string();
  std::ofstream(json) << R"({"model":{"type":"Unigram","vocab":[]}})";
  CHECK_THROWS_WITH(load_hf_tokenizer(json),
                    json + ": model.type: only byte-level \"BPE\" models are supported");
  std::filesystem::remove(bad);
  std::filesystem::remove(json);
}
