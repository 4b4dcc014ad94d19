#include "prism/engine/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>

#include <fmt/core.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "prism/kernels/ops.h"

namespace prism::engine {
namespace {

std::size_t dtype_size(TensorDtype d) {
  return d == TensorDtype::kF32 ? 4 : 2;
}

constexpr std::uint64_t kMaxHeaderBytes = std::uint64_t{100} << 20;

}  // namespace

std::int64_t TensorInfo::elements() const {
  std::int64_t n = 1;
  for (auto s : shape) n *= s;
  return n;
}

float f16_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1fu;
  std::uint32_t mant = h & 0x3ffu;
  std::uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0)
    throw std::runtime_error(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd_, &st) != 0 || st.st_size < 8) {
    ::close(fd_);
    throw std::runtime_error(fmt::format("{}: too short to be a safetensors file", path));
  }
  map_size_ = static_cast<std::size_t>(st.st_size);
  void* m = ::mmap(nullptr, map_size_, PROT_READ, MAP_PRIVATE, fd_, 0);
  if (m == MAP_FAILED) {
    ::close(fd_);
    throw std::runtime_error(fmt::format("{}: mmap failed: {}", path, std::strerror(errno)));
  }
  map_ = static_cast<const std::uint8_t*>(m);
  try {
    std::uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | map_[i];
    if (header_len > kMaxHeaderBytes || header_len > map_size_ - 8)
      throw std::runtime_error(fmt::format("{}: header length {} exceeds the file ({} bytes)", path,
                                           header_len, map_size_));
    const char* hdr = reinterpret_cast<const char*>(map_ + 8);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(hdr, hdr + header_len);
    } catch (const nlohmann::json::parse_error& e) {
      throw std::runtime_error(fmt::format("{}: header is not valid JSON: {}", path, e.what()));
    }
    if (!j.is_object())
      throw std::runtime_error(fmt::format("{}: header is not a JSON object", path));
    data_ = map_ + 8 + header_len;
    const std::uint64_t data_size = map_size_ - 8 - header_len;
    for (const auto& [name, v] : j.items()) {
      if (name == "__metadata__") {
        if (v.is_object())
          for (const auto& [k, mv] : v.items())
            metadata_[k] = mv.is_string() ? mv.get<std::string>() : mv.dump();
        continue;
      }
      const auto bad = [&](std::string_view why) {
        return std::runtime_error(fmt::format("{}: tensor \"{}\": {}", path, name, why));
      };
      if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") ||
          !v.contains("data_offsets"))
        throw bad("needs dtype, shape and data_offsets");
      TensorInfo t;
      t.name = name;
      const std::string dt = v.at("dtype").is_string() ? v.at("dtype").get<std::string>() : "";
      if (dt == "F32")
        t.dtype = TensorDtype::kF32;
      else if (dt == "F16")
        t.dtype = TensorDtype::kF16;
      else if (dt == "BF16")
        t.dtype = TensorDtype::kBF16;
      else
        throw bad(fmt::format("unsupported dtype {} (F32, F16, BF16)", v.at("dtype").dump()));
      if (!v.at("shape").is_array()) throw bad("shape must be an array");
      for (const auto& s : v.at("shape")) {
        if (!s.is_number_integer() || s.get<std::int64_t>() < 0)
          throw bad("shape entries must be non-negative integers");
        t.shape.push_back(s.get<std::int64_t>());
      }
      const auto& off = v.at("data_offsets");
      if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
          !off[1].is_number_unsigned())
        throw bad("data_offsets must be [begin, end]");
      t.begin = off[0].get<std::uint64_t>();
      t.end = off[1].get<std::uint64_t>();
      if (t.begin > t.end || t.end > data_size)
        throw bad(fmt::format("data_offsets [{}, {}] outside the data section ({} bytes)", t.begin,
                              t.end, data_size));
      if (static_cast<std::uint64_t>(t.elements()) * dtype_size(t.dtype) != t.end - t.begin)
        throw bad(fmt::format("shape [{}] does not match {} bytes of {}", fmt::join(t.shape, ", "),
                              t.end - t.begin, dt));
      tensors_.emplace(name, std::move(t));
    }
  } catch (...) {
    ::munmap(const_cast<std::uint8_t*>(map_), map_size_);
    ::close(fd_);
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(const_cast<std::uint8_t*>(map_), map_size_);
  if (fd_ >= 0) ::close(fd_);
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  const auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

std::vector<float> SafetensorsFile::read_f32(
    const std::string& name, const std::vector<std::int64_t>& expected_shape) const {
  const TensorInfo* t = find(name);
  if (t == nullptr)
    throw std::runtime_error(fmt::format("{}: tensor \"{}\" is missing", path_, name));
  if (t->shape != expected_shape)
    throw std::runtime_error(fmt::format("{}: tensor \"{}\" has shape [{}], expected [{}]", path_,
                                         name, fmt::join(t->shape, ", "),
                                         fmt::join(expected_shape, ", ")));
  const auto n = static_cast<std::size_t>(t->elements());
  std::vector<float> out(n);
  const std::uint8_t* src = data_ + t->begin;
  switch (t->dtype) {
    case TensorDtype::kF32:
      std::memcpy(out.data(), src, n * 4);
      break;
    case TensorDtype::kBF16:
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t b;
        std::memcpy(&b, src + 2 * i, 2);
        out[i] = kernels::bf16_to_float(b);
      }
      break;
    case TensorDtype::kF16:
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t b;
        std::memcpy(&b, src + 2 * i, 2);
        out[i] = f16_to_float(b);
      }
      break;
  }
  return out;
}

}  // namespace prism::engine
