#include "prism/baselines/gpu_datasheet.h"

namespace prism::baselines {

const std::vector<GpuDatasheet>& known_gpus() {
  // Order matters: more specific matches first ("H100 PCIe" before "H100").
  static const std::vector<GpuDatasheet> table = {
      {"H200", "H200", 989.0, 67.0, 4.8, 141.0},
      {"H100 PCIe", "H100 PCIe", 756.0, 51.0, 2.0, 80.0},
      {"H100 NVL", "H100 NVL", 835.0, 60.0, 3.9, 94.0},
      {"H100 SXM", "H100", 989.0, 67.0, 3.35, 80.0},
      {"A100 80GB SXM", "A100-SXM4-80GB", 312.0, 19.5, 2.039, 80.0},
      {"A100 40GB SXM", "A100-SXM4-40GB", 312.0, 19.5, 1.555, 40.0},
      {"A100 PCIe", "A100", 312.0, 19.5, 1.935, 80.0},
      {"L40S", "L40S", 362.0, 91.6, 0.864, 48.0},
      {"L4", "L4", 121.0, 30.3, 0.3, 24.0},
  };
  return table;
}

std::optional<GpuDatasheet> find_gpu_datasheet(std::string_view device_name) {
  for (const auto& entry : known_gpus()) {
    if (device_name.find(entry.match) != std::string_view::npos) return entry;
  }
  return std::nullopt;
}

}  // namespace prism::baselines
