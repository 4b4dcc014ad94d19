// Harness accuracy and capacity against the calibrated mock server, side by
// side on one machine:
// Each runs with Prism's own HTTP/1.1 client (the default for http://) or,
// where an argument says so, libcurl (what https:// and HTTP/2 use).
//   BM_TimingAccuracy/streams/itl_us  harness-stamped token arrivals vs the
//       mock's own write() times (same CLOCK_MONOTONIC): TTFT error is the
//       first token's stamp minus its send time; ITL error compares each gap.
//       Also chunks/s delivered and the I/O thread's CPU use.
//   BM_LongContext/context_tokens/background/client  8 long-prompt requests (token
//       ids in /v1/completions) sent while `background` streams are mid-flight:
//       the harness's TTFT minus the mock's own TTFT (first chunk written −
//       request fully read) is what the client added to TTFT (build, encode,
//       send, stamp); lateness is sent − due; the background streams' ITL error
//       shows whether launching a long request disturbs everyone else's stamps.
//   BM_IdleStreamMemory/streams/client/curl_buffer  heap and RSS per open,
//       idle stream (request sent, headers received, no token yet) with the
//       mock in a separate process.
//   BM_StampSyscall/kind  what stamping costs per event on a loopback socket
//       with one 200-byte chunk waiting: the MSG_PEEK alone, the TCP_INFO
//       getsockopt, the SIOCINQ ioctl, and ReceiveStamper's peek + one check.
// Counters are in microseconds (…_us), chunks per second and bytes.
#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <curl/curl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <stdexcept>
#include <thread>

#include "prism/harness/clock.h"
#include "prism/harness/load_generator.h"
#include "prism/harness/mock_server.h"
#include "prism/harness/openai_target.h"
#include "prism/harness/receive_stamp.h"
#include "prism/results/statistics.h"

namespace {

using prism::harness::LoadOptions;
using prism::harness::MockServer;
using prism::harness::MockServerOptions;
using prism::harness::OpenAiTarget;
using prism::harness::OpenAiTargetOptions;

prism::workloads::Workload streams_workload(std::size_t streams, double spread_s,
                                            std::uint32_t tokens, double late_start_s = 0,
                                            std::size_t early = 0) {
  prism::workloads::Workload w;
  w.name = "bench";
  w.kind = "synthetic";
  w.arrival.kind = prism::workloads::ArrivalKind::kTrace;
  for (std::size_t s = 0; s < streams; ++s) {
    prism::workloads::Session session;
    session.id = s;
    prism::workloads::Request r;
    r.id = s;
    r.session = s;
    r.output_tokens = tokens;
    r.arrival_offset_s = spread_s * static_cast<double>(s) / static_cast<double>(streams);
    if (early > 0 && s >= early) r.arrival_offset_s = late_start_s;
    r.segments.push_back(
        {"p" + std::to_string(s), prism::workloads::Provenance::kUser, {1, 2, 3, 4, 5, 6, 7, 8}});
    session.requests.push_back(r);
    w.sessions.push_back(session);
  }
  return w;
}

// The mock in a child process of its own, pinned to one CPU, so that its
// work never runs on the harness I/O thread's core. Its records come back
// through a pipe when it is stopped. CLOCK_MONOTONIC is system-wide, so its
// write stamps compare directly with the harness's arrival stamps.
class ForkedMock {
 public:
  ForkedMock(MockServerOptions options, int cpu) {
    int port_pipe[2], command_pipe[2], record_pipe[2];
    if (pipe(port_pipe) != 0 || pipe(command_pipe) != 0 || pipe(record_pipe) != 0) {
      throw std::runtime_error("pipe failed");
    }
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      close(port_pipe[0]);
      close(command_pipe[1]);
      close(record_pipe[0]);
      // The child must never return into the benchmark's code, whatever fails here.
      try {
        serve_child(std::move(options), cpu, port_pipe[1], command_pipe[0], record_pipe[1]);
      } catch (const std::exception& e) {
        fprintf(stderr, "forked mock: %s\n", e.what());
        _exit(1);
      }
      _exit(0);
    }
    close(port_pipe[1]);
    close(command_pipe[0]);
    close(record_pipe[1]);
    command_fd_ = command_pipe[1];
    record_fd_ = record_pipe[0];
    if (read(port_pipe[0], &port_, sizeof port_) != sizeof port_) port_ = 0;
    close(port_pipe[0]);
    if (port_ == 0) {
      close(command_fd_);
      close(record_fd_);
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      throw std::runtime_error("the mock did not start");
    }
  }

 private:
  // The child's side: serves until the parent writes 's' (or closes the command pipe), then
  // sends what the mock recorded.
  static void serve_child(MockServerOptions options, int cpu, int port_fd, int command_fd,
                          int record_fd) {
    prism::harness::pin_current_thread_to_cpu(cpu);  // the server thread inherits it
    options.cpu = cpu;
    MockServer server(options);
    server.start();
    const std::uint16_t port = server.port();
    write_all(port_fd, &port, sizeof port);
    char command = 0;
    [[maybe_unused]] const auto n = read(command_fd, &command, 1);  // EOF or 's'
    server.stop();
    for (const auto& r : server.records()) {
      const auto id_len = static_cast<std::uint32_t>(r.request_id.size());
      const auto chunks = static_cast<std::uint32_t>(r.chunk_sent_ns.size());
      write_all(record_fd, &id_len, sizeof id_len);
      write_all(record_fd, r.request_id.data(), id_len);
      write_all(record_fd, &r.received_ns, sizeof r.received_ns);
      write_all(record_fd, &r.headers_sent_ns, sizeof r.headers_sent_ns);
      write_all(record_fd, &chunks, sizeof chunks);
      write_all(record_fd, r.chunk_sent_ns.data(), chunks * sizeof(std::int64_t));
      write_all(record_fd, r.chunk_due_ns.data(), chunks * sizeof(std::int64_t));
    }
    close(record_fd);
  }

 public:
  ~ForkedMock() {
    if (command_fd_ >= 0) close(command_fd_);
    if (record_fd_ >= 0) close(record_fd_);
    if (pid_ > 0) waitpid(pid_, nullptr, 0);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // Stops the mock and returns what it recorded (request id, received, chunk writes and dues).
  std::vector<prism::harness::MockRecord> stop_and_collect() {
    const char stop = 's';
    write_all(command_fd_, &stop, 1);
    close(command_fd_);
    command_fd_ = -1;
    std::vector<prism::harness::MockRecord> records;
    for (;;) {
      std::uint32_t id_len = 0;
      if (!read_all(record_fd_, &id_len, sizeof id_len)) break;
      prism::harness::MockRecord r;
      r.request_id.resize(id_len);
      std::uint32_t chunks = 0;
      if (!read_all(record_fd_, r.request_id.data(), id_len) ||
          !read_all(record_fd_, &r.received_ns, sizeof r.received_ns) ||
          !read_all(record_fd_, &r.headers_sent_ns, sizeof r.headers_sent_ns) ||
          !read_all(record_fd_, &chunks, sizeof chunks)) {
        break;
      }
      r.chunk_sent_ns.resize(chunks);
      r.chunk_due_ns.resize(chunks);
      if (!read_all(record_fd_, r.chunk_sent_ns.data(), chunks * sizeof(std::int64_t)) ||
          !read_all(record_fd_, r.chunk_due_ns.data(), chunks * sizeof(std::int64_t))) {
        break;
      }
      records.push_back(std::move(r));
    }
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
    return records;
  }

 private:
  static void write_all(int fd, const void* data, std::size_t size) {
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
      const ssize_t n = write(fd, p, size);
      if (n <= 0) return;
      p += n;
      size -= static_cast<std::size_t>(n);
    }
  }
  static bool read_all(int fd, void* data, std::size_t size) {
    char* p = static_cast<char*>(data);
    while (size > 0) {
      const ssize_t n = read(fd, p, size);
      if (n <= 0) return false;
      p += n;
      size -= static_cast<std::size_t>(n);
    }
    return true;
  }
  pid_t pid_ = -1;
  int command_fd_ = -1;
  int record_fd_ = -1;
  std::uint16_t port_ = 0;
};

// CPUs for the two sides: the mock (and the scheduler thread) on the first
// CPU this process may use, the harness I/O thread alone on the second.
std::pair<int, int> split_cpus() {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  sched_getaffinity(0, sizeof allowed, &allowed);
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
  }
  if (cpus.size() < 2) return {-1, -1};
  return {cpus[0], cpus[1]};
}

// Time the hypervisor ran something else on this CPU (/proc/stat "steal"),
// in ms: on a shared VM it stalls the mock and the I/O thread alike, which no
// client can stamp around. -1 when it cannot be read.
double steal_ms(int cpu) {
  std::ifstream stat("/proc/stat");
  const std::string want = "cpu" + std::to_string(cpu);
  std::string name;
  while (stat >> name) {
    if (name == want) {
      long long v[8] = {};
      for (auto& x : v) stat >> x;
      return static_cast<double>(v[7]) * 1000.0 / static_cast<double>(sysconf(_SC_CLK_TCK));
    }
    stat.ignore(4096, '\n');
  }
  return -1;
}

void BM_TimingAccuracy(benchmark::State& state) {
  const auto streams = static_cast<std::size_t>(state.range(0));
  const double itl_ms = static_cast<double>(state.range(1)) / 1000.0;
  const std::uint32_t tokens = static_cast<std::uint32_t>(state.range(2));
  const bool kernel_stamps = state.range(3) != 0;
  // The mock's sockets send at once (see MockServerOptions::tcp_congestion):
  // cubic, or reno where an unprivileged process may not set cubic; arg 4 = 0
  // keeps the system's congestion control (BBR here: paced sends).
  const std::string congestion =
      state.range(4) != 0 ? prism::harness::unpaced_tcp_congestion() : "";
  const auto client =
      state.range(5) != 0 ? prism::harness::HttpClient::kCurl : prism::harness::HttpClient::kNative;
  const bool busy_poll = state.range(6) != 0;
  state.SetLabel((congestion.empty() ? std::string("system congestion control") : congestion) +
                 (client == prism::harness::HttpClient::kCurl ? ", libcurl" : ", prism client") +
                 (busy_poll ? ", busy poll" : ""));
  const auto [mock_cpu, io_cpu] = split_cpus();
  cpu_set_t original;
  sched_getaffinity(0, sizeof original, &original);
  for (auto _ : state) {
    MockServerOptions mock;
    mock.ttft_ms = 50;
    mock.itl_ms = itl_ms;
    mock.tcp_congestion = congestion;
    ForkedMock server(mock, mock_cpu);
    OpenAiTargetOptions options;
    options.url = server.url();
    options.model = "prism-mock";
    options.request_timeout_s = 120;
    options.io_cpu = io_cpu;
    options.io_busy_poll = busy_poll;
    options.kernel_rx_timestamps = kernel_stamps;
    options.http_client = client;
    OpenAiTarget target(options);
    // The scheduler thread shares the mock's CPU: after the starts it only
    // sleeps, and it must not wake on the I/O thread's core.
    prism::harness::pin_current_thread_to_cpu(mock_cpu);
    // Starts spread over one ITL, so chunks are due evenly rather than in bursts.
    const auto w = streams_workload(streams, itl_ms / 1000.0, tokens);
    const double steal_io_before = steal_ms(io_cpu), steal_mock_before = steal_ms(mock_cpu);
    const auto t0 = prism::harness::monotonic_ns();
    const auto result = prism::harness::run_load(w, target, LoadOptions{});
    const double wall = prism::harness::ns_to_s(prism::harness::monotonic_ns() - t0);
    state.counters["steal_io_cpu_ms"] = steal_ms(io_cpu) - steal_io_before;
    state.counters["steal_mock_cpu_ms"] = steal_ms(mock_cpu) - steal_mock_before;
    sched_setaffinity(0, sizeof original, &original);
    const auto stats = target.stats();
    const auto records = server.stop_and_collect();
    std::map<std::string, const prism::harness::MockRecord*> truth;
    for (const auto& r : records) truth[r.request_id] = &r;
    // Harness error: its stamp against the mock's actual write of the same
    // chunk. Nominal: against the schedule the mock was asked to keep.
    std::vector<double> ttft_err, itl_err, stamp_err, ttft_nominal_err, itl_nominal_err, mock_late;
    std::size_t failed = 0;
    // Chunks stamped more than half an ITL after their write, and how many of
    // those share their stamp with the stream's next chunk (read with it).
    std::size_t late_chunks = 0, late_with_next = 0;
    double late_first = 1e30, late_last = -1e30;  // when the late chunks were written
    double first_token = 1e30, last_token = 0;
    std::uint64_t chunks = 0;
    const double ttft_nominal = mock.ttft_ms * 1e-3;
    for (const auto& o : result.observations) {
      const auto it = truth.find("prism-" + std::to_string(o.request_id));
      if (o.status != prism::results::RequestStatus::kOk || it == truth.end() ||
          it->second->chunk_sent_ns.size() != o.token_times_s.size()) {
        ++failed;
        continue;
      }
      const auto& sent = it->second->chunk_sent_ns;
      const auto& due = it->second->chunk_due_ns;
      for (std::size_t i = 0; i < sent.size(); ++i) {
        const double h = o.token_times_s[i];
        const double m = prism::harness::ns_to_s(sent[i] - result.origin_ns);
        stamp_err.push_back((h - m) * 1e6);
        if ((h - m) * 1e3 > itl_ms / 2) {
          ++late_chunks;
          late_first = std::min(late_first, m);
          late_last = std::max(late_last, m);
          if (i + 1 < sent.size() && o.token_times_s[i + 1] == h) ++late_with_next;
        }
        mock_late.push_back(static_cast<double>(sent[i] - due[i]) * 1e-3);
        if (i == 0) {
          ttft_err.push_back(std::abs(h - m) * 1e6);
          ttft_nominal_err.push_back(std::abs((h - o.sent_s) - ttft_nominal) * 1e6);
        } else {
          const double hm = o.token_times_s[i] - o.token_times_s[i - 1];
          const double mm = prism::harness::ns_to_s(sent[i] - sent[i - 1]);
          const double dm = prism::harness::ns_to_s(due[i] - due[i - 1]);
          itl_err.push_back(std::abs(hm - mm) * 1e6);
          itl_nominal_err.push_back(std::abs(hm - dm) * 1e6);
        }
        first_token = std::min(first_token, h);
        last_token = std::max(last_token, h);
      }
      chunks += sent.size();
    }
    using prism::results::percentile;
    state.SetIterationTime(wall);
    state.counters["failed"] = static_cast<double>(failed);
    // Something else took the I/O thread's CPU (a stall of the whole VM
    // shows in steal instead).
    state.counters["io_preemptions"] = static_cast<double>(stats.io_thread_preemptions);
    state.counters["pinned"] = stats.io_thread_pinned ? 1 : 0;  // it did move to its own CPU
    state.counters["longest_round_ms"] = stats.longest_round_s * 1e3;
    state.counters["ttft_err_p50_us"] = percentile(ttft_err, 50);
    state.counters["ttft_err_p99_us"] = percentile(ttft_err, 99);
    state.counters["ttft_err_max_us"] = percentile(ttft_err, 100);
    state.counters["itl_err_p50_us"] = percentile(itl_err, 50);
    state.counters["itl_err_p99_us"] = percentile(itl_err, 99);
    state.counters["itl_err_max_us"] = percentile(itl_err, 100);
    state.counters["stamp_minus_write_p50_us"] = percentile(stamp_err, 50);
    state.counters["stamp_minus_write_p99_us"] = percentile(stamp_err, 99);
    state.counters["stamp_minus_write_min_us"] = percentile(stamp_err, 0);
    state.counters["late_half_itl_share"] =
        chunks > 0 ? static_cast<double>(late_chunks) / static_cast<double>(chunks) : 0;
    state.counters["late_read_with_next_share"] =
        late_chunks > 0 ? static_cast<double>(late_with_next) / static_cast<double>(late_chunks)
                        : 0;
    // One stall of the I/O thread makes every chunk written during it late:
    // their writes then span about the stall.
    state.counters["late_span_ms"] = late_chunks > 0 ? (late_last - late_first) * 1e3 : 0;
    state.counters["late_at_s"] = late_chunks > 0 ? late_first - first_token : -1;
    state.counters["mock_late_p50_us"] = percentile(mock_late, 50);
    state.counters["mock_late_p99_us"] = percentile(mock_late, 99);
    state.counters["ttft_vs_nominal_p99_us"] = percentile(ttft_nominal_err, 99);
    state.counters["itl_vs_nominal_p99_us"] = percentile(itl_nominal_err, 99);
    const double span = last_token - first_token;
    state.counters["chunks_per_s"] = span > 0 ? static_cast<double>(chunks) / span : 0;
    const auto pieces =
        static_cast<double>(stats.kernel_stamps + stats.epoll_stamps + stats.read_stamps);
    state.counters["kernel_stamped"] =
        pieces > 0 ? static_cast<double>(stats.kernel_stamps) / pieces : 0;
    state.counters["read_stamped"] =
        pieces > 0 ? static_cast<double>(stats.read_stamps) / pieces : 0;
    state.counters["io_thread_cpu_util"] = stats.io_thread_cpu_s / wall;
    state.counters["chunks_per_io_cpu_s"] =
        stats.io_thread_cpu_s > 0 ? static_cast<double>(chunks) / stats.io_thread_cpu_s : 0;
  }
}

// `background` short-prompt streams start at once and stream for the whole
// run; then 8 requests with `context` prompt tokens (random ids below 100,000,
// so the JSON is as long as a real one) are due 100 ms apart from t = 0.3 s.
void BM_LongContext(benchmark::State& state) {
  const auto context = static_cast<std::size_t>(state.range(0));
  const auto background = static_cast<std::size_t>(state.range(1));
  const auto client =
      state.range(2) != 0 ? prism::harness::HttpClient::kCurl : prism::harness::HttpClient::kNative;
  state.SetLabel(client == prism::harness::HttpClient::kCurl ? "libcurl" : "prism client");
  constexpr std::size_t kLong = 8;
  constexpr double kItlMs = 20;
  for (auto _ : state) {
    MockServerOptions mock;
    mock.ttft_ms = 20;
    mock.itl_ms = kItlMs;
    MockServer server(mock);
    server.start();
    OpenAiTargetOptions options;
    options.url = server.url();
    options.model = "prism-mock";
    options.http_client = client;
    options.request_timeout_s = 120;
    OpenAiTarget target(options);
    // Background streams last past the last long request's first token.
    auto w = streams_workload(background, kItlMs / 1000.0, 70);
    std::mt19937_64 rng(11);
    std::uniform_int_distribution<std::int32_t> id(0, 99'999);
    for (std::size_t i = 0; i < kLong; ++i) {
      prism::workloads::Session session;
      session.id = background + i;
      prism::workloads::Request r;
      r.id = session.id;
      r.session = session.id;
      r.output_tokens = 4;
      r.arrival_offset_s = 0.3 + 0.1 * static_cast<double>(i);
      prism::workloads::Segment seg;
      seg.content_id = "long" + std::to_string(i);
      seg.provenance = prism::workloads::Provenance::kDocument;
      seg.tokens.resize(context);
      for (auto& t : seg.tokens) t = id(rng);
      r.segments.push_back(std::move(seg));
      session.requests.push_back(std::move(r));
      w.sessions.push_back(std::move(session));
    }
    const auto t0 = prism::harness::monotonic_ns();
    const auto result = prism::harness::run_load(w, target, LoadOptions{});
    const double wall = prism::harness::ns_to_s(prism::harness::monotonic_ns() - t0);
    std::map<std::string, prism::harness::MockRecord> truth;
    for (const auto& r : server.records()) truth[r.request_id] = r;
    std::vector<double> overhead, lateness, transfer, stamp, itl_err;
    std::size_t failed = 0;
    for (const auto& o : result.observations) {
      const auto it = truth.find("prism-" + std::to_string(o.request_id));
      if (o.status != prism::results::RequestStatus::kOk || it == truth.end() ||
          it->second.chunk_sent_ns.size() != o.token_times_s.size()) {
        ++failed;
        continue;
      }
      const auto& sent = it->second.chunk_sent_ns;
      if (o.request_id >= background) {
        const double harness_ttft = o.token_times_s[0] - o.scheduled_s;
        const double mock_ttft = prism::harness::ns_to_s(sent[0] - it->second.received_ns);
        overhead.push_back((harness_ttft - mock_ttft) * 1e6);
        lateness.push_back((o.sent_s - o.scheduled_s) * 1e6);
        transfer.push_back(
            (prism::harness::ns_to_s(it->second.received_ns - result.origin_ns) - o.sent_s) * 1e6);
        stamp.push_back((o.token_times_s[0] - prism::harness::ns_to_s(sent[0] - result.origin_ns)) *
                        1e6);
        continue;
      }
      for (std::size_t i = 1; i < sent.size(); ++i) {
        const double hm = o.token_times_s[i] - o.token_times_s[i - 1];
        const double mm = prism::harness::ns_to_s(sent[i] - sent[i - 1]);
        itl_err.push_back(std::abs(hm - mm) * 1e6);
      }
    }
    using prism::results::percentile;
    state.SetIterationTime(wall);
    state.counters["failed"] = static_cast<double>(failed);
    state.counters["prompt_json_kb"] = static_cast<double>(context) * 6.0 / 1024.0;
    state.counters["ttft_added_p50_us"] = percentile(overhead, 50);
    state.counters["ttft_added_max_us"] = percentile(overhead, 100);
    state.counters["lateness_max_us"] = percentile(lateness, 100);
    state.counters["sent_to_mock_read_max_us"] = percentile(transfer, 100);
    state.counters["ttft_stamp_err_max_us"] = percentile(stamp, 100);
    state.counters["bg_itl_err_p99_us"] = percentile(itl_err, 99);
    state.counters["bg_itl_err_max_us"] = percentile(itl_err, 100);
  }
}

// libcurl's own heap, counted through curl_global_init_mem (installed in
// main before anything else initializes curl), so the idle-stream figure
// splits into what libcurl allocates and what Prism allocates.
std::atomic<long> curl_heap{0};
void* curl_count_malloc(size_t size) {
  void* p = std::malloc(size);
  if (p != nullptr) curl_heap += static_cast<long>(malloc_usable_size(p));
  return p;
}
void curl_count_free(void* p) {
  if (p != nullptr) curl_heap -= static_cast<long>(malloc_usable_size(p));
  std::free(p);
}
void* curl_count_realloc(void* p, size_t size) {
  const long before = p != nullptr ? static_cast<long>(malloc_usable_size(p)) : 0;
  void* q = std::realloc(p, size);
  if (q != nullptr)
    curl_heap += static_cast<long>(malloc_usable_size(q)) - before;
  else if (size == 0)
    curl_heap -= before;
  return q;
}
char* curl_count_strdup(const char* s) {
  const size_t n = std::strlen(s) + 1;
  auto* p = static_cast<char*>(curl_count_malloc(n));
  if (p != nullptr) std::memcpy(p, s, n);
  return p;
}
void* curl_count_calloc(size_t count, size_t size) {
  void* p = std::calloc(count, size);
  if (p != nullptr) curl_heap += static_cast<long>(malloc_usable_size(p));
  return p;
}

long rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

// The mock runs in a child process so that only the harness's memory is counted.
void BM_IdleStreamMemory(benchmark::State& state) {
  const auto streams = static_cast<std::size_t>(state.range(0));
  for (auto _ : state) {
    int pipe_fds[2];
    if (pipe(pipe_fds) != 0) {
      state.SkipWithError("pipe failed");
      return;
    }
    const pid_t child = fork();
    if (child == 0) {
      MockServerOptions mock;
      mock.ttft_ms = 600'000;  // streams stay open and idle
      mock.record = false;
      MockServer server(mock);
      server.start();
      const std::uint16_t port = server.port();
      [[maybe_unused]] const auto n = write(pipe_fds[1], &port, sizeof port);
      pause();
      _exit(0);
    }
    std::uint16_t port = 0;
    [[maybe_unused]] const auto n = read(pipe_fds[0], &port, sizeof port);
    close(pipe_fds[0]);
    close(pipe_fds[1]);

    OpenAiTargetOptions options;
    options.url = "http://127.0.0.1:" + std::to_string(port);
    options.model = "prism-mock";
    options.http_client = state.range(1) != 0 ? prism::harness::HttpClient::kCurl
                                              : prism::harness::HttpClient::kNative;
    options.receive_buffer_bytes = state.range(2);
    state.SetLabel(state.range(1) != 0 ? "libcurl" : "prism client");
    OpenAiTarget target(options);
    constexpr std::size_t kEarly = 16;
    const auto w = streams_workload(streams, 0.0, 4, 1.0, kEarly);
    std::atomic<int> interrupt{0};
    std::atomic<std::uint64_t> sent{0};
    LoadOptions load;
    load.interrupt = &interrupt;
    load.progress_interval_s = 0.05;
    load.on_progress = [&](const prism::harness::LoadProgress& p) { sent.store(p.sent); };
    std::thread runner([&] { prism::harness::run_load(w, target, load); });
    auto wait_open = [&](std::size_t count) {
      while (sent.load() < count || target.stats().in_flight < count) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(300));  // requests written, now idle
    };
    wait_open(kEarly);
    const auto heap_early = mallinfo2().uordblks;
    const long curl_early = curl_heap.load();
    const long rss_early = rss_bytes();
    wait_open(streams);
    const auto heap_all = mallinfo2().uordblks;
    const long curl_all = curl_heap.load();
    const long rss_all = rss_bytes();
    interrupt.store(SIGTERM);
    runner.join();
    kill(child, SIGTERM);
    waitpid(child, nullptr, 0);
    const double extra = static_cast<double>(streams - kEarly);
    const double heap =
        static_cast<double>(static_cast<long>(heap_all) - static_cast<long>(heap_early)) / extra;
    const double curl = static_cast<double>(curl_all - curl_early) / extra;
    state.counters["heap_bytes_per_stream"] = heap;
    state.counters["curl_heap_bytes_per_stream"] = curl;
    state.counters["prism_heap_bytes_per_stream"] = heap - curl;
    state.counters["rss_bytes_per_stream"] = static_cast<double>(rss_all - rss_early) / extra;
  }
}

// 0: MSG_PEEK with SO_TIMESTAMPNS (the stamp before this change), 1: TCP_INFO
// getsockopt, 2: SIOCINQ ioctl, 3: ReceiveStamper::peek + covers (cheap path).
void BM_StampSyscall(benchmark::State& state) {
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::listen(listener, 1);
  socklen_t len = sizeof addr;
  getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  const int sender = ::socket(AF_INET, SOCK_STREAM, 0);
  if (::connect(sender, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    state.SkipWithError("no loopback connection");
    return;
  }
  const int receiver = ::accept(listener, nullptr, nullptr);
  prism::harness::ReceiveStamper::enable(receiver);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // stamps turn on system-wide
  const std::string chunk(200, 'x');
  [[maybe_unused]] const auto sent = ::send(sender, chunk.data(), chunk.size(), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  prism::harness::ReceiveStamper stamper;
  std::vector<char> buffer(65536);
  std::uint64_t value = 0;
  bool ok = true;
  for (auto _ : state) {
    switch (state.range(0)) {
      case 0: {
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(timespec))];
        iovec iov{buffer.data(), buffer.size()};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        ok = ::recvmsg(receiver, &msg, MSG_PEEK | MSG_DONTWAIT) == 200 && ok;
        break;
      }
      case 1:
        ok = prism::harness::tcp_bytes_received(receiver, value) && ok;
        break;
      case 2:
        ok = prism::harness::tcp_bytes_waiting(receiver, value) && ok;
        break;
      default:
        ok = stamper.peek(receiver).realtime_ns > 0 && stamper.covers(receiver) && ok;
        break;
    }
    benchmark::DoNotOptimize(value);
  }
  if (!ok) state.SkipWithError("a call failed");
  ::close(sender);
  ::close(receiver);
  ::close(listener);
}

}  // namespace

BENCHMARK(BM_StampSyscall)->DenseRange(0, 3)->Unit(benchmark::kNanosecond);

// {streams, itl in microseconds, tokens per stream, kernel receive stamps,
//  mock sends unpaced, client (0 Prism's, 1 libcurl), I/O thread busy-polls}
BENCHMARK(BM_TimingAccuracy)
    ->Args({256, 20000, 50, 1, 1, 0, 1})
    ->Args({256, 10000, 100, 1, 1, 0, 1})
    ->Args({256, 5000, 200, 1, 1, 0, 1})
    ->Args({1000, 40000, 30, 1, 1, 0, 1})
    ->Args({1000, 20000, 50, 1, 1, 0, 1})
    ->Args({1000, 10000, 60, 1, 1, 0, 1})
    ->Args({1000, 6667, 80, 1, 1, 0, 1})
    ->Args({1000, 5000, 100, 1, 1, 0, 1})
    ->Args({256, 20000, 50, 0, 1, 0, 1})
    ->Args({256, 5000, 200, 1, 0, 0, 1})
    ->Args({1000, 20000, 50, 0, 1, 0, 1})
    ->Args({256, 10000, 100, 1, 1, 1, 1})
    ->Args({1000, 40000, 30, 1, 1, 1, 1})
    ->Args({1000, 20000, 50, 1, 1, 1, 1})
    ->Args({256, 5000, 200, 1, 1, 1, 1})
    ->Args({256, 5000, 200, 1, 1, 0, 0})
    ->Args({1000, 40000, 30, 1, 1, 0, 0})
    ->Args({1000, 20000, 50, 1, 1, 0, 0})
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
// {prompt tokens of the 8 long requests, background streams, client (0 Prism's, 1 libcurl)}
BENCHMARK(BM_LongContext)
    ->Args({1024, 256, 0})
    ->Args({32768, 256, 0})
    ->Args({131072, 256, 0})
    ->Args({131072, 0, 0})
    ->Args({131072, 256, 1})
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
// {streams, client (0 Prism's, 1 libcurl), libcurl receive buffer bytes}
BENCHMARK(BM_IdleStreamMemory)
    ->Args({1000, 0, 1024})
    ->Args({1000, 1, 1024})
    ->Args({1000, 1, 16384})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  curl_global_init_mem(CURL_GLOBAL_ALL, curl_count_malloc, curl_count_free, curl_count_realloc,
                       curl_count_strdup, curl_count_calloc);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
