#include "prism/results/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/core.h>

namespace prism::results {
namespace {

std::string errno_text() {
  return std::strerror(errno);
}

// An ostream buffer that writes straight to a file descriptor, so that we can
// fsync the same descriptor before the rename.
class FdBuf : public std::streambuf {
 public:
  FdBuf(int fd, std::string path) : fd_(fd), path_(std::move(path)) {
    setp(buf_, buf_ + sizeof buf_);
  }
  ~FdBuf() override = default;

  void flush_all() {
    if (!drain()) throw FileError(fmt::format("{}: write failed: {}", path_, errno_text()));
  }

 protected:
  int_type overflow(int_type ch) override {
    if (!drain()) return traits_type::eof();
    if (ch != traits_type::eof()) {
      *pptr() = static_cast<char>(ch);
      pbump(1);
    }
    return ch == traits_type::eof() ? traits_type::not_eof(ch) : ch;
  }
  int sync() override { return drain() ? 0 : -1; }

 private:
  bool drain() {
    const char* p = pbase();
    while (p < pptr()) {
      const ssize_t n = ::write(fd_, p, static_cast<size_t>(pptr() - p));
      if (n < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      p += n;
    }
    setp(buf_, buf_ + sizeof buf_);
    return true;
  }

  int fd_;
  std::string path_;
  char buf_[1 << 16];
};

void fsync_directory(const std::filesystem::path& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // best effort: some filesystems refuse directory opens
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

void write_file_atomically(const std::string& path,
                           const std::function<void(std::ostream&)>& produce) {
  const std::filesystem::path target(path);
  const std::filesystem::path dir = target.parent_path();
  std::string temp_name = ".";
  temp_name.append(target.filename().string()).append(".tmp-XXXXXX");
  std::string temp = (dir / temp_name).string();
  const int fd = ::mkstemp(temp.data());
  if (fd < 0) {
    throw FileError(
        fmt::format("{}: cannot create temporary file {}: {}", path, temp, errno_text()));
  }
  auto fail = [&](const std::string& what) {
    const std::string message = fmt::format("{}: {}", path, what);
    ::close(fd);
    ::unlink(temp.c_str());
    throw FileError(message);
  };
  try {
    FdBuf buf(fd, path);
    std::ostream out(&buf);
    produce(out);
    buf.flush_all();
    if (!out) throw FileError(fmt::format("{}: write failed: {}", path, errno_text()));
  } catch (...) {
    ::close(fd);
    ::unlink(temp.c_str());
    throw;
  }
  // New files get the usual permissions (mkstemp creates 0600).
  const mode_t umask_now = ::umask(0);
  ::umask(umask_now);
  ::fchmod(fd, 0666 & ~umask_now);
  if (::fsync(fd) != 0) fail("fsync failed: " + errno_text());
  if (::close(fd) != 0) {
    ::unlink(temp.c_str());
    throw FileError(fmt::format("{}: close failed: {}", path, errno_text()));
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    const std::string message =
        fmt::format("{}: rename from {} failed: {}", path, temp, errno_text());
    ::unlink(temp.c_str());
    throw FileError(message);
  }
  fsync_directory(dir);
}

void write_file_atomically(const std::string& path, std::string_view content) {
  write_file_atomically(path, [content](std::ostream& out) {
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
  });
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FileError(fmt::format("{}: cannot open: {}", path, errno_text()));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw FileError(fmt::format("{}: read failed", path));
  return ss.str();
}

}  // namespace prism::results
