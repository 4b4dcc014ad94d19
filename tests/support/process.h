// Test helper: run a program, capture its exit code, stdout and stderr.
#pragma once

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

}  // namespace prism::test
