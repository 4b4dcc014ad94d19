#include "prism/workloads/token_source.h"

#include <fstream>
#include <sstream>

#include "prism/workloads/random.h"
#include "prism/workloads/workload_json.h"

namespace prism::workloads {
namespace {

bool is_word(std::string_view b) {
  if (b.size() < 3 || b[0] != ' ') return false;
  for (std::size_t i = 1; i < b.size(); ++i)
    if (b[i] < 'a' || b[i] > 'z') return false;
  return true;
}

}  // namespace

TokenSource::TokenSource(const Tokenizer& tokenizer, std::uint64_t seed,
                         const std::string& corpus_path)
    : tokenizer_(tokenizer), seed_(seed) {
  // Pool in id order (BPE ids roughly follow frequency, which the sampler uses).
  for (std::size_t id = 0; id < tokenizer.vocab_size(); ++id) {
    const auto i = static_cast<std::int32_t>(id);
    if (tokenizer.is_special(i)) continue;
    const std::string b = tokenizer.token_bytes(i);
    if (!is_word(b)) continue;
    const auto re = tokenizer.encode(b);
    if (re.size() == 1 && re[0] == i) pool_.push_back(i);
  }
  if (pool_.size() < 16) {
    // Byte-level vocabularies without word tokens (e.g. "bytes"): letters and
    // spaces, which always round-trip one byte per token.
    pool_.clear();
    for (const char* w = " etaoinshrdlucmfwypvbgkjqxz"; *w; ++w) {
      const auto ids = tokenizer.encode(std::string_view(w, 1));
      if (ids.size() == 1) pool_.push_back(ids[0]);
    }
  }
  if (pool_.size() < 16)
    throw WorkloadError("tokenizer " + tokenizer.name() +
                        ": too few plain word tokens to sample prompts");
  if (!corpus_path.empty()) {
    std::ifstream in(corpus_path, std::ios::binary);
    if (!in) throw WorkloadError(corpus_path + ": cannot open corpus file");
    std::ostringstream s;
    s << in.rdbuf();
    corpus_ = tokenizer.encode(s.str());
    if (corpus_.size() < 64)
      throw WorkloadError(corpus_path + ": corpus too short (under 64 tokens)");
  }
}

void TokenSource::sample_words(std::uint64_t stream_seed, std::size_t count,
                               std::vector<std::int32_t>& out) const {
  Rng rng(stream_seed);
  const std::uint64_t n = pool_.size();
  // rank = below(below(n) + 1): a falling, roughly log-shaped popularity over
  // the pool (frequent words early), with integer arithmetic only.
  for (std::size_t i = 0; i < count; ++i) out.push_back(pool_[rng.below(rng.below(n) + 1)]);
}

void TokenSource::append_tokens(std::string_view key, std::size_t count,
                                std::vector<std::int32_t>& out) const {
  const std::uint64_t stream = derive_seed(seed_, key);
  if (corpus_.empty()) {
    out.reserve(out.size() + count);
    sample_words(stream, count, out);
    return;
  }
  // Corpus window starting at a pseudo-random offset, wrapping around.
  Rng rng(stream);
  std::vector<std::int32_t> ids;
  ids.reserve(count);
  std::size_t at = rng.below(corpus_.size());
  while (ids.size() < count) {
    ids.push_back(corpus_[at]);
    at = (at + 1) % corpus_.size();
  }
  for (int attempt = 0; attempt < 4; ++attempt) {
    auto re = tokenizer_.encode(tokenizer_.decode(ids));
    if (re == ids) {
      out.insert(out.end(), ids.begin(), ids.end());
      return;
    }
    if (re.size() > count) re.resize(count);
    if (re.size() < count) sample_words(stream + attempt + 1, count - re.size(), re);
    ids = std::move(re);
  }
  sample_words(stream, count, out);  // could not fix up: words always round-trip
}

std::vector<std::int32_t> TokenSource::tokens(std::string_view key, std::size_t count) const {
  std::vector<std::int32_t> out;
  append_tokens(key, count, out);
  return out;
}

std::vector<std::int32_t> TokenSource::text_tokens(std::string_view text) const {
  auto ids = tokenizer_.encode(text);
  if (tokenizer_.decode(ids) != text)
    throw WorkloadError("tokenizer " + tokenizer_.name() + " does not round-trip \"" +
                        std::string(text) + "\"");
  return ids;
}

}  // namespace prism::workloads
