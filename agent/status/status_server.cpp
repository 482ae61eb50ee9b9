#include "agent/status/status_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "agent/core/log.h"
#include "agent/core/thread_name.h"
#include "agent/status/status_http.h"

namespace tagrelay::status {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kClientDeadline{2000};
constexpr size_t kMaxAnswer = 16u << 20;

std::string Errno() { return std::strerror(errno); }

void CloseFd(int* fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

bool FillUnixAddress(const std::string& path, sockaddr_un* addr) {
  std::memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr->sun_path) return false;
  std::memcpy(addr->sun_path, path.data(), path.size());
  return true;
}

// Is a live process accepting on the Unix socket `path`?
bool SocketServed(const std::string& path) {
  sockaddr_un addr;
  if (!FillUnixAddress(path, &addr)) return false;
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const bool served = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return served;
}

int ListenUnix(const std::string& path) {
  sockaddr_un addr;
  if (!FillUnixAddress(path, &addr)) {
    Log(LogLevel::kError, "status", "socket path '" + path + "' is too long; no status socket");
    return -1;
  }
  struct stat st {};
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      Log(LogLevel::kError, "status",
          path + " exists and is not a socket; leaving it alone: no status socket");
      return -1;
    }
    if (SocketServed(path)) {
      Log(LogLevel::kError, "status",
          path + " is served by another running process (another tagrelay?); no status socket");
      return -1;
    }
    unlink(path.c_str());  // stale, from an agent that did not stop cleanly
  }
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, 16) != 0) {
    Log(LogLevel::kError, "status",
        "cannot listen on " + path + ": " + Errno() +
            " (the service's RuntimeDirectory creates /run/tagrelay; elsewhere set "
            "[status] socket)");
    close(fd);
    return -1;
  }
  chmod(path.c_str(), 0666);
  return fd;
}

int ListenTcp(const std::string& listen_text, uint16_t* bound_port) {
  std::string host;
  uint16_t port = 0;
  if (!ParseListenAddress(listen_text, &host, &port)) {
    Log(LogLevel::kError, "status", "bad listen address '" + listen_text + "'");
    return -1;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 ||
      res == nullptr) {
    Log(LogLevel::kError, "status", "bad listen address '" + listen_text + "'");
    return -1;
  }
  const int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int ok = fd >= 0 ? 0 : -1;
  if (ok == 0) {
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ok = bind(fd, res->ai_addr, res->ai_addrlen);
  }
  if (ok == 0) ok = listen(fd, 16);
  freeaddrinfo(res);
  if (ok != 0) {
    Log(LogLevel::kError, "status",
        "cannot listen on " + listen_text + ": " + Errno() +
            "; no local status page (change [status] listen)");
    if (fd >= 0) close(fd);
    return -1;
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  *bound_port =
      ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                        : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return fd;
}

void SetTimeouts(int fd, milliseconds t) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(t.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((t.count() % 1000) * 1000);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

bool ParseListenAddress(std::string_view text, std::string* host, uint16_t* port) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon + 1 >= text.size()) return false;
  std::string_view h = text.substr(0, colon);
  const std::string_view p = text.substr(colon + 1);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') {
    h = h.substr(1, h.size() - 2);
    in6_addr a6{};
    if (inet_pton(AF_INET6, std::string(h).c_str(), &a6) != 1) return false;
  } else {
    in_addr a4{};
    if (inet_pton(AF_INET, std::string(h).c_str(), &a4) != 1) return false;
  }
  uint32_t v = 0;
  for (char c : p) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint32_t>(c - '0');
    if (v > 65535) return false;
  }
  if (p.size() > 5) return false;
  *host = std::string(h);
  *port = static_cast<uint16_t>(v);
  return true;
}

StatusServer::StatusServer(StatusServerOptions options, Collect collect, const Clock& clock,
                           Tick tick)
    : options_(std::move(options)),
      collect_(std::move(collect)),
      clock_(clock),
      tick_(std::move(tick)) {}

StatusServer::~StatusServer() { Stop(); }

void StatusServer::Start() {
  if (!options_.socket_path.empty()) unix_fd_ = ListenUnix(options_.socket_path);
  if (!options_.listen.empty()) {
    uint16_t port = 0;
    tcp_fd_ = ListenTcp(options_.listen, &port);
    tcp_port_ = tcp_fd_ >= 0 ? port : 0;
  }
  if (pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) wake_[0] = wake_[1] = -1;
  stop_ = false;
  thread_ = std::thread([this] {
    NameThisThread("status");
    Run();
  });
}

void StatusServer::Stop() {
  if (thread_.joinable()) {
    stop_ = true;
    const char c = 's';
    if (wake_[1] >= 0) (void)!write(wake_[1], &c, 1);
    thread_.join();
  }
  if (unix_fd_ >= 0) unlink(options_.socket_path.c_str());
  CloseFd(&unix_fd_);
  CloseFd(&tcp_fd_);
  CloseFd(&wake_[0]);
  CloseFd(&wake_[1]);
  tcp_port_ = 0;
}

std::shared_ptr<const StatusSnapshot> StatusServer::Current() {
  MutexLock lock(&mu_);
  const MonoTime now = clock_.mono();
  if (latest_ == nullptr || now - latest_at_ >= options_.refresh) {
    latest_ = std::make_shared<const StatusSnapshot>(collect_());
    latest_at_ = now;
  }
  return latest_;
}

void StatusServer::Refresh() {
  MutexLock lock(&mu_);
  latest_.reset();
}

void StatusServer::Run() {
  MonoTime next_tick = clock_.mono();
  for (;;) {
    const MonoTime now = clock_.mono();
    heartbeat_.Beat(now);
    if (now >= next_tick) {
      if (tick_) tick_();
      next_tick = now + kHeartbeatEvery;
    }
    if (stop_) return;
    pollfd fds[3] = {{wake_[0], POLLIN, 0}, {unix_fd_, POLLIN, 0}, {tcp_fd_, POLLIN, 0}};
    const auto wait = std::clamp(std::chrono::ceil<milliseconds>(next_tick - clock_.mono()),
                                 milliseconds(0), kHeartbeatEvery);
    const int n = poll(fds, 3, static_cast<int>(wait.count()));
    if (n < 0 && errno != EINTR) {
      Log(LogLevel::kError, "status", "poll: " + Errno());
      return;
    }
    if (n <= 0) continue;
    if (fds[0].revents != 0) return;  // Stop()
    heartbeat_.Beat(clock_.mono());   // a sample taken for this request shows it
    if (fds[1].revents != 0) Serve(unix_fd_);
    if (fds[2].revents != 0) Serve(tcp_fd_);
  }
}

void StatusServer::Serve(int listener) {
  const int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) return;
  SetTimeouts(fd, kClientDeadline);
  const MonoTime deadline = clock_.mono() + kClientDeadline;
  std::string head;
  HttpRequest request;
  HeadState state = HeadState::kIncomplete;
  char buf[2048];
  while (state == HeadState::kIncomplete && clock_.mono() < deadline) {
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    head.append(buf, static_cast<size_t>(n));
    state = ParseRequestHead(head, &request);
  }
  if (state == HeadState::kComplete) {
    const std::shared_ptr<const StatusSnapshot> snapshot = Current();
    WriteAll(fd, Route(request, snapshot.get()).Serialize());
  } else if (state == HeadState::kBad) {
    WriteAll(fd, BadRequest().Serialize());
  }
  close(fd);
}

Result<std::string> FetchStatus(const std::string& socket_path, std::string_view path,
                                std::chrono::milliseconds timeout) {
  sockaddr_un addr;
  if (!FillUnixAddress(socket_path, &addr)) {
    return Status::InvalidArgument("'" + socket_path + "' is not a usable socket path");
  }
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::IOError("socket: " + Errno());
  SetTimeouts(fd, timeout);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const std::string why = Errno();
    close(fd);
    return Status::Unavailable("cannot connect to " + socket_path + ": " + why);
  }
  const std::string request =
      "GET " + std::string(path) + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
  std::string answer;
  bool ok = WriteAll(fd, request);
  char buf[8192];
  while (ok) {
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ok = false;
      break;
    }
    if (n == 0) break;
    answer.append(buf, static_cast<size_t>(n));
    if (answer.size() > kMaxAnswer) {
      ok = false;
      break;
    }
  }
  close(fd);
  if (!ok) return Status::IOError("no complete answer from " + socket_path);
  const size_t body = answer.find("\r\n\r\n");
  if (!answer.starts_with("HTTP/1.1 ") || body == std::string::npos) {
    return Status::IOError("not a status answer from " + socket_path);
  }
  const std::string code = answer.substr(9, 3);
  if (code != "200") {
    return Status::Unavailable("the agent answered " + answer.substr(9, answer.find('\r') - 9) +
                               ": " + answer.substr(body + 4));
  }
  return answer.substr(body + 4);
}

}  // namespace tagrelay::status
