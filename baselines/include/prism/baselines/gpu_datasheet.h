// Datasheet peaks of known GPUs, for the roofline when a GPU is present.
// These are vendor figures (dense, no sparsity), not measurements: every
// place that prints them says "datasheet".
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace prism::baselines {

struct GpuDatasheet {
  std::string name;   // canonical name, e.g. "H100 SXM"
  std::string match;  // substring of the CUDA device name that identifies it
  double bf16_dense_tflops = 0.0;
  double fp32_tflops = 0.0;
  double memory_bandwidth_tb_per_s = 0.0;
  double memory_gib = 0.0;
};

const std::vector<GpuDatasheet>& known_gpus();

// Finds the datasheet entry for a CUDA device name such as
// "NVIDIA H100 80GB HBM3"; nullopt when the GPU is not in the table.
std::optional<GpuDatasheet> find_gpu_datasheet(std::string_view device_name);

}  // namespace prism::baselines
