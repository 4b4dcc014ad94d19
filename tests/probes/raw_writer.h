// Builds agent raw-format bytes by hand, for analysis tests with exact numbers.
#pragma once

#include <cstdint>
#include <string>

#include "prism/agent/raw_format.h"

namespace prism::test {

class RawWriter {
 public:
  explicit RawWriter(uint32_t pid = 4242, uint32_t version = PRISM_RAW_VERSION);
  void string(uint32_t id, const std::string& text);
  void thread_name(uint32_t tid, uint32_t name);
  void event(uint16_t kind, uint64_t t0, uint32_t tid, uint32_t name = 0, uint64_t arg = 0,
             uint32_t corr = 0, uint64_t t1 = 0, uint16_t device = 0);
  void push(uint64_t t, uint32_t tid, uint32_t name) { event(agent::PRISM_EV_PUSH, t, tid, name); }
  void pop(uint64_t t, uint32_t tid) { event(agent::PRISM_EV_POP, t, tid); }
  void info(const std::string& text);
  void end(uint64_t dropped_host = 0);
  const std::string& bytes() const { return bytes_; }

 private:
  void record(uint32_t type, const void* data, size_t size);
  std::string bytes_;
};

}  // namespace prism::test
