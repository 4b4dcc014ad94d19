// Kernel receive stamps for the bytes a reader is about to take from a TCP
// socket, and the byte accounting that keeps them from ever being early.
//
// Just before curl reads a socket that epoll reported readable, a MSG_PEEK of
// what waits returns the kernel's receive stamp (SO_TIMESTAMPNS) of the newest
// waiting segment. That stamp is true only for bytes that were waiting at the
// peek: a segment that arrives between the peek and curl's recv() would get
// the older stamp (early). So the peek also records where, in the socket's
// byte stream, its coverage ends, and a stamp is used only while everything
// read so far lies inside it:
//   received before the peek  R0 = tcpi_bytes_received (TCP_INFO), read first;
//   bytes the peek returned   n  (the whole receive queue when n < the buffer);
//   read before the peek      C0 = R0 - n (whole queue), else received - waiting
//                                  (SIOCINQ), received read first: a floor;
//   coverage ends at          limit = min(R0, C0 + n);
//   read by now               C  <= received_now, and <= received - waiting
//                                  with waiting read first: a ceiling.
// A read is covered when its ceiling C <= limit. The cheap test is
// received_now <= limit (nothing arrived since the peek: one getsockopt); only
// when bytes did arrive does it cost an ioctl and a second getsockopt. Every
// bound errs towards "not covered", which stamps the bytes when curl hands
// them over: late, never early.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include <sys/socket.h>

namespace prism::harness {

// The pure accounting (stream offsets in bytes from the connection's start).
struct PeekCover {
  std::uint64_t limit = 0;  // bytes read up to this offset were waiting at the peek

  // received_before: tcpi_bytes_received read just before the peek; peeked:
  // what the peek returned; whole_queue: the peek returned less than its
  // buffer, so it saw every waiting byte; consumed_floor (only used when it
  // did not): received - waiting read after the peek, received first.
  static PeekCover after_peek(std::uint64_t received_before, std::uint64_t peeked, bool whole_queue,
                              std::uint64_t consumed_floor);
  // Nothing arrived beyond the coverage: whatever was read, was covered.
  bool covers_received(std::uint64_t received_now) const { return received_now <= limit; }
  // The exact test: consumed_ceiling = received - waiting, waiting read first.
  bool covers_consumed(std::uint64_t consumed_ceiling) const { return consumed_ceiling <= limit; }
};

// The syscalls around the accounting, for one reader thread. Not thread-safe.
class ReceiveStamper {
 public:
  ReceiveStamper();
  ~ReceiveStamper();
  ReceiveStamper(const ReceiveStamper&) = delete;
  ReceiveStamper& operator=(const ReceiveStamper&) = delete;

  // Enables SO_TIMESTAMPNS on a socket (best effort).
  static void enable(int fd);

  struct Peek {
    std::int64_t realtime_ns = -1;  // the newest waiting segment's stamp, CLOCK_REALTIME; -1: none
    std::size_t peeked = 0;         // bytes waiting that the stamp covers
  };
  // Peeks fd before the reader reads it and records the coverage. A socket
  // whose counters cannot be read (not TCP) gets no coverage at all.
  Peek peek(int fd);
  // True while every byte read from fd since peek(fd) was waiting at the peek
  // (so the peek's stamp, or any time after the peek, is never early for it).
  bool covers(int fd);
  // The socket is closing (its number may come back as another socket).
  void forget(int fd) {
    if (fd == fd_) fd_ = -1;
  }

  struct Counters {
    std::uint64_t cheap_checks = 0;  // answered by one getsockopt
    std::uint64_t exact_checks = 0;  // needed the waiting bytes too
    std::uint64_t uncovered = 0;     // reads that went past the peek's coverage
  };
  const Counters& counters() const { return counters_; }

  static constexpr std::size_t kPeekBytes = 65536;

 private:
  int fd_ = -1;
  PeekCover cover_;
  Counters counters_;
  // MSG_PEEK target: the kernel stamps the last segment it reaches.
  std::unique_ptr<char[]> buffer_;
};

// CLOCK_REALTIME minus CLOCK_MONOTONIC, to put the kernel's (realtime) stamps
// on the monotonic clock. The realtime read is bracketed by two monotonic
// reads (retried while an interrupt or preemption widens the bracket), and
// the bracket's end is used, so a converted stamp is late by at most the
// bracket, never early: a thread preempted between two plain reads would
// otherwise shift every stamp of that epoll round early by the preemption.
std::int64_t realtime_minus_monotonic_ns();

// The SO_TIMESTAMPNS stamp (CLOCK_REALTIME, ns) a recvmsg() returned in its
// control data, -1 when none. For a TCP read (peek or not) it is the stamp of
// the last segment the read took bytes from: the newest of the bytes returned.
std::int64_t receive_stamp_of(msghdr& msg);

// tcpi_bytes_received of a TCP socket; false when it cannot be read.
bool tcp_bytes_received(int fd, std::uint64_t& received);
// Bytes waiting to be read (SIOCINQ); false when it cannot be read.
bool tcp_bytes_waiting(int fd, std::uint64_t& waiting);

}  // namespace prism::harness
