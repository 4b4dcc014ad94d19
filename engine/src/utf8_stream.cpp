#include "prism/engine/utf8_stream.h"

namespace prism::engine {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

// Length of the sequence a lead byte starts, 0 if it cannot start one.
int sequence_length(unsigned char b) {
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return 2;
  if (b >= 0xE0 && b <= 0xEF) return 3;
  if (b >= 0xF0 && b <= 0xF4) return 4;
  return 0;
}

// Valid range of the second byte (Unicode Table 3-7), later bytes are 80..BF.
bool second_byte_ok(unsigned char lead, unsigned char b) {
  switch (lead) {
    case 0xE0:
      return b >= 0xA0 && b <= 0xBF;
    case 0xED:
      return b >= 0x80 && b <= 0x9F;
    case 0xF0:
      return b >= 0x90 && b <= 0xBF;
    case 0xF4:
      return b >= 0x80 && b <= 0x8F;
    default:
      return b >= 0x80 && b <= 0xBF;
  }
}

enum class Scan { kComplete, kIncomplete, kInvalid };

// Examines the sequence at s[i]; sets len to its length when complete.
Scan scan(std::string_view s, std::size_t i, int& len) {
  const auto lead = static_cast<unsigned char>(s[i]);
  len = sequence_length(lead);
  if (len == 0) return Scan::kInvalid;
  for (int k = 1; k < len; ++k) {
    if (i + static_cast<std::size_t>(k) >= s.size()) return Scan::kIncomplete;
    const auto b = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
    const bool ok = k == 1 ? second_byte_ok(lead, b) : (b >= 0x80 && b <= 0xBF);
    if (!ok) return Scan::kInvalid;
  }
  return Scan::kComplete;
}

}  // namespace

std::string Utf8Stream::push(std::string_view bytes) {
  pending_.append(bytes);
  std::string out;
  std::size_t i = 0;
  while (i < pending_.size()) {
    int len = 0;
    const Scan r = scan(pending_, i, len);
    if (r == Scan::kComplete) {
      out.append(pending_, i, static_cast<std::size_t>(len));
      i += static_cast<std::size_t>(len);
    } else if (r == Scan::kInvalid) {
      out.append(kReplacement);
      i += 1;
    } else {
      break;  // hold back the start of a character
    }
  }
  pending_.erase(0, i);
  return out;
}

std::string Utf8Stream::finish() {
  std::string out;
  if (!pending_.empty()) out.append(kReplacement);
  pending_.clear();
  return out;
}

bool is_valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    int len = 0;
    if (scan(s, i, len) != Scan::kComplete) return false;
    i += static_cast<std::size_t>(len);
  }
  return true;
}

}  // namespace prism::engine
