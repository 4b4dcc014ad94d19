#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <stdexcept>
#include <thread>

#include "harness_test_support.h"
#include "prism/harness/clock.h"
#include "prism/harness/load_generator.h"
#include "prism/harness/mock_server.h"
#include "prism/harness/openai_target.h"
#include "prism/harness/receive_stamp.h"
#include "prism/results/run_file.h"

using prism::harness::HttpClient;
using prism::harness::LoadOptions;
using prism::harness::MockServer;
using prism::harness::MockServerOptions;
using prism::harness::OpenAiTarget;
using prism::harness::OpenAiTargetOptions;
using prism::results::ErrorClass;
using prism::results::Observation;
using prism::results::RequestStatus;

namespace {

OpenAiTargetOptions target_for(const MockServer& server, HttpClient client = HttpClient::kAuto) {
  OpenAiTargetOptions o;
  o.url = server.url();
  o.model = "prism-mock";
  o.request_timeout_s = 5;
  o.http_client = client;
  return o;
}

const char* client_name(HttpClient client) {
  return client == HttpClient::kCurl ? "client: libcurl" : "client: prism's own";
}

std::vector<Observation> run(OpenAiTargetOptions options, std::size_t requests,
                             std::uint32_t tokens) {
  OpenAiTarget target(std::move(options));
  const auto w = prism::test::open_loop_workload(requests, 0.0, tokens);
  return prism::harness::run_load(w, target, LoadOptions{}).observations;
}

Observation one_with_fault(const std::string& fault, MockServerOptions mock = {},
                           OpenAiTargetOptions tweak = {}) {
  MockServer server(mock);
  server.start();
  auto options = target_for(server, tweak.http_client);
  options.headers.push_back("X-Mock-Fault: " + fault);
  if (tweak.request_timeout_s != OpenAiTargetOptions{}.request_timeout_s) {
    options.request_timeout_s = tweak.request_timeout_s;
  }
  options.max_event_bytes = tweak.max_event_bytes;
  options.max_response_bytes = tweak.max_response_bytes;
  const auto obs = run(options, 1, 8);
  REQUIRE(obs.size() == 1);
  return obs.front();
}

std::uint16_t closed_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace

TEST_CASE(
    "Streamed tokens are stamped when they arrive, after the mock sent them and before the next") {
  MockServerOptions mock;
  mock.ttft_ms = 20;
  mock.itl_ms = 100;
  MockServer server(mock);
  server.start();
  const auto client = GENERATE(HttpClient::kNative, HttpClient::kCurl);
  INFO(client_name(client));
  OpenAiTarget target(target_for(server, client));
  const auto w = prism::test::open_loop_workload(2, 0.0, 3);
  const auto result = prism::harness::run_load(w, target, LoadOptions{});
  REQUIRE(result.observations.size() == 2);
  std::map<std::string, prism::harness::MockRecord> truth;
  for (const auto& r : server.records()) truth[r.request_id] = r;
  for (const auto& o : result.observations) {
    REQUIRE(o.status == RequestStatus::kOk);
    REQUIRE(o.completion_tokens == 3);
    REQUIRE(o.prompt_tokens == 8);
    REQUIRE(o.token_times_s.size() == 3);
    const auto& r = truth.at("prism-" + std::to_string(o.request_id));
    REQUIRE(r.chunk_sent_ns.size() == 3);
    REQUIRE(r.completed);
    for (std::size_t i = 0; i < 3; ++i) {
      const auto arrived = result.origin_ns + static_cast<std::int64_t>(o.token_times_s[i] * 1e9);
      REQUIRE(arrived >= r.chunk_sent_ns[i] - 1000);  // 1 us of rounding in the seconds
      if (i + 1 < 3) REQUIRE(arrived < r.chunk_sent_ns[i + 1]);
    }
  }
}

TEST_CASE("Chunks carrying several tokens are attributed from the reported usage") {
  MockServerOptions mock;
  mock.ttft_ms = 1;
  mock.itl_ms = 20;  // chunks 60 ms apart: distinct arrival times even on a busy machine
  mock.tokens_per_chunk = 3;
  MockServer server(mock);
  server.start();
  const auto obs = run(target_for(server), 1, 7);
  REQUIRE(obs.size() == 1);
  const auto& t = obs.front().token_times_s;
  REQUIRE(obs.front().completion_tokens == 7);
  REQUIRE(t.size() == 7);
  REQUIRE(t[0] == t[2]);
  REQUIRE(t[3] == t[5]);
  REQUIRE(t[2] < t[3]);
  REQUIRE(t[5] < t[6]);
}

TEST_CASE("Per-chunk usage gives exact token counts per chunk") {
  MockServerOptions mock;
  mock.ttft_ms = 1;
  mock.itl_ms = 20;
  mock.tokens_per_chunk = 4;
  MockServer server(mock);
  server.start();
  auto options = target_for(server);
  options.continuous_usage_stats = true;
  const auto obs = run(options, 1, 6);
  REQUIRE(obs.front().token_times_s.size() == 6);
  REQUIRE(obs.front().token_times_s[0] == obs.front().token_times_s[3]);
  REQUIRE(obs.front().token_times_s[3] < obs.front().token_times_s[4]);
}

TEST_CASE("Completions requests carry token ids, ignore_eos, min_tokens and stream options") {
  OpenAiTargetOptions o;
  o.url = "http://127.0.0.1:1/v1/";
  o.model = "m";
  o.api_key = "secret";
  o.extra_body = {{"temperature", 0}};
  OpenAiTarget target(o);
  prism::harness::TargetRequest r;
  r.messages.push_back({prism::harness::Role::kUser, {1, 2, 3}, {}});
  r.max_output_tokens = 5;
  const auto wire = target.encode(r);
  REQUIRE(wire.url == "http://127.0.0.1:1/v1/completions");
  REQUIRE(wire.token_ids);
  const auto body = nlohmann::json::parse(wire.body);
  REQUIRE(body["prompt"] == nlohmann::json({1, 2, 3}));
  REQUIRE(body["max_tokens"] == 5);
  REQUIRE(body["min_tokens"] == 5);
  REQUIRE(body["ignore_eos"] == true);
  REQUIRE(body["stream"] == true);
  REQUIRE(body["stream_options"]["include_usage"] == true);
  REQUIRE(body["temperature"] == 0);
}

TEST_CASE("Multi-turn requests go to chat completions as messages with the replies as text") {
  OpenAiTargetOptions o;
  o.url = "http://127.0.0.1:1";
  o.model = "m";
  o.send_ignore_eos = false;
  OpenAiTarget target(o);
  prism::harness::TargetRequest r;
  r.turn = 1;
  r.messages.push_back({prism::harness::Role::kSystem, {7}, {}});
  r.messages.push_back({prism::harness::Role::kUser, {8, 9}, {}});
  r.messages.push_back({prism::harness::Role::kAssistant, {}, "the reply"});
  r.messages.push_back({prism::harness::Role::kUser, {10}, {}});
  const auto wire = target.encode(r);
  REQUIRE(wire.url == "http://127.0.0.1:1/v1/chat/completions");
  const auto body = nlohmann::json::parse(wire.body);
  REQUIRE(body["messages"].size() == 4);
  REQUIRE(body["messages"][0]["role"] == "system");
  REQUIRE(body["messages"][2]["role"] == "assistant");
  REQUIRE(body["messages"][2]["content"] == "the reply");
  REQUIRE(body["messages"][3]["content"] ==
          prism::harness::synthetic_text(std::vector<std::int32_t>{10}));
  REQUIRE_FALSE(body.contains("ignore_eos"));
}

TEST_CASE("A server that refuses token-id prompts is sent text from then on, and nothing fails") {
  MockServerOptions mock;
  mock.accept_token_ids = false;
  mock.ttft_ms = 1;
  mock.itl_ms = 1;
  MockServer server(mock);
  server.start();
  OpenAiTarget target(target_for(server));
  const auto w = prism::test::open_loop_workload(3, 0.0, 2);
  const auto result = prism::harness::run_load(w, target, LoadOptions{});
  for (const auto& o : result.observations) REQUIRE(o.status == RequestStatus::kOk);
  REQUIRE(target.stats().token_ids_refused);
  REQUIRE(target.description()["token_ids_refused"] == true);
}

TEST_CASE("Target spec parsing accepts openai:URL and names what is wrong otherwise") {
  REQUIRE(prism::harness::parse_openai_target_spec("openai:http://h:1") == "http://h:1");
  REQUIRE(prism::harness::parse_openai_target_spec("https://h/v1") == "https://h/v1");
  REQUIRE_THROWS_WITH(prism::harness::parse_openai_target_spec("vllm:h:1"),
                      Catch::Contains("vllm:h:1"));
}

TEST_CASE("A server that is down is a connect error") {
  const auto client = GENERATE(HttpClient::kNative, HttpClient::kCurl);
  INFO(client_name(client));
  OpenAiTargetOptions o;
  o.http_client = client;
  o.url = "http://127.0.0.1:" + std::to_string(closed_port());
  o.model = "m";
  OpenAiTarget target(o);
  const auto w = prism::test::open_loop_workload(2, 0.0, 2);
  const auto result = prism::harness::run_load(w, target, LoadOptions{});
  REQUIRE(result.observations.size() == 2);
  for (const auto& o2 : result.observations) {
    REQUIRE(o2.status == RequestStatus::kError);
    REQUIRE(o2.error == ErrorClass::kConnect);
  }
}

TEST_CASE("An HTTP error status is recorded with the server's message from the body") {
  const auto client = GENERATE(HttpClient::kNative, HttpClient::kCurl);
  INFO(client_name(client));
  OpenAiTargetOptions tweak;
  tweak.http_client = client;
  MockServerOptions mock;
  mock.error_status = 503;
  const auto o = one_with_fault("error", mock, tweak);
  REQUIRE(o.status == RequestStatus::kError);
  REQUIRE(o.error == ErrorClass::kHttpStatus);
  REQUIRE(o.http_status == 503);
  REQUIRE_THAT(o.error_message, Catch::Contains("mock: injected HTTP 503"));
}

TEST_CASE("Malformed SSE data is a malformed_sse error") {
  const auto client = GENERATE(HttpClient::kNative, HttpClient::kCurl);
  INFO(client_name(client));
  OpenAiTargetOptions tweak;
  tweak.http_client = client;
  const auto o = one_with_fault("malformed", {}, tweak);
  REQUIRE(o.error == ErrorClass::kMalformedSse);
  REQUIRE_THAT(o.error_message, Catch::Contains("not a JSON object"));
}

TEST_CASE("A stream cut mid-response is a stream_cut error that keeps the tokens received") {
  const auto client = GENERATE(HttpClient::kNative, HttpClient::kCurl);
  INFO(client_name(client));
  OpenAiTargetOptions tweak;
  tweak.http_client = client;
  const auto o = one_with_fault("cut", {}, tweak);
  REQUIRE(o.error == ErrorClass::kStreamCut);
  REQUIRE(o.token_times_s.size() == 4);  // the mock cuts after half of 8
}

TEST_CASE("A stalled stream ends at the per-request timeout as a timeout error") {
  const auto client = GENERATE(HttpClient::kNative, HttpClient::kCurl);
  INFO(client_name(client));
  OpenAiTargetOptions tweak;
  tweak.http_client = client;
  tweak.request_timeout_s = 0.3;
  const auto o = one_with_fault("stall", {}, tweak);
  REQUIRE(o.error == ErrorClass::kTimeout);
  REQUIRE(o.token_times_s.size() == 4);
}

TEST_CASE("An endless SSE line is an oversized error, not unbounded memory") {
  const auto client = GENERATE(HttpClient::kNative, HttpClient::kCurl);
  INFO(client_name(client));
  MockServerOptions mock;
  mock.oversized_bytes = std::size_t{2} << 20;
  OpenAiTargetOptions tweak;
  tweak.http_client = client;
  tweak.max_event_bytes = 64 << 10;
  const auto o = one_with_fault("oversized", mock, tweak);
  REQUIRE(o.error == ErrorClass::kOversized);
}

TEST_CASE("A response larger than the byte limit is an oversized error") {
  const auto client = GENERATE(HttpClient::kNative, HttpClient::kCurl);
  INFO(client_name(client));
  OpenAiTargetOptions tweak;
  tweak.http_client = client;
  tweak.max_response_bytes = 600;
  const auto o = one_with_fault("none", {}, tweak);
  REQUIRE(o.error == ErrorClass::kOversized);
}

TEST_CASE("Slow headers delay the first token but are not an error") {
  const auto client = GENERATE(HttpClient::kNative, HttpClient::kCurl);
  INFO(client_name(client));
  OpenAiTargetOptions tweak;
  tweak.http_client = client;
  MockServerOptions mock;
  mock.slow_header_ms = 150;
  mock.ttft_ms = 1;
  const auto o = one_with_fault("slow-headers", mock, tweak);
  REQUIRE(o.status == RequestStatus::kOk);
  REQUIRE(o.token_times_s.front() - o.scheduled_s >= 0.15);
}

TEST_CASE("With random faults the run goes on and every request is accounted for") {
  MockServerOptions mock;
  mock.ttft_ms = 2;
  mock.itl_ms = 1;
  mock.error_rate = 0.25;
  mock.cut_rate = 0.25;
  mock.malformed_rate = 0.2;
  mock.seed = 3;
  MockServer server(mock);
  server.start();
  const auto client = GENERATE(HttpClient::kNative, HttpClient::kCurl);
  INFO(client_name(client));
  const auto obs = run(target_for(server, client), 40, 6);
  REQUIRE(obs.size() == 40);
  std::map<ErrorClass, int> classes;
  for (const auto& o : obs) ++classes[o.error];
  REQUIRE(classes[ErrorClass::kNone] > 0);
  REQUIRE(classes[ErrorClass::kHttpStatus] > 0);
  REQUIRE(classes[ErrorClass::kStreamCut] > 0);
  REQUIRE(classes[ErrorClass::kMalformedSse] > 0);
  REQUIRE(classes[ErrorClass::kNone] + classes[ErrorClass::kHttpStatus] +
              classes[ErrorClass::kStreamCut] + classes[ErrorClass::kMalformedSse] ==
          40);
}

TEST_CASE("Every fault class at once: each is recorded as its class and the run goes on") {
  MockServerOptions mock;
  mock.ttft_ms = 2;
  mock.itl_ms = 1;
  mock.error_rate = 0.12;
  mock.cut_rate = 0.12;
  mock.stall_rate = 0.12;
  mock.malformed_rate = 0.12;
  mock.oversized_rate = 0.12;
  mock.slow_header_rate = 0.12;
  mock.slow_header_ms = 50;
  mock.oversized_bytes = 256 << 10;
  mock.seed = 5;
  MockServer server(mock);
  server.start();
  const auto client = GENERATE(HttpClient::kNative, HttpClient::kCurl);
  INFO(client_name(client));
  auto options = target_for(server, client);
  // Ends the stalled streams; long enough that a loaded CI machine (ASan, parallel tests) does
  // not time out a request the mock served on schedule.
  options.request_timeout_s = 3.0;
  options.max_event_bytes = 64 << 10;
  const auto obs = run(options, 60, 6);
  REQUIRE(obs.size() == 60);
  std::map<ErrorClass, int> classes;
  for (const auto& o : obs) {
    ++classes[o.error];
    REQUIRE(o.status != RequestStatus::kCancelled);
    if (o.error == ErrorClass::kNone) REQUIRE(o.completion_tokens == 6);
  }
  for (auto c : {ErrorClass::kNone, ErrorClass::kHttpStatus, ErrorClass::kStreamCut,
                 ErrorClass::kTimeout, ErrorClass::kMalformedSse, ErrorClass::kOversized}) {
    INFO("class " << prism::results::to_string(c));
    REQUIRE(classes[c] > 0);
  }
  // The mock files a request's record when its connection ends; a stream the harness timed out
  // or abandoned ends when the mock next reads that socket, which on a loaded machine can be
  // after run() returned. Wait for all 60 (bounded) rather than count a partial list.
  auto records = server.records();
  for (int waited_ms = 0; records.size() < 60 && waited_ms < 10000; waited_ms += 10) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    records = server.records();
  }
  REQUIRE(records.size() == 60);
  int faults_by_mock = 0;
  for (const auto& r : records) {
    if (r.fault != prism::harness::MockFault::kNone &&
        r.fault != prism::harness::MockFault::kSlowHeaders)
      ++faults_by_mock;
  }
  REQUIRE(60 - classes[ErrorClass::kNone] == faults_by_mock);
}

TEST_CASE("Open-loop requests over HTTP are sent when due while earlier ones still stream") {
  MockServerOptions mock;
  mock.ttft_ms = 300;  // nothing completes before the last request is due
  mock.itl_ms = 1;
  MockServer server(mock);
  server.start();
  OpenAiTarget target(target_for(server));
  const auto w = prism::test::open_loop_workload(20, 0.005, 2);
  const auto result = prism::harness::run_load(w, target, LoadOptions{});
  REQUIRE(result.observations.size() == 20);
  double first_completion = 1e9;
  for (const auto& o : result.observations)
    first_completion = std::min(first_completion, o.completed_s);
  for (std::size_t i = 0; i < 20; ++i) {
    const auto& o = result.observations[i];
    REQUIRE(o.status == RequestStatus::kOk);
    REQUIRE(o.scheduled_s == Approx(0.005 * static_cast<double>(i)).margin(1e-6));
    REQUIRE(o.sent_s >= o.scheduled_s);
    REQUIRE(o.sent_s < first_completion);
  }
  REQUIRE(server.records().size() == 20);
}

TEST_CASE(
    "Against the mock, time waiting for a concurrency slot is in TTFT but not in the server's") {
  MockServerOptions mock;
  mock.ttft_ms = 30;
  mock.itl_ms = 1;
  MockServer server(mock);
  server.start();
  OpenAiTarget target(target_for(server));
  const auto w = prism::test::open_loop_workload(4, 0.0, 2);  // all due at t = 0
  LoadOptions options;
  options.concurrency = 1;
  const auto result = prism::harness::run_load(w, target, options);
  REQUIRE(result.observations.size() == 4);
  std::map<std::string, prism::harness::MockRecord> truth;
  for (const auto& r : server.records()) truth[r.request_id] = r;
  std::vector<double> sent;
  for (const auto& o : result.observations) {
    REQUIRE(o.status == RequestStatus::kOk);
    sent.push_back(o.sent_s);
  }
  std::sort(sent.begin(), sent.end());
  const auto& last = *std::max_element(
      result.observations.begin(), result.observations.end(),
      [](const Observation& a, const Observation& b) { return a.sent_s < b.sent_s; });
  const auto& r = truth.at("prism-" + std::to_string(last.request_id));
  const double server_ttft = prism::harness::ns_to_s(r.chunk_sent_ns.at(0) - r.received_ns);
  const double measured_ttft = last.token_times_s.front() - last.scheduled_s;
  // Three requests of at least 30 ms each ran before it: that wait is its TTFT too.
  REQUIRE(last.sent_s - last.scheduled_s >= 3 * 0.030);
  REQUIRE(measured_ttft >= server_ttft + 3 * 0.030);
}

TEST_CASE("A long token-id prompt is written exactly, and an empty prompt is an empty array") {
  OpenAiTargetOptions o;
  o.url = "http://127.0.0.1:1";
  o.model = "m";
  OpenAiTarget target(o);
  prism::harness::TargetRequest r;
  std::vector<std::int32_t> ids(131072);
  for (std::size_t i = 0; i < ids.size(); ++i)
    ids[i] = static_cast<std::int32_t>((i * 7919) % 128256);
  r.messages.push_back({prism::harness::Role::kSystem, {ids.begin(), ids.begin() + 5}, {}});
  r.messages.push_back({prism::harness::Role::kUser, {ids.begin() + 5, ids.end()}, {}});
  r.max_output_tokens = 3;
  auto body = nlohmann::json::parse(target.encode(r).body);
  REQUIRE(body["prompt"].get<std::vector<std::int32_t>>() == ids);
  REQUIRE(body["model"] == "m");
  r.messages = {{prism::harness::Role::kUser, {}, {}}};
  body = nlohmann::json::parse(target.encode(r).body);
  REQUIRE(body["prompt"] == nlohmann::json::array());
  REQUIRE(body["max_tokens"] == 3);
}

TEST_CASE("Invalid UTF-8 in a text prompt or a reply is replaced, not thrown") {
  OpenAiTargetOptions o;
  o.url = "http://127.0.0.1:1";
  o.model = "m";
  o.prompt_format = prism::harness::PromptFormat::kText;
  o.detokenize = [](std::span<const std::int32_t>) { return std::string("caf\xC3"); };
  OpenAiTarget target(o);
  prism::harness::TargetRequest r;
  r.messages.push_back({prism::harness::Role::kUser, {1, 2}, {}});
  const auto body = nlohmann::json::parse(target.encode(r).body);
  REQUIRE(body["prompt"] == "caf\xEF\xBF\xBD");
  r.turn = 1;
  r.messages.push_back({prism::harness::Role::kAssistant, {}, "\xFF ok"});
  const auto chat = nlohmann::json::parse(target.encode(r).body);
  REQUIRE(chat["messages"][1]["content"] == "\xEF\xBF\xBD ok");
}

TEST_CASE("A prompt that cannot be detokenized fails only its own request") {
  MockServerOptions mock;
  mock.ttft_ms = 1;
  mock.itl_ms = 1;
  MockServer server(mock);
  server.start();
  auto options = target_for(server);
  options.prompt_format = prism::harness::PromptFormat::kText;
  options.detokenize = [](std::span<const std::int32_t> ids) {
    if (ids.front() == 97) throw std::out_of_range("token id 97 is not in the vocabulary");
    return prism::harness::synthetic_text(ids);
  };
  const auto obs = run(options, 3, 2);  // only the first prompt starts with id 97
  REQUIRE(obs.size() == 3);
  REQUIRE(obs[0].status == RequestStatus::kError);
  REQUIRE(obs[0].error == ErrorClass::kOther);
  REQUIRE_THAT(obs[0].error_message, Catch::Contains("token id 97 is not in the vocabulary"));
  REQUIRE(obs[1].status == RequestStatus::kOk);
  REQUIRE(obs[2].status == RequestStatus::kOk);
}

TEST_CASE("A mock that is behind its schedule still reads new requests between chunks") {
  // With no gap between tokens every chunk of the long stream is due at once,
  // like a server that has fallen behind on a busy machine: the short request
  // that arrives meanwhile must still be read while it is being written.
  MockServerOptions mock;
  mock.ttft_ms = 0;
  mock.itl_ms = 0;
  MockServer server(mock);
  server.start();
  OpenAiTarget target(target_for(server));
  auto w = prism::test::open_loop_workload(2, 0.02, 1);
  w.sessions[0].requests[0].output_tokens = 100'000;
  const auto result = prism::harness::run_load(w, target, LoadOptions{});
  REQUIRE(result.observations.size() == 2);
  const auto& long_one = result.observations[0];
  const auto& short_one = result.observations[1];
  REQUIRE(long_one.status == RequestStatus::kOk);
  REQUIRE(long_one.completion_tokens == 100'000);
  REQUIRE(short_one.status == RequestStatus::kOk);
  std::map<std::string, prism::harness::MockRecord> truth;
  for (const auto& r : server.records()) truth[r.request_id] = r;
  const auto& long_truth = truth.at("prism-" + std::to_string(long_one.request_id));
  const auto& short_truth = truth.at("prism-" + std::to_string(short_one.request_id));
  // Read (and its first chunk scheduled) while the overdue stream was still being written.
  REQUIRE(short_truth.received_ns < long_truth.chunk_sent_ns.back());
}

TEST_CASE("The mock records when each chunk was due and when it was written, never before due") {
  MockServerOptions mock;
  mock.ttft_ms = 20;
  mock.itl_ms = 30;
  mock.tokens_per_chunk = 2;
  MockServer server(mock);
  server.start();
  const auto obs = run(target_for(server), 1, 5);
  REQUIRE(obs.size() == 1);
  REQUIRE(obs.front().status == RequestStatus::kOk);
  const auto records = server.records();
  REQUIRE(records.size() == 1);
  const auto& r = records.front();
  // 5 tokens, 2 per chunk: chunks of 2, 2, 1, due at ttft, then itl per token carried.
  REQUIRE(r.chunk_tokens == std::vector<std::uint32_t>{2, 2, 1});
  REQUIRE(r.chunk_due_ns.size() == 3);
  REQUIRE(r.chunk_sent_ns.size() == 3);
  constexpr std::int64_t kMs = 1'000'000;
  CHECK(r.chunk_due_ns[0] == r.received_ns + 20 * kMs);
  CHECK(r.chunk_due_ns[1] - r.chunk_due_ns[0] == 2 * 30 * kMs);
  CHECK(r.chunk_due_ns[2] - r.chunk_due_ns[1] == 2 * 30 * kMs);
  for (std::size_t i = 0; i < 3; ++i) CHECK(r.chunk_sent_ns[i] >= r.chunk_due_ns[i]);
  const auto json = prism::harness::to_json(r);
  REQUIRE(json.at("chunk_due_ns").get<std::vector<std::int64_t>>() == r.chunk_due_ns);
  REQUIRE(json.at("chunk_sent_ns").get<std::vector<std::int64_t>>() == r.chunk_sent_ns);
}

TEST_CASE("Chunks are stamped with the kernel's receive time, or epoll's when that is turned off") {
  const auto client = GENERATE(HttpClient::kNative, HttpClient::kCurl);
  INFO(client_name(client));
  for (const bool kernel : {true, false}) {
    CAPTURE(kernel);
    MockServerOptions mock;
    mock.ttft_ms = 10;
    mock.itl_ms = 40;
    MockServer server(mock);
    server.start();
    auto options = target_for(server, client);
    options.kernel_rx_timestamps = kernel;
    OpenAiTarget target(options);
    const auto w = prism::test::open_loop_workload(3, 0.0, 4);
    const auto result = prism::harness::run_load(w, target, LoadOptions{});
    const auto stats = target.stats();
    std::map<std::string, prism::harness::MockRecord> truth;
    for (const auto& r : server.records()) truth[r.request_id] = r;
    for (const auto& o : result.observations) {
      REQUIRE(o.status == RequestStatus::kOk);
      const auto& r = truth.at("prism-" + std::to_string(o.request_id));
      REQUIRE(r.chunk_sent_ns.size() == o.token_times_s.size());
      for (std::size_t i = 0; i < r.chunk_sent_ns.size(); ++i) {
        // Bytes cannot arrive before they are written, whichever stamp is used.
        const auto arrived = result.origin_ns + static_cast<std::int64_t>(o.token_times_s[i] * 1e9);
        REQUIRE(arrived >= r.chunk_sent_ns[i] - 1000);
      }
    }
    REQUIRE(stats.kernel_stamps + stats.epoll_stamps + stats.read_stamps > 0);
    if (kernel) {
      CHECK(stats.kernel_stamps > 0);  // Linux stamps TCP segments (SO_TIMESTAMPNS)
    } else {
      CHECK(stats.kernel_stamps == 0);
      CHECK(stats.epoll_stamps > 0);
    }
  }
}

TEST_CASE("A thread is pinned to a CPU it may use, and a CPU it may not use is refused") {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  REQUIRE(sched_getaffinity(0, sizeof allowed, &allowed) == 0);
  int first = -1;
  for (int c = 0; c < CPU_SETSIZE && first < 0; ++c) {
    if (CPU_ISSET(c, &allowed)) first = c;
  }
  // A CPU this machine does not have (one outside the test's own mask may be
  // available: the mask is inherited, not the process's limit).
  const long configured = sysconf(_SC_NPROCESSORS_CONF);
  const int missing =
      configured > 0 && configured < CPU_SETSIZE ? static_cast<int>(configured) : -1;
  REQUIRE(first >= 0);
  bool pinned = false, refused_negative = false, refused_beyond = false, refused_missing = true;
  int cpus_after = 0;
  bool on_first = false;
  // In a thread of its own, so the test's own thread keeps its CPUs.
  std::thread([&] {
    refused_negative = !prism::harness::pin_current_thread_to_cpu(-1);
    refused_beyond = !prism::harness::pin_current_thread_to_cpu(CPU_SETSIZE);
    if (missing >= 0) refused_missing = !prism::harness::pin_current_thread_to_cpu(missing);
    pinned = prism::harness::pin_current_thread_to_cpu(first);
    cpu_set_t now;
    CPU_ZERO(&now);
    sched_getaffinity(0, sizeof now, &now);
    cpus_after = CPU_COUNT(&now);
    on_first = CPU_ISSET(first, &now);
  }).join();
  CHECK(refused_negative);
  CHECK(refused_beyond);
  CHECK(refused_missing);
  CHECK(pinned);
  CHECK(cpus_after == 1);
  CHECK(on_first);
}

TEST_CASE("A thread started by a pinned thread can still pin itself to another CPU") {
  // The accuracy bench pins its scheduler thread to the mock's CPU before the
  // target starts its I/O thread, which inherits that mask and must still
  // move to its own CPU.
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  REQUIRE(sched_getaffinity(0, sizeof allowed, &allowed) == 0);
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &allowed)) cpus.push_back(c);
  }
  if (cpus.size() < 2) {
    WARN("skipped: this process may use only one CPU");
    return;
  }
  bool parent_pinned = false, pinned = false, on_second = false;
  // No Catch assertion inside the threads (a failing REQUIRE there would terminate): results are
  // checked after the joins.
  std::thread([&] {
    parent_pinned = prism::harness::pin_current_thread_to_cpu(cpus[0]);
    if (!parent_pinned) return;
    std::thread([&] {
      pinned = prism::harness::pin_current_thread_to_cpu(cpus[1]);
      cpu_set_t now;
      CPU_ZERO(&now);
      sched_getaffinity(0, sizeof now, &now);
      on_second = CPU_COUNT(&now) == 1 && CPU_ISSET(cpus[1], &now);
    }).join();
  }).join();
  REQUIRE(parent_pinned);
  CHECK(pinned);
  CHECK(on_second);
}

TEST_CASE("A pinned mock and a pinned I/O thread serve a run like unpinned ones") {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  REQUIRE(sched_getaffinity(0, sizeof allowed, &allowed) == 0);
  int cpu = 0;
  while (!CPU_ISSET(cpu, &allowed)) ++cpu;
  MockServerOptions mock;
  mock.ttft_ms = 5;
  mock.itl_ms = 5;
  mock.cpu = cpu;
  MockServer server(mock);
  server.start();
  auto options = target_for(server);
  options.io_cpu = cpu;
  OpenAiTarget target(options);
  const auto obs =
      prism::harness::run_load(prism::test::open_loop_workload(4, 0.0, 3), target, LoadOptions{})
          .observations;
  REQUIRE(obs.size() == 4);
  for (const auto& o : obs) {
    CHECK(o.status == RequestStatus::kOk);
    CHECK(o.completion_tokens == 3);
  }
  CHECK(target.stats().io_thread_pinned);
  const auto description = target.description();
  CHECK(description["io_cpu"] == cpu);
  CHECK(description["io_thread_pinned"] == true);
  CHECK(description["arrival_stamps"] == "kernel");
}

TEST_CASE("A busy-polling or real-time I/O thread serves a run like a sleeping one") {
  MockServerOptions mock;
  mock.ttft_ms = 5;
  mock.itl_ms = 5;
  MockServer server(mock);
  server.start();
  for (const bool busy : {true, false}) {
    INFO((busy ? "busy poll" : "real time"));
    auto options = target_for(server);
    options.io_busy_poll = busy;
    options.io_realtime_priority = busy ? 0 : 5;
    OpenAiTarget target(options);
    const auto obs =
        prism::harness::run_load(prism::test::open_loop_workload(4, 0.0, 3), target, LoadOptions{})
            .observations;
    REQUIRE(obs.size() == 4);
    for (const auto& o : obs) {
      CHECK(o.status == RequestStatus::kOk);
      CHECK(o.completion_tokens == 3);
    }
    const auto stats = target.stats();
    const auto description = target.description();
    if (busy) {
      CHECK(description["io_busy_poll"] == true);
      CHECK_FALSE(stats.io_thread_realtime);
      CHECK_FALSE(description.contains("io_thread_realtime"));
    } else {
      // Whether SCHED_FIFO is allowed depends on the machine; the record must say what happened.
      CHECK(description["io_realtime_priority"] == 5);
      CHECK(description["io_thread_realtime"] == stats.io_thread_realtime);
      CHECK(stats.io_thread_preemptions >= 0);
    }
  }
}

TEST_CASE("The mock refuses a TCP congestion control the system does not have, naming it") {
  MockServerOptions mock;
  mock.tcp_congestion = "no-such-congestion-control";
  MockServer server(mock);
  REQUIRE_THROWS_WITH(server.start(), Catch::Contains("no-such-congestion-control"));
}

TEST_CASE("A mock with an unpaced congestion control streams like the default one") {
  MockServerOptions mock;
  mock.ttft_ms = 2;
  mock.itl_ms = 2;
  // cubic needs root unless listed in net.ipv4.tcp_allowed_congestion_control; reno is allowed.
  mock.tcp_congestion = prism::harness::unpaced_tcp_congestion();
  if (mock.tcp_congestion.empty()) {
    WARN("skipped: this process may set neither cubic nor reno as TCP congestion control");
    return;
  }
  CHECK((mock.tcp_congestion == "cubic" || mock.tcp_congestion == "reno"));
  MockServer server(mock);
  server.start();
  const auto obs = run(target_for(server), 2, 4);
  REQUIRE(obs.size() == 2);
  for (const auto& o : obs) CHECK(o.completion_tokens == 4);
}

// ---- kernel receive stamps: which bytes a peek's stamp covers ---------------

using prism::harness::PeekCover;
using prism::harness::ReceiveStamper;

TEST_CASE("A peek's stamp covers the bytes waiting at the peek and none that came after") {
  SECTION("the peek saw the whole queue: coverage ends at what was received before it") {
    // 1,000 bytes read before, 300 waiting at the peek (received 1,300).
    const auto c = PeekCover::after_peek(1'300, 300, true, 0);
    CHECK(c.limit == 1'300);
    CHECK(c.covers_received(1'300));  // nothing arrived since: all reads covered
    CHECK_FALSE(c.covers_received(1'301));
    CHECK(c.covers_consumed(1'000));        // 200 more arrived, none read yet
    CHECK(c.covers_consumed(1'300));        // exactly the 300 waiting were read
    CHECK_FALSE(c.covers_consumed(1'301));  // one byte of the later segment was read
  }
  SECTION("bytes processed between the counter read and the peek are waiting, not covered") {
    // Received 1,300 before the peek; 100 more were queued before the peek
    // walked the queue, so it returned 400: its stamp is the newest of those,
    // but the accounting only trusts what the counter saw (late, not early).
    const auto c = PeekCover::after_peek(1'300, 400, true, 0);
    CHECK(c.limit == 1'300);
    CHECK_FALSE(c.covers_consumed(1'400));
  }
  SECTION("nothing was waiting: nothing read afterwards is covered") {
    const auto c = PeekCover::after_peek(500, 0, true, 0);
    CHECK(c.covers_received(500));
    CHECK_FALSE(c.covers_consumed(501));
  }
  SECTION("the peek filled its buffer: coverage ends at what it returned") {
    // 10,000 read before (a floor), 65,536 peeked of 100,000 waiting.
    const auto c = PeekCover::after_peek(110'000, 65'536, false, 10'000);
    CHECK(c.limit == 75'536);
    CHECK(c.covers_consumed(75'536));
    CHECK_FALSE(c.covers_consumed(75'537));
    CHECK_FALSE(c.covers_received(110'000));  // the cheap test is not enough here
  }
}

TEST_CASE("The realtime-to-monotonic offset converts a realtime reading to no earlier a time") {
  for (int i = 0; i < 100; ++i) {
    const std::int64_t offset = prism::harness::realtime_minus_monotonic_ns();
    const std::int64_t before = prism::harness::monotonic_ns();
    timespec real{};
    clock_gettime(CLOCK_REALTIME, &real);
    const std::int64_t after = prism::harness::monotonic_ns();
    const std::int64_t converted =
        static_cast<std::int64_t>(real.tv_sec) * 1'000'000'000 + real.tv_nsec - offset;
    CHECK(converted >= before);
    CHECK(converted <= after + 1'000'000);  // late at most by the bracket (1 ms: a preemption)
  }
}

namespace {

struct TcpPair {
  int sender = -1;
  int receiver = -1;
  TcpPair() {
    const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::listen(listener, 1);
    socklen_t len = sizeof addr;
    getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
    sender = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(::connect(sender, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    receiver = ::accept(listener, nullptr, nullptr);
    ::close(listener);
    REQUIRE(receiver >= 0);
    const int one = 1;
    setsockopt(sender, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ReceiveStamper::enable(receiver);
    // The first socket to ask for stamps turns them on system-wide from a
    // kernel work item: give it a moment before the first segment.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ~TcpPair() {
    ::close(sender);
    ::close(receiver);
  }
  // Sends n bytes and waits until the receiver has them all queued.
  void send_and_wait(std::size_t n) {
    std::uint64_t before = 0, after = 0;
    REQUIRE(prism::harness::tcp_bytes_received(receiver, before));
    const std::string bytes(n, 'x');
    REQUIRE(::send(sender, bytes.data(), n, 0) == static_cast<ssize_t>(n));
    for (int i = 0; i < 10'000 && after < before + n; ++i) {
      prism::harness::tcp_bytes_received(receiver, after);
      if (after < before + n) std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    REQUIRE(after == before + n);
  }
  void read(std::size_t n) {
    std::string buffer(n, '\0');
    REQUIRE(::recv(receiver, buffer.data(), n, MSG_WAITALL) == static_cast<ssize_t>(n));
  }
};

}  // namespace

TEST_CASE("On a real socket, reads past the peek's bytes are not covered by its stamp") {
  TcpPair pair;
  ReceiveStamper stamper;
  pair.send_and_wait(300);
  pair.read(300);  // an earlier chunk, already consumed: the stream offset is not zero

  pair.send_and_wait(200);
  auto peek = stamper.peek(pair.receiver);
  CHECK(peek.peeked == 200);
  CHECK(peek.realtime_ns > 0);           // Linux stamps TCP segments
  CHECK(stamper.covers(pair.receiver));  // nothing arrived: the cheap test
  CHECK(stamper.counters().cheap_checks == 1);

  // A segment arrives between the peek and the read: the read of the peeked
  // bytes alone is still covered (exact test), the next byte is not.
  pair.send_and_wait(100);
  CHECK_FALSE(stamper.covers(pair.receiver + 1000));  // another socket: never
  pair.read(150);
  CHECK(stamper.covers(pair.receiver));
  pair.read(50);
  CHECK(stamper.covers(pair.receiver));
  CHECK(stamper.counters().exact_checks == 2);
  pair.read(1);
  CHECK_FALSE(stamper.covers(pair.receiver));
  CHECK_FALSE(stamper.covers(pair.receiver));  // and it stays so until the next peek
  CHECK(stamper.counters().uncovered == 1);
  pair.read(99);

  // A peek that finds nothing covers nothing that comes later.
  peek = stamper.peek(pair.receiver);
  CHECK(peek.peeked == 0);
  CHECK(peek.realtime_ns < 0);
  pair.send_and_wait(10);
  pair.read(10);
  CHECK_FALSE(stamper.covers(pair.receiver));

  // A socket forgotten (closing) is never covered again.
  pair.send_and_wait(10);
  stamper.peek(pair.receiver);
  stamper.forget(pair.receiver);
  pair.read(10);
  CHECK_FALSE(stamper.covers(pair.receiver));
}

namespace {

// Streams `requests` x `tokens` from the mock with `pause` run between each
// peek and curl's read, and checks every chunk's stamp against the mock's
// write of it: never before.
OpenAiTarget::Stats stream_with_pause_after_peek(MockServerOptions mock, std::size_t requests,
                                                 std::uint32_t tokens,
                                                 std::function<void(int)> pause) {
  MockServer server(mock);
  server.start();
  auto options = target_for(server, HttpClient::kCurl);  // the peek is libcurl's
  options.between_peek_and_read = std::move(pause);
  OpenAiTarget target(options);
  const auto w = prism::test::open_loop_workload(requests, 0.0, tokens);
  const auto result = prism::harness::run_load(w, target, LoadOptions{});
  std::map<std::string, prism::harness::MockRecord> truth;
  for (const auto& r : server.records()) truth[r.request_id] = r;
  REQUIRE(result.observations.size() == requests);
  std::size_t early = 0;
  for (const auto& o : result.observations) {
    REQUIRE(o.status == RequestStatus::kOk);
    const auto& r = truth.at("prism-" + std::to_string(o.request_id));
    REQUIRE(r.chunk_sent_ns.size() == o.token_times_s.size());
    for (std::size_t i = 0; i < r.chunk_sent_ns.size(); ++i) {
      const auto arrived = result.origin_ns + static_cast<std::int64_t>(o.token_times_s[i] * 1e9);
      if (arrived < r.chunk_sent_ns[i] - 1000) ++early;  // token_times_s rounds to ~1 us
    }
  }
  CHECK(early == 0);
  return target.stats();
}

}  // namespace

TEST_CASE("A chunk that arrives between the peek and curl's read is stamped late, never early") {
  MockServerOptions mock;
  mock.ttft_ms = 5;
  SECTION("the next chunk arrives a chunk interval after the peek") {
    // After each of the first 40 peeks the I/O thread waits until the socket
    // receives more, so the stream's next chunk is queued just before curl
    // reads: with the peek's stamp it would be early by 2 ms.
    mock.itl_ms = 2;
    int pauses = 0;  // on the I/O thread only
    const auto stats = stream_with_pause_after_peek(mock, 2, 12, [&](int fd) {
      if (++pauses > 40) return;
      std::uint64_t before = 0, now = 0;
      if (!prism::harness::tcp_bytes_received(fd, before)) return;
      const auto give_up = prism::harness::monotonic_ns() + 10'000'000;
      do {
        prism::harness::tcp_bytes_received(fd, now);
      } while (now == before && prism::harness::monotonic_ns() < give_up);
    });
    CHECK(stats.read_stamps > 0);    // the chunks that came after a peek
    CHECK(stats.kernel_stamps > 0);  // and the ones that were waiting at it
  }
}

namespace {

// A two-connection SSE server driven step by step by the test, so a chunk can
// be written at an exact point of the I/O thread's work.
class ScriptedSseServer {
 public:
  ScriptedSseServer() {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::listen(listener_, 8);
    socklen_t len = sizeof addr;
    getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~ScriptedSseServer() {
    for (int fd : conns_) ::close(fd);
    ::close(listener_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // Accepts `n` requests and reads them; conns()[i] is request prism-<i>'s.
  void accept_requests(std::size_t n) {
    conns_.assign(n, -1);
    for (std::size_t k = 0; k < n; ++k) {
      const int fd = ::accept(listener_, nullptr, nullptr);
      REQUIRE(fd >= 0);
      std::string request;
      char buffer[4096];
      std::size_t body_at = std::string::npos, length = 0;
      while (body_at == std::string::npos || request.size() < body_at + length) {
        const ssize_t got = ::recv(fd, buffer, sizeof buffer, 0);
        REQUIRE(got > 0);
        request.append(buffer, static_cast<std::size_t>(got));
        if (body_at == std::string::npos && request.find("\r\n\r\n") != std::string::npos) {
          body_at = request.find("\r\n\r\n") + 4;
          const auto cl = request.find("Content-Length: ");
          length = cl < body_at ? std::stoul(request.substr(cl + 16)) : 0;
        }
      }
      const auto id = request.find("X-Request-Id: prism-");
      REQUIRE(id != std::string::npos);
      const auto index = std::stoul(request.substr(id + 20));
      REQUIRE(index < n);
      conns_[index] = fd;
      const int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      const std::string head =
          "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
      REQUIRE(::send(fd, head.data(), head.size(), 0) == static_cast<ssize_t>(head.size()));
    }
    sent_ns_.assign(n, {});
  }
  // Writes one token chunk to request i's stream and records when.
  void send_chunk(std::size_t i) {
    static const std::string chunk = "data: {\"choices\":[{\"text\":\"tok\"}]}\n\n";
    sent_ns_[i].push_back(prism::harness::monotonic_ns());
    REQUIRE(::send(conns_[i], chunk.data(), chunk.size(), 0) == static_cast<ssize_t>(chunk.size()));
  }
  void finish(std::size_t i) {
    static const std::string done = "data: [DONE]\n\n";
    ::send(conns_[i], done.data(), done.size(), 0);
    ::shutdown(conns_[i], SHUT_WR);
  }
  // Which request a client socket (the harness's end) belongs to.
  std::size_t request_of(int client_fd) const {
    sockaddr_in mine{}, peer{};
    socklen_t len = sizeof mine;
    getsockname(client_fd, reinterpret_cast<sockaddr*>(&mine), &len);
    for (std::size_t i = 0; i < conns_.size(); ++i) {
      len = sizeof peer;
      getpeername(conns_[i], reinterpret_cast<sockaddr*>(&peer), &len);
      if (peer.sin_port == mine.sin_port) return i;
    }
    return conns_.size();
  }
  const std::vector<std::vector<std::int64_t>>& sent_ns() const { return sent_ns_; }

 private:
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::vector<int> conns_;
  std::vector<std::vector<std::int64_t>> sent_ns_;
};

}  // namespace

TEST_CASE(
    "A chunk written right after its socket's peek is stamped at read, not with the peek's stamp") {
  // Stream B's chunk 1 waits 2 ms in its socket while the I/O thread is busy
  // (in stream A's event). When B's socket is then peeked, its chunk 2 is
  // written at once, before curl reads: it arrives microseconds after the
  // peek, so a stamp trusted for a fixed time after the peek would put it
  // 2 ms before it was written. It must be stamped at read.
  ScriptedSseServer server;
  std::atomic<int> step{0};
  OpenAiTargetOptions options;
  options.url = server.url();
  options.model = "m";
  options.request_timeout_s = 5;
  options.http_client = HttpClient::kCurl;  // the peek is libcurl's
  options.between_peek_and_read = [&](int fd) {
    const std::size_t request = server.request_of(fd);
    if (step.load() == 1 && request == 0) {
      step.store(2);
      server.send_chunk(1);  // B's chunk 1, written while A's event is served
      const auto until = prism::harness::monotonic_ns() + 2'000'000;
      while (prism::harness::monotonic_ns() < until) {
      }
    } else if (step.load() == 2 && request == 1) {
      step.store(3);
      server.send_chunk(1);  // B's chunk 2, written between the peek and the read
    }
  };
  OpenAiTarget target(options);
  prism::harness::LoadResult result;
  std::thread load([&] {
    result =
        prism::harness::run_load(prism::test::open_loop_workload(2, 0.0, 3), target, LoadOptions{});
  });
  server.accept_requests(2);
  server.send_chunk(0);
  server.send_chunk(1);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  step.store(1);
  server.send_chunk(0);  // A's chunk 1: its event starts the script
  for (int i = 0; i < 500 && step.load() != 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  server.finish(0);
  server.finish(1);
  load.join();
  REQUIRE(step.load() == 3);
  REQUIRE(result.observations.size() == 2);
  for (const auto& o : result.observations) {
    REQUIRE(o.status == RequestStatus::kOk);
    const auto& sent = server.sent_ns()[o.request_id];
    REQUIRE(o.token_times_s.size() == sent.size());
    for (std::size_t i = 0; i < sent.size(); ++i) {
      CAPTURE(o.request_id, i);
      const auto stamp = result.origin_ns + static_cast<std::int64_t>(o.token_times_s[i] * 1e9);
      CHECK(stamp >= sent[i] - 1000);  // token_times_s rounds to ~1 us
    }
  }
  // B's chunk 1 was waiting at the peek, but curl read it in the same recv()
  // as chunk 2 (here even handed both over in one callback): it is stamped
  // at read too, late by 2 ms, not early.
  const auto stats = target.stats();
  CHECK(stats.read_stamps >= 1);
  CHECK(stats.kernel_stamps >= 3);
}
