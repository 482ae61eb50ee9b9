// The watchdog's view of the workers: heartbeats against stall limits, a
// real poller stuck inside a read, and the notifications systemd receives.
#include "agent/watchdog.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

#include "agent/systemd.h"
#include "drivers/modbus/poller.h"
#include "fakes/temp_dir.h"

namespace tagrelay {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(WatchdogTest, AWorkerIsStalledPastItsLimit) {
  FakeClock clock;
  const MonoTime started = clock.mono();
  Heartbeat a, never;
  a.Beat(clock.mono());
  const std::vector<WorkerBeat> workers = {{"a", &a, seconds(10)}, {"never", &never, seconds(5)}};
  std::vector<status::WorkerStatus> s = CheckWorkers(workers, clock.mono(), started);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_FALSE(s[0].stalled);
  EXPECT_EQ(s[0].idle_ms, 0);
  EXPECT_FALSE(s[1].stalled);
  EXPECT_FALSE(s[1].idle_ms.has_value());

  clock.Advance(seconds(6));
  s = CheckWorkers(workers, clock.mono(), started);
  EXPECT_FALSE(s[0].stalled);
  EXPECT_TRUE(s[1].stalled) << "a worker that never beat counts from the start";
  clock.Advance(seconds(5));
  s = CheckWorkers(workers, clock.mono(), started);
  EXPECT_TRUE(s[0].stalled);
  EXPECT_EQ(s[0].idle_ms, 11000);
  a.Beat(clock.mono());
  EXPECT_FALSE(CheckWorkers(workers, clock.mono(), started)[0].stalled);
}

// A transport whose reads block until the test releases them: a poller
// stuck in a call that does not return, as with a wedged serial driver.
class StuckTransport final : public modbus::ModbusTransport {
 public:
  Status Connect() override { return Status::Ok(); }
  void Close() override {}
  bool connected() const override { return true; }
  Status ReadRegisters(int, modbus::Table, uint16_t, uint16_t count, uint16_t* out) override {
    std::unique_lock<std::mutex> lock(mu_);
    inside_ = true;
    cv_.notify_all();
    cv_.wait(lock, [this] { return released_; });
    inside_ = false;
    for (uint16_t i = 0; i < count; ++i) out[i] = i;
    return Status::Ok();
  }
  Status ReadBits(int, modbus::Table, uint16_t, uint16_t, uint8_t*) override {
    return Status::Ok();
  }
  std::string Describe() const override { return "stuck"; }

  void WaitInside() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return inside_; });
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool inside_ = false;
  bool released_ = false;
};

// A datagram socket standing in for systemd's notification socket.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    setenv("NOTIFY_SOCKET", path.c_str(), 1);
    setenv("WATCHDOG_USEC", "2000000", 1);
    unsetenv("WATCHDOG_PID");
  }
  ~NotifySocket() {
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    close(fd_);
  }
  // Every message received so far.
  std::vector<std::string> Drain() {
    std::vector<std::string> out;
    char buf[4096];
    for (ssize_t n; (n = recv(fd_, buf, sizeof buf, 0)) > 0;) {
      out.emplace_back(buf, static_cast<size_t>(n));
    }
    return out;
  }

 private:
  std::string path_;
  int fd_ = -1;
};

TEST(WatchdogTest, APollerStuckInAReadStopsTheWatchdogPings) {
  TempDir dir;
  NotifySocket systemd(dir.File("notify"));
  SystemdNotifier notifier;
  ASSERT_TRUE(notifier.enabled());
  ASSERT_TRUE(notifier.WatchdogInterval().has_value());
  EXPECT_EQ(*notifier.WatchdogInterval(), seconds(2));

  FakeClock clock;
  auto owned = std::make_unique<StuckTransport>();
  StuckTransport* transport = owned.get();
  modbus::TagSpec tag;
  tag.name = "t";
  modbus::DeviceSpec device{"meter", 1, milliseconds(1000), {tag}, {}};
  modbus::ModbusPoller poller("bus", std::move(owned), {device}, clock,
                              [](ReadingBatch&&) { return true; });
  const MonoTime started = clock.mono();
  const std::vector<WorkerBeat> workers = {{"poller bus", &poller.heartbeat(), seconds(30)}};
  // The supervisor's rule: confirm only while no worker is stalled.
  const auto tick = [&] {
    bool well = true;
    for (const status::WorkerStatus& w : CheckWorkers(workers, clock.mono(), started)) {
      well = well && !w.stalled;
    }
    if (well) notifier.Watchdog();
    return well;
  };

  notifier.Ready("1/1 devices ok");
  std::thread worker([&] { poller.RunDue(); });  // the poller thread's turn
  transport->WaitInside();
  EXPECT_TRUE(tick());
  clock.Advance(seconds(29));
  EXPECT_TRUE(tick()) << "a long read within the limit is no stall";
  clock.Advance(seconds(2));
  EXPECT_FALSE(tick()) << "stuck past its limit";
  EXPECT_FALSE(tick());

  transport->Release();
  worker.join();
  poller.RunDue();  // the next turn beats
  EXPECT_TRUE(tick());

  const std::vector<std::string> got = systemd.Drain();
  const std::vector<std::string> expected = {"READY=1\nSTATUS=1/1 devices ok", "WATCHDOG=1",
                                             "WATCHDOG=1", "WATCHDOG=1"};
  EXPECT_EQ(got, expected);
}

TEST(WatchdogTest, NoNotifySocketNoNotifications) {
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  SystemdNotifier notifier;
  EXPECT_FALSE(notifier.enabled());
  EXPECT_FALSE(notifier.WatchdogInterval().has_value());
  notifier.Watchdog();  // a no-op, not an error
}

}  // namespace
}  // namespace tagrelay
