// Incremental detokenization that only ever emits valid UTF-8. Byte-level BPE
// tokens can end in the middle of a character (and random weights sample such
// tokens often): the bytes of an incomplete character are held back until it
// completes; bytes that can never become valid are replaced by U+FFFD, so the
// stream never stalls and never carries invalid UTF-8.
#pragma once

#include <string>
#include <string_view>

namespace prism::engine {

class Utf8Stream {
 public:
  // Appends bytes; returns the text that is now complete (valid UTF-8).
  std::string push(std::string_view bytes);
  // Ends the stream: held-back bytes of an unfinished character become U+FFFD.
  std::string finish();
  std::size_t held_bytes() const { return pending_.size(); }

 private:
  std::string pending_;
};

// True when `s` is well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF).
bool is_valid_utf8(std::string_view s);

}  // namespace prism::engine
