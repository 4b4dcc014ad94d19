// Prompt tokens of exact length. Every segment's tokens are a function of the
// workload seed and the segment's content id only, so two segments with the
// same id are identical and generation order does not matter.
//
// Without a corpus, tokens are drawn from a pool of "word" tokens (a space
// followed by lowercase ASCII letters) that each re-encode to themselves; any
// sequence of them decodes to text that re-encodes to exactly the same ids,
// also across segment boundaries, because every piece starts with a space.
// With a corpus file, a window of the encoded corpus is decoded, re-encoded
// and fixed up (trimmed or padded with pool words) until it round-trips at
// the exact length.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "prism/workloads/tokenizer.h"

namespace prism::workloads {

class TokenSource {
 public:
  // Throws WorkloadError when the tokenizer has too few word tokens or the
  // corpus cannot be read.
  TokenSource(const Tokenizer& tokenizer, std::uint64_t seed, const std::string& corpus_path = "");

  // `count` tokens for the content id `key`.
  std::vector<std::int32_t> tokens(std::string_view key, std::size_t count) const;
  // Appends to `out` (avoids a copy on hot paths).
  void append_tokens(std::string_view key, std::size_t count, std::vector<std::int32_t>& out) const;

  // Encodes fixed text (needles, questions) and checks it round-trips.
  std::vector<std::int32_t> text_tokens(std::string_view text) const;

  const std::vector<std::int32_t>& word_pool() const { return pool_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }

 private:
  void sample_words(std::uint64_t stream_seed, std::size_t count,
                    std::vector<std::int32_t>& out) const;
  const Tokenizer& tokenizer_;
  std::uint64_t seed_;
  std::vector<std::int32_t> pool_;
  std::vector<std::int32_t> corpus_;
};

}  // namespace prism::workloads
