// RunService, the daemon's main loop, on a thread of the test: when it wakes,
// and what it tells a service manager. The devices are on a TCP bus where
// nothing listens and the uplink has no broker: the loop's work does not
// depend on them.
#include "agent/service.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "fakes/closed_port.h"
#include "fakes/temp_dir.h"

namespace tagrelay {
namespace {

using std::chrono::milliseconds;

// The agent's main thread: RunService() on a thread of its own, stopped with
// a SIGTERM to that thread.
class Service {
 public:
  Service(const TempDir& dir, const ClosedPort& port) : dir_(dir) {
    const std::string p = std::to_string(port.port());
    std::ofstream(dir.File("tagrelay.toml"))
        << "[gateway]\nid = \"gw\"\ndata_dir = \"" << dir.File("data")
        << "\"\n[status]\nlisten = \"\"\nsocket = \"" << dir.File("status.sock")
        << "\"\n[uplink]\nurl = \"mqtt://127.0.0.1:" << p
        << "\"\ninsecure = true\n[[bus]]\nname = \"b\"\ntype = \"tcp\"\nhost = \"127.0.0.1\"\n"
        << "port = " << p << "\n[[device]]\nid = \"d\"\nbus = \"b\"\npoll = \"100ms\"\n"
        << "[[device.tag]]\nname = \"t\"\naddress = 0\n";
    thread_ = std::thread([this] {
      tid_ = gettid();
      exit_code_ = RunService(dir_.File("tagrelay.toml"));
    });
    // Running once its status socket is there (its signals are blocked by then).
    struct stat st {};
    for (int i = 0; i < 1000 && stat(dir.File("status.sock").c_str(), &st) != 0; ++i) {
      std::this_thread::sleep_for(milliseconds(10));
    }
  }
  ~Service() {
    pthread_kill(thread_.native_handle(), SIGTERM);
    thread_.join();
    EXPECT_EQ(exit_code_.load(), 0);
  }

  // The voluntary context switches of the service's thread so far: its wake-ups.
  long wakeups() const {
    std::ifstream f("/proc/self/task/" + std::to_string(tid_.load()) + "/status");
    for (std::string line; std::getline(f, line);) {
      if (line.starts_with("voluntary_ctxt_switches:")) return std::stol(line.substr(24));
    }
    return -1;
  }

 private:
  const TempDir& dir_;
  std::atomic<pid_t> tid_{0};
  std::atomic<int> exit_code_{-1};
  std::thread thread_;
};

// A datagram socket standing in for systemd's notification socket.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : fd_(socket(AF_UNIX, SOCK_DGRAM, 0)) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    timeval tv{0, 10'000};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~NotifySocket() { close(fd_); }

  // Every message received until `d` has passed.
  std::vector<std::string> Receive(std::chrono::milliseconds d) {
    std::vector<std::string> out;
    const auto end = std::chrono::steady_clock::now() + d;
    char buf[4096];
    while (std::chrono::steady_clock::now() < end) {
      const ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n > 0) out.emplace_back(buf, static_cast<size_t>(n));
    }
    return out;
  }

 private:
  int fd_;
};

TEST(ServiceTest, TheMainLoopSleepsWhileItHasNothingToDo) {
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  TempDir dir;
  ClosedPort port;
  Service service(dir, port);
  std::this_thread::sleep_for(milliseconds(500));
  const long before = service.wakeups();
  std::this_thread::sleep_for(milliseconds(3000));
  // No watchdog, no service manager, no log window ending: nothing to wake for.
  EXPECT_LE(service.wakeups() - before, 1);
}

TEST(ServiceTest, ItConfirmsTheWatchdogEveryHalfIntervalAndKeepsTheStatusLine) {
  TempDir dir;
  NotifySocket notify(dir.File("notify.sock"));
  setenv("NOTIFY_SOCKET", dir.File("notify.sock").c_str(), 1);
  setenv("WATCHDOG_USEC", "400000", 1);
  unsetenv("WATCHDOG_PID");
  ClosedPort port;
  {
    Service service(dir, port);
    const std::vector<std::string> got = notify.Receive(milliseconds(6000));
    int pings = 0, statuses = 0;
    for (const std::string& m : got) {
      pings += m == "WATCHDOG=1" ? 1 : 0;
      statuses += m.starts_with("STATUS=") ? 1 : 0;
    }
    ASSERT_FALSE(got.empty());
    EXPECT_TRUE(got[0].starts_with("READY=1\nSTATUS=")) << got[0];
    EXPECT_NE(got[0].find("devices ok, uplink disconnected"), std::string::npos) << got[0];
    EXPECT_GE(pings, 25) << "every 200 ms for 6 s";
    EXPECT_LE(pings, 32);
    // The line changes once the store has readings unsent, and is updated every 5 s.
    EXPECT_EQ(statuses, 1);
  }
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
}

}  // namespace
}  // namespace tagrelay
