#include "prism/workloads/generators.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <unordered_map>

#include "prism/workloads/arrivals.h"
#include "prism/workloads/random.h"
#include "prism/workloads/token_source.h"
#include "prism/workloads/trace.h"
#include "prism/workloads/validation.h"
#include "prism/workloads/workload_json.h"

namespace prism::workloads {
namespace {

std::string num(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

template <typename T>
std::string join(const std::vector<T>& v) {
  std::string out;
  for (std::size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + num(static_cast<double>(v[i]));
  return out;
}

// Builds segments; identical ids always get identical tokens.
class Builder {
 public:
  Builder(const Tokenizer& tokenizer, const CommonOptions& common)
      : source_(tokenizer, common.seed, common.corpus_path) {}

  Segment sampled(std::string id, Provenance p, std::size_t count) {
    Segment s{std::move(id), p, {}};
    source_.append_tokens(s.content_id, count, s.tokens);
    return s;
  }
  Segment text(std::string id, Provenance p, std::string_view text) {
    return Segment{std::move(id), p, source_.text_tokens(text)};
  }
  const TokenSource& source() const { return source_; }

 private:
  TokenSource source_;
};

Workload start(const std::string& kind, const CommonOptions& common, const Tokenizer& tokenizer) {
  Workload w;
  w.kind = kind;
  w.seed = common.seed;
  w.name = common.name.empty() ? kind + "-seed" + std::to_string(common.seed) : common.name;
  w.tokenizer = tokenizer.name();
  w.max_context_tokens = common.max_context_tokens;
  w.arrival = common.arrival;
  if (!common.corpus_path.empty()) w.parameters["corpus"] = common.corpus_path;
  return w;
}

Request request(std::uint64_t session, std::uint32_t turn, std::uint32_t output, bool ignore_eos) {
  Request r;
  r.session = session;
  r.turn = turn;
  r.output_tokens = output;
  r.ignore_eos = ignore_eos;
  return r;
}

// Numbers requests in session order, draws arrivals (unless the generator
// set trace offsets) and validates.
Workload finish(Workload w, const CommonOptions& common, bool arrivals_set) {
  std::uint64_t id = 0;
  for (auto& s : w.sessions)
    for (auto& r : s.requests) r.id = id++;
  if (!arrivals_set) assign_arrivals(w, common.arrival, common.seed);
  validate_workload(w, w.name);
  return w;
}

void check_positive(std::uint64_t v, const char* what) {
  if (v == 0) throw WorkloadError(std::string(what) + ": must be at least 1");
}

void check_context(std::uint64_t tokens, const CommonOptions& common, const std::string& what) {
  if (common.max_context_tokens && tokens > common.max_context_tokens)
    throw WorkloadError(what + ": " + std::to_string(tokens) +
                        " tokens exceed the context limit of " +
                        std::to_string(common.max_context_tokens) + " (max_context_tokens)");
}

std::string needle_text(std::uint64_t seed, std::size_t index) {
  Rng rng(derive_seed(seed, "needle" + std::to_string(index)));
  return " The magic number is " + std::to_string(100000 + rng.below(900000)) + ".";
}

constexpr std::string_view kNeedleQuestion =
    " What is the magic number mentioned in the text above?";

}  // namespace

Workload generate_long_context(const LongContextOptions& o, const CommonOptions& common,
                               const Tokenizer& tokenizer) {
  if (o.context_lengths.empty()) throw WorkloadError("context lengths: at least one is needed");
  if (o.needle_depths.empty()) throw WorkloadError("needle depths: at least one is needed");
  for (double d : o.needle_depths)
    if (!(d >= 0.0 && d <= 1.0))
      throw WorkloadError("needle depth: " + num(d) + " is outside [0, 1]");
  const bool shared = o.shared_context != SharedContextMode::kNone;
  if (shared) {
    check_positive(o.queries, "queries");
    check_positive(o.query_tokens, "query tokens");
  }
  Workload w = start("long-context", common, tokenizer);
  Builder b(tokenizer, common);
  Rng rng(derive_seed(common.seed, "long-context"));
  const Segment question = b.text("question", Provenance::kUser, kNeedleQuestion);
  std::uint64_t session = 0;

  for (std::size_t li = 0; li < o.context_lengths.size(); ++li) {
    const std::uint32_t length = o.context_lengths[li];
    check_context(length, common, "context length " + std::to_string(length));
    const std::string tag = "lc" + std::to_string(li);
    const Segment needle =
        b.text(tag + ":needle", Provenance::kNeedle, needle_text(common.seed, li));
    const std::size_t tail = shared ? o.query_tokens : question.tokens.size();
    if (length < needle.tokens.size() + tail + 1)
      throw WorkloadError("context length " + std::to_string(length) +
                          ": too short for the needle and the question (" +
                          std::to_string(needle.tokens.size() + tail) + " tokens)");
    const std::size_t haystack = length - needle.tokens.size() - tail;
    auto context = [&](double depth, const std::string& id) {
      const auto before =
          static_cast<std::size_t>(std::llround(static_cast<double>(haystack) * depth));
      std::vector<Segment> segs;
      if (before > 0) segs.push_back(b.sampled(id + ":a", Provenance::kContext, before));
      segs.push_back(needle);
      if (haystack > before)
        segs.push_back(b.sampled(id + ":b", Provenance::kContext, haystack - before));
      return segs;
    };

    if (!shared) {
      for (std::size_t di = 0; di < o.needle_depths.size(); ++di) {
        Session s{session, {}};
        Request r = request(session++, 0, o.output_tokens.draw_length(rng), common.ignore_eos);
        r.segments = context(o.needle_depths[di], tag + ":d" + std::to_string(di));
        r.segments.push_back(question);
        s.requests.push_back(std::move(r));
        w.sessions.push_back(std::move(s));
      }
      continue;
    }
    const std::vector<Segment> ctx = context(o.needle_depths.front(), tag + ":ctx");
    if (o.shared_context == SharedContextMode::kMultiTurn) {
      Session s{session, {}};
      std::vector<Segment> history;
      for (std::uint32_t q = 0; q < o.queries; ++q) {
        Request r = request(session, q, o.output_tokens.draw_length(rng), common.ignore_eos);
        if (q > 0) r.arrival_offset_s = o.think_time_s;
        r.segments = ctx;
        r.segments.insert(r.segments.end(), history.begin(), history.end());
        Segment query =
            b.sampled(tag + ":query" + std::to_string(q), Provenance::kUser, o.query_tokens);
        r.segments.push_back(query);
        check_context(r.prompt_tokens() + r.output_tokens, common,
                      "context length " + std::to_string(length) + ", query " + std::to_string(q));
        query.provenance = Provenance::kHistory;
        history.push_back(std::move(query));
        history.push_back(
            b.sampled(tag + ":answer" + std::to_string(q), Provenance::kHistory, r.output_tokens));
        s.requests.push_back(std::move(r));
      }
      w.sessions.push_back(std::move(s));
      ++session;
    } else {
      for (std::uint32_t q = 0; q < o.queries; ++q) {
        Session s{session, {}};
        Request r = request(session++, 0, o.output_tokens.draw_length(rng), common.ignore_eos);
        r.segments = ctx;
        r.segments.push_back(
            b.sampled(tag + ":query" + std::to_string(q), Provenance::kUser, o.query_tokens));
        s.requests.push_back(std::move(r));
        w.sessions.push_back(std::move(s));
      }
    }
  }
  w.parameters["context_lengths"] = join(o.context_lengths);
  w.parameters["needle_depths"] = join(o.needle_depths);
  w.parameters["shared_context"] = o.shared_context == SharedContextMode::kNone ? "none"
                                   : o.shared_context == SharedContextMode::kMultiTurn
                                       ? "multi-turn"
                                       : "multi-request";
  if (shared) {
    w.parameters["queries"] = std::to_string(o.queries);
    w.parameters["query_tokens"] = std::to_string(o.query_tokens);
  }
  w.parameters["output_tokens"] = o.output_tokens.text;
  w.description =
      "Long-context prompts with a needle" +
      std::string(shared ? "; shared context followed by several queries (SCBench)" : "");
  return finish(std::move(w), common, false);
}

Workload generate_rag(const RagOptions& o, const CommonOptions& common,
                      const Tokenizer& tokenizer) {
  check_positive(o.requests, "requests");
  check_positive(o.chunks, "chunks");
  check_positive(o.chunk_tokens, "chunk tokens");
  check_positive(o.top_k, "top-k");
  if (o.top_k > o.chunks)
    throw WorkloadError("top-k: " + std::to_string(o.top_k) +
                        " retrieved chunks per request need a corpus of at least " +
                        std::to_string(o.top_k) + " chunks (got " + std::to_string(o.chunks) + ")");
  if (!(o.zipf_s >= 0.0) || !std::isfinite(o.zipf_s))
    throw WorkloadError("zipf s: must be a non-negative number (got " + num(o.zipf_s) + ")");
  Workload w = start("rag", common, tokenizer);
  Builder b(tokenizer, common);
  Rng rng(derive_seed(common.seed, "rag"));

  // Zipf(s) popularity over chunk ranks 0..N-1.
  std::vector<double> cdf(o.chunks);
  double total = 0;
  for (std::uint32_t i = 0; i < o.chunks; ++i)
    cdf[i] = (total += std::pow(static_cast<double>(i + 1), -o.zipf_s));
  auto draw_chunk = [&] {
    const double u = rng.uniform() * total;
    const auto it = std::upper_bound(cdf.begin(), cdf.end(), u);
    return static_cast<std::uint32_t>(std::min<std::size_t>(it - cdf.begin(), o.chunks - 1));
  };

  const Segment system = b.sampled("system", Provenance::kSystem, o.system_tokens);
  std::unordered_map<std::uint32_t, Segment> chunk_cache;
  for (std::uint32_t q = 0; q < o.requests; ++q) {
    std::vector<std::uint32_t> picked;
    std::vector<char> used(o.chunks, 0);
    for (std::uint32_t tries = 0; picked.size() < o.top_k && tries < 64 * o.top_k; ++tries) {
      const auto c = draw_chunk();
      if (!used[c]) used[c] = 1, picked.push_back(c);
    }
    for (std::uint32_t c = 0; picked.size() < o.top_k; ++c)  // heavy skew: fill by popularity
      if (!used[c]) used[c] = 1, picked.push_back(c);
    Session s{q, {}};
    Request r = request(q, 0, o.output_tokens.draw_length(rng), common.ignore_eos);
    if (o.system_tokens > 0) r.segments.push_back(system);
    for (std::uint32_t c : picked) {
      auto it = chunk_cache.find(c);
      if (it == chunk_cache.end())
        it = chunk_cache
                 .emplace(c, b.sampled("chunk" + std::to_string(c), Provenance::kDocument,
                                       o.chunk_tokens))
                 .first;
      r.segments.push_back(it->second);
    }
    r.segments.push_back(b.sampled("question" + std::to_string(q), Provenance::kUser,
                                   o.question_tokens.draw_length(rng)));
    check_context(r.prompt_tokens() + r.output_tokens, common, "request " + std::to_string(q));
    s.requests.push_back(std::move(r));
    w.sessions.push_back(std::move(s));
  }
  w.parameters["requests"] = std::to_string(o.requests);
  w.parameters["chunks"] = std::to_string(o.chunks);
  w.parameters["chunk_tokens"] = std::to_string(o.chunk_tokens);
  w.parameters["top_k"] = std::to_string(o.top_k);
  w.parameters["zipf_s"] = num(o.zipf_s);
  w.parameters["system_tokens"] = std::to_string(o.system_tokens);
  w.parameters["question_tokens"] = o.question_tokens.text;
  w.parameters["output_tokens"] = o.output_tokens.text;
  w.description =
      "RAG: system prompt + top-k Zipf-popular corpus chunks (in retrieval order) + question";
  return finish(std::move(w), common, false);
}

Workload generate_multi_turn(const MultiTurnOptions& o, const CommonOptions& common,
                             const Tokenizer& tokenizer) {
  check_positive(o.sessions, "sessions");
  Workload w = start("multi-turn", common, tokenizer);
  Builder b(tokenizer, common);
  const Segment system =
      o.system_tokens ? b.sampled("system", Provenance::kSystem, o.system_tokens) : Segment{};
  w.sessions.reserve(o.sessions);
  for (std::uint32_t si = 0; si < o.sessions; ++si) {
    Rng rng(derive_seed(common.seed, "session" + std::to_string(si)));
    const std::uint32_t turns = o.turns.draw_length(rng);
    Session s{si, {}};
    s.requests.reserve(turns);
    std::vector<Segment> history;
    const std::string tag = "s" + std::to_string(si);
    std::uint64_t prompt = o.system_tokens;
    for (std::uint32_t t = 0; t < turns; ++t) {
      const std::uint32_t user = o.user_tokens.draw_length(rng);
      const std::uint32_t answer = o.answer_tokens.draw_length(rng);
      const double think = o.think_time_s.draw_time(rng);
      prompt += user;
      check_context(prompt + answer, common,
                    "session " + std::to_string(si) + ", turn " + std::to_string(t));
      Request r = request(si, t, answer, common.ignore_eos);
      if (t > 0) r.arrival_offset_s = think;
      r.segments.reserve(history.size() + 2);
      if (o.system_tokens) r.segments.push_back(system);
      r.segments.insert(r.segments.end(), history.begin(), history.end());
      r.segments.push_back(b.sampled(tag + ":u" + std::to_string(t), Provenance::kUser, user));
      if (t + 1 < turns) {
        Segment as_history = r.segments.back();
        as_history.provenance = Provenance::kHistory;
        history.push_back(std::move(as_history));
        history.push_back(b.sampled(tag + ":a" + std::to_string(t), Provenance::kHistory, answer));
        prompt += answer;
      }
      s.requests.push_back(std::move(r));
    }
    w.sessions.push_back(std::move(s));
  }
  w.parameters["sessions"] = std::to_string(o.sessions);
  w.parameters["turns"] = o.turns.text;
  w.parameters["user_tokens"] = o.user_tokens.text;
  w.parameters["answer_tokens"] = o.answer_tokens.text;
  w.parameters["think_time_s"] = o.think_time_s.text;
  w.parameters["system_tokens"] = std::to_string(o.system_tokens);
  w.description =
      "Multi-turn chat: turn n = system + previous user turns and answers + new user text";
  return finish(std::move(w), common, false);
}

Workload generate_trace(const TraceOptions& o, const CommonOptions& common,
                        const Tokenizer& tokenizer) {
  if (o.path.empty()) throw WorkloadError("trace: a trace file is needed (--file PATH)");
  if (!(o.time_scale > 0) || !std::isfinite(o.time_scale))
    throw WorkloadError("time scale: must be a positive number (got " + num(o.time_scale) + ")");
  const Trace trace = read_trace(o.path, o.max_requests);
  Workload w = start("trace", common, tokenizer);
  Builder b(tokenizer, common);
  std::unordered_map<std::uint64_t, std::vector<std::int32_t>> blocks;
  const auto& first = trace.records.front();
  for (std::size_t i = 0; i < trace.records.size(); ++i) {
    const auto& rec = trace.records[i];
    const std::string where = trace.source + ":" + std::to_string(rec.line);
    if (rec.input_tokens == 0) throw WorkloadError(where + ": input length: must be at least 1");
    if (rec.output_tokens == 0) throw WorkloadError(where + ": output length: must be at least 1");
    if (i > 0 && rec.timestamp_s < trace.records[i - 1].timestamp_s)
      throw WorkloadError(where + ": timestamp: goes back in time (before line " +
                          std::to_string(trace.records[i - 1].line) + ")");
    check_context(std::uint64_t{rec.input_tokens} + rec.output_tokens, common, where);
    Session s{i, {}};
    Request r = request(i, 0, rec.output_tokens, common.ignore_eos);
    r.arrival_offset_s = (rec.timestamp_s - first.timestamp_s) * o.time_scale;
    std::size_t covered = 0;
    for (std::uint64_t h : rec.hash_ids) {
      const std::size_t len =
          std::min<std::size_t>(kMooncakeBlockTokens, rec.input_tokens - covered);
      auto it = blocks.find(h);
      if (it == blocks.end())
        it = blocks.emplace(h, b.source().tokens("block" + std::to_string(h), kMooncakeBlockTokens))
                 .first;
      Segment seg{"block" + std::to_string(h), Provenance::kContext,
                  std::vector<std::int32_t>(it->second.begin(),
                                            it->second.begin() + static_cast<std::ptrdiff_t>(len))};
      if (len < kMooncakeBlockTokens) seg.content_id += ":" + std::to_string(len);
      r.segments.push_back(std::move(seg));
      covered += len;
    }
    if (covered < rec.input_tokens)
      r.segments.push_back(b.sampled("r" + std::to_string(i) + ":prompt", Provenance::kUser,
                                     rec.input_tokens - covered));
    s.requests.push_back(std::move(r));
    w.sessions.push_back(std::move(s));
  }
  if (o.use_trace_arrivals) {
    w.arrival = ArrivalSpec{};
    w.arrival.kind = ArrivalKind::kTrace;
    w.arrival.time_scale = o.time_scale;
  }
  w.parameters["file"] = o.path;
  w.parameters["format"] = std::string(trace_format_name(trace.format));
  w.parameters["time_scale"] = num(o.time_scale);
  if (o.max_requests) w.parameters["max_requests"] = std::to_string(o.max_requests);
  w.description =
      std::string("Replay of ") + std::string(trace_format_name(trace.format)) + " trace " + o.path;
  return finish(std::move(w), common, o.use_trace_arrivals);
}

Workload generate_synthetic(const SyntheticOptions& o, const CommonOptions& common,
                            const Tokenizer& tokenizer) {
  check_positive(o.requests, "requests");
  Workload w = start("synthetic", common, tokenizer);
  Builder b(tokenizer, common);
  Rng rng(derive_seed(common.seed, "synthetic"));
  const Segment prefix = o.shared_prefix_tokens
                             ? b.sampled("prefix", Provenance::kSystem, o.shared_prefix_tokens)
                             : Segment{};
  for (std::uint32_t q = 0; q < o.requests; ++q) {
    const std::uint32_t input = o.input_tokens.draw_length(rng);
    const std::uint32_t output = o.output_tokens.draw_length(rng);
    Session s{q, {}};
    Request r = request(q, 0, output, common.ignore_eos);
    if (o.shared_prefix_tokens) r.segments.push_back(prefix);
    r.segments.push_back(b.sampled("p" + std::to_string(q), Provenance::kUser, input));
    check_context(r.prompt_tokens() + output, common, "request " + std::to_string(q));
    s.requests.push_back(std::move(r));
    w.sessions.push_back(std::move(s));
  }
  w.parameters["requests"] = std::to_string(o.requests);
  w.parameters["input_tokens"] = o.input_tokens.text;
  w.parameters["output_tokens"] = o.output_tokens.text;
  w.parameters["shared_prefix_tokens"] = std::to_string(o.shared_prefix_tokens);
  w.description = "Synthetic requests with distributed input and output lengths";
  return finish(std::move(w), common, false);
}

}  // namespace prism::workloads
