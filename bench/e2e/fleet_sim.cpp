// tagrelay-fleet-sim: a fleet of simulated Modbus TCP devices served by one
// process and one thread (epoll) on loopback, for the end-to-end benchmark.
//
//   tagrelay-fleet-sim --ports 100 [--units 1] [--registers 100] [--host 127.0.0.1]
//
// Each of the --ports listening sockets (kernel-chosen ports) stands for a
// device on its own IP endpoint, as PLCs on a plant network are. With
// --units U > 1 each port is a gateway with U unit ids (1..U) behind it, each
// a device with its own registers. Every device has --registers holding and
// as many input registers; every read of a register advances its value by
// one, so values change every poll whether a client reads a block or one
// register at a time.
//
// It prints "ports P1 P2 ..." once it accepts connections. On SIGUSR1 it
// prints "served requests=N registers=M errors=E connections=C values=V,..."
// (totals since start, and the value of holding register 0 of every device,
// port by port and unit by unit), which is how the harness counts what was
// acquired. It exits on SIGINT/SIGTERM or when its parent dies.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

constexpr size_t kMbapLength = 7;
constexpr size_t kMaxAdu = 260;
constexpr uint8_t kReadHolding = 0x03;
constexpr uint8_t kReadInput = 0x04;
constexpr uint16_t kMaxReadCount = 125;

struct Device {
  std::vector<uint16_t> holding;
  std::vector<uint16_t> input;
};

struct Endpoint {
  int listener = -1;
  uint16_t port = 0;
  std::vector<Device> units;  // unit id u is units[u - 1]
};

struct Connection {
  int fd = -1;
  Endpoint* endpoint = nullptr;
  std::string in;
  std::string out;
  bool writing = false;  // registered for EPOLLOUT
};

struct Totals {
  uint64_t requests = 0;
  uint64_t registers = 0;
  uint64_t errors = 0;
  uint64_t connections = 0;
};

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "fleet-sim: %s: %s\n", what, std::strerror(errno));
  std::exit(2);
}

void SetNonBlocking(int fd) {
  const int flags = fcntl(fd, F_GETFL, 0);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) Die("fcntl");
}

void Put16(std::string* out, uint16_t v) {
  out->push_back(static_cast<char>(v >> 8));
  out->push_back(static_cast<char>(v & 0xFF));
}

uint16_t Get16(const std::string& s, size_t at) {
  return static_cast<uint16_t>((static_cast<uint8_t>(s[at]) << 8) |
                               static_cast<uint8_t>(s[at + 1]));
}

// Answers one request (an MBAP header and its PDU) into `out`.
void Answer(Endpoint* ep, const std::string& in, size_t at, size_t adu, std::string* out,
            Totals* totals) {
  const uint16_t tid = Get16(in, at);
  const uint8_t unit = static_cast<uint8_t>(in[at + 6]);
  const uint8_t fc = static_cast<uint8_t>(in[at + 7]);
  uint8_t exception = 0;
  std::vector<uint16_t>* table = nullptr;
  uint16_t addr = 0;
  uint16_t count = 0;
  // Unit 0 and 255 address "the device" of a single-unit port.
  const size_t index = (ep->units.size() == 1 && (unit == 0 || unit == 255)) ? 0 : unit - 1u;
  if (fc != kReadHolding && fc != kReadInput) {
    exception = 0x01;
  } else if (adu < kMbapLength + 5 || index >= ep->units.size()) {
    exception = adu < kMbapLength + 5 ? 0x03 : 0x0B;
  } else {
    Device& dev = ep->units[index];
    table = fc == kReadHolding ? &dev.holding : &dev.input;
    addr = Get16(in, at + 8);
    count = Get16(in, at + 10);
    if (count == 0 || count > kMaxReadCount) {
      exception = 0x03;
    } else if (static_cast<size_t>(addr) + count > table->size()) {
      exception = 0x02;
    }
  }
  Put16(out, tid);
  Put16(out, 0);
  if (exception != 0) {
    Put16(out, 3);
    out->push_back(static_cast<char>(unit));
    out->push_back(static_cast<char>(fc | 0x80));
    out->push_back(static_cast<char>(exception));
    ++totals->errors;
    return;
  }
  Put16(out, static_cast<uint16_t>(3 + 2 * count));
  out->push_back(static_cast<char>(unit));
  out->push_back(static_cast<char>(fc));
  out->push_back(static_cast<char>(2 * count));
  for (uint16_t i = 0; i < count; ++i) Put16(out, ++(*table)[addr + i]);
  ++totals->requests;
  totals->registers += count;
}

// Handles every whole request in the connection's input; false if the
// stream is not Modbus TCP (the connection is then closed).
bool Serve(Connection* c, Totals* totals) {
  size_t at = 0;
  while (c->in.size() - at >= kMbapLength) {
    const uint16_t length = Get16(c->in, at + 4);
    if (length < 2 || length + 6u > kMaxAdu) return false;
    const size_t adu = 6u + length;
    if (c->in.size() - at < adu) break;
    Answer(c->endpoint, c->in, at, adu, &c->out, totals);
    at += adu;
  }
  c->in.erase(0, at);
  return true;
}

// Writes what it can of the output; false on a broken connection.
bool Flush(Connection* c) {
  while (!c->out.empty()) {
    const ssize_t n = send(c->fd, c->out.data(), c->out.size(), MSG_NOSIGNAL);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
    c->out.erase(0, static_cast<size_t>(n));
  }
  return true;
}

int Usage() {
  std::fprintf(stderr,
               "usage: tagrelay-fleet-sim [--ports N] [--units U] [--registers R] [--host ADDR]\n");
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  int ports = 100;
  int units = 1;
  int registers = 100;
  std::string host = "127.0.0.1";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return Usage();
    if (a == "--ports") {
      ports = std::atoi(argv[++i]);
    } else if (a == "--units") {
      units = std::atoi(argv[++i]);
    } else if (a == "--registers") {
      registers = std::atoi(argv[++i]);
    } else if (a == "--host") {
      host = argv[++i];
    } else {
      return Usage();
    }
  }
  if (ports < 1 || ports > 10000 || units < 1 || units > 247 || registers < 1 ||
      registers > 65536) {
    return Usage();
  }
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGUSR1);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  const int sfd = signalfd(-1, &mask, SFD_NONBLOCK);
  const int epfd = epoll_create1(0);
  if (sfd < 0 || epfd < 0) Die("signalfd/epoll");

  std::vector<std::unique_ptr<Endpoint>> endpoints;
  std::unordered_map<int, Endpoint*> listeners;
  std::unordered_map<int, std::unique_ptr<Connection>> connections;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = sfd;
  epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &ev);
  std::string line = "ports";
  for (int p = 0; p < ports; ++p) {
    auto ep = std::make_unique<Endpoint>();
    ep->units.assign(static_cast<size_t>(units),
                     Device{std::vector<uint16_t>(static_cast<size_t>(registers)),
                            std::vector<uint16_t>(static_cast<size_t>(registers))});
    for (auto& d : ep->units) {
      for (int r = 0; r < registers; ++r)
        d.input[static_cast<size_t>(r)] = static_cast<uint16_t>(r);
    }
    ep->listener = socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    setsockopt(ep->listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) return Usage();
    if (bind(ep->listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) Die("bind");
    if (listen(ep->listener, 16) < 0) Die("listen");
    socklen_t len = sizeof addr;
    getsockname(ep->listener, reinterpret_cast<sockaddr*>(&addr), &len);
    ep->port = ntohs(addr.sin_port);
    SetNonBlocking(ep->listener);
    ev.events = EPOLLIN;
    ev.data.fd = ep->listener;
    epoll_ctl(epfd, EPOLL_CTL_ADD, ep->listener, &ev);
    listeners[ep->listener] = ep.get();
    line += " " + std::to_string(ep->port);
    endpoints.push_back(std::move(ep));
  }
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);

  Totals totals;
  std::vector<epoll_event> events(256);
  char buf[65536];
  for (;;) {
    const int n = epoll_wait(epfd, events.data(), static_cast<int>(events.size()), -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      Die("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      const int fd = events[static_cast<size_t>(i)].data.fd;
      if (fd == sfd) {
        signalfd_siginfo si;
        while (read(sfd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
          if (si.ssi_signo != SIGUSR1) return 0;
          std::string values;
          for (const auto& ep : endpoints) {
            for (const Device& d : ep->units) {
              values += (values.empty() ? "" : ",") + std::to_string(d.holding[0]);
            }
          }
          std::printf(
              "served requests=%llu registers=%llu errors=%llu connections=%llu values=%s\n",
              static_cast<unsigned long long>(totals.requests),
              static_cast<unsigned long long>(totals.registers),
              static_cast<unsigned long long>(totals.errors),
              static_cast<unsigned long long>(totals.connections), values.c_str());
          std::fflush(stdout);
        }
        continue;
      }
      if (auto l = listeners.find(fd); l != listeners.end()) {
        for (;;) {
          const int cfd = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK);
          if (cfd < 0) break;
          const int one = 1;
          setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          auto c = std::make_unique<Connection>();
          c->fd = cfd;
          c->endpoint = l->second;
          ev.events = EPOLLIN;
          ev.data.fd = cfd;
          epoll_ctl(epfd, EPOLL_CTL_ADD, cfd, &ev);
          connections[cfd] = std::move(c);
          ++totals.connections;
        }
        continue;
      }
      auto it = connections.find(fd);
      if (it == connections.end()) continue;
      Connection* c = it->second.get();
      bool ok = true;
      if (events[static_cast<size_t>(i)].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        for (;;) {
          const ssize_t r = recv(fd, buf, sizeof buf, 0);
          if (r > 0) {
            c->in.append(buf, static_cast<size_t>(r));
            if (c->in.size() > 1 << 20) ok = false;  // a client that never stops sending
            continue;
          }
          if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) ok = false;
          break;
        }
        ok = ok && Serve(c, &totals);
      }
      ok = ok && Flush(c);
      if (!ok) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nullptr);
        close(fd);
        connections.erase(it);
        continue;
      }
      if (c->writing != !c->out.empty()) {
        c->writing = !c->out.empty();
        ev.events = c->writing ? (EPOLLIN | EPOLLOUT) : EPOLLIN;
        ev.data.fd = fd;
        epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
      }
    }
  }
}
