#include <cstdlib>
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "../support/process.h"

using prism::test::run_process;

namespace {
const std::string kPrism = PRISM_CLI_PATH;
}

TEST_CASE("prism with no subcommand prints usage and exits 2", "[cli]") {
  const auto r = run_process({kPrism});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("Usage") != std::string::npos);
}

TEST_CASE("an unknown subcommand prints usage and exits 2", "[cli]") {
  const auto r = run_process({kPrism, "frobnicate"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("frobnicate") != std::string::npos);
  CHECK(r.err.find("Usage") != std::string::npos);
}

TEST_CASE("an unknown option of a subcommand prints that subcommand's usage and exits 2", "[cli]") {
  const auto r = run_process({kPrism, "doctor", "--no-such-option"});
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--no-such-option") != std::string::npos);
  CHECK(r.err.find("doctor") != std::string::npos);
}

TEST_CASE("prism --version prints the version and the git sha", "[cli]") {
  const auto r = run_process({kPrism, "--version"});
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("prism 0.1.0") != std::string::npos);
  CHECK(r.out.find("git ") != std::string::npos);
  // The sha is taken at build time, not when CMake last configured: it is the checkout's HEAD
  // (the build runs before the tests), with "-dirty" when tracked files were modified.
  const char* source = std::getenv("PRISM_SOURCE_DIR");
  REQUIRE(source != nullptr);
  const auto head = run_process({"/usr/bin/git", "-C", source, "rev-parse", "--short=12", "HEAD"});
  if (head.exit_code == 0 && head.out.size() >= 12) {
    CHECK(r.out.find("(git " + head.out.substr(0, 12)) != std::string::npos);
  } else {
    CHECK(r.out.find("(git unknown)") != std::string::npos);
  }
}

TEST_CASE("every subcommand answers --help with exit 0", "[cli]") {
  const auto top = run_process({kPrism, "--help"});
  REQUIRE(top.exit_code == 0);
  // The top-level help lists the subcommands under "Subcommands:"; each must answer --help.
  const auto pos = top.out.find("Subcommands:");
  REQUIRE(pos != std::string::npos);
  std::istringstream lines(top.out.substr(pos));
  std::string line;
  std::getline(lines, line);
  int checked = 0;
  while (std::getline(lines, line)) {
    std::istringstream words(line);
    std::string name;
    if (!(words >> name)) continue;
    const auto r = run_process({kPrism, name, "--help"});
    INFO("subcommand " << name);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find(name) != std::string::npos);
    ++checked;
  }
  CHECK(checked >= 1);
}

TEST_CASE("prism doctor --json has the environment fields every result embeds", "[cli][doctor]") {
  const auto r = run_process({kPrism, "doctor", "--json"});
  REQUIRE(r.exit_code == 0);
  const auto env = nlohmann::json::parse(r.out);
  CHECK_FALSE(env.at("cpu").at("model").get<std::string>().empty());
  CHECK(env.at("cpu").at("logical_cores").get<int>() >= 1);
  CHECK(env.at("cpu").at("isa").contains("avx2"));
  CHECK(env.at("cpu").at("isa").contains("avx512f"));
  CHECK(env.at("cpu").at("isa").contains("amx_tile"));
  CHECK(env.at("memory").at("total_bytes").get<std::uint64_t>() > 0);
  CHECK_FALSE(env.at("os").at("name").get<std::string>().empty());
  CHECK_FALSE(env.at("os").at("kernel").get<std::string>().empty());
  CHECK_FALSE(env.at("compiler").get<std::string>().empty());
  CHECK(env.at("cuda").contains("toolkit_version"));
  CHECK(env.at("cuda").at("cupti").contains("api_version"));
  CHECK(env.at("cuda").at("gpus").is_array());
  CHECK_FALSE(env.at("cuda").at("status").get<std::string>().empty());

  // The two measured figures, under keys naming what they are.
  bool bandwidth = false, flop = false;
  for (const auto& [key, value] : env.at("measured").items()) {
    if (key.find("bandwidth") != std::string::npos) {
      bandwidth = true;
      CHECK(value.at("best_gb_per_s").get<double>() > 0.1);
      CHECK(value.at("median_gb_per_s").get<double>() <= value.at("best_gb_per_s").get<double>());
    }
    if (key.find("flop") != std::string::npos) {
      flop = true;
      CHECK(value.at("best_gflop_per_s").get<double>() > 0.1);
    }
  }
  CHECK(bandwidth);
  CHECK(flop);
}

TEST_CASE("prism doctor says plainly when there is no NVIDIA driver", "[cli][doctor]") {
  const auto r = run_process({kPrism, "doctor", "--no-measure"});
  REQUIRE(r.exit_code == 0);
  const auto j =
      nlohmann::json::parse(run_process({kPrism, "doctor", "--json", "--no-measure"}).out);
  if (j.at("cuda").at("driver_loaded").get<bool>()) {
    WARN("an NVIDIA driver is present: the no-driver message cannot be checked here");
    return;
  }
  CHECK(r.out.find("no NVIDIA driver: GPU features unavailable") != std::string::npos);
  CHECK_FALSE(j.contains("measured"));
}
