// libFuzzer target: the trace importers (agent raw format, Chrome / Kineto
// JSON) and the analysis behind them. Bad input must end in TraceError, never
// in a crash, a hang or any other exception.
#include <cstddef>
#include <cstdint>
#include <string>

#include "prism/analysis/breakdown.h"
#include "prism/analysis/export.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  static const prism::analysis::StageRules rules = prism::analysis::StageRules::builtin("prism");
  try {
    prism::analysis::Trace trace = bytes.rfind("PRISMRAW", 0) == 0
                                       ? prism::analysis::read_raw_trace(bytes, "fuzz")
                                       : prism::analysis::read_chrome_trace(bytes, "fuzz");
    const auto breakdown = prism::analysis::analyze(trace, rules);
    (void)prism::analysis::iterations_csv(breakdown);
    (void)prism::analysis::to_chrome_trace(trace, &rules);
  } catch (const prism::analysis::TraceError&) {
    // Expected for malformed input.
  }
  return 0;
}
