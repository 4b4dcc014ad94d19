// End-to-end: the prism binary's results commands, as a CI job would run them.
#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "../support/process.h"
#include "prism/results/atomic_file.h"
#include "prism/results/run_file.h"
#include "synthetic.h"
#include "temp_dir.h"

using prism::test::run_process;
using prism::test::synthetic_run;
using prism::test::SyntheticOptions;
using prism::test::TempDir;

namespace {

const std::string kPrism = PRISM_CLI_PATH;

struct Files {
  TempDir dir;
  std::string base, same, slow, other_workload, db;
  Files() {
    SyntheticOptions o;
    o.requests = 3000;
    o.seed = 1;
    base = write(o, "base.json");
    o.seed = 2;
    same = write(o, "same.json");
    o.seed = 3;
    o.slowdown = 1.25;
    slow = write(o, "slow.json");
    o.slowdown = 1.0;
    o.workload = "rag";
    o.seed = 4;
    other_workload = write(o, "rag.json");
    db = dir.file("prism.db");
  }
  std::string write(const SyntheticOptions& o, const std::string& name) {
    const std::string path = dir.file(name);
    prism::results::write_run_file(path, synthetic_run(o));
    return path;
  }
};

bool gnuplot_available() {
  return run_process({"/bin/sh", "-c", "command -v gnuplot"}).exit_code == 0;
}

}  // namespace

TEST_CASE("prism compare exits 0 for the same system twice and 1 for a 25% slowdown", "[cli]") {
  Files f;
  auto same = run_process({kPrism, "compare", f.base, f.same});
  INFO(same.out << same.err);
  CHECK(same.exit_code == 0);
  CHECK(same.out.find("**Result: pass**") != std::string::npos);

  const std::string junit = f.dir.file("junit.xml");
  const std::string md = f.dir.file("summary.md");
  auto slow = run_process({kPrism, "compare", f.base, f.slow, "--metric", "ttft.p50,e2e.p99",
                           "--max-regression", "5%", "--junit", junit, "--markdown", md});
  INFO(slow.out << slow.err);
  CHECK(slow.exit_code == 1);
  CHECK(slow.out.find("REGRESSION") != std::string::npos);
  const std::string xml = prism::results::read_file(junit);
  CHECK(xml.find("failures=\"2\"") != std::string::npos);
  CHECK(prism::results::read_file(md) == slow.out);

  // Beyond a generous threshold the same slowdown passes.
  auto lenient = run_process(
      {kPrism, "compare", f.base, f.slow, "--metric", "ttft.p50", "--max-regression", "50%"});
  CHECK(lenient.exit_code == 0);
}

TEST_CASE("prism compare with several runs a side gates per run: 0 for A/A, 1 for a slowdown",
          "[cli]") {
  TempDir dir;
  auto write = [&](SyntheticOptions o, const std::string& name) {
    const std::string path = dir.file(name);
    prism::results::write_run_file(path, synthetic_run(o));
    return path;
  };
  SyntheticOptions o;
  o.requests = 400;
  std::string base, again, slow;
  for (int i = 0; i < 4; ++i) {
    const std::string sep = i ? "," : "";
    o.slowdown = 1.0;
    o.seed = 100 + static_cast<std::uint64_t>(i);
    base += sep + write(o, "base" + std::to_string(i) + ".json");
    o.seed = 200 + static_cast<std::uint64_t>(i);
    again += sep + write(o, "again" + std::to_string(i) + ".json");
    o.seed = 300 + static_cast<std::uint64_t>(i);
    o.slowdown = 1.3;
    slow += sep + write(o, "slow" + std::to_string(i) + ".json");
  }
  auto same = run_process({kPrism, "compare", base, again, "--metric", "ttft.p50,tpot.p50"});
  INFO(same.out << same.err);
  CHECK(same.exit_code == 0);
  CHECK(same.out.find("Unit of the test: the run (4 base, 4 candidate, paired") !=
        std::string::npos);
  CHECK(same.out.find("paired t-test on ln per-run values (4 pairs)") != std::string::npos);
  const std::string junit = dir.file("junit.xml");
  auto slower = run_process(
      {kPrism, "compare", base, slow, "--metric", "ttft.p50,tpot.p50", "--junit", junit});
  INFO(slower.out << slower.err);
  CHECK(slower.exit_code == 1);
  CHECK(slower.out.find("**Result: REGRESSION**") != std::string::npos);
  CHECK(prism::results::read_file(junit).find("<failure") != std::string::npos);
  auto welch = run_process({kPrism, "compare", base, again, "--unpaired", "--metric", "tpot.p50"});
  CHECK(welch.exit_code == 0);
  CHECK(welch.out.find("Welch t-test") != std::string::npos);
  // One run against several is neither test: a usage error that says why.
  const std::string first_base = base.substr(0, base.find(','));
  auto lopsided = run_process({kPrism, "compare", first_base, again});
  CHECK(lopsided.exit_code == 2);
  CHECK(lopsided.err.find("at least two runs on each side") != std::string::npos);
}

TEST_CASE("prism compare refuses different workloads unless --force, and usage errors exit 2",
          "[cli]") {
  Files f;
  auto refused = run_process({kPrism, "compare", f.base, f.other_workload});
  CHECK(refused.exit_code == 1);
  CHECK(refused.err.find("workloads differ") != std::string::npos);
  CHECK(refused.err.find("--force") != std::string::npos);
  auto forced = run_process({kPrism, "compare", f.base, f.other_workload, "--force"});
  CHECK(forced.exit_code == 0);
  CHECK(forced.out.find("forced: workloads differ") != std::string::npos);

  CHECK(run_process({kPrism, "compare", f.base}).exit_code == 2);
  CHECK(run_process({kPrism, "compare", f.base, f.same, "--metric", "goodput"}).exit_code == 2);
  CHECK(run_process({kPrism, "compare", f.base, f.same, "--max-regression", "lots"}).exit_code ==
        2);
  CHECK(run_process({kPrism, "compare", f.base, f.same, "--alpha", "2"}).exit_code == 2);
}

TEST_CASE("a corrupted or wrong-version run file is an error naming the file and field", "[cli]") {
  Files f;
  const std::string broken = f.dir.file("broken.json");
  prism::results::write_file_atomically(broken, "{\"schema\": \"prism.run\", \"schema_ver");
  auto r = run_process({kPrism, "compare", f.base, broken});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find(broken) != std::string::npos);
  CHECK(r.err.find("not valid JSON") != std::string::npos);

  auto doc = nlohmann::json::parse(prism::results::read_file(f.base));
  doc["schema_version"] = 7;
  const std::string future = f.dir.file("future.json");
  prism::results::write_file_atomically(future, doc.dump());
  r = run_process({kPrism, "table", future});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find(future) != std::string::npos);
  CHECK(r.err.find("schema_version") != std::string::npos);

  r = run_process(
      {kPrism, "compare", f.base, f.dir.file("missing.json"), "--db", f.dir.file("none.db")});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("missing.json") != std::string::npos);
}

TEST_CASE("prism results import, list, show, export and baseline work on a store", "[cli]") {
  Files f;
  auto imp = run_process({kPrism, "results", "import", f.base, f.slow, "--db", f.db});
  INFO(imp.err);
  REQUIRE(imp.exit_code == 0);
  CHECK(imp.out.find("imported run-engine-a-chat-1 (3000 requests)") != std::string::npos);

  auto list = run_process({kPrism, "results", "list", "--db", f.db, "--json"});
  REQUIRE(list.exit_code == 0);
  const auto runs = nlohmann::json::parse(list.out);
  REQUIRE(runs.size() == 2);
  CHECK(runs[0]["workload"] == "chat");

  auto show = run_process({kPrism, "results", "show", "run-engine-a-chat-1", "--db", f.db});
  CHECK(show.exit_code == 0);
  CHECK(show.out.find("ttft.p99") != std::string::npos);
  CHECK(show.out.find("Test CPU") != std::string::npos);

  const std::string exported = f.dir.file("exported.json");
  CHECK(run_process(
            {kPrism, "results", "export", "run-engine-a-chat-1", "-o", exported, "--db", f.db})
            .exit_code == 0);
  CHECK(prism::results::run_to_json(prism::results::read_run_file(exported)) ==
        prism::results::run_to_json(prism::results::read_run_file(f.base)));

  CHECK(run_process({kPrism, "baseline", "get", "main", "--db", f.db}).exit_code == 1);
  CHECK(run_process({kPrism, "baseline", "set", "main", "run-engine-a-chat-1", "--db", f.db})
            .exit_code == 0);
  auto get = run_process({kPrism, "baseline", "get", "main", "--db", f.db});
  CHECK(get.exit_code == 0);
  CHECK(get.out == "run-engine-a-chat-1\n");
  // The gate against a named baseline in the store.
  CHECK(run_process({kPrism, "compare", "baseline:main", f.slow, "--db", f.db}).exit_code == 1);
  CHECK(run_process({kPrism, "compare", "baseline:main", f.same, "--db", f.db}).exit_code == 0);
  CHECK(run_process({kPrism, "results", "show", "no-such-run", "--db", f.db}).exit_code == 1);
}

TEST_CASE("prism table prints every format from run files and store ids alike", "[cli]") {
  Files f;
  REQUIRE(run_process({kPrism, "results", "import", f.slow, "--db", f.db}).exit_code == 0);
  for (const char* format : {"md", "csv", "latex", "html"}) {
    auto r = run_process({kPrism, "table", f.base, "run-engine-a-chat-3", "--db", f.db, "--format",
                          format, "--metrics", "ttft.p50,ttft.p99,tpot.p50,goodput"});
    INFO(format << ": " << r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("TTFT p50") != std::string::npos);
  }
  auto md = run_process({kPrism, "table", f.base, f.other_workload, "--format", "md"});
  CHECK(md.out.find("chat: TTFT p50 (ms)") != std::string::npos);
  CHECK(md.out.find("rag: TTFT p50 (ms)") != std::string::npos);
  CHECK(run_process({kPrism, "table", f.base, "--format", "pdf"}).exit_code == 2);
  CHECK(run_process({kPrism, "table", f.base, "--metrics", "nonsense"}).exit_code == 2);
  CHECK(run_process({kPrism, "table", f.base, "--by", "target,colour"}).exit_code == 2);
}

TEST_CASE("prism report writes Markdown and a self-contained HTML page", "[cli]") {
  Files f;
  const std::string out = f.dir.file("report");
  auto r = run_process({kPrism, "report", f.base, f.slow, "-o", out});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const std::string md = prism::results::read_file(out + "/report.md");
  const std::string html = prism::results::read_file(out + "/report.html");
  CHECK(md.find("## Summary") != std::string::npos);
  CHECK(html.find("<table class=\"prism-table\">") != std::string::npos);
  if (!gnuplot_available()) {
    WARN("gnuplot is not installed: figures skipped, so only the tables are checked");
    return;
  }
  CHECK(md.find("![Time to first token CDF](figures/ttft-cdf.png)") != std::string::npos);
  CHECK(std::filesystem::exists(out + "/figures/ttft-cdf.svg"));
  CHECK(std::filesystem::exists(out + "/figures/timeline.png"));
  CHECK(html.find("data:image/svg+xml;base64,") != std::string::npos);
  // Self-contained: no figure is referenced by path.
  CHECK(html.find("src=\"figures/") == std::string::npos);
}

TEST_CASE("prism plot draws the figures asked for and rejects unknown ones", "[cli]") {
  Files f;
  if (!gnuplot_available()) {
    WARN("gnuplot is not installed: skipping the figure test");
    return;
  }
  const std::string out = f.dir.file("figs");
  auto r = run_process({kPrism, "plot", f.base, f.slow, "-o", out, "--figure",
                        "ttft-cdf,latency-by-context", "--format", "svg"});
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(std::filesystem::exists(out + "/ttft-cdf.svg"));
  CHECK(std::filesystem::exists(out + "/latency-by-context.svg"));
  CHECK_FALSE(std::filesystem::exists(out + "/ttft-cdf.png"));
  CHECK(prism::results::read_file(out + "/ttft-cdf.svg").find("<svg") != std::string::npos);
  CHECK(run_process({kPrism, "plot", f.base, "--figure", "pie-chart"}).exit_code == 2);
  CHECK(run_process({kPrism, "plot", f.base, "--window", "9:3"}).exit_code == 2);
}
