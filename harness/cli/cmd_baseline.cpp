// prism baseline set|get: named baselines in the result store, for
// `prism compare baseline:NAME CANDIDATE`.
#include <iostream>

#include <fmt/core.h>

#include "commands.h"
#include "prism/results/run_source.h"
#include "prism/results/store.h"

namespace prism::cli {

void add_baseline_command(CLI::App& app, int& exit_code) {
  struct Options {
    std::string name;
    std::string run;
    std::string db = results::kDefaultStorePath;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("baseline", "Name a run as a baseline in the store");
  cmd->require_subcommand(1);
  CLI::App* set = cmd->add_subcommand("set", "Set NAME to RUN (a run file is imported first)");
  set->add_option("NAME", o->name, "Baseline name, e.g. main")->required();
  set->add_option("RUN", o->run, "Run id in the store or a run file")->required();
  set->add_option("--db", o->db, "Result store")->capture_default_str();
  set->callback([o, &exit_code] {
    results::RunLoader loader(o->db);
    const auto handle = loader.resolve(o->run);
    results::Store& store = loader.store();
    if (!handle.from_store) store.put_run(loader.run(handle));
    store.set_baseline(o->name, handle.run_id);
    std::cout << fmt::format("baseline {} = {}\n", o->name, handle.run_id);
    exit_code = kExitOk;
  });
  CLI::App* get = cmd->add_subcommand("get", "Print the run id of baseline NAME");
  get->add_option("NAME", o->name, "Baseline name")->required();
  get->add_option("--db", o->db, "Result store")->capture_default_str();
  get->callback([o, &exit_code] {
    results::Store store(o->db);
    const auto id = store.baseline(o->name);
    if (!id) {
      std::cerr << fmt::format("prism: error: {}: no baseline named '{}'\n", o->db, o->name);
      exit_code = kExitFailure;
      return;
    }
    std::cout << *id << "\n";
    exit_code = kExitOk;
  });
}

}  // namespace prism::cli
