// Supervisor, with real workers: the status it samples. The devices are on
// TCP buses where nothing listens, so that they poll (and fail) on their
// schedule without a simulator; the uplink has no broker either, so that
// their readings stay in the store.
#include "agent/supervisor.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "fakes/closed_port.h"
#include "fakes/temp_dir.h"

namespace tagrelay {
namespace {

using std::chrono::milliseconds;

std::string Bus(const std::string& name, int port) {
  return "[[bus]]\nname = \"" + name +
         "\"\ntype = \"tcp\"\nhost = \"127.0.0.1\"\nport = " + std::to_string(port) +
         "\ntimeout = \"100ms\"\n";
}

std::string Device(const std::string& id, const std::string& bus, const std::string& poll) {
  return "[[device]]\nid = \"" + id + "\"\nbus = \"" + bus + "\"\npoll = \"" + poll +
         "\"\n[[device.tag]]\nname = \"t\"\naddress = 0\n";
}

// Three devices on two buses, the config's order mixing the buses; they poll
// 20, 10 and 5 times a second.
Config ThreeDevices(const TempDir& dir, const ClosedPort& port) {
  const std::string text = "[gateway]\nid = \"gw\"\ndata_dir = \"" + dir.File("data") +
                           "\"\n[store]\ncommit_interval = \"50ms\"\n"
                           "[status]\nlisten = \"\"\nsocket = \"" +
                           dir.File("status.sock") +
                           "\"\n[uplink]\nurl = \"mqtt://127.0.0.1:" + std::to_string(port.port()) +
                           "\"\ninsecure = true\n" + Bus("a", port.port()) + Bus("b", port.port()) +
                           Device("a-fast", "a", "50ms") + Device("b-mid", "b", "100ms") +
                           Device("a-slow", "a", "200ms");
  ConfigResult r = ParseConfig(text, dir.File("tagrelay.toml"));
  for (const ConfigError& e : r.errors) ADD_FAILURE() << e.ToString();
  return std::move(*r.config);
}

TEST(SupervisorTest, ASampleShowsEachDeviceWithItsOwnCountersAndBacklog) {
  TempDir dir;
  ClosedPort port;
  Supervisor supervisor(ThreeDevices(dir, port), RealClock());
  ASSERT_TRUE(supervisor.Start().ok());
  std::this_thread::sleep_for(milliseconds(1500));
  const status::StatusSnapshot s = supervisor.Collect();
  supervisor.Stop();

  ASSERT_EQ(s.devices.size(), 3u);
  const status::DeviceStatus &fast = s.devices[0], &mid = s.devices[1], &slow = s.devices[2];
  EXPECT_EQ(fast.id, "a-fast");
  EXPECT_EQ(fast.bus, "a");
  EXPECT_EQ(mid.id, "b-mid");
  EXPECT_EQ(mid.bus, "b");
  EXPECT_EQ(slow.id, "a-slow");
  EXPECT_EQ(slow.bus, "a");
  for (const status::DeviceStatus& d : s.devices) EXPECT_EQ(d.link, "down") << d.id;
  // Each device's own counters: the faster it polls, the more polls.
  EXPECT_GT(slow.polls, 0u);
  EXPECT_GT(mid.polls, slow.polls);
  EXPECT_GT(fast.polls, mid.polls);
  // And its own backlog: the failed readings, stored and not sent (counted for
  // this sample, the first one taken).
  ASSERT_TRUE(s.store.backlog_known);
  EXPECT_GT(slow.backlog, 0);
  EXPECT_GT(mid.backlog, slow.backlog);
  EXPECT_GT(fast.backlog, mid.backlog);
  EXPECT_EQ(fast.backlog + mid.backlog + slow.backlog, s.store.backlog_readings);
}

TEST(SupervisorTest, PollRatesAreMeasuredWhileNobodyAsks) {
  TempDir dir;
  ClosedPort port;
  Supervisor supervisor(ThreeDevices(dir, port), RealClock());
  ASSERT_TRUE(supervisor.Start().ok());
  // No sample is taken meanwhile; the status thread's tick measures the rates.
  std::this_thread::sleep_for(milliseconds(2500));
  const status::StatusSnapshot s = supervisor.Collect();
  supervisor.Stop();

  ASSERT_EQ(s.devices.size(), 3u);
  EXPECT_NEAR(s.devices[0].poll_rate, 20, 6) << s.devices[0].id;
  EXPECT_NEAR(s.devices[1].poll_rate, 10, 3) << s.devices[1].id;
  EXPECT_NEAR(s.devices[2].poll_rate, 5, 1.5) << s.devices[2].id;
}

TEST(SupervisorTest, TheCurrentStatusIsASampleTakenForItOnceTheLastIsASecondOld) {
  TempDir dir;
  ClosedPort port;
  Supervisor supervisor(ThreeDevices(dir, port), RealClock());
  EXPECT_EQ(supervisor.CurrentStatus(), nullptr) << "before Start()";
  ASSERT_TRUE(supervisor.Start().ok());
  std::this_thread::sleep_for(milliseconds(1200));
  const auto first = supervisor.CurrentStatus();
  ASSERT_NE(first, nullptr);
  EXPECT_GE(first->taken_ms, RealClock().wall_ms() - 100) << "taken for this call";
  EXPECT_EQ(supervisor.CurrentStatus(), first) << "fresh enough to serve again";
  std::this_thread::sleep_for(milliseconds(1000));
  const auto second = supervisor.CurrentStatus();
  EXPECT_NE(second, first);
  EXPECT_GE(second->taken_ms, RealClock().wall_ms() - 100);
  supervisor.Stop();
}

TEST(SupervisorTest, ASampleShowsTheStatusThreadsOwnProgress) {
  TempDir dir;
  ClosedPort port;
  Supervisor supervisor(ThreeDevices(dir, port), RealClock());
  ASSERT_TRUE(supervisor.Start().ok());
  // A client that connects and sends nothing holds the status thread for up
  // to 2 s; a sample taken on another thread meanwhile shows it.
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, dir.File("status.sock").c_str(), sizeof a.sun_path - 1);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  std::this_thread::sleep_for(milliseconds(1500));
  const status::StatusSnapshot s = supervisor.Collect();
  close(fd);
  supervisor.Stop();

  const auto w = std::find_if(s.workers.begin(), s.workers.end(),
                              [](const status::WorkerStatus& x) { return x.name == "status"; });
  ASSERT_NE(w, s.workers.end());
  ASSERT_TRUE(w->idle_ms.has_value());
  EXPECT_GE(*w->idle_ms, 1000);
  EXPECT_FALSE(w->stalled);
}

}  // namespace
}  // namespace tagrelay
