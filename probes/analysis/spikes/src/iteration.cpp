#include "prism/spikes/iteration.h"

namespace prism::spikes {

const std::array<const char*, kFeatureCount>& feature_names() {
  static const std::array<const char*, kFeatureCount> names{"prefill_tokens", "decode_seqs",
                                                            "context_tokens", "batch_size"};
  return names;
}

double feature_value(const IterationFeatures& f, int i) {
  switch (i) {
    case 0:
      return f.prefill_tokens;
    case 1:
      return f.decode_seqs;
    case 2:
      return f.context_tokens;
    case 3:
      return f.batch_size;
    default:
      return 0;
  }
}

void set_feature_value(IterationFeatures& f, int i, double value) {
  switch (i) {
    case 0:
      f.prefill_tokens = value;
      break;
    case 1:
      f.decode_seqs = value;
      break;
    case 2:
      f.context_tokens = value;
      break;
    case 3:
      f.batch_size = value;
      break;
    default:
      break;
  }
}

}  // namespace prism::spikes
