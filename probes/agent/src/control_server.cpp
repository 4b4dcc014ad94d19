// The agent's control socket: <dir>/<pid>.sock, mode 0600 inside a 0700
// directory we own; peers must be our own uid or root (SO_PEERCRED). One
// client at a time, on a thread of our own; requests are parsed strictly
// (protocol.h) and a bad one is answered with "err" while the agent runs on.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent.h"
#include "prism/control/protocol.h"

namespace prism::agent {
namespace {

int g_listen_fd = -1;
int g_wake_pipe[2] = {-1, -1};
std::atomic<int> g_client_fd{-1};
pthread_t g_thread;
bool g_running = false;
char g_path[108] = {};

bool private_directory(const char* dir, char* why, size_t why_size) {
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
    snprintf(why, why_size, "cannot create %s: %s", dir, strerror(errno));
    return false;
  }
  struct stat st;
  if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    snprintf(why, why_size, "%s is not a directory", dir);
    return false;
  }
  if (st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
    snprintf(why, why_size, "%s must be owned by uid %u with mode 0700", dir,
             static_cast<unsigned>(geteuid()));
    return false;
  }
  return true;
}

bool choose_directory(char* dir, size_t size, char* why, size_t why_size) {
  const char* configured = getenv("PRISM_PROBE_DIR");
  const char* runtime = getenv("XDG_RUNTIME_DIR");
  if (configured != nullptr && *configured != '\0') {
    snprintf(dir, size, "%s", configured);
  } else if (runtime != nullptr && *runtime == '/') {
    snprintf(dir, size, "%s/prism", runtime);
  } else {
    snprintf(dir, size, "/tmp/prism-%u", static_cast<unsigned>(geteuid()));
  }
  return private_directory(dir, why, why_size);
}

bool send_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// A reply line and its payload in one system call where the socket takes them (the live path
// answers hundreds of polls a second).
bool send_line_and_payload(int fd, const char* line, size_t line_size, const char* data,
                           size_t size) {
  iovec parts[2] = {{const_cast<char*>(line), line_size}, {const_cast<char*>(data), size}};
  msghdr message{};
  message.msg_iov = parts;
  message.msg_iovlen = size > 0 ? 2 : 1;
  ssize_t n = 0;
  do {
    n = sendmsg(fd, &message, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return false;
  const size_t sent = static_cast<size_t>(n);
  if (sent < line_size) {
    return send_all(fd, line + sent, line_size - sent) && send_all(fd, data, size);
  }
  return send_all(fd, data + (sent - line_size), size - (sent - line_size));
}

bool reply(int fd, const char* line) {
  return send_all(fd, line, strlen(line));
}

bool read_exact(int fd, char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = recv(fd, data, size, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// Handles one request; returns false when the connection should close.
bool handle(int fd, const char* line, size_t length, char* pending, size_t* pending_size) {
  control::Request request;
  char error[160] = {};
  char out[512];
  if (!control::parse_request(line, length, &request, error, sizeof(error))) {
    snprintf(out, sizeof(out), "err bad_request %s\n", error);
    return reply(fd, out);
  }
  switch (request.verb) {
    case control::Verb::kStatus: {
      const size_t n = agent_status(out, sizeof(out));
      return send_all(fd, out, n);
    }
    case control::Verb::kStart: {
      StartOptions options;
      options.duration_ms = request.duration_ms;
      options.activities = request.activities;
      agent_start(options);
      char status[512];
      const size_t n = agent_status(status, sizeof(status));
      // Echo the state after starting: "ok start" followed by the status fields.
      snprintf(out, sizeof(out), "ok start%.*s", static_cast<int>(n > 9 ? n - 9 : 0),
               n > 9 ? status + 9 : "");
      if (n <= 9) snprintf(out, sizeof(out), "ok start\n");
      return reply(fd, out);
    }
    case control::Verb::kStop:
      agent_stop();
      return reply(fd, "ok stop\n");
    case control::Verb::kSnapshot: {
      char* data = nullptr;
      size_t size = 0;
      if (!agent_snapshot(&data, &size)) return reply(fd, "err snapshot out of memory\n");
      snprintf(out, sizeof(out), "ok snapshot bytes=%zu\n", size);
      const bool ok = reply(fd, out) && send_all(fd, data, size);
      free(data);
      return ok;
    }
    case control::Verb::kEvents: {
      EventsCursor cursor;
      cursor.since = request.since;
      cursor.strings = static_cast<uint32_t>(request.strings);
      cursor.threads = static_cast<uint32_t>(request.threads);
      char* data = nullptr;
      size_t size = 0;
      if (!agent_events(&cursor, &data, &size)) return reply(fd, "err events out of memory\n");
      snprintf(out, sizeof(out),
               "ok events bytes=%zu next=%llu strings=%u threads=%u lost=%llu pending=%llu "
               "active=%d\n",
               size, static_cast<unsigned long long>(cursor.since), cursor.strings, cursor.threads,
               static_cast<unsigned long long>(cursor.lost),
               static_cast<unsigned long long>(cursor.pending), cursor.active ? 1 : 0);
      const bool ok = send_line_and_payload(fd, out, strlen(out), data, size);
      free(data);
      return ok;
    }
    case control::Verb::kStats: {
      constexpr size_t kSize = 64 * 1024;
      char* rows_text = static_cast<char*>(malloc(kSize));
      if (rows_text == nullptr) return reply(fd, "err stats out of memory\n");
      size_t rows = 0;
      const size_t used = agent_stats(rows_text, kSize, &rows);
      char status[512];
      const size_t n = agent_status(status, sizeof(status));
      snprintf(out, sizeof(out), "ok stats lines=%zu%.*s", rows,
               static_cast<int>(n > 9 ? n - 9 : 1), n > 9 ? status + 9 : "\n");
      const bool ok = reply(fd, out) && send_all(fd, rows_text, used);
      free(rows_text);
      return ok;
    }
    case control::Verb::kRules: {
      char* text = static_cast<char*>(malloc(request.rules_bytes));
      if (text == nullptr) return reply(fd, "err rules out of memory\n");
      // Part of the payload may already sit in the line buffer.
      size_t have = *pending_size < request.rules_bytes ? *pending_size : request.rules_bytes;
      memcpy(text, pending, have);
      memmove(pending, pending + have, *pending_size - have);
      *pending_size -= have;
      if (!read_exact(fd, text + have, request.rules_bytes - have)) {
        free(text);
        return false;
      }
      const bool ok = agent_load_rules(text, request.rules_bytes, error, sizeof(error));
      free(text);
      if (ok) return reply(fd, "ok rules\n");
      snprintf(out, sizeof(out), "err bad_rules %s\n", error);
      return reply(fd, out);
    }
    case control::Verb::kQuit:
      reply(fd, "ok quit\n");
      return false;
  }
  return false;
}

void serve(int fd) {
  struct ucred peer;
  socklen_t length = sizeof(peer);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &length) != 0 ||
      (peer.uid != geteuid() && peer.uid != 0)) {
    char out[128];
    snprintf(out, sizeof(out), "err denied peer uid %u is neither the owner nor root\n",
             static_cast<unsigned>(peer.uid));
    reply(fd, out);
    return;
  }
  timeval timeout{30, 0};  // an idle or stuck client must not hold the socket forever
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  timeval send_timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof(send_timeout));
  char buffer[control::kMaxLine + 2];
  size_t used = 0;
  for (;;) {
    char* newline = static_cast<char*>(memchr(buffer, '\n', used));
    if (newline == nullptr) {
      if (used >= control::kMaxLine + 1) {
        reply(fd, "err bad_request line too long\n");
        return;  // no way to find the next line boundary: close
      }
      const ssize_t n = recv(fd, buffer + used, sizeof(buffer) - used, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      used += static_cast<size_t>(n);
      continue;
    }
    const size_t line_length = static_cast<size_t>(newline - buffer);
    char line[control::kMaxLine + 2];
    memcpy(line, buffer, line_length);
    const size_t rest = used - line_length - 1;
    memmove(buffer, newline + 1, rest);
    used = rest;
    if (!handle(fd, line, line_length, buffer, &used)) return;
  }
}

void* server_main(void*) {
  for (;;) {
    pollfd fds[2] = {{g_listen_fd, POLLIN, 0}, {g_wake_pipe[0], POLLIN, 0}};
    const int n = poll(fds, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || (fds[1].revents & POLLIN) != 0) break;
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int fd = accept4(g_listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    g_client_fd.store(fd);
    serve(fd);
    g_client_fd.store(-1);
    close(fd);
  }
  return nullptr;
}

}  // namespace

const char* control_socket_path() {
  return g_path;
}

bool control_server_start(char* why, size_t why_size) {
  char dir[96];
  if (!choose_directory(dir, sizeof(dir), why, why_size)) return false;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const int n = snprintf(address.sun_path, sizeof(address.sun_path), "%s/%d.sock", dir,
                         static_cast<int>(getpid()));
  if (n <= 0 || static_cast<size_t>(n) >= sizeof(address.sun_path)) {
    snprintf(why, why_size, "socket path under %s is too long", dir);
    return false;
  }
  struct stat st;
  if (lstat(address.sun_path, &st) == 0) {
    // A stale socket from an earlier process with our pid; anything else is not ours to remove.
    if (!S_ISSOCK(st.st_mode) || st.st_uid != geteuid()) {
      snprintf(why, why_size, "%s exists and is not our socket", address.sun_path);
      return false;
    }
    unlink(address.sun_path);
  }
  g_listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (g_listen_fd < 0) {
    snprintf(why, why_size, "socket: %s", strerror(errno));
    return false;
  }
  const mode_t old_mask = umask(0177);  // the socket is born 0600
  const int bound = bind(g_listen_fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  umask(old_mask);
  if (bound != 0 || chmod(address.sun_path, 0600) != 0 || listen(g_listen_fd, 4) != 0 ||
      pipe2(g_wake_pipe, O_CLOEXEC) != 0) {
    snprintf(why, why_size, "cannot listen on %s: %s", address.sun_path, strerror(errno));
    close(g_listen_fd);
    g_listen_fd = -1;
    return false;
  }
  snprintf(g_path, sizeof(g_path), "%s", address.sun_path);
  if (pthread_create(&g_thread, nullptr, server_main, nullptr) != 0) {
    snprintf(why, why_size, "cannot start the control thread");
    unlink(g_path);
    return false;
  }
  pthread_setname_np(g_thread, "prism-control");
  g_running = true;
  return true;
}

void control_server_stop() {
  if (!g_running) return;
  g_running = false;
  char byte = 'x';
  ssize_t ignored = write(g_wake_pipe[1], &byte, 1);
  (void)ignored;
  const int client = g_client_fd.load();
  if (client >= 0) shutdown(client, SHUT_RDWR);
  pthread_join(g_thread, nullptr);
  unlink(g_path);
  close(g_listen_fd);
  g_listen_fd = -1;
}

}  // namespace prism::agent
