// `prism run --probe`, the library part: finding the local target's process,
// waking its agent for the run, and joining stage breakdowns to requests.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "../support/temp_dir.h"
#include "prism/harness/clock.h"
#include "prism/harness/probe_join.h"

extern char** environ;

using namespace prism::harness;
using prism::analysis::Breakdown;
using prism::analysis::Iteration;
using prism::results::Observation;

namespace {

using prism::test::TempDir;

Iteration iteration(uint64_t index, uint64_t start, uint64_t end, std::vector<uint64_t> stages) {
  Iteration it;
  it.index = index;
  it.start_ns = start;
  it.end_ns = end;
  it.stage_ns = std::move(stages);
  return it;
}

Observation observation(uint64_t id, double sent_s, double completed_s) {
  Observation o;
  o.request_id = id;
  o.sent_s = sent_s;
  o.completed_s = completed_s;
  return o;
}

// Three 1 ms iterations at t = 10, 11, 12 ms (origin 0), stages prefill and decode.
Breakdown three_iterations() {
  Breakdown b;
  b.stages = {"prefill", "decode"};
  b.begin_ns = 9'000'000;
  b.end_ns = 14'000'000;
  b.iterations.push_back(iteration(0, 10'000'000, 11'000'000, {800'000, 0}));
  b.iterations.push_back(iteration(1, 11'000'000, 12'000'000, {0, 600'000}));
  b.iterations.push_back(iteration(2, 12'000'000, 13'000'000, {0, 400'000}));
  return b;
}

struct Listener {
  int fd = -1;
  int port = 0;
  Listener() {
    fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
    REQUIRE(listen(fd, 4) == 0);
    socklen_t length = sizeof(address);
    getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
    port = ntohs(address.sin_port);
  }
  ~Listener() { close(fd); }
};

// The reference engine program with the agent loaded and dormant, killed on scope exit.
struct EngineWithAgent {
  pid_t pid = -1;
  EngineWithAgent(const std::string& sock_dir, const std::string& ready) {
    std::vector<std::string> env_storage;
    for (char** e = environ; *e != nullptr; ++e) env_storage.emplace_back(*e);
    env_storage.push_back(std::string("NVTX_INJECTION64_PATH=") + PRISM_PROBE_AGENT);
    env_storage.push_back("PRISM_PROBE_DIR=" + sock_dir);
    env_storage.push_back("PRISM_PROBE_QUIET=1");
    std::vector<char*> env;
    for (auto& e : env_storage) env.push_back(e.data());
    env.push_back(nullptr);
    std::vector<std::string> argv = {PRISM_ENGINE_STAGE_PROGRAM,
                                     "--requests",
                                     "8",
                                     "--prompt",
                                     "8",
                                     "--max-tokens",
                                     "8",
                                     "--loop-ms",
                                     "20000",
                                     "--no-clock",
                                     "--ready",
                                     ready};
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn(&pid, args[0], &actions, nullptr, args.data(), env.data());
    posix_spawn_file_actions_destroy(&actions);
  }
  ~EngineWithAgent() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
};

bool wait_for_file(const std::string& path, int timeout_ms) {
  for (int waited = 0; waited < timeout_ms; waited += 10) {
    struct stat st;
    if (stat(path.c_str(), &st) == 0 && st.st_size > 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

}  // namespace

TEST_CASE("A request is joined to the iterations that overlap it, shared with its batch",
          "[harness][probe]") {
  const Breakdown b = three_iterations();
  // Request 1 spans all three iterations; request 2 only the last half of iteration 1 and all
  // of iteration 2.
  const std::vector<Observation> obs = {observation(1, 0.0095, 0.0135),
                                        observation(2, 0.0115, 0.013)};
  const ProbeJoin join = join_requests(b, obs, 0);
  REQUIRE(join.requests.size() == 2);
  CHECK(join.stages == b.stages);
  CHECK(join.covered == 2);
  const RequestStages& r1 = join.requests[0];
  CHECK(r1.request_id == 1);
  CHECK(r1.iterations == 3);
  CHECK(r1.wall_ms[0] == Approx(0.8));
  CHECK(r1.wall_ms[1] == Approx(1.0));
  // Iteration 0 is request 1's alone; iterations 1 and 2 are shared by both requests.
  CHECK(r1.share_ms[0] == Approx(0.8));
  CHECK(r1.share_ms[1] == Approx(0.3 + 0.2));
  const RequestStages& r2 = join.requests[1];
  CHECK(r2.iterations == 2);
  CHECK(r2.wall_ms[0] == Approx(0.0));
  CHECK(r2.wall_ms[1] == Approx(0.3 + 0.4));  // half of iteration 1, all of iteration 2
  CHECK(r2.share_ms[1] == Approx(0.15 + 0.2));
}

TEST_CASE("Requests outside the captured window are not covered and get no stage time",
          "[harness][probe]") {
  const Breakdown b = three_iterations();
  const std::vector<Observation> obs = {
      observation(7, 0.001, 0.002),   // long before the capture
      observation(8, 0.0125, 0.020),  // runs past the end of the capture
      observation(9, 0.005, 0.005)};  // never sent (zero-length window)
  const int64_t origin = 0;
  const ProbeJoin join = join_requests(b, obs, origin);
  CHECK(join.covered == 0);
  CHECK(join.requests[0].iterations == 0);
  CHECK(join.requests[0].wall_ms == std::vector<double>{0.0, 0.0});
  CHECK_FALSE(join.requests[1].covered);
  CHECK(join.requests[1].iterations == 1);  // the part that was captured still counts
  CHECK(join.requests[1].wall_ms[1] == Approx(0.2));
  CHECK(join.requests[2].iterations == 0);

  // The origin shifts observations onto the trace's clock.
  const ProbeJoin shifted = join_requests(b, {observation(1, 0.0, 0.001)}, 10'000'000);
  CHECK(shifted.requests[0].iterations == 1);
  CHECK(shifted.requests[0].wall_ms[0] == Approx(0.8));

  const ProbeJoin empty = join_requests(Breakdown{}, obs, 0);
  CHECK(empty.requests.size() == 3);
  CHECK(empty.covered == 0);
}

TEST_CASE("The stages JSON holds totals results can plot, iteration statistics and the join",
          "[harness][probe]") {
  Breakdown b = three_iterations();
  prism::analysis::StageTotal prefill;
  prefill.stage = "prefill";
  prefill.count = 1;
  prefill.host_ns = 800'000;
  b.totals.push_back(prefill);
  b.complete = false;
  b.partial_reason = "the target exited";
  const ProbeJoin join = join_requests(b, {observation(1, 0.0095, 0.0135)}, 0);
  const nlohmann::json j = probe_stages_json(b, join, 42);
  CHECK(j["pid"] == 42);
  CHECK(j["complete"] == false);
  CHECK(j["partial_reason"] == "the target exited");
  CHECK(j["iterations"]["count"] == 3);
  CHECK(j["iterations"]["mean_ms"].get<double>() == Approx(1.0));
  CHECK(j["totals"][0]["stage"] == "prefill");
  CHECK(j["totals"][0]["host_ns"] == 800'000);
  CHECK(j["requests"]["covered"] == 1);
  CHECK(j["requests"]["rows"][0]["id"] == 1);
  CHECK(j["requests"]["rows"][0]["wall_ms"].size() == 2);
  CHECK_FALSE(j.contains("stages"));  // results' plots would read a top-level "stages" first
}

TEST_CASE("The run's origin is learned from progress reports", "[harness][probe]") {
  RunOriginTracker tracker;
  CHECK_FALSE(tracker.origin_ns().has_value());
  const int64_t before = monotonic_ns();
  tracker.observe(0.5);
  const int64_t after = monotonic_ns();
  REQUIRE(tracker.origin_ns().has_value());
  CHECK(*tracker.origin_ns() >= before - 500'000'000);
  CHECK(*tracker.origin_ns() <= after - 500'000'000);
  const int64_t first = *tracker.origin_ns();
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  tracker.observe(0.5);  // a later, staler report does not move it
  CHECK(*tracker.origin_ns() == first);
}

TEST_CASE("The local target's process is found from its URL; remote or closed ports say why",
          "[harness][probe]") {
  Listener listener;
  const std::string port = std::to_string(listener.port);
  CHECK(find_listener_pid(listener.port) == getpid());
  CHECK(find_local_target_pid("http://127.0.0.1:" + port + "/v1") == getpid());
  CHECK(find_local_target_pid("localhost:" + port) == getpid());
  CHECK_THROWS_WITH(find_local_target_pid("http://example.com:8000"),
                    Catch::Contains("not on this machine"));
  const int closed_port = listener.port;
  Listener other;  // a second port, then closed: nothing listens on it any more
  const int unused = other.port;
  close(other.fd);
  other.fd = -1;
  CHECK(closed_port != unused);
  CHECK_THROWS_WITH(find_listener_pid(unused), Catch::Contains("no local process is listening"));
  CHECK_THROWS_WITH(find_listener_pid(70000), Catch::Contains("bad TCP port"));
}

TEST_CASE("Attaching to the engine for a run yields iterations joined to its requests",
          "[harness][probe]") {
  TempDir dir;
  const std::string sock_dir = dir.path + "/sock";
  const std::string ready = dir.path + "/ready";
  EngineWithAgent engine(sock_dir, ready);
  REQUIRE(wait_for_file(ready, 20000));
  setenv("PRISM_PROBE_DIR", sock_dir.c_str(), 1);
  ProbeAttachment attachment = ProbeAttachment::attach({engine.pid, "prism", false});
  unsetenv("PRISM_PROBE_DIR");
  const int64_t origin = monotonic_ns();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const double end_s = static_cast<double>(monotonic_ns() - origin) * 1e-9;
  const Breakdown b = attachment.finish();
  CHECK(b.complete);
  REQUIRE(b.iterations.size() > 3);
  CHECK_FALSE(attachment.raw_trace().empty());
  // Two requests in flight during the middle of the capture.
  const ProbeJoin join =
      join_requests(b, {observation(1, 0.05, end_s - 0.05), observation(2, 0.1, 0.2)}, origin);
  CHECK(join.covered == 2);
  CHECK(join.requests[0].iterations > join.requests[1].iterations);
  double decode_wall = 0.0;
  for (std::size_t s = 0; s < join.stages.size(); ++s) {
    if (join.stages[s] == "decode" || join.stages[s] == "prefill")
      decode_wall += join.requests[1].wall_ms[s];
    CHECK(join.requests[1].share_ms[s] <= join.requests[1].wall_ms[s] + 1e-9);
  }
  CHECK(decode_wall > 0.0);
  CHECK(decode_wall <= 100.0 + 1e-6);  // at most the request's 100 ms window
}

TEST_CASE("Attaching to a process without the agent says how to start it", "[harness][probe]") {
  Listener listener;  // this test process: no agent here
  CHECK_THROWS_WITH(ProbeAttachment::attach({getpid(), "prism", false}),
                    Catch::Contains("NVTX_INJECTION64_PATH="));
  CHECK_THROWS_WITH(ProbeAttachment::attach({getpid(), "no-such-rules", false}),
                    Catch::Contains("no-such-rules"));
}

TEST_CASE("RunProbe wakes the agent for a run, learns its origin and joins the observations",
          "[harness][probe]") {
  TempDir dir;
  const std::string sock_dir = dir.path + "/sock";
  const std::string ready = dir.path + "/ready";
  EngineWithAgent engine(sock_dir, ready);
  REQUIRE(wait_for_file(ready, 20000));
  setenv("PRISM_PROBE_DIR", sock_dir.c_str(), 1);
  auto probe = RunProbe::start(std::to_string(engine.pid), "");
  unsetenv("PRISM_PROBE_DIR");
  CHECK(probe->pid() == engine.pid);
  LoadOptions load;
  int chained_calls = 0;
  load.on_progress = [&](const LoadProgress&) { ++chained_calls; };
  probe->watch(load);
  LoadProgress progress;
  progress.elapsed_s = 0.0;
  load.on_progress(progress);  // t = 0 of the run is now
  CHECK(chained_calls == 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const nlohmann::json stages =
      probe->finish({observation(1, 0.05, 0.25), observation(2, 0.3, 100.0)});
  CHECK(stages["source"] == "probe");
  CHECK(stages["pid"] == engine.pid);
  CHECK(stages["iterations"]["count"].get<int>() > 3);
  CHECK(stages["requests"]["total"] == 2);
  CHECK(stages["requests"]["covered"] == 1);  // request 2 outlives the capture
  CHECK(stages["requests"]["rows"][0]["iterations"].get<int>() > 0);
  CHECK(probe->summary().find("1 of 2 requests inside the captured window") != std::string::npos);
  CHECK(probe->summary().find("decode") != std::string::npos);
}

TEST_CASE("RunProbe rejects a bad pid, a remote target and a process without the agent",
          "[harness][probe]") {
  CHECK_THROWS_WITH(RunProbe::start("12ab", ""), Catch::Contains("takes a pid or 'auto'"));
  CHECK_THROWS_WITH(RunProbe::start("auto", "http://10.1.2.3:8000/v1"),
                    Catch::Contains("not on this machine"));
  // "auto" with the in-process engine means this process, which has no agent here.
  CHECK_THROWS_WITH(RunProbe::start("auto", ""), Catch::Contains("NVTX_INJECTION64_PATH="));
}
