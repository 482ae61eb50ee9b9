// StatusServer: the status thread. It serves the agent's status (a
// StatusSnapshot from the `collect` callback) over HTTP on a Unix socket (for
// `tagrelay status`) and on a TCP address (the local web page and /metrics,
// 127.0.0.1 by default).
//
// Promise:
// - Fresh: an answer shows a sample at most `refresh` old. A sample is taken
//   when one is asked for and the latest is older than that; while nobody asks
//   none is taken. Between requests the thread beats its heartbeat and runs
//   `tick` about once a second (kHeartbeatEvery), for what must be measured at
//   a steady pace whether anyone asks or not (the poll rates).
// - Read only: nothing a client sends changes the agent.
// - Bounded: one connection at a time, a request head of at most 8 KiB, and
//   at most 2 s to send it; a slow or silent client is dropped.
// - A listener that cannot be set up (address in use, no such directory) is
//   logged as an error and left out; the agent runs on without it. A Unix
//   socket path that another live process serves is never taken over; a stale
//   one (no process behind it) is replaced. The socket is mode 0666: status
//   holds no secret, like the page on 127.0.0.1.
//
// Threads: Start() and Stop() from the owner's thread; Current(), Refresh(),
// heartbeat() and tcp_port() from any thread. `collect` runs on the status
// thread and on the thread that calls Current(), one call at a time; `tick`
// runs on the status thread. Both must be thread safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "agent/core/clock.h"
#include "agent/core/heartbeat.h"
#include "agent/core/mutex.h"
#include "agent/core/status.h"
#include "agent/status/status_model.h"

namespace tagrelay::status {

struct StatusServerOptions {
  std::string socket_path;  // empty: no Unix socket
  std::string listen;       // "127.0.0.1:9470", "[::1]:9470"; empty: no TCP listener
  std::chrono::milliseconds refresh{1000};  // the oldest sample an answer may show
};

class StatusServer {
 public:
  using Collect = std::function<StatusSnapshot()>;
  using Tick = std::function<void()>;

  // `tick` may be empty.
  StatusServer(StatusServerOptions options, Collect collect, const Clock& clock, Tick tick = {});
  ~StatusServer();
  StatusServer(const StatusServer&) = delete;
  StatusServer& operator=(const StatusServer&) = delete;

  // Sets up the listeners and starts the thread.
  void Start();
  // Stops the thread, closes the listeners and removes the socket file.
  void Stop();

  // A sample at most `refresh` old: the latest one, or one taken now on the
  // caller's thread.
  std::shared_ptr<const StatusSnapshot> Current();
  // Makes the next answer take a new sample (after a reload, so that it shows
  // the new config).
  void Refresh();

  const Heartbeat& heartbeat() const { return heartbeat_; }
  // The TCP port listened on (the kernel's choice if the config said 0); 0 if none.
  uint16_t tcp_port() const { return tcp_port_.load(); }
  bool socket_listening() const { return unix_fd_ >= 0; }

 private:
  void Run();
  void Serve(int listener);

  const StatusServerOptions options_;
  Collect collect_;
  const Clock& clock_;
  Tick tick_;
  Heartbeat heartbeat_;
  int unix_fd_ = -1;
  int tcp_fd_ = -1;
  int wake_[2] = {-1, -1};  // a pipe: Stop() writes to it
  std::atomic<uint16_t> tcp_port_{0};
  std::atomic<bool> stop_{false};
  // Held while a sample is taken, so that two askers do not both take one.
  Mutex mu_;
  std::shared_ptr<const StatusSnapshot> latest_ TR_GUARDED_BY(mu_);
  MonoTime latest_at_ TR_GUARDED_BY(mu_){};  // when it was taken
  std::thread thread_;
};

// Parses "host:port" with an IPv4 literal, or "[v6]:port".
bool ParseListenAddress(std::string_view text, std::string* host, uint16_t* port);

// `tagrelay status`: asks the agent behind `socket_path` for `path` ("/status.txt",
// "/status.json") and returns the body of its answer.
Result<std::string> FetchStatus(const std::string& socket_path, std::string_view path,
                                std::chrono::milliseconds timeout);

}  // namespace tagrelay::status
