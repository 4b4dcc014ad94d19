// Test helper: run a program, capture its exit code, stdout and stderr.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace prism::test {

struct ProcessResult {
  int exit_code = -1;  // the exit status, or 128 + signal number
  std::string out;
  std::string err;
};

// Runs argv[0] with argv (no shell). Extra environment entries are "KEY=VALUE".
ProcessResult run_process(const std::vector<std::string>& argv,
                          const std::vector<std::string>& extra_env = {});

// A program in the background (environment plus extra "KEY=VALUE", stdout to
// /dev/null), killed and reaped when it goes out of scope unless waited for.
struct BackgroundProcess {
  pid_t pid = -1;
  BackgroundProcess(const std::vector<std::string>& argv,
                    const std::vector<std::string>& extra_env);
  ~BackgroundProcess();
  BackgroundProcess(const BackgroundProcess&) = delete;
  BackgroundProcess& operator=(const BackgroundProcess&) = delete;
  int wait();  // its wait status
};

// True once `path` exists and is not empty, polling every 10 ms up to timeout_ms.
bool wait_for_file(const std::string& path, int timeout_ms);

}  // namespace prism::test
