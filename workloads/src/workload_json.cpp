#include "prism/workloads/workload_json.h"

#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "prism/workloads/validation.h"

namespace prism::workloads {
namespace {

constexpr std::string_view kProvenanceNames[] = {"system", "document", "history",
                                                 "user",   "needle",   "context"};
constexpr std::string_view kArrivalNames[] = {"closed-loop", "poisson", "gamma", "trace"};

// Walks a workload's segments in order and calls fn(segment) for each content
// id's first appearance; the contents table is written in that order.
template <typename Fn>
void for_each_first_content(const Workload& w, Fn&& fn) {
  std::unordered_map<std::string_view, bool> seen;
  for (const auto& session : w.sessions)
    for (const auto& request : session.requests)
      for (const auto& segment : request.segments)
        if (seen.emplace(segment.content_id, true).second) fn(segment);
}

nlohmann::json arrival_to_json(const ArrivalSpec& a) {
  return {{"kind", std::string(arrival_kind_name(a.kind))},
          {"rate_per_s", a.rate_per_s},
          {"burstiness", a.burstiness},
          {"concurrency", a.concurrency},
          {"time_scale", a.time_scale},
          {"sweep_rates_per_s", a.sweep_rates_per_s}};
}

// Field-path aware accessors: every error says where in the document it is.
class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const std::string& path, const std::string& reason) const {
    throw WorkloadError(source_ + ": " + (path.empty() ? "(top level)" : path) + ": " + reason);
  }

  const nlohmann::json& field(const nlohmann::json& obj, const std::string& path,
                              const char* key) const {
    auto it = obj.find(key);
    if (it == obj.end()) fail(join(path, key), "missing field");
    return *it;
  }

  const nlohmann::json* optional_field(const nlohmann::json& obj, const char* key) const {
    auto it = obj.find(key);
    return it == obj.end() ? nullptr : &*it;
  }

  std::string string_at(const nlohmann::json& v, const std::string& path) const {
    if (!v.is_string()) fail(path, "expected a string, got " + std::string(v.type_name()));
    return v.get<std::string>();
  }

  std::uint64_t uint_at(const nlohmann::json& v, const std::string& path) const {
    if (v.is_number_unsigned()) return v.get<std::uint64_t>();
    if (v.is_number_integer()) {
      if (v.get<std::int64_t>() >= 0) return static_cast<std::uint64_t>(v.get<std::int64_t>());
      fail(path, "must not be negative (got " + v.dump() + ")");
    }
    if (v.is_number_float()) {
      const double d = v.get<double>();
      if (d < 0) fail(path, "must not be negative (got " + v.dump() + ")");
      if (std::floor(d) == d && d < 1.8e19) return static_cast<std::uint64_t>(d);
      fail(path, "expected an integer, got " + v.dump());
    }
    fail(path, "expected a non-negative integer, got " + std::string(v.type_name()));
  }

  std::uint32_t uint32_at(const nlohmann::json& v, const std::string& path) const {
    const auto x = uint_at(v, path);
    if (x > 0xffffffffull) fail(path, "too large (got " + v.dump() + ")");
    return static_cast<std::uint32_t>(x);
  }

  double number_at(const nlohmann::json& v, const std::string& path) const {
    if (!v.is_number()) fail(path, "expected a number, got " + std::string(v.type_name()));
    const double d = v.get<double>();
    if (!std::isfinite(d)) fail(path, "must be finite");
    return d;
  }

  bool bool_at(const nlohmann::json& v, const std::string& path) const {
    if (!v.is_boolean()) fail(path, "expected true or false, got " + std::string(v.type_name()));
    return v.get<bool>();
  }

  const nlohmann::json& array_at(const nlohmann::json& v, const std::string& path) const {
    if (!v.is_array()) fail(path, "expected an array, got " + std::string(v.type_name()));
    return v;
  }

  const nlohmann::json& object_at(const nlohmann::json& v, const std::string& path) const {
    if (!v.is_object()) fail(path, "expected an object, got " + std::string(v.type_name()));
    return v;
  }

  static std::string join(const std::string& path, const char* key) {
    return path.empty() ? std::string(key) : path + "." + key;
  }
  static std::string index(const std::string& path, std::size_t i) {
    return path + "[" + std::to_string(i) + "]";
  }

 private:
  std::string source_;
};

ArrivalSpec arrival_from_json(const Reader& r, const nlohmann::json& j, const std::string& path) {
  r.object_at(j, path);
  ArrivalSpec a;
  const auto& kind = r.field(j, path, "kind");
  try {
    a.kind = parse_arrival_kind(r.string_at(kind, path + ".kind"));
  } catch (const WorkloadError& e) {
    r.fail(path + ".kind", e.what());
  }
  if (auto* v = r.optional_field(j, "rate_per_s"))
    a.rate_per_s = r.number_at(*v, path + ".rate_per_s");
  if (auto* v = r.optional_field(j, "burstiness"))
    a.burstiness = r.number_at(*v, path + ".burstiness");
  if (auto* v = r.optional_field(j, "concurrency"))
    a.concurrency = r.uint32_at(*v, path + ".concurrency");
  if (auto* v = r.optional_field(j, "time_scale"))
    a.time_scale = r.number_at(*v, path + ".time_scale");
  if (auto* v = r.optional_field(j, "sweep_rates_per_s")) {
    const std::string p = path + ".sweep_rates_per_s";
    r.array_at(*v, p);
    for (std::size_t i = 0; i < v->size(); ++i)
      a.sweep_rates_per_s.push_back(r.number_at((*v)[i], Reader::index(p, i)));
  }
  return a;
}

std::vector<std::int32_t> tokens_from_json(const Reader& r, const nlohmann::json& v,
                                           const std::string& path) {
  r.array_at(v, path);
  std::vector<std::int32_t> tokens;
  tokens.reserve(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    const auto& t = v[i];
    if (!t.is_number_integer() || t.get<std::int64_t>() < 0 || t.get<std::int64_t>() > 0x7fffffff)
      r.fail(Reader::index(path, i), "expected a token id (integer 0..2^31-1), got " + t.dump());
    tokens.push_back(static_cast<std::int32_t>(t.get<std::int64_t>()));
  }
  return tokens;
}

void append_string(std::string& out, std::string_view s) {
  // nlohmann's escaping, so the bytes equal to_json(...).dump().
  out += nlohmann::json(std::string(s)).dump();
}

void append_uint(std::string& out, std::uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  (void)ec;
  out.append(buf, end);
}

void append_double(std::string& out, double d) {
  out += nlohmann::json(d).dump();
}

}  // namespace

std::string_view provenance_name(Provenance p) {
  return kProvenanceNames[static_cast<int>(p)];
}

Provenance parse_provenance(std::string_view name) {
  for (std::size_t i = 0; i < std::size(kProvenanceNames); ++i)
    if (kProvenanceNames[i] == name) return static_cast<Provenance>(i);
  throw WorkloadError("unknown provenance \"" + std::string(name) +
                      "\" (expected system, document, history, user, needle or context)");
}

std::string_view arrival_kind_name(ArrivalKind k) {
  return kArrivalNames[static_cast<int>(k)];
}

ArrivalKind parse_arrival_kind(std::string_view name) {
  for (std::size_t i = 0; i < std::size(kArrivalNames); ++i)
    if (kArrivalNames[i] == name) return static_cast<ArrivalKind>(i);
  throw WorkloadError("unknown arrival kind \"" + std::string(name) +
                      "\" (expected closed-loop, poisson, gamma or trace)");
}

nlohmann::json to_json(const Workload& w) {
  nlohmann::json contents = nlohmann::json::array();
  for_each_first_content(w, [&](const Segment& s) {
    contents.push_back({{"id", s.content_id}, {"tokens", s.tokens}});
  });
  nlohmann::json sessions = nlohmann::json::array();
  for (const auto& session : w.sessions) {
    nlohmann::json requests = nlohmann::json::array();
    for (const auto& r : session.requests) {
      nlohmann::json segments = nlohmann::json::array();
      for (const auto& s : r.segments)
        segments.push_back({{"content_id", s.content_id},
                            {"provenance", std::string(provenance_name(s.provenance))}});
      requests.push_back({{"id", r.id},
                          {"session", r.session},
                          {"turn", r.turn},
                          {"arrival_offset_s", r.arrival_offset_s},
                          {"output_tokens", r.output_tokens},
                          {"ignore_eos", r.ignore_eos},
                          {"segments", std::move(segments)}});
    }
    sessions.push_back({{"id", session.id}, {"requests", std::move(requests)}});
  }
  nlohmann::json params = nlohmann::json::object();
  for (const auto& [k, v] : w.parameters) params[k] = v;
  return {{"spec_version", Workload::kSpecVersion},
          {"name", w.name},
          {"kind", w.kind},
          {"seed", w.seed},
          {"tokenizer", w.tokenizer},
          {"description", w.description},
          {"max_context_tokens", w.max_context_tokens},
          {"parameters", std::move(params)},
          {"arrival", arrival_to_json(w.arrival)},
          {"contents", std::move(contents)},
          {"sessions", std::move(sessions)}};
}

Workload workload_from_json(const nlohmann::json& j, const std::string& source_name) {
  const Reader r(source_name);
  r.object_at(j, "");
  const auto version = r.uint_at(r.field(j, "", "spec_version"), "spec_version");
  if (version != static_cast<std::uint64_t>(Workload::kSpecVersion))
    r.fail("spec_version", "unsupported version " + std::to_string(version) +
                               " (this Prism reads " + std::to_string(Workload::kSpecVersion) +
                               ")");
  Workload w;
  w.name = r.string_at(r.field(j, "", "name"), "name");
  w.kind = r.string_at(r.field(j, "", "kind"), "kind");
  w.seed = r.uint_at(r.field(j, "", "seed"), "seed");
  w.tokenizer = r.string_at(r.field(j, "", "tokenizer"), "tokenizer");
  if (auto* v = r.optional_field(j, "description")) w.description = r.string_at(*v, "description");
  if (auto* v = r.optional_field(j, "max_context_tokens"))
    w.max_context_tokens = r.uint_at(*v, "max_context_tokens");
  if (auto* v = r.optional_field(j, "parameters")) {
    r.object_at(*v, "parameters");
    for (auto it = v->begin(); it != v->end(); ++it)
      w.parameters[it.key()] = r.string_at(it.value(), "parameters." + it.key());
  }
  w.arrival = arrival_from_json(r, r.field(j, "", "arrival"), "arrival");

  // Contents table: id -> tokens. Segments may also carry their tokens inline
  // (convenient for hand-written specs); both must agree.
  std::unordered_map<std::string, std::vector<std::int32_t>> contents;
  if (auto* v = r.optional_field(j, "contents")) {
    r.array_at(*v, "contents");
    for (std::size_t i = 0; i < v->size(); ++i) {
      const std::string p = Reader::index("contents", i);
      const auto& c = r.object_at((*v)[i], p);
      std::string id = r.string_at(r.field(c, p, "id"), p + ".id");
      if (id.empty()) r.fail(p + ".id", "content id must not be empty");
      auto tokens = tokens_from_json(r, r.field(c, p, "tokens"), p + ".tokens");
      if (!contents.emplace(id, std::move(tokens)).second)
        r.fail(p + ".id", "duplicate content id \"" + id + "\"");
    }
  }

  const auto& sessions = r.array_at(r.field(j, "", "sessions"), "sessions");
  w.sessions.reserve(sessions.size());
  for (std::size_t si = 0; si < sessions.size(); ++si) {
    const std::string sp = Reader::index("sessions", si);
    const auto& sj = r.object_at(sessions[si], sp);
    Session session;
    session.id = r.uint_at(r.field(sj, sp, "id"), sp + ".id");
    const auto& requests = r.array_at(r.field(sj, sp, "requests"), sp + ".requests");
    for (std::size_t ri = 0; ri < requests.size(); ++ri) {
      const std::string rp = Reader::index(sp + ".requests", ri);
      const auto& rj = r.object_at(requests[ri], rp);
      Request req;
      req.id = r.uint_at(r.field(rj, rp, "id"), rp + ".id");
      req.session = session.id;
      if (auto* v = r.optional_field(rj, "session")) {
        req.session = r.uint_at(*v, rp + ".session");
        if (req.session != session.id)
          r.fail(rp + ".session", "request names session " + std::to_string(req.session) +
                                      " but sits in session " + std::to_string(session.id));
      }
      req.turn = r.uint32_at(r.field(rj, rp, "turn"), rp + ".turn");
      req.arrival_offset_s =
          r.number_at(r.field(rj, rp, "arrival_offset_s"), rp + ".arrival_offset_s");
      req.output_tokens = r.uint32_at(r.field(rj, rp, "output_tokens"), rp + ".output_tokens");
      if (auto* v = r.optional_field(rj, "ignore_eos"))
        req.ignore_eos = r.bool_at(*v, rp + ".ignore_eos");
      const auto& segments = r.array_at(r.field(rj, rp, "segments"), rp + ".segments");
      for (std::size_t gi = 0; gi < segments.size(); ++gi) {
        const std::string gp = Reader::index(rp + ".segments", gi);
        const auto& gj = r.object_at(segments[gi], gp);
        Segment seg;
        seg.content_id = r.string_at(r.field(gj, gp, "content_id"), gp + ".content_id");
        try {
          seg.provenance =
              parse_provenance(r.string_at(r.field(gj, gp, "provenance"), gp + ".provenance"));
        } catch (const WorkloadError& e) {
          if (std::string_view(e.what()).rfind(source_name, 0) == 0) throw;
          r.fail(gp + ".provenance", e.what());
        }
        if (auto* inline_tokens = r.optional_field(gj, "tokens")) {
          seg.tokens = tokens_from_json(r, *inline_tokens, gp + ".tokens");
          auto [it, inserted] = contents.emplace(seg.content_id, seg.tokens);
          if (!inserted && it->second != seg.tokens)
            r.fail(gp + ".tokens",
                   "content id \"" + seg.content_id + "\" already names different tokens");
        } else {
          auto it = contents.find(seg.content_id);
          if (it == contents.end())
            r.fail(gp + ".content_id", "unknown content id \"" + seg.content_id +
                                           "\" (not in contents, no inline tokens)");
          seg.tokens = it->second;
        }
        req.segments.push_back(std::move(seg));
      }
      session.requests.push_back(std::move(req));
    }
    w.sessions.push_back(std::move(session));
  }
  validate_workload(w, source_name);
  return w;
}

Workload read_workload_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw WorkloadError(path + ": cannot open for reading");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    // Turn the byte offset into line:column so the user can find it.
    std::size_t line = 1, column = 1;
    const std::size_t end = std::min<std::size_t>(e.byte == 0 ? 0 : e.byte - 1, text.size());
    for (std::size_t i = 0; i < end; ++i) {
      if (text[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    std::string what = e.what();
    if (auto pos = what.find("syntax error"); pos != std::string::npos) what = what.substr(pos);
    throw WorkloadError(path + ":" + std::to_string(line) + ":" + std::to_string(column) +
                        ": malformed JSON: " + what);
  }
  return workload_from_json(j, path);
}

std::string serialize_workload(const Workload& w) {
  // Keys in the sorted order nlohmann::json uses, so this equals to_json().dump().
  std::string out;
  std::size_t token_count = 0;
  for_each_first_content(w, [&](const Segment& s) { token_count += s.tokens.size(); });
  out.reserve(token_count * 7 + w.request_count() * 256 + 1024);

  const auto& a = w.arrival;
  out += "{\"arrival\":{\"burstiness\":";
  append_double(out, a.burstiness);
  out += ",\"concurrency\":";
  append_uint(out, a.concurrency);
  out += ",\"kind\":";
  append_string(out, arrival_kind_name(a.kind));
  out += ",\"rate_per_s\":";
  append_double(out, a.rate_per_s);
  out += ",\"sweep_rates_per_s\":[";
  for (std::size_t i = 0; i < a.sweep_rates_per_s.size(); ++i) {
    if (i) out += ',';
    append_double(out, a.sweep_rates_per_s[i]);
  }
  out += "],\"time_scale\":";
  append_double(out, a.time_scale);
  out += "},\"contents\":[";
  bool first = true;
  for_each_first_content(w, [&](const Segment& s) {
    if (!first) out += ',';
    first = false;
    out += "{\"id\":";
    append_string(out, s.content_id);
    out += ",\"tokens\":[";
    for (std::size_t i = 0; i < s.tokens.size(); ++i) {
      if (i) out += ',';
      const auto t = s.tokens[i];
      if (t < 0) {
        out += '-';
        append_uint(out, static_cast<std::uint64_t>(-static_cast<std::int64_t>(t)));
      } else {
        append_uint(out, static_cast<std::uint64_t>(t));
      }
    }
    out += "]}";
  });
  out += "],\"description\":";
  append_string(out, w.description);
  out += ",\"kind\":";
  append_string(out, w.kind);
  out += ",\"max_context_tokens\":";
  append_uint(out, w.max_context_tokens);
  out += ",\"name\":";
  append_string(out, w.name);
  out += ",\"parameters\":{";
  first = true;
  for (const auto& [k, v] : w.parameters) {
    if (!first) out += ',';
    first = false;
    append_string(out, k);
    out += ':';
    append_string(out, v);
  }
  out += "},\"seed\":";
  append_uint(out, w.seed);
  out += ",\"sessions\":[";
  for (std::size_t si = 0; si < w.sessions.size(); ++si) {
    const auto& session = w.sessions[si];
    if (si) out += ',';
    out += "{\"id\":";
    append_uint(out, session.id);
    out += ",\"requests\":[";
    for (std::size_t ri = 0; ri < session.requests.size(); ++ri) {
      const auto& r = session.requests[ri];
      if (ri) out += ',';
      out += "{\"arrival_offset_s\":";
      append_double(out, r.arrival_offset_s);
      out += ",\"id\":";
      append_uint(out, r.id);
      out += r.ignore_eos ? ",\"ignore_eos\":true" : ",\"ignore_eos\":false";
      out += ",\"output_tokens\":";
      append_uint(out, r.output_tokens);
      out += ",\"segments\":[";
      for (std::size_t gi = 0; gi < r.segments.size(); ++gi) {
        if (gi) out += ',';
        out += "{\"content_id\":";
        append_string(out, r.segments[gi].content_id);
        out += ",\"provenance\":";
        append_string(out, provenance_name(r.segments[gi].provenance));
        out += '}';
      }
      out += "],\"session\":";
      append_uint(out, r.session);
      out += ",\"turn\":";
      append_uint(out, r.turn);
      out += '}';
    }
    out += "]}";
  }
  out += "],\"spec_version\":";
  append_uint(out, Workload::kSpecVersion);
  out += ",\"tokenizer\":";
  append_string(out, w.tokenizer);
  out += '}';
  return out;
}

}  // namespace prism::workloads
