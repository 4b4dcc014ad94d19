#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "prism/results/atomic_file.h"

namespace fs = std::filesystem;
using prism::results::FileError;
using prism::results::read_file;
using prism::results::write_file_atomically;

namespace {

fs::path fresh_dir(const std::string& name) {
  fs::path dir =
      fs::temp_directory_path() / ("prism-test-" + name + "-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::size_t count_entries(const fs::path& dir) {
  return static_cast<std::size_t>(
      std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

}  // namespace

TEST_CASE("an atomic write replaces the file with exactly the new content", "[atomic]") {
  const auto dir = fresh_dir("replace");
  const std::string path = (dir / "run.json").string();
  write_file_atomically(path, "old");
  write_file_atomically(path, "new content");
  CHECK(read_file(path) == "new content");
  CHECK(count_entries(dir) == 1);  // no temporary file left behind
  fs::remove_all(dir);
}

TEST_CASE("a writer that fails midway leaves the previous file intact and no temporary file",
          "[atomic]") {
  const auto dir = fresh_dir("throw");
  const std::string path = (dir / "run.json").string();
  write_file_atomically(path, "previous");
  CHECK_THROWS_AS(write_file_atomically(path,
                                        [](std::ostream& out) {
                                          out << std::string(1 << 20, 'x');
                                          throw std::runtime_error("producer failed");
                                        }),
                  std::runtime_error);
  CHECK(read_file(path) == "previous");
  CHECK(count_entries(dir) == 1);
  fs::remove_all(dir);
}

TEST_CASE("a writer killed mid-write leaves the previous file intact", "[atomic]") {
  const auto dir = fresh_dir("kill");
  const std::string path = (dir / "run.json").string();
  write_file_atomically(path, "previous");
  int ready[2];
  REQUIRE(pipe(ready) == 0);
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    close(ready[0]);
    write_file_atomically(path, [&](std::ostream& out) {
      out << std::string(1 << 20, 'y');
      out.flush();
      const char byte = 1;
      if (write(ready[1], &byte, 1) != 1) _exit(3);
      for (;;) {  // keep writing until the parent kills us
        out << std::string(4096, 'z');
        usleep(1000);
      }
    });
    _exit(0);
  }
  close(ready[1]);
  char byte = 0;
  REQUIRE(read(ready[0], &byte, 1) == 1);
  close(ready[0]);
  kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  REQUIRE(WIFSIGNALED(status));
  CHECK(read_file(path) == "previous");
  fs::remove_all(dir);
}

TEST_CASE("a write into a missing directory fails with an error naming the path", "[atomic]") {
  const std::string path = "/nonexistent-prism-dir/sub/run.json";
  try {
    write_file_atomically(path, "x");
    FAIL("expected FileError");
  } catch (const FileError& e) {
    CHECK(std::string(e.what()).find(path) != std::string::npos);
  }
}

TEST_CASE("a rename onto a directory fails and removes the temporary file", "[atomic]") {
  const auto dir = fresh_dir("rename");
  fs::create_directories(dir / "occupied");
  fs::create_directories(dir / "occupied" / "child");
  CHECK_THROWS_AS(write_file_atomically((dir / "occupied").string(), "x"), FileError);
  CHECK(count_entries(dir) == 1);
  fs::remove_all(dir);
}

TEST_CASE("reading a missing file names it", "[atomic]") {
  try {
    read_file("/nonexistent-prism-file.json");
    FAIL("expected FileError");
  } catch (const FileError& e) {
    CHECK(std::string(e.what()).find("/nonexistent-prism-file.json") != std::string::npos);
  }
}
