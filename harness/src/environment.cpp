#include "prism/harness/environment.h"

#include <dlfcn.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <future>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>

#include <fmt/core.h>

#include "prism/baselines/gpu_datasheet.h"
#include "prism/baselines/machine_peaks.h"
#include "prism/build_sha.h"
#include "prism/results/run_file.h"

#ifndef PRISM_CUDA_TOOLKIT_VERSION
#define PRISM_CUDA_TOOLKIT_VERSION ""
#endif

namespace prism::harness {
namespace {

using nlohmann::json;

std::string trim(std::string s) {
  const auto first = s.find_first_not_of(" \t\r\n\"");
  const auto last = s.find_last_not_of(" \t\r\n\"");
  return first == std::string::npos ? "" : s.substr(first, last - first + 1);
}

// Value of the first "key : value" line in a /proc-style file.
std::string proc_field(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    if (trim(line.substr(0, colon)) == key) return trim(line.substr(colon + 1));
  }
  return "";
}

json cpu_record() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, model, flags_line;
  std::set<std::pair<std::string, std::string>> cores;  // (physical id, core id)
  std::string physical_id;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string key = trim(line.substr(0, colon));
    const std::string value = trim(line.substr(colon + 1));
    if (key == "model name" && model.empty()) model = value;
    if (key == "flags" && flags_line.empty()) flags_line = value;
    if (key == "physical id") physical_id = value;
    if (key == "core id") cores.emplace(physical_id, value);
  }
  std::set<std::string> flags;
  std::istringstream fs(flags_line);
  for (std::string f; fs >> f;) flags.insert(f);
  auto has = [&](const char* f) { return flags.count(f) > 0; };
  const long logical = sysconf(_SC_NPROCESSORS_ONLN);
  return {
      {"model", model.empty() ? "unknown" : model},
      {"logical_cores", logical},
      {"physical_cores", cores.empty() ? logical : static_cast<long>(cores.size())},
      {"isa",
       {{"sse4_2", has("sse4_2")},
        {"avx2", has("avx2")},
        {"fma", has("fma")},
        {"avx512f", has("avx512f")},
        {"avx512bw", has("avx512bw")},
        {"avx512_vnni", has("avx512_vnni")},
        {"avx512_bf16", has("avx512_bf16")},
        {"avx512_fp16", has("avx512_fp16")},
        {"amx_tile", has("amx_tile")},
        {"amx_bf16", has("amx_bf16")},
        {"amx_int8", has("amx_int8")}}},
  };
}

json memory_record() {
  // /proc/meminfo reports kB.
  std::string total = proc_field("/proc/meminfo", "MemTotal");
  std::uint64_t kb = 0;
  try {
    kb = std::stoull(total);
  } catch (...) {
  }
  return {{"total_bytes", kb * 1024}, {"total_gib", static_cast<double>(kb) / (1024.0 * 1024.0)}};
}

json os_record() {
  std::string pretty = "unknown";
  std::ifstream in("/etc/os-release");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("PRETTY_NAME=", 0) == 0) pretty = trim(line.substr(12));
  }
  utsname u{};
  uname(&u);
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  return {{"name", pretty}, {"kernel", u.release}, {"machine", u.machine}, {"hostname", host}};
}

// CUDA driver API entry points, looked up at run time so that Prism runs
// where there is no driver at all.
struct CudaDriver {
  using Init = int (*)(unsigned);
  using GetVersion = int (*)(int*);
  using GetCount = int (*)(int*);
  using Get = int (*)(int*, int);
  using GetName = int (*)(char*, int, int);
  using TotalMem = int (*)(std::size_t*, int);
  using GetAttribute = int (*)(int*, int, int);
  Init init = nullptr;
  GetVersion driver_version = nullptr;
  GetCount device_count = nullptr;
  Get device = nullptr;
  GetName name = nullptr;
  TotalMem total_mem = nullptr;
  GetAttribute attribute = nullptr;
};

// CUdevice_attribute values from cuda.h (stable across CUDA releases).
constexpr int kAttrClockRateKhz = 13;
constexpr int kAttrSmCount = 16;
constexpr int kAttrMemoryClockKhz = 36;
constexpr int kAttrMemoryBusWidthBits = 37;
constexpr int kAttrComputeMajor = 75;
constexpr int kAttrComputeMinor = 76;

json query_gpus() {
  json cuda = {{"driver_loaded", false}, {"gpus", json::array()}};
  const std::string nvrm = [] {
    std::ifstream in("/proc/driver/nvidia/version");
    std::string first;
    std::getline(in, first);
    return first;
  }();
  if (!nvrm.empty()) {
    // "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.82.07  Wed ..."
    std::istringstream words(nvrm);
    std::string w, version;
    while (words >> w) {
      if (w == "Module" && (words >> version)) break;
    }
    cuda["driver_version"] = version;
  }
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    cuda["status"] = "no NVIDIA driver: GPU features unavailable";
    return cuda;
  }
  CudaDriver d;
  d.init = reinterpret_cast<CudaDriver::Init>(dlsym(lib, "cuInit"));
  d.driver_version = reinterpret_cast<CudaDriver::GetVersion>(dlsym(lib, "cuDriverGetVersion"));
  d.device_count = reinterpret_cast<CudaDriver::GetCount>(dlsym(lib, "cuDeviceGetCount"));
  d.device = reinterpret_cast<CudaDriver::Get>(dlsym(lib, "cuDeviceGet"));
  d.name = reinterpret_cast<CudaDriver::GetName>(dlsym(lib, "cuDeviceGetName"));
  d.total_mem = reinterpret_cast<CudaDriver::TotalMem>(dlsym(lib, "cuDeviceTotalMem_v2"));
  d.attribute = reinterpret_cast<CudaDriver::GetAttribute>(dlsym(lib, "cuDeviceGetAttribute"));
  if (!d.init || !d.driver_version || !d.device_count || !d.device || !d.name || !d.total_mem ||
      !d.attribute) {
    cuda["status"] =
        "NVIDIA driver library lacks the expected entry points: GPU features unavailable";
    return cuda;
  }
  cuda["driver_loaded"] = true;
  int version = 0;
  if (d.driver_version(&version) == 0) {
    cuda["driver_cuda_version"] = fmt::format("{}.{}", version / 1000, (version % 1000) / 10);
  }
  if (const int rc = d.init(0); rc != 0) {
    cuda["status"] = fmt::format("cuInit failed (CUresult {}): GPU features unavailable", rc);
    return cuda;
  }
  int count = 0;
  d.device_count(&count);
  for (int i = 0; i < count; ++i) {
    int dev = 0;
    if (d.device(&dev, i) != 0) continue;
    char name[256] = {};
    d.name(name, sizeof name - 1, dev);
    std::size_t bytes = 0;
    d.total_mem(&bytes, dev);
    auto attr = [&](int which) {
      int value = 0;
      return d.attribute(&value, which, dev) == 0 ? value : 0;
    };
    json gpu = {
        {"index", i},
        {"name", name},
        {"memory_bytes", bytes},
        {"memory_gib", static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0)},
        {"sm_count", attr(kAttrSmCount)},
        {"compute_capability",
         fmt::format("{}.{}", attr(kAttrComputeMajor), attr(kAttrComputeMinor))},
    };
    if (const int clock = attr(kAttrClockRateKhz); clock > 0) gpu["sm_clock_mhz"] = clock / 1000.0;
    const int mem_clock = attr(kAttrMemoryClockKhz);
    const int bus = attr(kAttrMemoryBusWidthBits);
    if (mem_clock > 0 && bus > 0) {
      // Double data rate: two transfers per clock.
      gpu["theoretical_memory_bandwidth_gb_per_s"] = 2.0 * mem_clock * 1e3 * (bus / 8.0) / 1e9;
    }
    if (auto sheet = baselines::find_gpu_datasheet(name)) {
      gpu["datasheet"] = {{"model", sheet->name},
                          {"bf16_dense_tflop_per_s", sheet->bf16_dense_tflops},
                          {"fp32_tflop_per_s", sheet->fp32_tflops},
                          {"memory_bandwidth_tb_per_s", sheet->memory_bandwidth_tb_per_s}};
    }
    cuda["gpus"].push_back(std::move(gpu));
  }
  cuda["status"] =
      count > 0 ? fmt::format("{} GPU(s) available", count)
                : std::string("NVIDIA driver loaded but no GPU visible: GPU features unavailable");
  return cuda;
}

// Runs the driver query on its own thread so that a wedged driver cannot
// hang the caller: past the timeout the thread is abandoned.
json query_gpus_bounded(double timeout_s) {
  auto promise = std::make_shared<std::promise<json>>();
  std::future<json> result = promise->get_future();
  std::thread([promise] {
    try {
      promise->set_value(query_gpus());
    } catch (const std::exception& e) {
      promise->set_value({{"driver_loaded", false},
                          {"gpus", json::array()},
                          {"status", fmt::format("GPU query failed: {}", e.what())}});
    }
  }).detach();
  if (result.wait_for(std::chrono::duration<double>(timeout_s)) != std::future_status::ready) {
    return {{"driver_loaded", false},
            {"gpus", json::array()},
            {"status", fmt::format("GPU query did not answer within {} s: GPU features unavailable",
                                   timeout_s)}};
  }
  return result.get();
}

json cupti_record() {
  using GetVersion = int (*)(std::uint32_t*);
  for (const char* name : {"libcupti.so", "libcupti.so.13", "/usr/local/cuda/lib/libcupti.so",
                           "/usr/local/cuda/extras/CUPTI/lib64/libcupti.so"}) {
    void* lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) continue;
    auto get = reinterpret_cast<GetVersion>(dlsym(lib, "cuptiGetVersion"));
    std::uint32_t version = 0;
    if (get != nullptr && get(&version) == 0) return {{"api_version", version}, {"library", name}};
  }
  return {{"api_version", nullptr}, {"status", "libcupti not found: CUPTI probes unavailable"}};
}

}  // namespace

json collect_environment(const EnvironmentOptions& options) {
  json env = {
      {"collected_at", results::utc_timestamp_now()},
      {"prism", {{"version", PRISM_VERSION}, {"git_sha", PRISM_GIT_SHA}}},
      {"cpu", cpu_record()},
      {"memory", memory_record()},
      {"os", os_record()},
      {"compiler", PRISM_COMPILER},
  };
  json cuda = query_gpus_bounded(options.gpu_query_timeout_s);
  const std::string toolkit = PRISM_CUDA_TOOLKIT_VERSION;
  cuda["toolkit_version"] = toolkit.empty() ? json(nullptr) : json(toolkit);
  cuda["built_with_cuda"] = !toolkit.empty();
  cuda["cupti"] = cupti_record();
  env["cuda"] = std::move(cuda);

  if (options.measure) {
    const auto bw = baselines::measure_memory_bandwidth();
    const auto fl = baselines::measure_sgemm_peak();
    env["measured"] = {
        {"host_memory_bandwidth",
         {{"best_gb_per_s", bw.best_gb_per_s},
          {"median_gb_per_s", bw.median_gb_per_s},
          {"method",
           fmt::format("STREAM triad, 3 arrays x {} MiB of double, {} threads, best of {}",
                       bw.array_bytes >> 20, bw.threads, bw.repetitions)}}},
        {"fp32_peak_flop_rate",
         {{"best_gflop_per_s", fl.best_gflop_per_s},
          {"median_gflop_per_s", fl.median_gflop_per_s},
          {"method", fmt::format("OpenBLAS sgemm {0}x{0}x{0}, best of {1}", fl.matrix_size,
                                 fl.repetitions)}}},
    };
  }
  return env;
}

std::string format_environment(const json& env) {
  std::string out;
  auto line = [&](const std::string& key, const std::string& value) {
    out += fmt::format("  {:<22} {}\n", key, value);
  };
  const json& cpu = env.at("cpu");
  std::string isa;
  for (const auto& [flag, present] : cpu.at("isa").items()) {
    if (present.get<bool>()) isa += (isa.empty() ? "" : " ") + flag;
  }
  out += "Host\n";
  line("CPU", cpu.at("model").get<std::string>());
  line("cores", fmt::format("{} logical, {} physical", cpu.at("logical_cores").get<long>(),
                            cpu.at("physical_cores").get<long>()));
  line("ISA", isa.empty() ? "(none of the tracked extensions)" : isa);
  line("memory", fmt::format("{:.1f} GiB", env.at("memory").at("total_gib").get<double>()));
  line("OS", env.at("os").at("name").get<std::string>());
  line("kernel", env.at("os").at("kernel").get<std::string>());
  line("compiler", env.at("compiler").get<std::string>());
  line("prism", fmt::format("{} (git {})", env.at("prism").at("version").get<std::string>(),
                            env.at("prism").at("git_sha").get<std::string>()));

  const json& cuda = env.at("cuda");
  out += "CUDA\n";
  line("toolkit", cuda.at("toolkit_version").is_null()
                      ? "not built with CUDA"
                      : cuda.at("toolkit_version").get<std::string>());
  const json& cupti = cuda.at("cupti");
  line("CUPTI", cupti.at("api_version").is_null()
                    ? cupti.value("status", "unavailable")
                    : fmt::format("API version {}", cupti.at("api_version").get<std::uint32_t>()));
  if (cuda.contains("driver_version")) line("driver", cuda.at("driver_version").get<std::string>());
  line("status", cuda.at("status").get<std::string>());
  for (const auto& gpu : cuda.at("gpus")) {
    std::string detail =
        fmt::format("{}, {} SMs, {:.1f} GiB, sm_{}", gpu.at("name").get<std::string>(),
                    gpu.at("sm_count").get<int>(), gpu.at("memory_gib").get<double>(),
                    gpu.at("compute_capability").get<std::string>());
    line(fmt::format("GPU {}", gpu.at("index").get<int>()), detail);
    if (gpu.contains("theoretical_memory_bandwidth_gb_per_s")) {
      line("  memory bandwidth",
           fmt::format("{:.0f} GB/s theoretical (clock x bus width)",
                       gpu.at("theoretical_memory_bandwidth_gb_per_s").get<double>()));
    }
    if (gpu.contains("datasheet")) {
      const json& ds = gpu.at("datasheet");
      line("  datasheet", fmt::format("{}: {:.0f} TFLOP/s BF16 dense, {:.2f} TB/s",
                                      ds.at("model").get<std::string>(),
                                      ds.at("bf16_dense_tflop_per_s").get<double>(),
                                      ds.at("memory_bandwidth_tb_per_s").get<double>()));
    }
  }
  if (env.contains("measured")) {
    const json& m = env.at("measured");
    out += "Measured\n";
    const json& bw = m.at("host_memory_bandwidth");
    line("memory bandwidth",
         fmt::format("{:.1f} GB/s best, {:.1f} GB/s median ({})",
                     bw.at("best_gb_per_s").get<double>(), bw.at("median_gb_per_s").get<double>(),
                     bw.at("method").get<std::string>()));
    const json& fl = m.at("fp32_peak_flop_rate");
    line("FP32 peak", fmt::format("{:.1f} GFLOP/s best, {:.1f} GFLOP/s median ({})",
                                  fl.at("best_gflop_per_s").get<double>(),
                                  fl.at("median_gflop_per_s").get<double>(),
                                  fl.at("method").get<std::string>()));
  }
  return out;
}

}  // namespace prism::harness
