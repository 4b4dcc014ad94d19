// The main job: `prism run` with no workload runs the standard suite on the
// in-process engine, writes a run file per workload, stores them, prints one
// table and writes a report. Driven with the `tiny` model and the smoke size.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "prism/harness/suite.h"
#include "prism/results/run_file.h"
#include "prism/results/store.h"
#include "prism/workloads/tokenizer.h"
#include "prism/workloads/workload_json.h"
#include "support/process.h"

namespace fs = std::filesystem;
using prism::test::run_process;

namespace {

fs::path fresh_dir(const std::string& name) {
  const fs::path dir =
      fs::temp_directory_path() / ("prism-main-job-" + name + "-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string slurp(const fs::path& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("The standard suite is a pure function of the seed and fits the model's context") {
  const auto tokenizer = prism::workloads::make_byte_tokenizer();
  using prism::harness::SuiteSize;
  const auto a = prism::harness::standard_suite(*tokenizer, SuiteSize::kSmoke, 7, 1024);
  const auto b = prism::harness::standard_suite(*tokenizer, SuiteSize::kSmoke, 7, 1024);
  const auto c = prism::harness::standard_suite(*tokenizer, SuiteSize::kSmoke, 8, 1024);
  REQUIRE(a.size() == 3);
  CHECK(a[0].name == "long-context");
  CHECK(a[1].name == "rag");
  CHECK(a[2].name == "multi-turn");
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK(prism::workloads::serialize_workload(a[i].workload) ==
          prism::workloads::serialize_workload(b[i].workload));
    CHECK(prism::workloads::serialize_workload(a[i].workload) !=
          prism::workloads::serialize_workload(c[i].workload));
    CHECK(a[i].workload.kind == a[i].name);
    for (const auto& session : a[i].workload.sessions)
      for (const auto& request : session.requests)
        CHECK(request.prompt_tokens() + request.output_tokens <= 1024);
  }
  // The standard size's long-context sweep reaches 8K tokens, within `small`'s 16K context.
  const auto standard = prism::harness::standard_suite(*tokenizer, SuiteSize::kStandard, 0, 16384);
  std::uint64_t longest = 0;
  for (const auto& session : standard[0].workload.sessions)
    for (const auto& request : session.requests)
      longest = std::max<std::uint64_t>(longest, request.prompt_tokens());
  CHECK(longest >= 8192);
  CHECK(longest < 16384);
}

TEST_CASE("A suite size other than smoke or standard is refused by name") {
  CHECK_THROWS_WITH(prism::harness::suite_size_from_string("huge"),
                    Catch::Contains("unknown suite size 'huge'"));
}

TEST_CASE("prism run with no workload runs the suite, stores the runs and writes a report") {
  const fs::path dir = fresh_dir("ok");
  const fs::path out = dir / "out";
  const fs::path db = dir / "prism.db";
  const auto r =
      run_process({PRISM_CLI_PATH, "run", "--target", "engine:tiny", "--size", "smoke", "--out-dir",
                   out.string(), "--db", db.string(), "--no-figures", "-q"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  std::set<std::string> run_ids;
  for (const char* name : {"long-context", "rag", "multi-turn"}) {
    const auto run = prism::results::read_run_file((out / (std::string(name) + ".json")).string());
    CHECK(run.complete);
    CHECK(run.workload.value("kind", "") == name);
    CHECK(run.configuration.value("suite", "") == "smoke");
    CHECK_FALSE(run.observations.empty());
    for (const auto& o : run.observations) CHECK(o.status == prism::results::RequestStatus::kOk);
    run_ids.insert(run.run_id);
    CHECK(r.out.find(std::string("== ") + name) != std::string::npos);
  }
  CHECK(run_ids.size() == 3);
  // One environment record for all runs, measured once.
  const auto first = prism::results::read_run_file((out / "long-context.json").string());
  const auto last = prism::results::read_run_file((out / "multi-turn.json").string());
  CHECK(first.environment == last.environment);
  CHECK(first.environment.dump().find("bandwidth") != std::string::npos);

  prism::results::Store store(db.string());
  std::set<std::string> stored;
  for (const auto& s : store.list_runs()) stored.insert(s.run_id);
  CHECK(stored == run_ids);

  // The table names every workload; the report exists in both forms.
  CHECK(r.out.find("| long-context") != std::string::npos);
  CHECK(r.out.find("rag") != std::string::npos);
  CHECK(r.out.find("TTFT p50") != std::string::npos);
  CHECK(fs::exists(out / "report.md"));
  CHECK(fs::exists(out / "report.html"));
  CHECK(slurp(out / "report.md").find("multi-turn") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("prism run --only runs just the named suite workloads") {
  const fs::path dir = fresh_dir("only");
  const auto r =
      run_process({PRISM_CLI_PATH, "run", "--target", "engine:tiny", "--size", "smoke", "--only",
                   "rag", "--out-dir", (dir / "out").string(), "--db", "", "--no-report", "-q"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(fs::exists(dir / "out" / "rag.json"));
  CHECK_FALSE(fs::exists(dir / "out" / "long-context.json"));
  CHECK_FALSE(fs::exists(dir / "out" / "report.md"));
  fs::remove_all(dir);
}

TEST_CASE("The main job refuses per-workload options and remote targets without a workload") {
  const auto rate = run_process({PRISM_CLI_PATH, "run", "--rate", "2"});
  CHECK(rate.exit_code == 2);
  CHECK(rate.err.find("--rate") != std::string::npos);
  const auto remote = run_process({PRISM_CLI_PATH, "run", "--target", "openai:http://127.0.0.1:9"});
  CHECK(remote.exit_code == 2);
  CHECK(remote.err.find("--workload is required") != std::string::npos);
  const auto bad_size = run_process({PRISM_CLI_PATH, "run", "--size", "huge"});
  CHECK(bad_size.exit_code == 2);
}

TEST_CASE("The main job with an unknown model fails with the model's name") {
  const fs::path dir = fresh_dir("bad-model");
  const auto r = run_process({PRISM_CLI_PATH, "run", "--target", "engine:no-such-model", "--size",
                              "smoke", "--out-dir", (dir / "out").string(), "--db", "", "-q"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("no-such-model") != std::string::npos);
  fs::remove_all(dir);
}
