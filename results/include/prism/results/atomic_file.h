// Every file Prism writes goes through here: the content is written to a
// temporary file in the destination's directory, flushed with fsync, renamed
// over the destination and the directory is fsynced. A crash or a kill at any
// point leaves either the old file or the new one, never a torn mix.
#pragma once

#include <functional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace prism::results {

class FileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Writes `content` to `path` atomically. Throws FileError naming the path and
// the failing system call; on failure the previous file is untouched and the
// temporary file is removed.
void write_file_atomically(const std::string& path, std::string_view content);

// Streaming form for large outputs: `produce` writes into a stream backed by
// the temporary file. If `produce` throws, nothing is renamed.
void write_file_atomically(const std::string& path,
                           const std::function<void(std::ostream&)>& produce);

// Reads a whole file; throws FileError naming the path when it cannot.
std::string read_file(const std::string& path);

}  // namespace prism::results
