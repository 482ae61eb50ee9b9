// StatusServer over real sockets: the Unix socket that `tagrelay status`
// reads, the TCP listener of the web page, and what it does with sockets that
// are in the way.
#include "agent/status/status_server.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>

#include "fakes/temp_dir.h"

namespace tagrelay::status {
namespace {

using std::chrono::milliseconds;

StatusSnapshot Snapshot(int n) {
  StatusSnapshot s;
  s.gateway = "gw";
  s.version = "test";
  s.state = "running";
  DeviceStatus d;
  d.id = "dev-" + std::to_string(n);
  d.link = "ok";
  s.devices.push_back(d);
  return s;
}

// One HTTP exchange over TCP with 127.0.0.1:port; returns the whole answer.
std::string HttpGet(uint16_t port, const std::string& request) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return "connect failed";
  }
  (void)!write(fd, request.data(), request.size());
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

// A Unix socket someone listens on at `path` (as another running agent would).
int ListenAt(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  EXPECT_EQ(listen(fd, 1), 0);
  return fd;
}

TEST(StatusServerTest, ServesASampleOnBothListeners) {
  TempDir dir;
  std::atomic<int> samples{0};
  StatusServer server(
      {dir.File("status.sock"), "127.0.0.1:0", milliseconds(10)},
      [&] { return Snapshot(++samples); }, RealClock());
  server.Start();
  ASSERT_TRUE(server.socket_listening());
  ASSERT_NE(server.tcp_port(), 0);
  struct stat st {};
  ASSERT_EQ(stat(dir.File("status.sock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0666u);

  Result<std::string> text =
      FetchStatus(dir.File("status.sock"), "/status.txt", milliseconds(2000));
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  EXPECT_NE(text->find("gateway gw"), std::string::npos) << *text;
  EXPECT_NE(text->find("dev-"), std::string::npos) << *text;

  // Once the refresh period is over, an answer names a later sample.
  std::this_thread::sleep_for(milliseconds(20));
  Result<std::string> json =
      FetchStatus(dir.File("status.sock"), "/status.json", milliseconds(2000));
  ASSERT_TRUE(json.ok());
  EXPECT_EQ(json->find("\"dev-1\""), std::string::npos) << *json;

  const std::string page = HttpGet(server.tcp_port(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(page.starts_with("HTTP/1.1 200 OK\r\n")) << page;
  EXPECT_NE(page.find("<!DOCTYPE html>"), std::string::npos);
  EXPECT_TRUE(HttpGet(server.tcp_port(), "garbage\r\n\r\n").starts_with("HTTP/1.1 400 "));
  EXPECT_TRUE(HttpGet(server.tcp_port(), "DELETE / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));

  Result<std::string> missing = FetchStatus(dir.File("status.sock"), "/nope", milliseconds(2000));
  EXPECT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("404"), std::string::npos);

  server.Stop();
  EXPECT_NE(stat(dir.File("status.sock").c_str(), &st), 0) << "the socket file is removed";
  Result<std::string> gone = FetchStatus(dir.File("status.sock"), "/status.txt", milliseconds(500));
  EXPECT_EQ(gone.status().code(), StatusCode::kUnavailable);
}

TEST(StatusServerTest, AStaleSocketIsReplacedALiveOneIsNot) {
  TempDir dir;
  const std::string path = dir.File("status.sock");
  // Stale: bound once, nobody listens any more.
  close(ListenAt(path));
  {
    StatusServer server(
        {path, "", milliseconds(1000)}, [] { return Snapshot(1); }, RealClock());
    server.Start();
    EXPECT_TRUE(server.socket_listening());
    EXPECT_TRUE(FetchStatus(path, "/status.txt", milliseconds(2000)).ok());
  }
  // Live: another process serves it; it must stay untouched.
  const int other = ListenAt(path);
  {
    StatusServer server(
        {path, "", milliseconds(1000)}, [] { return Snapshot(1); }, RealClock());
    server.Start();
    EXPECT_FALSE(server.socket_listening());
  }
  struct stat st {};
  EXPECT_EQ(stat(path.c_str(), &st), 0) << "the other process's socket is still there";
  close(other);
}

TEST(StatusServerTest, AnAddressInUseIsLeftOut) {
  StatusServer first(
      {"", "127.0.0.1:0", milliseconds(1000)}, [] { return Snapshot(1); }, RealClock());
  first.Start();
  ASSERT_NE(first.tcp_port(), 0);
  StatusServer second(
      {"", "127.0.0.1:" + std::to_string(first.tcp_port()), milliseconds(1000)},
      [] { return Snapshot(2); }, RealClock());
  second.Start();
  EXPECT_EQ(second.tcp_port(), 0);
  EXPECT_NE(second.Current(), nullptr) << "it still samples";
}

TEST(StatusServerTest, TakesNoSampleWhileNobodyAsks) {
  TempDir dir;
  std::atomic<int> samples{0};
  StatusServer server(
      {dir.File("status.sock"), "", milliseconds(10)}, [&] { return Snapshot(++samples); },
      RealClock());
  server.Start();
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(samples.load(), 0) << "30 refresh periods without a request";
  ASSERT_TRUE(FetchStatus(dir.File("status.sock"), "/status.json", milliseconds(2000)).ok());
  EXPECT_EQ(samples.load(), 1);
}

TEST(StatusServerTest, AnAnswerIsNeverOlderThanTheRefreshPeriod) {
  TempDir dir;
  FakeClock clock;
  std::atomic<int> samples{0};
  StatusServer server(
      {dir.File("status.sock"), "", milliseconds(1000)}, [&] { return Snapshot(++samples); },
      clock);
  server.Start();
  const auto answer = [&] {
    Result<std::string> json =
        FetchStatus(dir.File("status.sock"), "/status.json", milliseconds(2000));
    EXPECT_TRUE(json.ok()) << json.status().ToString();
    return json.ok() ? *json : std::string();
  };
  EXPECT_NE(answer().find("\"dev-1\""), std::string::npos);
  clock.Advance(milliseconds(999));
  EXPECT_NE(answer().find("\"dev-1\""), std::string::npos) << "still fresh: no new sample";
  clock.Advance(milliseconds(1));
  EXPECT_NE(answer().find("\"dev-2\""), std::string::npos) << "a second old: a new sample";
  EXPECT_EQ(server.Current()->devices[0].id, "dev-2") << "the same, on the caller's thread";
  clock.Advance(milliseconds(1000));
  EXPECT_EQ(server.Current()->devices[0].id, "dev-3");
  // After a reload the next answer is a new sample, however fresh the last one.
  server.Refresh();
  EXPECT_NE(answer().find("\"dev-4\""), std::string::npos);
  EXPECT_EQ(samples.load(), 4);
}

TEST(StatusServerTest, TicksAboutOnceASecondOnItsThread) {
  std::atomic<int> ticks{0};
  std::atomic<int> samples{0};
  std::thread::id ticked_on;
  StatusServer server(
      {"", "", milliseconds(10)}, [&] { return Snapshot(++samples); }, RealClock(),
      [&] {
        ticked_on = std::this_thread::get_id();
        ++ticks;
      });
  const auto start = std::chrono::steady_clock::now();
  server.Start();
  while (ticks.load() < 2 && std::chrono::steady_clock::now() - start < std::chrono::seconds(5)) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  const auto took = std::chrono::steady_clock::now() - start;
  server.Stop();
  EXPECT_GE(ticks.load(), 2);
  EXPECT_GE(took, milliseconds(950)) << "the second tick comes a second after the first";
  EXPECT_NE(ticked_on, std::this_thread::get_id());
  EXPECT_EQ(samples.load(), 0) << "a tick takes no sample";
}

TEST(StatusServerTest, ParsesListenAddresses) {
  std::string host;
  uint16_t port = 0;
  EXPECT_TRUE(ParseListenAddress("127.0.0.1:9470", &host, &port));
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 9470);
  EXPECT_TRUE(ParseListenAddress("[::1]:80", &host, &port));
  EXPECT_EQ(host, "::1");
  EXPECT_FALSE(ParseListenAddress("localhost:80", &host, &port));
  EXPECT_FALSE(ParseListenAddress("127.0.0.1:65536", &host, &port));
  EXPECT_FALSE(ParseListenAddress("127.0.0.1", &host, &port));
}

}  // namespace
}  // namespace tagrelay::status
