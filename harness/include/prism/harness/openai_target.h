// The OpenAI-compatible HTTP target: /v1/completions and /v1/chat/completions
// with SSE streaming, driven by one I/O thread with epoll: no thread per
// request, and a thousand open streams cost a thousand sockets, not a
// thousand stacks. Plain http:// goes through Prism's own HTTP/1.1 client
// (http1.h: keep-alive connections, one read buffer for all streams, under
// 1 KB per idle stream); https://, HTTP/2 and proxies through libcurl's
// multi interface (curl_multi_socket_action) on the same thread.
//
// Timestamps: a chunk is stamped with the time its bytes reached this host's
// TCP stack: the kernel's software receive timestamp (SO_TIMESTAMPNS), so
// neither the I/O thread's wake-up nor its work on other streams delays the
// stamp. Prism's client gets it from the recvmsg() that reads the bytes: the
// stamp of the newest segment read, so older bytes in the same read are late,
// never early. With libcurl it is read with a MSG_PEEK just before curl reads
// the socket, and bytes that arrive after the peek are stamped when curl
// hands them over (the socket's byte counters tell them apart:
// receive_stamp.h). Where the kernel gives no stamp, the read's (or peek's)
// time; with kernel_rx_timestamps off, the time the bytes were read (libcurl:
// when epoll reported the socket readable).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "prism/harness/target.h"

namespace prism::harness {

enum class ApiKind {
  kAuto,         // chat for multi-turn sessions, completions otherwise
  kCompletions,  // /v1/completions
  kChat,         // /v1/chat/completions
};
enum class PromptFormat {
  kAuto,      // token ids; switch to text for good if the server refuses them (HTTP 400/422)
  kTokenIds,  // /v1/completions "prompt": [ids...] (vLLM, SGLang, TGI accept this)
  kText,      // detokenized text
};

enum class HttpClient {
  kAuto,    // Prism's own HTTP/1.1 client for plain http:// (no proxy, no HTTP/2), else libcurl
  kCurl,    // libcurl for every URL
  kNative,  // Prism's own HTTP/1.1 client; refused for https://, a proxy or HTTP/2
};

struct OpenAiTargetOptions {
  std::string url;  // base URL, e.g. http://127.0.0.1:8000 or https://host/v1
  std::string model;
  ApiKind api = ApiKind::kAuto;
  PromptFormat prompt_format = PromptFormat::kAuto;
  std::string api_key;               // sent as "Authorization: Bearer <key>"
  std::vector<std::string> headers;  // extra "Name: value" lines
  bool send_ignore_eos = true;       // "ignore_eos": true and "min_tokens" = max (vLLM, SGLang)
  bool include_usage = true;         // stream_options.include_usage
  bool continuous_usage_stats =
      false;  // stream_options.continuous_usage_stats (vLLM): exact per-chunk counts
  double request_timeout_s = 600.0;  // whole request, including a stall mid-stream
  double connect_timeout_s = 10.0;
  std::size_t max_response_bytes = std::size_t{64} << 20;
  std::size_t max_event_bytes = std::size_t{1} << 20;
  std::size_t max_error_body_bytes = std::size_t{16} << 10;
  bool verify_tls = true;
  std::string ca_file;  // PEM bundle for private CAs
  bool http2 = false;   // negotiate HTTP/2 over TLS (multiplexed streams)
  // Which client speaks HTTP (http1.h says why Prism has its own).
  HttpClient http_client = HttpClient::kAuto;
  // Numeric addresses to connect to for the URL's host instead of resolving
  // it (curl's --resolve), tried in order until one accepts; the URL's host
  // still goes in the Host header.
  std::vector<std::string> resolve;
  // libcurl's per-transfer receive buffer (Prism's own client reads every
  // socket into one 64 KB buffer per I/O thread). SSE chunks are a few hundred bytes,
  // so curl's minimum keeps an idle stream cheap (3 KB less than 4096).
  long receive_buffer_bytes = 1024;
  // Stamp chunks with the kernel's receive time (see above); false: with the
  // time epoll returned, which includes the I/O thread's wake-up and backlog.
  bool kernel_rx_timestamps = true;
  // >= 0: the I/O thread is pinned to this CPU, so that the scheduler, the
  // server under test or anything else does not delay its timestamps.
  int io_cpu = -1;
  // >= 1: the I/O thread runs SCHED_FIFO at this priority where allowed, so
  // that ordinary threads landing on its CPU cannot hold it off for a time
  // slice (milliseconds) while chunks wait. Stats::io_thread_realtime says
  // whether it took.
  int io_realtime_priority = 0;
  // The I/O thread polls epoll without sleeping: its CPU never idles. On a
  // virtual machine an idle vCPU is halted and handed back to the host, and
  // waking it for the next packet waits for the host to run it again (at
  // times milliseconds); busy polling keeps it running, at the cost of a
  // whole CPU. Use with io_cpu.
  bool io_busy_poll = false;
  nlohmann::json extra_body = nlohmann::json::object();  // merged into every request body
  // Text for token ids when the prompt goes as text. Default: synthetic_text().
  std::function<std::string(std::span<const std::int32_t>)> detokenize;
  // Counts tokens in a chunk's text (a tokenizer); without it, one per chunk
  // and the final usage re-attributes.
  std::function<std::uint32_t(std::string_view)> count_tokens;
  // Testing (libcurl only): runs on the I/O thread between the kernel-stamp peek of a
  // socket and curl's read of it, so a test can make bytes arrive in that
  // window (they must not get the peek's older stamp).
  std::function<void(int socket)> between_peek_and_read;
};

// A deterministic stand-in text for token ids when no tokenizer is given: one
// short lowercase word per id, so the server sees about one token per id.
std::string synthetic_text(std::span<const std::int32_t> tokens);

// "openai:http://host:port" or a bare URL -> the URL; throws std::invalid_argument otherwise.
std::string parse_openai_target_spec(const std::string& spec);

class OpenAiTarget final : public Target {
 public:
  explicit OpenAiTarget(OpenAiTargetOptions options);
  ~OpenAiTarget() override;
  OpenAiTarget(const OpenAiTarget&) = delete;
  OpenAiTarget& operator=(const OpenAiTarget&) = delete;

  void start(ResponseSink& sink) override;
  void submit(TargetRequest request) override;
  void cancel_all() override;
  nlohmann::json description() const override;

  // The endpoint path and JSON body a request is sent as (tests inspect it).
  struct Wire {
    std::string url;
    std::string body;
    bool chat = false;
    bool token_ids = false;
  };
  Wire encode(const TargetRequest& request) const;
  // Whether Prism's own HTTP/1.1 client speaks to this URL (else libcurl).
  bool native_http() const;

  struct Stats {
    std::uint64_t chunks = 0;  // SSE data events received
    std::uint64_t bytes = 0;
    std::uint64_t in_flight = 0;
    bool token_ids_refused = false;   // auto prompt format fell back to text
    double io_thread_cpu_s = 0;       // CPU time the I/O thread has used
    std::uint64_t kernel_stamps = 0;  // pieces of response stamped with the kernel's receive time
    std::uint64_t epoll_stamps = 0;   // pieces stamped in user space (kernel_rx_timestamps off)
    std::uint64_t read_stamps = 0;    // pieces with no kernel stamp for them: stamped at read
    std::uint64_t connections = 0;    // TCP connections opened (Prism's client; 0 with libcurl)
    std::uint64_t reused = 0;         // requests sent on a kept-alive connection (Prism's client)
    bool io_thread_pinned = false;    // io_cpu was asked for and the I/O thread runs there
    bool io_thread_realtime = false;  // io_realtime_priority was asked for and took
    // The longest epoll round: from epoll's return to the next wait, all the
    // I/O thread's work on the ready sockets (and whatever held it off then).
    double longest_round_s = 0;
    // Times the I/O thread was preempted (nonvoluntary context switches;
    // -1 where unknown). Bytes that arrive while it is off its CPU still get
    // kernel stamps, but a stream's chunks that pile up unread share the
    // newest one's.
    std::int64_t io_thread_preemptions = -1;
  };
  Stats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace prism::harness
