#include "prism/engine/openai_server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>

#include <fmt/core.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "prism/engine/chat_template.h"

namespace prism::engine {
namespace {

using nlohmann::json;

// A client error: HTTP status, message, and the offending parameter if any.
struct ApiError {
  int status = 400;
  std::string message;
  std::string param;
  std::string type = "invalid_request_error";
};

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

void send_error(httplib::Response& res, const ApiError& e) {
  json err{{"message", e.message}, {"type", e.type}, {"code", e.status}};
  err["param"] = e.param.empty() ? json(nullptr) : json(e.param);
  res.status = e.status;
  res.set_content(dump(json{{"error", err}}), "application/json");
}

json parse_body(const httplib::Request& req) {
  if (req.body.empty()) throw ApiError{400, "request body is empty; expected a JSON object", ""};
  json j;
  try {
    j = json::parse(req.body);
  } catch (const json::parse_error& e) {
    throw ApiError{400, fmt::format("malformed JSON in request body: {}", e.what()), ""};
  }
  if (!j.is_object()) throw ApiError{400, "request body must be a JSON object", ""};
  return j;
}

const json* field(const json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

bool get_bool(const json& j, const char* key, bool fallback) {
  const json* v = field(j, key);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) throw ApiError{400, fmt::format("'{}' must be a boolean", key), key};
  return v->get<bool>();
}

double get_number(const json& j, const char* key, double fallback, double lo, double hi) {
  const json* v = field(j, key);
  if (v == nullptr) return fallback;
  if (!v->is_number()) throw ApiError{400, fmt::format("'{}' must be a number", key), key};
  const double x = v->get<double>();
  if (!(x >= lo && x <= hi))
    throw ApiError{400, fmt::format("'{}' must be between {} and {}, got {}", key, lo, hi, x), key};
  return x;
}

std::optional<std::int64_t> get_int(const json& j, const char* key, std::int64_t lo,
                                    std::int64_t hi) {
  const json* v = field(j, key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number_integer())
    throw ApiError{400, fmt::format("'{}' must be an integer", key), key};
  const auto x = v->get<std::int64_t>();
  if (x < lo || x > hi)
    throw ApiError{400, fmt::format("'{}' must be between {} and {}, got {}", key, lo, hi, x), key};
  return x;
}

std::vector<std::int32_t> token_array(const json& a, const char* key) {
  std::vector<std::int32_t> out;
  out.reserve(a.size());
  for (const auto& t : a) {
    if (!t.is_number_integer() || t.get<std::int64_t>() < 0 || t.get<std::int64_t>() > INT32_MAX)
      throw ApiError{400, fmt::format("'{}' token ids must be non-negative integers", key), key};
    out.push_back(static_cast<std::int32_t>(t.get<std::int64_t>()));
  }
  return out;
}

std::string message_content(const json& m, std::size_t index) {
  const json* c = field(m, "content");
  if (c == nullptr) return "";
  if (c->is_string()) return c->get<std::string>();
  if (c->is_array()) {  // content parts: only text parts are understood
    std::string text;
    for (const auto& part : *c) {
      if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
          !part.at("text").is_string())
        throw ApiError{400,
                       fmt::format("messages[{}].content: only text parts are supported", index),
                       "messages"};
      text += part.at("text").get<std::string>();
    }
    return text;
  }
  throw ApiError{
      400, fmt::format("messages[{}].content must be a string or an array of text parts", index),
      "messages"};
}

std::vector<ChatMessage> parse_messages(const json& body) {
  const json* ms = field(body, "messages");
  if (ms == nullptr) throw ApiError{400, "'messages' is required", "messages"};
  if (!ms->is_array() || ms->empty())
    throw ApiError{400, "'messages' must be a non-empty array", "messages"};
  std::vector<ChatMessage> out;
  for (std::size_t i = 0; i < ms->size(); ++i) {
    const json& m = (*ms)[i];
    if (!m.is_object() || !m.contains("role") || !m.at("role").is_string())
      throw ApiError{400, fmt::format("messages[{}] must be an object with a string 'role'", i),
                     "messages"};
    out.push_back(ChatMessage{m.at("role").get<std::string>(), message_content(m, i)});
  }
  return out;
}

// The completion request, parsed and checked.
struct ParsedRequest {
  bool chat = false;
  bool stream = false;
  bool include_usage = false;
  GenerateRequest gen;
};

ParsedRequest parse_generation(const json& body, bool chat, const Engine& engine,
                               const std::string& model_name) {
  ParsedRequest p;
  p.chat = chat;
  if (const json* m = field(body, "model")) {
    if (!m->is_string()) throw ApiError{400, "'model' must be a string", "model"};
    if (m->get<std::string>() != model_name)
      throw ApiError{404,
                     fmt::format("the model '{}' does not exist; this server serves '{}'",
                                 m->get<std::string>(), model_name),
                     "model", "not_found_error"};
  }
  const auto& tok = engine.tokenizer();
  if (chat) {
    ChatPrompt cp = apply_chat_template(tok, parse_messages(body));
    p.gen.prompt = std::move(cp.tokens);
    p.gen.sampling.stop_token_ids = std::move(cp.stop_token_ids);
  } else {
    const json* pr = field(body, "prompt");
    if (pr == nullptr) throw ApiError{400, "'prompt' is required", "prompt"};
    if (pr->is_string()) {
      p.gen.prompt = tok.encode(pr->get<std::string>());
    } else if (pr->is_array() && !pr->empty() && pr->front().is_number_integer()) {
      p.gen.prompt = token_array(*pr, "prompt");
    } else if (pr->is_array() && pr->size() == 1 && pr->front().is_string()) {
      p.gen.prompt = tok.encode(pr->front().get<std::string>());
    } else if (pr->is_array() && pr->size() == 1 && pr->front().is_array()) {
      p.gen.prompt = token_array(pr->front(), "prompt");
    } else if (pr->is_array() && pr->size() > 1 &&
               (pr->front().is_string() || pr->front().is_array())) {
      throw ApiError{400, "only one prompt per request is supported", "prompt"};
    } else {
      throw ApiError{400, "'prompt' must be a string or an array of token ids", "prompt"};
    }
  }
  if (p.gen.prompt.empty())
    throw ApiError{400, "the prompt is empty", chat ? "messages" : "prompt"};
  if (const auto n = get_int(body, "n", 1, 1)) (void)n;
  if (const json* stop = field(body, "stop")) {
    if (!(stop->is_array() && stop->empty()))
      throw ApiError{400, "'stop' strings are not supported; use 'stop_token_ids'", "stop"};
  }
  if (const json* ids = field(body, "stop_token_ids")) {
    if (!ids->is_array())
      throw ApiError{400, "'stop_token_ids' must be an array", "stop_token_ids"};
    for (auto t : token_array(*ids, "stop_token_ids")) p.gen.sampling.stop_token_ids.push_back(t);
  }
  const std::int64_t context = engine.max_context();
  const std::int64_t prompt_len = static_cast<std::int64_t>(p.gen.prompt.size());
  std::optional<std::int64_t> max_tokens = get_int(body, "max_tokens", 1, 1 << 30);
  if (chat) {
    if (const auto mct = get_int(body, "max_completion_tokens", 1, 1 << 30)) max_tokens = mct;
  }
  if (!max_tokens) {
    // Defaults: 16 for completions (OpenAI), up to 256 for chat, clamped to the context left.
    max_tokens =
        std::max<std::int64_t>(1, std::min<std::int64_t>(chat ? 256 : 16, context - prompt_len));
  }
  p.gen.sampling.max_tokens = static_cast<int>(*max_tokens);
  p.gen.sampling.temperature = static_cast<float>(get_number(body, "temperature", 1.0, 0.0, 100.0));
  p.gen.sampling.top_p = static_cast<float>(get_number(body, "top_p", 1.0, 1e-9, 1.0));
  if (const json* s = field(body, "seed")) {
    if (!s->is_number_integer()) throw ApiError{400, "'seed' must be an integer", "seed"};
    p.gen.sampling.seed = static_cast<std::uint64_t>(s->get<std::int64_t>());
  }
  p.gen.sampling.ignore_eos = get_bool(body, "ignore_eos", false);
  p.stream = get_bool(body, "stream", false);
  if (const json* so = field(body, "stream_options")) {
    if (!so->is_object())
      throw ApiError{400, "'stream_options' must be an object", "stream_options"};
    p.include_usage = get_bool(*so, "include_usage", false);
  }
  return p;
}

// Outputs of one request, handed from the engine thread to its HTTP thread.
struct Channel {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<RequestOutput> queue;
  bool finished = false;  // the final output has been taken by the HTTP thread

  void push(const RequestOutput& out) {
    {
      std::lock_guard lock(mu);
      queue.push_back(out);
    }
    cv.notify_one();
  }
  // Waits up to `timeout` for outputs; returns all queued.
  std::vector<RequestOutput> pop(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu);
    cv.wait_for(lock, timeout, [&] { return !queue.empty(); });
    std::vector<RequestOutput> out(std::make_move_iterator(queue.begin()),
                                   std::make_move_iterator(queue.end()));
    queue.clear();
    return out;
  }
};

json usage_json(const RequestOutput& o) {
  return json{{"prompt_tokens", o.prompt_tokens},
              {"completion_tokens", o.completion_tokens},
              {"total_tokens", o.prompt_tokens + o.completion_tokens},
              {"prompt_tokens_details", {{"cached_tokens", o.cached_tokens}}}};
}

int status_for(AdmitStatus s) {
  switch (s) {
    case AdmitStatus::kInvalid:
    case AdmitStatus::kTooLong:
      return 400;
    case AdmitStatus::kQueueFull:
      return 429;
    case AdmitStatus::kStopped:
      return 503;
    case AdmitStatus::kAccepted:
      break;
  }
  return 200;
}

std::int64_t unix_now() {
  return static_cast<std::int64_t>(std::time(nullptr));
}

// The port and textual address of a socket end, or -1.
int socket_port(const sockaddr_storage& a, std::string& address) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(a);
    inet_ntop(AF_INET, &in.sin_addr, buf, sizeof buf);
    address = buf;
    return ntohs(in.sin_port);
  }
  if (a.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(a);
    inet_ntop(AF_INET6, &in6.sin6_addr, buf, sizeof buf);
    address = buf;
    return ntohs(in6.sin6_port);
  }
  return -1;
}

// cpp-httplib 0.11 gives a handler no access to its connection's socket, and
// a non-streaming handler writes nothing until the completion is done, so a
// client that hangs up would go unnoticed until then. The connection is
// found once by its address pair among the process's sockets (a few hundred
// getsockname calls at most); -1 when it cannot be found.
int find_connection_socket(const httplib::Request& req) {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int found = -1;
  while (const dirent* e = readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd == dirfd(dir)) continue;
    sockaddr_storage local{}, peer{};
    socklen_t ll = sizeof local, pl = sizeof peer;
    if (getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&local), &ll) != 0) continue;
    if (getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&peer), &pl) != 0) continue;
    std::string local_addr, peer_addr;
    if (socket_port(local, local_addr) != req.local_port ||
        socket_port(peer, peer_addr) != req.remote_port)
      continue;
    if (local_addr != req.local_addr || peer_addr != req.remote_addr) continue;
    found = static_cast<int>(fd);
    break;
  }
  closedir(dir);
  return found;
}

// True once the peer has closed the connection (EOF or reset). Bytes the
// client may already have sent (a pipelined request) count as alive.
bool peer_closed(int fd) {
  if (fd < 0) return false;
  char byte = 0;
  const ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return true;
  if (n > 0) return false;
  return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

// Counts generation requests in HTTP handlers; released when the response
// (streamed or not) is over.
struct GenerationSlot {
  std::atomic<int>& count;
  explicit GenerationSlot(std::atomic<int>& c) : count(c) {}
  ~GenerationSlot() { count.fetch_sub(1); }
  GenerationSlot(const GenerationSlot&) = delete;
  GenerationSlot& operator=(const GenerationSlot&) = delete;
};

}  // namespace

std::string prometheus_metrics(const EngineStats& s, const std::string& model_name) {
  std::string out;
  const std::string label = fmt::format("{{model=\"{}\"}}", model_name);
  const auto metric = [&](const char* name, const char* type, const char* help, auto value) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n{}{} {}\n", name, help, name, type, name, label,
                       value);
  };
  metric("prism_engine_requests_waiting", "gauge", "Requests queued for admission.", s.waiting);
  metric("prism_engine_requests_running", "gauge", "Requests admitted and running.", s.running);
  metric("prism_engine_kv_cache_usage_ratio", "gauge",
         "Fraction of KV blocks referenced by running requests.", s.kv_usage());
  metric("prism_engine_kv_cache_blocks_total", "gauge", "KV cache blocks.", s.kv_blocks_total);
  metric("prism_engine_kv_cache_blocks_used", "gauge", "KV cache blocks referenced by requests.",
         s.kv_blocks_used);
  metric("prism_engine_kv_cache_blocks_cached_idle", "gauge",
         "Unreferenced KV blocks still holding cached prefixes.", s.kv_blocks_cached_idle);
  metric("prism_engine_prefix_cache_queries_tokens_total", "counter",
         "Prompt tokens looked up in the prefix cache.", s.prefix_queried_tokens);
  metric("prism_engine_prefix_cache_hits_tokens_total", "counter",
         "Prompt tokens found in the prefix cache.", s.prefix_hit_tokens);
  metric("prism_engine_prefix_cache_hit_rate", "gauge",
         "Prefix cache hits over queries, in tokens, since start.", s.prefix_hit_rate());
  metric("prism_engine_steps_total", "counter", "Engine steps (iterations).", s.steps);
  metric("prism_engine_preemptions_total", "counter", "Sequences preempted by recompute.",
         s.preemptions);
  metric("prism_engine_prompt_tokens_total", "counter", "Prompt tokens computed.",
         s.prompt_tokens_total);
  metric("prism_engine_generation_tokens_total", "counter", "Tokens generated.",
         s.generation_tokens_total);
  metric("prism_engine_requests_finished_total", "counter", "Requests finished.",
         s.requests_finished);
  metric("prism_engine_requests_aborted_total", "counter", "Requests aborted.", s.requests_aborted);
  metric("prism_engine_requests_rejected_total", "counter", "Requests rejected at admission.",
         s.requests_rejected);
  const char* h = "prism_engine_step_duration_seconds";
  out += fmt::format("# HELP {} Duration of one engine step.\n# TYPE {} histogram\n", h, h);
  std::uint64_t cumulative = 0;
  for (int b = 0; b < kStepLatencyBucketCount; ++b) {
    cumulative += s.step_latency_counts[b];
    out += fmt::format("{}_bucket{{model=\"{}\",le=\"{}\"}} {}\n", h, model_name,
                       kStepLatencyBuckets[b], cumulative);
  }
  cumulative += s.step_latency_counts[kStepLatencyBucketCount];
  out += fmt::format("{}_bucket{{model=\"{}\",le=\"+Inf\"}} {}\n", h, model_name, cumulative);
  out += fmt::format("{}_sum{} {}\n{}_count{} {}\n", h, label, s.step_latency_sum_s, h, label,
                     cumulative);
  return out;
}

struct OpenAiServer::Impl {
  Engine& engine;
  ServerOptions options;
  httplib::Server server;
  std::thread thread;
  int port = -1;
  std::mutex mu;
  std::condition_variable cv;
  bool stopped = false;
  // Generation requests in handlers, and how many may be: the rest of the
  // HTTP threads stay free for /health, /metrics and the like.
  std::atomic<int> generations{0};
  int max_generations = 1;

  Impl(Engine& e, ServerOptions o) : engine(e), options(std::move(o)) {
    if (options.model_name.empty()) options.model_name = engine.config().name;
    const int threads = std::max(1, options.http_threads);
    max_generations = threads > kReservedHttpThreads ? threads - kReservedHttpThreads : 1;
  }

  void handle_generation(const httplib::Request& req, httplib::Response& res, bool chat);
  void routes();
};

void OpenAiServer::Impl::handle_generation(const httplib::Request& req, httplib::Response& res,
                                           bool chat) {
  // Overload, first line: every generation handler holds an HTTP thread for
  // as long as its request runs, so their number is capped and the rest are
  // answered 503 at once instead of queueing unseen behind busy threads.
  if (generations.fetch_add(1) >= max_generations) {
    generations.fetch_sub(1);
    res.set_header("Retry-After", "1");
    throw ApiError{503,
                   fmt::format("server overloaded: {} generation requests in progress, the most "
                               "this server takes at once; retry later",
                               max_generations),
                   "", "service_unavailable"};
  }
  auto slot = std::make_shared<GenerationSlot>(generations);
  const ParsedRequest p = parse_generation(parse_body(req), chat, engine, options.model_name);
  auto channel = std::make_shared<Channel>();
  const AdmitResult admit =
      engine.add_request(p.gen, [channel](const RequestOutput& o) { channel->push(o); });
  if (!admit.ok()) {
    ApiError e{status_for(admit.status), admit.message,
               admit.status == AdmitStatus::kTooLong ? (chat ? "messages" : "prompt") : ""};
    if (admit.status == AdmitStatus::kQueueFull) {
      e.type = "rate_limit_error";
      res.set_header("Retry-After", "1");
    }
    if (admit.status == AdmitStatus::kStopped) e.type = "service_unavailable";
    throw e;
  }
  const std::uint64_t id = admit.id;
  const std::string rid = fmt::format("{}-{}", chat ? "chatcmpl" : "cmpl", id);
  const std::int64_t created = unix_now();
  const std::string model = options.model_name;

  if (!p.stream) {
    std::string text;
    RequestOutput last;
    const int fd = find_connection_socket(req);
    bool aborted = false;
    while (true) {
      bool done = false;
      const auto outputs = channel->pop(std::chrono::milliseconds(20));
      if (!aborted && peer_closed(fd)) {
        // The client hung up: free the sequence's KV now, not after max_tokens.
        engine.abort(id, "client disconnected");
        aborted = true;
      }
      for (auto o : outputs) {
        text += o.text;
        if (o.finished) {
          last = std::move(o);
          done = true;
        }
      }
      if (done) break;
    }
    if (last.finish_reason == FinishReason::kAbort)
      throw ApiError{503, fmt::format("request aborted: {}", last.message), "", "server_error"};
    json choice{{"index", 0},
                {"logprobs", nullptr},
                {"finish_reason", finish_reason_name(last.finish_reason)}};
    if (chat)
      choice["message"] = json{{"role", "assistant"}, {"content", text}};
    else
      choice["text"] = text;
    const json body{{"id", rid},
                    {"object", chat ? "chat.completion" : "text_completion"},
                    {"created", created},
                    {"model", model},
                    {"choices", json::array({choice})},
                    {"usage", usage_json(last)}};
    res.set_content(dump(body), "application/json");
    return;
  }

  struct StreamState {
    bool finished = false;
    bool first = true;
  };
  auto state = std::make_shared<StreamState>();
  Engine* eng = &engine;
  // The slot is released when httplib drops these lambdas, after the stream ends.
  const bool include_usage = p.include_usage;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [=](std::size_t, httplib::DataSink& sink) {
        const auto outputs = channel->pop(std::chrono::milliseconds(50));
        if (outputs.empty()) {
          if (!sink.is_writable()) {
            eng->abort(id, "client disconnected");
            return false;
          }
          return true;
        }
        std::string data;
        for (const auto& o : outputs) {
          if (o.finish_reason == FinishReason::kAbort) {
            const json err{{"error",
                            {{"message", fmt::format("request aborted: {}", o.message)},
                             {"type", "server_error"},
                             {"code", 503}}}};
            data += "data: " + dump(err) + "\n\n";
            state->finished = true;
            break;
          }
          json choice{{"index", 0}, {"logprobs", nullptr}};
          choice["finish_reason"] =
              o.finished ? json(finish_reason_name(o.finish_reason)) : json(nullptr);
          if (chat) {
            json delta{{"content", o.text}};
            if (state->first) delta["role"] = "assistant";
            choice["delta"] = delta;
          } else {
            choice["text"] = o.text;
          }
          state->first = false;
          const json chunk{{"id", rid},
                           {"object", chat ? "chat.completion.chunk" : "text_completion"},
                           {"created", created},
                           {"model", model},
                           {"choices", json::array({choice})}};
          data += "data: " + dump(chunk) + "\n\n";
          if (o.finished) {
            if (include_usage) {
              const json usage{{"id", rid},
                               {"object", chat ? "chat.completion.chunk" : "text_completion"},
                               {"created", created},
                               {"model", model},
                               {"choices", json::array()},
                               {"usage", usage_json(o)}};
              data += "data: " + dump(usage) + "\n\n";
            }
            state->finished = true;
          }
        }
        if (state->finished) data += "data: [DONE]\n\n";
        if (!sink.write(data.data(), data.size())) {
          if (!state->finished) eng->abort(id, "client disconnected");
          state->finished = true;
          return false;
        }
        if (state->finished) sink.done();
        return true;
      },
      [=, slot = std::move(slot)](bool) {
        (void)slot;
        // Called when the response ends for any reason: a stream cut short
        // frees its sequence now rather than after max_tokens.
        if (!state->finished) eng->abort(id, "client disconnected");
      });
}

void OpenAiServer::Impl::routes() {
  const auto guarded = [this](auto fn) {
    return [this, fn](const httplib::Request& req, httplib::Response& res) {
      try {
        fn(req, res);
      } catch (const ApiError& e) {
        send_error(res, e);
      } catch (const std::exception& e) {
        send_error(res,
                   ApiError{500, fmt::format("internal error: {}", e.what()), "", "server_error"});
      }
    };
  };
  server.Post("/v1/completions",
              guarded([this](const auto& req, auto& res) { handle_generation(req, res, false); }));
  server.Post("/v1/chat/completions",
              guarded([this](const auto& req, auto& res) { handle_generation(req, res, true); }));
  server.Get("/v1/models", guarded([this](const auto&, auto& res) {
               const json model{{"id", options.model_name},
                                {"object", "model"},
                                {"created", unix_now()},
                                {"owned_by", "prism"},
                                {"max_model_len", engine.max_context()}};
               res.set_content(dump(json{{"object", "list"}, {"data", json::array({model})}}),
                               "application/json");
             }));
  server.Get("/health", guarded([this](const auto&, auto& res) {
               if (engine.serving()) {
                 res.set_content("{\"status\":\"ok\"}", "application/json");
               } else {
                 res.status = 503;
                 res.set_content("{\"status\":\"stopping\"}", "application/json");
               }
             }));
  server.Post("/tokenize", guarded([this](const auto& req, auto& res) {
                const json body = parse_body(req);
                std::vector<std::int32_t> tokens;
                if (field(body, "messages") != nullptr) {
                  tokens = apply_chat_template(engine.tokenizer(), parse_messages(body)).tokens;
                } else if (const json* pr = field(body, "prompt");
                           pr != nullptr && pr->is_string()) {
                  tokens = engine.tokenizer().encode(pr->get<std::string>());
                } else {
                  throw ApiError{400, "'prompt' (a string) or 'messages' is required", "prompt"};
                }
                res.set_content(dump(json{{"tokens", tokens},
                                          {"count", tokens.size()},
                                          {"max_model_len", engine.max_context()}}),
                                "application/json");
              }));
  server.Post(
      "/detokenize", guarded([this](const auto& req, auto& res) {
        const json body = parse_body(req);
        const json* t = field(body, "tokens");
        if (t == nullptr || !t->is_array())
          throw ApiError{400, "'tokens' (an array of token ids) is required", "tokens"};
        const auto ids = token_array(*t, "tokens");
        for (auto id : ids)
          if (id >= static_cast<std::int32_t>(engine.tokenizer().vocab_size()))
            throw ApiError{400, fmt::format("token id {} is outside the vocabulary", id), "tokens"};
        res.set_content(dump(json{{"prompt", engine.tokenizer().decode(ids)}}), "application/json");
      }));
  server.Get("/metrics", guarded([this](const auto&, auto& res) {
               res.set_content(prometheus_metrics(engine.stats(), options.model_name),
                               "text/plain; version=0.0.4");
             }));
  server.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    const std::string msg = res.status == 404
                                ? fmt::format("no route for {} {}", req.method, req.path)
                                : fmt::format("HTTP {}", res.status);
    send_error(res, ApiError{res.status, msg, "",
                             res.status == 404 ? "not_found_error" : "invalid_request_error"});
  });
}

OpenAiServer::OpenAiServer(Engine& engine, ServerOptions options)
    : impl_(std::make_unique<Impl>(engine, std::move(options))) {
  impl_->routes();
}

OpenAiServer::~OpenAiServer() {
  stop();
}

int OpenAiServer::start() {
  // Writes to a socket the peer closed must fail with EPIPE, not kill the process.
  ::signal(SIGPIPE, SIG_IGN);
  Impl& s = *impl_;
  const int threads = std::max(1, s.options.http_threads);
  s.server.new_task_queue = [threads] {
    return new httplib::ThreadPool(static_cast<std::size_t>(threads));
  };
  s.server.set_payload_max_length(s.options.max_body_bytes);
  s.server.set_keep_alive_max_count(100000);
  s.server.set_tcp_nodelay(true);
  if (s.options.port == 0) {
    s.port = s.server.bind_to_any_port(s.options.host);
  } else {
    s.port = s.server.bind_to_port(s.options.host, s.options.port) ? s.options.port : -1;
  }
  if (s.port < 0)
    throw std::runtime_error(fmt::format("cannot listen on {}:{} (in use or not permitted)",
                                         s.options.host, s.options.port));
  s.engine.start();
  s.thread = std::thread([&s] { s.server.listen_after_bind(); });
  return s.port;
}

void OpenAiServer::wait() {
  std::unique_lock lock(impl_->mu);
  impl_->cv.wait(lock, [&] { return impl_->stopped; });
}

void OpenAiServer::stop() {
  Impl& s = *impl_;
  {
    std::lock_guard lock(s.mu);
    if (s.stopped) return;
  }
  if (s.thread.joinable()) {
    s.server.stop();
    s.thread.join();
  }
  {
    std::lock_guard lock(s.mu);
    s.stopped = true;
  }
  s.cv.notify_all();
}

int OpenAiServer::port() const {
  return impl_->port;
}
const std::string& OpenAiServer::model_name() const {
  return impl_->options.model_name;
}

}  // namespace prism::engine
