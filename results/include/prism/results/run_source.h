// Resolves the RUN arguments of `prism table|plot|report|compare`: a path to a
// run file, or a run id in the result store (a unique prefix of one is
// accepted too), or baseline:NAME for a named baseline in the store.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "prism/results/run_file.h"
#include "prism/results/samples.h"
#include "prism/results/store.h"
#include "prism/results/table.h"

namespace prism::results {

struct RunHandle {
  std::string ref;     // as given on the command line
  std::string run_id;  // resolved id
  bool from_store = false;
};

class RunLoader {
 public:
  explicit RunLoader(std::string store_path);
  ~RunLoader();

  // Throws std::runtime_error naming the argument when it is neither an
  // existing run file nor a run id in the store.
  RunHandle resolve(const std::string& ref);
  const Run& run(const RunHandle& handle);  // full run, observations included (cached)
  RunSamples samples(const RunHandle& handle, bool with_itl = true);
  // Metrics for a table: precomputed ones from the store when available,
  // computed from the samples otherwise.
  TableRun table_run(const RunHandle& handle, const std::vector<std::string>& metrics,
                     const BootstrapOptions& options = {});
  Store& store();  // opens (creating) the store on first use

 private:
  std::string store_path_;
  std::unique_ptr<Store> store_;
  std::map<std::string, Run> runs_;  // by ref
};

}  // namespace prism::results
