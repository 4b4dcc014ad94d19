#include "prism/workloads/pretokenizer.h"

#include <algorithm>
#include <array>
#include <stdexcept>

namespace prism::workloads {
namespace {

struct ClassRange {
  std::uint32_t first, last;
  std::uint8_t cls;
};
constexpr ClassRange kRanges[] = {
#include "unicode_table.inc"
};

constexpr int kLu = 1, kLl = 2, kLt = 3, kLm = 4, kLo = 5, kM = 6, kN = 7;

// Per code point facts the matchers ask about, packed in a byte.
enum : std::uint8_t {
  kLetter = 1,     // \p{L}
  kNumber = 2,     // \p{N}
  kSpace = 4,      // \s
  kUpperish = 8,   // [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]
  kLowerish = 16,  // [\p{Ll}\p{Lm}\p{Lo}\p{M}]
  kNewline = 32,   // [\r\n]
};

std::uint8_t flags_of(std::uint32_t cp) {
  std::uint8_t f = 0;
  const int c = unicode_class(cp);
  if (c >= kLu && c <= kLo) f |= kLetter;
  if (c == kN) f |= kNumber;
  if (unicode_is_space(cp)) f |= kSpace;
  if (c == kLu || c == kLt || c == kLm || c == kLo || c == kM) f |= kUpperish;
  if (c == kLl || c == kLm || c == kLo || c == kM) f |= kLowerish;
  if (cp == '\r' || cp == '\n') f |= kNewline;
  return f;
}

const std::array<std::uint8_t, 128>& ascii_flags() {
  static const std::array<std::uint8_t, 128> table = [] {
    std::array<std::uint8_t, 128> t{};
    for (std::uint32_t cp = 0; cp < 128; ++cp) t[cp] = flags_of(cp);
    return t;
  }();
  return table;
}

// Text decoded to code points with their flags and byte offsets; matchers
// work on indices into it.
struct Chars {
  std::vector<std::uint32_t> cp;
  std::vector<std::uint8_t> fl;
  std::vector<std::uint32_t> off;  // byte offset of each char; off[n] = text size

  void decode(std::string_view s) {
    cp.clear();
    fl.clear();
    off.clear();
    const auto& af = ascii_flags();
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const std::size_t n = s.size();
    std::size_t i = 0;
    while (i < n) {
      off.push_back(static_cast<std::uint32_t>(i));
      const unsigned char b = p[i];
      if (b < 0x80) {
        cp.push_back(b);
        fl.push_back(af[b]);
        ++i;
        continue;
      }
      std::uint32_t c = 0;
      std::size_t len = 0;
      if ((b & 0xE0) == 0xC0)
        c = b & 0x1F, len = 2;
      else if ((b & 0xF0) == 0xE0)
        c = b & 0x0F, len = 3;
      else if ((b & 0xF8) == 0xF0)
        c = b & 0x07, len = 4;
      bool ok = len != 0 && i + len <= n;
      for (std::size_t k = 1; ok && k < len; ++k) {
        if ((p[i + k] & 0xC0) != 0x80)
          ok = false;
        else
          c = (c << 6) | (p[i + k] & 0x3F);
      }
      if (!ok) {  // an invalid byte stands alone as an "other" character
        cp.push_back(0xFFFD);
        fl.push_back(0);
        ++i;
        continue;
      }
      cp.push_back(c);
      fl.push_back(flags_of(c));
      i += len;
    }
    off.push_back(static_cast<std::uint32_t>(n));
  }
  std::size_t size() const { return cp.size(); }
};

bool is(const Chars& c, std::size_t i, std::uint8_t flag) {
  return i < c.size() && (c.fl[i] & flag);
}
bool other(const Chars& c, std::size_t i) {  // [^\s\p{L}\p{N}]
  return i < c.size() && !(c.fl[i] & (kLetter | kNumber | kSpace));
}
bool prefix_char(const Chars& c, std::size_t i) {  // [^\r\n\p{L}\p{N}]
  return i < c.size() && !(c.fl[i] & (kLetter | kNumber | kNewline));
}
std::uint32_t lower_ascii(std::uint32_t cp) {
  return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
}

// 's|'t|'re|'ve|'m|'ll|'d at i; returns its length in chars or 0.
std::size_t contraction(const Chars& c, std::size_t i, bool case_insensitive) {
  if (i + 1 >= c.size() || c.cp[i] != '\'') return 0;
  auto ch = [&](std::size_t k) {
    if (k >= c.size()) return std::uint32_t{0};
    return case_insensitive ? lower_ascii(c.cp[k]) : c.cp[k];
  };
  const std::uint32_t a = ch(i + 1), b = ch(i + 2);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

std::size_t run(const Chars& c, std::size_t i, std::uint8_t flag, std::size_t limit = SIZE_MAX) {
  std::size_t j = i;
  while (j < c.size() && (c.fl[j] & flag) && j - i < limit) ++j;
  return j;
}

// \s*[\r\n]+ | \s+(?!\S) | \s+ at i (c[i] is whitespace). `newline_rule`
// selects whether the first alternative exists (not in GPT-2).
std::size_t whitespace(const Chars& c, std::size_t i, bool newline_rule) {
  const std::size_t j = run(c, i, kSpace);
  if (newline_rule) {
    for (std::size_t k = j; k > i; --k)
      if (c.fl[k - 1] & kNewline) return k;
  }
  if (j == c.size()) return j;   // \s+(?!\S) at the end of text
  if (j - i >= 2) return j - 1;  // leave one space for the next word
  return j;                      // \s+
}

// ` ?[^\s\p{L}\p{N}]+` then a trailing set; returns end or 0 if no match.
std::size_t symbols(const Chars& c, std::size_t i, bool newline_tail, bool slash_tail) {
  std::size_t s = i;
  if (c.cp[s] == ' ' && other(c, s + 1)) ++s;
  if (!other(c, s)) return 0;
  std::size_t j = s;
  while (other(c, j)) ++j;
  if (newline_tail)
    while (j < c.size() && ((c.fl[j] & kNewline) || (slash_tail && c.cp[j] == '/'))) ++j;
  return j;
}

std::size_t match_cl100k(const Chars& c, std::size_t i, std::size_t max_digits) {
  if (std::size_t k = contraction(c, i, true)) return i + k;
  if (is(c, i, kLetter)) return run(c, i, kLetter);
  if (prefix_char(c, i) && is(c, i + 1, kLetter)) return run(c, i + 1, kLetter);
  if (is(c, i, kNumber)) return run(c, i, kNumber, max_digits);
  if (std::size_t j = symbols(c, i, true, false)) return j;
  if (is(c, i, kSpace)) return whitespace(c, i, true);
  return i + 1;
}

std::size_t match_gpt2(const Chars& c, std::size_t i) {
  if (std::size_t k = contraction(c, i, false)) return i + k;
  const std::size_t s = (c.cp[i] == ' ') ? i + 1 : i;
  if (is(c, s, kLetter)) return run(c, s, kLetter);
  if (is(c, s, kNumber)) return run(c, s, kNumber);
  if (std::size_t j = symbols(c, i, false, false)) return j;
  if (is(c, i, kSpace)) return whitespace(c, i, false);
  return i + 1;
}

// [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+ from s, with the
// regex's backtracking: returns the end, or 0 when it cannot match.
std::size_t o200k_lower_word(const Chars& c, std::size_t s) {
  const std::size_t a = run(c, s, kUpperish) - s;
  for (std::size_t m = a + 1; m-- > 0;) {
    if (is(c, s + m, kLowerish)) return run(c, s + m, kLowerish);
  }
  return 0;
}

// [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]* from s.
std::size_t o200k_upper_word(const Chars& c, std::size_t s) {
  if (!is(c, s, kUpperish)) return 0;
  return run(c, run(c, s, kUpperish), kLowerish);
}

std::size_t match_o200k(const Chars& c, std::size_t i) {
  for (auto word : {o200k_lower_word, o200k_upper_word}) {
    std::size_t end = 0;
    if (prefix_char(c, i)) end = word(c, i + 1);
    if (end == 0) end = word(c, i);
    if (end != 0) return end + contraction(c, end, true);
  }
  if (is(c, i, kNumber)) return run(c, i, kNumber, 3);
  if (std::size_t j = symbols(c, i, true, true)) return j;
  if (is(c, i, kSpace)) return whitespace(c, i, true);
  return i + 1;
}

constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kCl100kPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kO200kPattern =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Variants seen in the wild that mean the same thing (tiktoken's newer
// possessive spelling of cl100k).
constexpr std::string_view kCl100kPossessive =
    R"('(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s)";

std::string strip_spaces(std::string_view s) {
  std::string out;
  for (char ch : s)
    if (ch != ' ' && ch != '\n' && ch != '\t') out += ch;
  return out;
}

}  // namespace

int unicode_class(std::uint32_t cp) {
  if (cp < 0x80) {
    if ((cp | 32) >= 'a' && (cp | 32) <= 'z') return cp <= 'Z' ? kLu : kLl;
    if (cp >= '0' && cp <= '9') return kN;
    return 0;
  }
  const auto* end = std::end(kRanges);
  const auto* it =
      std::upper_bound(std::begin(kRanges), end, cp,
                       [](std::uint32_t v, const ClassRange& r) { return v < r.first; });
  if (it == std::begin(kRanges)) return 0;
  --it;
  return cp <= it->last ? it->cls : 0;
}

bool unicode_is_space(std::uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

std::string_view pretokenizer_pattern(PreTokenizerKind kind) {
  switch (kind) {
    case PreTokenizerKind::kGpt2:
      return kGpt2Pattern;
    case PreTokenizerKind::kCl100k:
      return kCl100kPattern;
    case PreTokenizerKind::kQwen2:
      return kQwen2Pattern;
    case PreTokenizerKind::kO200k:
      return kO200kPattern;
  }
  return {};
}

PreTokenizerKind pretokenizer_from_pattern(std::string_view pattern) {
  const std::string p = strip_spaces(pattern);
  for (auto kind : {PreTokenizerKind::kGpt2, PreTokenizerKind::kCl100k, PreTokenizerKind::kQwen2,
                    PreTokenizerKind::kO200k})
    if (p == strip_spaces(pretokenizer_pattern(kind))) return kind;
  if (p == strip_spaces(kCl100kPossessive)) return PreTokenizerKind::kCl100k;
  throw std::invalid_argument("unsupported pre-tokenizer regex \"" + std::string(pattern) +
                              "\" (supported: GPT-2, cl100k/Llama-3, Qwen2, o200k)");
}

void pretokenize(PreTokenizerKind kind, std::string_view text, std::vector<Piece>& pieces) {
  pieces.clear();
  thread_local Chars chars;
  chars.decode(text);
  const std::size_t n = chars.size();
  std::size_t i = 0;
  while (i < n) {
    std::size_t j = 0;
    switch (kind) {
      case PreTokenizerKind::kGpt2:
        j = match_gpt2(chars, i);
        break;
      case PreTokenizerKind::kCl100k:
        j = match_cl100k(chars, i, 3);
        break;
      case PreTokenizerKind::kQwen2:
        j = match_cl100k(chars, i, 1);
        break;
      case PreTokenizerKind::kO200k:
        j = match_o200k(chars, i);
        break;
    }
    if (j <= i) j = i + 1;
    pieces.push_back({chars.off[i], chars.off[j]});
    i = j;
  }
}

}  // namespace prism::workloads
