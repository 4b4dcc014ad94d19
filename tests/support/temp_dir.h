// Test helpers: a scratch directory removed with everything in it, and finding
// a file by its suffix (the agent names its traces after the process).
#pragma once

#include <string>

namespace prism::test {

struct TempDir {
  std::string path;
  // Creates /tmp/prism-<tag>-XXXXXX; throws when it cannot.
  explicit TempDir(const std::string& tag = "test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

// The path of a file directly in dir whose name ends with suffix (the last
// one listed when several do); empty when none does or dir cannot be read.
std::string find_file_with_suffix(const std::string& dir, const std::string& suffix);

}  // namespace prism::test
