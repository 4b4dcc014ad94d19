#include "prism/harness/receive_stamp.h"

// <linux/tcp.h>, not <netinet/tcp.h>: glibc's struct tcp_info may lack
// tcpi_bytes_received, and the two headers cannot be included together.
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <ctime>

namespace prism::harness {

PeekCover PeekCover::after_peek(std::uint64_t received_before, std::uint64_t peeked,
                                bool whole_queue, std::uint64_t consumed_floor) {
  // The peek saw the whole queue [C0, C0 + n) with C0 + n >= R0 (bytes may have
  // been processed between the getsockopt and the peek, never fewer): every
  // byte below R0 was waiting. Otherwise it saw only [C0, C0 + n).
  PeekCover cover;
  cover.limit = whole_queue ? received_before : std::min(received_before, consumed_floor + peeked);
  return cover;
}

std::int64_t realtime_minus_monotonic_ns() {
  const auto read = [](clockid_t clock) {
    timespec ts{};
    clock_gettime(clock, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
  };
  std::int64_t best_offset = 0, best_width = -1;
  for (int attempt = 0; attempt < 8; ++attempt) {
    const std::int64_t before = read(CLOCK_MONOTONIC);
    const std::int64_t real = read(CLOCK_REALTIME);
    const std::int64_t after = read(CLOCK_MONOTONIC);
    // The true offset lies in [real - after, real - before]: the smallest one
    // puts converted stamps latest.
    if (best_width < 0 || after - before < best_width) {
      best_width = after - before;
      best_offset = real - after;
    }
    if (best_width <= 1'000) break;
  }
  return best_offset;
}

bool tcp_bytes_received(int fd, std::uint64_t& received) {
  // Only the fields up to tcpi_bytes_received are copied out.
  tcp_info info{};
  socklen_t len = offsetof(tcp_info, tcpi_bytes_received) + sizeof info.tcpi_bytes_received;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0 ||
      len < offsetof(tcp_info, tcpi_bytes_received) + sizeof info.tcpi_bytes_received) {
    return false;
  }
  received = info.tcpi_bytes_received;
  return true;
}

bool tcp_bytes_waiting(int fd, std::uint64_t& waiting) {
  int n = 0;
  if (ioctl(fd, SIOCINQ, &n) != 0 || n < 0) return false;
  waiting = static_cast<std::uint64_t>(n);
  return true;
}

ReceiveStamper::ReceiveStamper() : buffer_(new char[kPeekBytes]) {}
ReceiveStamper::~ReceiveStamper() = default;

void ReceiveStamper::enable(int fd) {
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
}

ReceiveStamper::Peek ReceiveStamper::peek(int fd) {
  Peek result;
  fd_ = -1;
  std::uint64_t received_before = 0;
  if (!tcp_bytes_received(fd, received_before)) return result;  // no accounting: no coverage
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(timespec))];
  iovec iov{buffer_.get(), kPeekBytes};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  const ssize_t n = ::recvmsg(fd, &msg, MSG_PEEK | MSG_DONTWAIT);
  const std::uint64_t peeked = n > 0 ? static_cast<std::uint64_t>(n) : 0;
  const bool whole_queue = peeked < kPeekBytes;
  std::uint64_t consumed_floor = 0;
  if (!whole_queue) {
    std::uint64_t received = 0, waiting = 0;
    if (!tcp_bytes_received(fd, received) || !tcp_bytes_waiting(fd, waiting)) return result;
    consumed_floor = received >= waiting ? received - waiting : 0;
  }
  fd_ = fd;
  cover_ = PeekCover::after_peek(received_before, peeked, whole_queue, consumed_floor);
  result.peeked = peeked;
  if (n <= 0) return result;
  result.realtime_ns = receive_stamp_of(msg);
  return result;
}

std::int64_t receive_stamp_of(msghdr& msg) {
  std::int64_t stamp = -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SO_TIMESTAMPNS) continue;
    timespec ts;
    std::memcpy(&ts, CMSG_DATA(c), sizeof ts);
    stamp = static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
  }
  return stamp;
}

bool ReceiveStamper::covers(int fd) {
  if (fd != fd_ || fd < 0) return false;
  std::uint64_t received = 0;
  if (tcp_bytes_received(fd, received) && cover_.covers_received(received)) {
    ++counters_.cheap_checks;
    return true;
  }
  // Bytes arrived since the peek: has the reader taken any of them? Waiting
  // first, then received, so received - waiting is never below what was read.
  ++counters_.exact_checks;
  std::uint64_t waiting = 0;
  if (tcp_bytes_waiting(fd, waiting) && tcp_bytes_received(fd, received) && received >= waiting &&
      cover_.covers_consumed(received - waiting)) {
    return true;
  }
  ++counters_.uncovered;
  fd_ = -1;  // the reader only goes further: the rest of this event is stamped at read
  return false;
}

}  // namespace prism::harness
