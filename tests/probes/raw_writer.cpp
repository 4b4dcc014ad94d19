#include "raw_writer.h"

#include <cstring>

namespace prism::test {

RawWriter::RawWriter(uint32_t pid, uint32_t version) {
  agent::prism_raw_header h{};
  std::memcpy(h.magic, PRISM_RAW_MAGIC, 8);
  h.version = version;
  h.pid = pid;
  std::strcpy(h.process_name, "fake-engine");
  bytes_.append(reinterpret_cast<const char*>(&h), sizeof(h));
}

void RawWriter::record(uint32_t type, const void* data, size_t size) {
  const uint32_t head[2] = {type, static_cast<uint32_t>(size)};
  bytes_.append(reinterpret_cast<const char*>(head), sizeof(head));
  bytes_.append(static_cast<const char*>(data), size);
}

void RawWriter::string(uint32_t id, const std::string& text) {
  std::string payload(reinterpret_cast<const char*>(&id), 4);
  payload += text;
  record(agent::PRISM_RAW_STRING, payload.data(), payload.size());
}

void RawWriter::thread_name(uint32_t tid, uint32_t name) {
  const uint32_t payload[2] = {tid, name};
  record(agent::PRISM_RAW_THREAD_NAME, payload, sizeof(payload));
}

void RawWriter::event(uint16_t kind, uint64_t t0, uint32_t tid, uint32_t name, uint64_t arg,
                      uint32_t corr, uint64_t t1, uint16_t device) {
  agent::prism_raw_event e{};
  e.kind = kind;
  e.t0 = t0;
  e.t1 = t1;
  e.tid = tid;
  e.name = name;
  e.arg = arg;
  e.corr = corr;
  e.device = device;
  record(agent::PRISM_RAW_EVENTS, &e, sizeof(e));
}

void RawWriter::info(const std::string& text) {
  record(agent::PRISM_RAW_INFO, text.data(), text.size());
}

void RawWriter::end(uint64_t dropped_host) {
  agent::prism_raw_end e{};
  e.dropped_host = dropped_host;
  record(agent::PRISM_RAW_END, &e, sizeof(e));
}

}  // namespace prism::test
