// Internal: the byte-level BPE engine shared by the tiktoken and Hugging Face
// loaders. Tokens are raw byte strings; merges are pairs of token ids with a
// rank; lower rank merges first.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "prism/workloads/pretokenizer.h"
#include "prism/workloads/tokenizer.h"

namespace prism::workloads::detail {

// Open-addressing map from byte strings to int32 (no per-entry allocation).
class BytesMap {
 public:
  void reserve(std::size_t n);
  bool insert(std::string_view key, std::int32_t value);  // false if present
  const std::int32_t* find(std::string_view key) const;
  std::size_t size() const { return size_; }

 private:
  struct Slot {
    std::uint64_t hash = 0;
    std::uint32_t offset = 0;
    std::uint32_t length = 0;
    std::int32_t value = 0;
    bool used = false;
  };
  void grow();
  std::vector<Slot> slots_;
  std::string arena_;
  std::size_t size_ = 0;
};

// Open-addressing map from a pair of ids to (rank, merged id).
class PairMap {
 public:
  void reserve(std::size_t n);
  void insert(std::int32_t left, std::int32_t right, std::uint32_t rank, std::int32_t merged);
  // Returns false when the pair never merges.
  bool find(std::int32_t left, std::int32_t right, std::uint32_t& rank,
            std::int32_t& merged) const {
    if (slots_.empty()) return false;
    const std::uint64_t key = pack(left, right);
    std::size_t i = mix(key) & (slots_.size() - 1);
    while (true) {
      const Slot& s = slots_[i];
      if (s.key == kEmpty) return false;
      if (s.key == key) {
        rank = s.rank;
        merged = s.merged;
        return true;
      }
      i = (i + 1) & (slots_.size() - 1);
    }
  }

 private:
  static constexpr std::uint64_t kEmpty = ~0ull;
  static std::uint64_t pack(std::int32_t a, std::int32_t b) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) |
           static_cast<std::uint32_t>(b);
  }
  static std::uint64_t mix(std::uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
  }
  struct Slot {
    std::uint64_t key = kEmpty;
    std::uint32_t rank = 0;
    std::int32_t merged = 0;
  };
  std::vector<Slot> slots_;
  std::size_t size_ = 0;
};

struct BpeVocabulary {
  std::string name;
  PreTokenizerKind pretokenizer = PreTokenizerKind::kCl100k;
  bool add_prefix_space = false;
  bool whole_piece_lookup = true;     // tiktoken always; HF when ignore_merges
  std::vector<std::string> id_bytes;  // by id; empty = unassigned
  std::vector<std::uint8_t> special;  // by id
  std::vector<std::pair<std::string, std::int32_t>> specials;  // text -> id
  std::optional<std::int32_t> eos, bos;
  BytesMap token_ids;  // ordinary tokens: bytes -> id
  PairMap merges;
  std::int32_t byte_id[256] = {};
};

class BpeTokenizer final : public Tokenizer {
 public:
  explicit BpeTokenizer(BpeVocabulary vocab);

  const std::string& name() const override { return v_.name; }
  std::size_t vocab_size() const override { return v_.id_bytes.size(); }
  std::vector<std::int32_t> encode(std::string_view text, bool allow_special) const override;
  std::string decode(std::span<const std::int32_t> ids) const override;
  std::string token_bytes(std::int32_t id) const override;
  bool is_special(std::int32_t id) const override;
  std::optional<std::int32_t> eos_token() const override { return v_.eos; }
  std::optional<std::int32_t> bos_token() const override { return v_.bos; }

 private:
  void encode_ordinary(std::string_view text, std::vector<std::int32_t>& out) const;
  void encode_piece(std::string_view piece, std::vector<std::int32_t>& out) const;
  void merge(std::string_view piece, std::vector<std::int32_t>& parts) const;

  BpeVocabulary v_;
  std::uint64_t serial_;
};

}  // namespace prism::workloads::detail
