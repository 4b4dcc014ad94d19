// Pre-tokenizers: split text into the pieces BPE merges within. Each one is a
// hand-written matcher equivalent to a known regex (GPT-2, cl100k / Llama-3,
// Qwen2, o200k) over a small Unicode category table, so no regex engine is
// needed and splitting runs at memory speed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace prism::workloads {

enum class PreTokenizerKind {
  kGpt2,    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kCl100k,  // cl100k_base and Llama-3: (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|...
  kQwen2,   // as kCl100k with single digits (\p{N})
  kO200k,   // o200k_base: case-aware words with contraction suffixes, [\r\n/]* after symbols
};

// The regex text (as it appears in tokenizer.json) that each kind implements.
std::string_view pretokenizer_pattern(PreTokenizerKind kind);
// Recognizes one of the patterns above (whitespace-insensitive compare of the
// alternation); throws std::invalid_argument naming the pattern otherwise.
PreTokenizerKind pretokenizer_from_pattern(std::string_view pattern);

// Unicode general-category class of a code point: 0 other, 1 Lu, 2 Ll, 3 Lt,
// 4 Lm, 5 Lo, 6 M, 7 N. And the White_Space property (regex \s).
int unicode_class(std::uint32_t cp);
bool unicode_is_space(std::uint32_t cp);

// Splits text into pieces (byte ranges into `text`, in order, covering all of
// it). Invalid UTF-8 bytes are treated as single "other" characters.
struct Piece {
  std::uint32_t begin = 0;
  std::uint32_t end = 0;
};
void pretokenize(PreTokenizerKind kind, std::string_view text, std::vector<Piece>& pieces);

}  // namespace prism::workloads
