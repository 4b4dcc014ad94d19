#include <catch2/catch.hpp>

#include "prism/baselines/gpu_datasheet.h"
#include "prism/baselines/machine_peaks.h"
#include "prism/harness/environment.h"

using namespace prism;

TEST_CASE("the GPU datasheet finds H100 SXM and H200 from CUDA device names", "[doctor]") {
  const auto h100 = baselines::find_gpu_datasheet("NVIDIA H100 80GB HBM3");
  REQUIRE(h100);
  CHECK(h100->name == "H100 SXM");
  CHECK(h100->bf16_dense_tflops == Approx(989.0));
  CHECK(h100->memory_bandwidth_tb_per_s == Approx(3.35));
  const auto h200 = baselines::find_gpu_datasheet("NVIDIA H200");
  REQUIRE(h200);
  CHECK(h200->memory_bandwidth_tb_per_s == Approx(4.8));
  const auto pcie = baselines::find_gpu_datasheet("NVIDIA H100 PCIe");
  REQUIRE(pcie);
  CHECK(pcie->name == "H100 PCIe");
  CHECK_FALSE(baselines::find_gpu_datasheet("Some Unknown Accelerator"));
}

TEST_CASE("measured memory bandwidth is positive and its median never exceeds its best",
          "[doctor]") {
  const auto m = baselines::measure_memory_bandwidth(std::size_t{4} << 20, 2, 3);
  CHECK(m.best_gb_per_s > 0.0);
  CHECK(m.median_gb_per_s > 0.0);
  CHECK(m.median_gb_per_s <= m.best_gb_per_s);
  CHECK(m.threads == 2);
  CHECK(m.repetitions == 3);
  CHECK(m.array_bytes == (std::size_t{4} << 20));
}

TEST_CASE("measured sgemm peak is positive and reports its matrix size", "[doctor]") {
  const auto m = baselines::measure_sgemm_peak(128, 2);
  CHECK(m.best_gflop_per_s > 0.0);
  CHECK(m.median_gflop_per_s <= m.best_gflop_per_s);
  CHECK(m.matrix_size == 128);
}

TEST_CASE("the doctor report shows GPUs, datasheet peaks and measured figures from the record",
          "[doctor]") {
  nlohmann::json env = harness::collect_environment({.measure = false, .gpu_query_timeout_s = 5.0});
  env["cuda"]["status"] = "1 GPU(s) available";
  env["cuda"]["gpus"] = nlohmann::json::array({{{"index", 0},
                                                {"name", "NVIDIA H100 80GB HBM3"},
                                                {"memory_gib", 79.1},
                                                {"sm_count", 132},
                                                {"compute_capability", "9.0"},
                                                {"theoretical_memory_bandwidth_gb_per_s", 3352.3},
                                                {"datasheet",
                                                 {{"model", "H100 SXM"},
                                                  {"bf16_dense_tflop_per_s", 989.0},
                                                  {"memory_bandwidth_tb_per_s", 3.35}}}}});
  env["measured"] = {
      {"host_memory_bandwidth",
       {{"best_gb_per_s", 20.5}, {"median_gb_per_s", 19.0}, {"method", "triad"}}},
      {"fp32_peak_flop_rate",
       {{"best_gflop_per_s", 150.0}, {"median_gflop_per_s", 140.0}, {"method", "sgemm"}}}};
  const std::string text = harness::format_environment(env);
  CHECK(text.find("NVIDIA H100 80GB HBM3, 132 SMs, 79.1 GiB, sm_9.0") != std::string::npos);
  CHECK(text.find("H100 SXM: 989 TFLOP/s BF16 dense, 3.35 TB/s") != std::string::npos);
  CHECK(text.find("3352 GB/s theoretical") != std::string::npos);
  CHECK(text.find("20.5 GB/s best, 19.0 GB/s median") != std::string::npos);
  CHECK(text.find("150.0 GFLOP/s best") != std::string::npos);
}
