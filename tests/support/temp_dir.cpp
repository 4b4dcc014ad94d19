#include "temp_dir.h"

#include <dirent.h>
#include <stdlib.h>

#include <filesystem>
#include <stdexcept>
#include <system_error>
#include <vector>

namespace prism::test {

TempDir::TempDir(const std::string& tag) {
  std::string pattern = "/tmp/prism-" + tag + "-XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (mkdtemp(buffer.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + pattern);
  path = buffer.data();
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path, ignored);
}

std::string find_file_with_suffix(const std::string& dir, const std::string& suffix) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return {};
  std::string found;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      found = dir + "/" + name;
  }
  closedir(d);
  return found;
}

}  // namespace prism::test
