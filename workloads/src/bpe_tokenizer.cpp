#include "bpe_tokenizer.h"

#include <algorithm>
#include <functional>
#include <queue>
#include <stdexcept>
#include <unordered_map>

namespace prism::workloads::detail {

// ---- BytesMap ---------------------------------------------------------------

void BytesMap::reserve(std::size_t n) {
  std::size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  if (cap > slots_.size()) {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(cap, Slot{});
    for (const auto& s : old) {
      if (!s.used) continue;
      std::size_t i = s.hash & (cap - 1);
      while (slots_[i].used) i = (i + 1) & (cap - 1);
      slots_[i] = s;
    }
  }
}

void BytesMap::grow() {
  reserve(std::max<std::size_t>(16, size_ * 2 + 2));
}

bool BytesMap::insert(std::string_view key, std::int32_t value) {
  if ((size_ + 1) * 2 > slots_.size()) grow();
  const std::uint64_t h = std::hash<std::string_view>{}(key);
  std::size_t i = h & (slots_.size() - 1);
  while (slots_[i].used) {
    const Slot& s = slots_[i];
    if (s.hash == h && std::string_view(arena_.data() + s.offset, s.length) == key) return false;
    i = (i + 1) & (slots_.size() - 1);
  }
  slots_[i] = Slot{h, static_cast<std::uint32_t>(arena_.size()),
                   static_cast<std::uint32_t>(key.size()), value, true};
  arena_.append(key);
  ++size_;
  return true;
}

const std::int32_t* BytesMap::find(std::string_view key) const {
  if (slots_.empty()) return nullptr;
  const std::uint64_t h = std::hash<std::string_view>{}(key);
  std::size_t i = h & (slots_.size() - 1);
  while (slots_[i].used) {
    const Slot& s = slots_[i];
    if (s.hash == h && std::string_view(arena_.data() + s.offset, s.length) == key) return &s.value;
    i = (i + 1) & (slots_.size() - 1);
  }
  return nullptr;
}

// ---- PairMap ----------------------------------------------------------------

void PairMap::reserve(std::size_t n) {
  std::size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  if (cap <= slots_.size()) return;
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(cap, Slot{});
  size_ = 0;
  for (const auto& s : old)
    if (s.key != kEmpty)
      insert(static_cast<std::int32_t>(s.key >> 32), static_cast<std::int32_t>(s.key & 0xffffffffu),
             s.rank, s.merged);
}

void PairMap::insert(std::int32_t left, std::int32_t right, std::uint32_t rank,
                     std::int32_t merged) {
  if ((size_ + 1) * 2 > slots_.size()) reserve(std::max<std::size_t>(16, size_ * 2 + 2));
  const std::uint64_t key = pack(left, right);
  std::size_t i = mix(key) & (slots_.size() - 1);
  while (slots_[i].key != kEmpty) {
    if (slots_[i].key == key) {
      // Keep the lowest rank when a pair is listed twice.
      if (rank < slots_[i].rank) slots_[i] = Slot{key, rank, merged};
      return;
    }
    i = (i + 1) & (slots_.size() - 1);
  }
  slots_[i] = Slot{key, rank, merged};
  ++size_;
}

// ---- BpeTokenizer -----------------------------------------------------------

namespace {

std::atomic<std::uint64_t> next_serial{1};

// Pieces that needed merging, per thread and per tokenizer instance (keyed
// by a serial, never by address, so a new tokenizer never sees stale ids).
// Keys and ids live in arenas: no allocation per cached piece.
struct PieceCache {
  BytesMap index;                      // piece -> entry number
  std::vector<std::uint32_t> offsets;  // entry -> start in ids; one extra at the end
  std::vector<std::int32_t> ids;

  PieceCache() { clear(); }
  void clear() {
    index = BytesMap();
    index.reserve(1 << 12);
    offsets.assign(1, 0);
    ids.clear();
  }
  void add(std::string_view piece, const std::vector<std::int32_t>& parts) {
    if (offsets.size() > (1u << 20)) clear();  // bound memory on endless novel text
    index.insert(piece, static_cast<std::int32_t>(offsets.size() - 1));
    ids.insert(ids.end(), parts.begin(), parts.end());
    offsets.push_back(static_cast<std::uint32_t>(ids.size()));
  }
};

PieceCache& piece_cache(std::uint64_t serial) {
  thread_local std::unordered_map<std::uint64_t, PieceCache> caches;
  thread_local std::uint64_t last_serial = 0;
  thread_local PieceCache* last = nullptr;
  if (serial != last_serial || last == nullptr) {
    last = &caches[serial];
    last_serial = serial;
  }
  return *last;
}

constexpr std::size_t kHeapThreshold = 24;  // pieces longer than this merge with a heap

}  // namespace

BpeTokenizer::BpeTokenizer(BpeVocabulary vocab) : v_(std::move(vocab)), serial_(next_serial++) {
  // Longest special first so that a prefix never shadows a longer token.
  std::sort(v_.specials.begin(), v_.specials.end(),
            [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
}

void BpeTokenizer::merge(std::string_view piece, std::vector<std::int32_t>& parts) const {
  parts.clear();
  for (unsigned char b : piece) parts.push_back(v_.byte_id[b]);
  if (parts.size() <= kHeapThreshold) {
    // Short pieces: keep the rank of each adjacent pair; after a merge only
    // the two pairs around it change (leftmost lowest rank first).
    std::uint32_t ranks[kHeapThreshold];
    std::int32_t merged_ids[kHeapThreshold];
    auto lookup = [&](std::size_t i) {
      std::uint32_t r;
      std::int32_t m;
      if (i + 1 < parts.size() && v_.merges.find(parts[i], parts[i + 1], r, m)) {
        ranks[i] = r;
        merged_ids[i] = m;
      } else {
        ranks[i] = UINT32_MAX;
      }
    };
    for (std::size_t i = 0; i + 1 < parts.size(); ++i) lookup(i);
    while (parts.size() > 1) {
      std::uint32_t best = UINT32_MAX;
      std::size_t at = 0;
      for (std::size_t i = 0; i + 1 < parts.size(); ++i)
        if (ranks[i] < best) best = ranks[i], at = i;
      if (best == UINT32_MAX) break;
      parts[at] = merged_ids[at];
      const std::size_t n = parts.size();
      for (std::size_t i = at + 1; i + 1 < n; ++i) {
        parts[i] = parts[i + 1];
        ranks[i] = ranks[i + 1];
        merged_ids[i] = merged_ids[i + 1];
      }
      parts.pop_back();
      if (at > 0) lookup(at - 1);
      lookup(at);
    }
    return;
  }
  // Long pieces: a min-heap of candidate merges over a linked list, stale
  // entries skipped on pop. Same order as the rescan: (rank, position).
  const std::size_t n = parts.size();
  std::vector<std::int32_t> id(parts.begin(), parts.end());
  std::vector<std::int32_t> prev(n), next(n);
  std::vector<std::uint8_t> alive(n, 1);
  for (std::size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<std::int32_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<std::int32_t>(i + 1) : -1;
  }
  struct Candidate {
    std::uint32_t rank;
    std::int32_t pos;
    std::int32_t left, right, merged;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  auto push = [&](std::int32_t pos) {
    if (pos < 0 || next[pos] < 0) return;
    std::uint32_t rank;
    std::int32_t merged;
    if (v_.merges.find(id[pos], id[next[pos]], rank, merged))
      heap.push({rank, pos, id[pos], id[next[pos]], merged});
  };
  for (std::size_t i = 0; i + 1 < n; ++i) push(static_cast<std::int32_t>(i));
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    if (!alive[c.pos] || id[c.pos] != c.left || next[c.pos] < 0 || id[next[c.pos]] != c.right)
      continue;
    const std::int32_t right = next[c.pos];
    id[c.pos] = c.merged;
    alive[right] = 0;
    next[c.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = c.pos;
    push(prev[c.pos]);
    push(c.pos);
  }
  parts.clear();
  for (std::int32_t i = 0; i >= 0; i = next[i]) parts.push_back(id[i]);
}

void BpeTokenizer::encode_piece(std::string_view piece, std::vector<std::int32_t>& out) const {
  if (v_.whole_piece_lookup) {
    if (const std::int32_t* id = v_.token_ids.find(piece)) {
      out.push_back(*id);
      return;
    }
  }
  if (piece.size() == 1) {
    out.push_back(v_.byte_id[static_cast<unsigned char>(piece[0])]);
    return;
  }
  PieceCache& cache = piece_cache(serial_);
  if (const std::int32_t* entry = cache.index.find(piece)) {
    out.insert(out.end(), cache.ids.begin() + cache.offsets[*entry],
               cache.ids.begin() + cache.offsets[*entry + 1]);
    return;
  }
  thread_local std::vector<std::int32_t> parts;
  merge(piece, parts);
  cache.add(piece, parts);
  out.insert(out.end(), parts.begin(), parts.end());
}

void BpeTokenizer::encode_ordinary(std::string_view text, std::vector<std::int32_t>& out) const {
  if (text.empty()) return;
  std::string prefixed;
  if (v_.add_prefix_space && text.front() != ' ') {
    prefixed = " ";
    prefixed.append(text);
    text = prefixed;
  }
  thread_local std::vector<Piece> pieces;
  pretokenize(v_.pretokenizer, text, pieces);
  for (const Piece& p : pieces) encode_piece(text.substr(p.begin, p.end - p.begin), out);
}

std::vector<std::int32_t> BpeTokenizer::encode(std::string_view text, bool allow_special) const {
  std::vector<std::int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (!allow_special || v_.specials.empty()) {
    encode_ordinary(text, out);
    return out;
  }
  std::size_t start = 0;
  for (std::size_t i = 0; i < text.size();) {
    bool matched = false;
    for (const auto& [s, id] : v_.specials) {
      if (text.compare(i, s.size(), s) == 0) {
        encode_ordinary(text.substr(start, i - start), out);
        out.push_back(id);
        i += s.size();
        start = i;
        matched = true;
        break;
      }
    }
    if (!matched) ++i;
  }
  encode_ordinary(text.substr(start), out);
  return out;
}

std::string BpeTokenizer::decode(std::span<const std::int32_t> ids) const {
  std::string out;
  for (std::int32_t id : ids) {
    if (id < 0 || static_cast<std::size_t>(id) >= v_.id_bytes.size() ||
        (v_.id_bytes[id].empty() && !v_.special[id]))
      throw std::out_of_range("token id " + std::to_string(id) + " is not in the " + v_.name +
                              " vocabulary");
    out += v_.id_bytes[id];
  }
  return out;
}

std::string BpeTokenizer::token_bytes(std::int32_t id) const {
  if (id < 0 || static_cast<std::size_t>(id) >= v_.id_bytes.size()) return {};
  return v_.id_bytes[id];
}

bool BpeTokenizer::is_special(std::int32_t id) const {
  return id >= 0 && static_cast<std::size_t>(id) < v_.special.size() && v_.special[id];
}

}  // namespace prism::workloads::detail
