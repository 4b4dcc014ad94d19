// Reader for the safetensors format: an 8-byte little-endian header length,
// a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {...}},
// then the tensor bytes. The file is memory-mapped; tensors are converted to
// fp32 on read (F32, F16 and BF16 are supported).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace prism::engine {

enum class TensorDtype { kF32, kF16, kBF16 };

struct TensorInfo {
  std::string name;
  TensorDtype dtype = TensorDtype::kF32;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;  // byte offsets into the data section
  std::uint64_t end = 0;
  std::int64_t elements() const;
};

class SafetensorsFile {
 public:
  // Maps and validates the file: header length, JSON, dtypes, shapes against
  // byte ranges, ranges inside the file. Throws std::runtime_error naming the
  // file (and the tensor) on any problem.
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const TensorInfo* find(const std::string& name) const;

  // Converts the tensor to fp32. Throws when it is missing or its shape is not
  // `expected_shape` (the message names both).
  std::vector<float> read_f32(const std::string& name,
                              const std::vector<std::int64_t>& expected_shape) const;

 private:
  std::string path_;
  int fd_ = -1;
  const std::uint8_t* map_ = nullptr;
  std::size_t map_size_ = 0;
  const std::uint8_t* data_ = nullptr;  // start of the data section
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// IEEE half -> float.
float f16_to_float(std::uint16_t h);

}  // namespace prism::engine
