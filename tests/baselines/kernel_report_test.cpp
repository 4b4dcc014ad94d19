#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "prism/baselines/kernel_report.h"
#include "prism/baselines/roofline.h"

using namespace prism::baselines;

TEST_CASE("The kernel report runs every method on a small context and dense is its own baseline",
          "[report]") {
  KernelReportOptions o;
  o.workload = "rag";
  o.context = 512;
  o.repetitions = 1;
  o.measure_peaks = false;
  const KernelReport r = run_kernel_report(o);
  REQUIRE(r.rows.size() == 9);  // 4 prefill rows, 5 decode rows
  int dense = 0;
  for (const auto& row : r.rows) {
    INFO(row.phase << " " << row.method);
    CHECK(row.total_seconds > 0.0);
    CHECK(row.relative_l2_error >= 0.0);
    CHECK(row.recall >= 0.0);
    CHECK(row.recall <= 1.0);
    CHECK(row.attended_fraction > 0.0);
    CHECK(row.attended_fraction <= 1.0 + 1e-9);
    if (row.method == "dense") {
      ++dense;
      CHECK(row.relative_l2_error == 0.0);
      CHECK(row.recall == 1.0);
      CHECK(row.speedup == 1.0);
    }
    if (row.method == "kivi-int8") CHECK(row.relative_l2_error < 0.02);
    if (row.method == "kivi-int4") CHECK(row.relative_l2_error < 0.3);
  }
  CHECK(dense == 2);
  const std::string table = format_kernel_report(r);
  CHECK(table.find("vertical-slash") != std::string::npos);
  CHECK(table.find("not measured") != std::string::npos);
  const auto j = nlohmann::json::parse(kernel_report_json(r));
  CHECK(j["rows"].size() == 9);
  CHECK(j["rows"][0]["roofline_percent"].is_null());
}

TEST_CASE("The kernel report runs only the methods asked for, plus dense", "[report]") {
  KernelReportOptions o;
  o.workload = "multi-turn";
  o.context = 384;
  o.repetitions = 1;
  o.measure_peaks = false;
  o.methods = {"quest"};
  const KernelReport r = run_kernel_report(o);
  REQUIRE(r.rows.size() == 3);
  CHECK(r.rows[0].method == "dense");
  CHECK(r.rows[2].method == "quest");
  CHECK(r.rows[2].stages.size() == 4);  // bounds, estimate, select, attend
  CHECK(r.shape.prefill_q_len < r.shape.prefill_kv_len);
}

TEST_CASE("The kernel report rejects unknown workloads, methods and devices", "[report]") {
  KernelReportOptions o;
  o.measure_peaks = false;
  o.workload = "chat";
  CHECK_THROWS_WITH(run_kernel_report(o), Catch::Contains("unknown kernel workload 'chat'"));
  o.workload = "rag";
  o.methods = {"h2o"};
  CHECK_THROWS_WITH(run_kernel_report(o), Catch::Contains("unknown method 'h2o'"));
  o.methods = {};
  o.device = "tpu";
  CHECK_THROWS_WITH(run_kernel_report(o), Catch::Contains("unknown device"));
}

TEST_CASE("The CUDA device path explains why it cannot run here", "[report]") {
  KernelReportOptions o;
  o.measure_peaks = false;
  o.device = "cuda";
  o.context = 256;
  CHECK_THROWS_WITH(run_kernel_report(o), Catch::Contains("--device cuda"));
}

TEST_CASE("Roofline: causal attention counts visible pairs and the bound picks the slower resource",
          "[report]") {
  CHECK(causal_pairs(4, 4) == 10.0);
  CHECK(causal_pairs(2, 5) == 2 * 3 + 3);
  const KernelCost prefill = prefill_attention_cost(1024, 1024, 8, 2, 128, 4.0);
  CHECK(prefill.flops == Approx(4.0 * causal_pairs(1024, 1024) * 128 * 8));
  const KernelCost decode = decode_attention_cost(1, 16384, 32, 8, 128, 2 * 128 * 4.0);
  CHECK(decode.bytes > 16384.0 * 8 * 1024);
  CHECK(decode.intensity() < 2.0);
  DevicePeaks peaks{"test", 1e12, 1e11, "test"};
  const auto rd = roofline(decode, peaks, decode.bytes / 1e11 * 2);
  CHECK(rd.memory_bound);
  CHECK(rd.percent_of_roofline == Approx(50.0));
  const auto rp = roofline(prefill, peaks, prefill.flops / 1e12);
  CHECK_FALSE(rp.memory_bound);
  CHECK(rp.percent_of_roofline == Approx(100.0));
  CHECK_THROWS_AS(roofline(prefill, DevicePeaks{}, 1.0), std::invalid_argument);
}

TEST_CASE("GPU peaks come from the datasheet and say so", "[report]") {
  const auto h100 = find_gpu_datasheet("NVIDIA H100 80GB HBM3");
  REQUIRE(h100.has_value());
  const DevicePeaks p = gpu_peaks(*h100);
  CHECK(p.flops_per_s == Approx(989e12));
  CHECK(p.bytes_per_s == Approx(3.35e12));
  CHECK(p.source.find("datasheet") == 0);
}
