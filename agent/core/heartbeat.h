// Heartbeat: a worker thread's sign of life, read by the supervisor's watchdog.
//
// Promise: Beat() records the time of the latest turn of the worker's loop;
// last() returns it, or nullopt before the first beat. A worker beats at least
// once per turn and never sleeps longer than kHeartbeatEvery between turns, so
// a heartbeat that is much older than that means the worker is stuck (a
// blocking call that does not return, a deadlock).
//
// Threads: Beat() is called by the worker, last() from any thread (one atomic).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>

#include "agent/core/clock.h"

namespace tagrelay {

// The longest a worker waits between two beats when it has nothing to do.
inline constexpr std::chrono::milliseconds kHeartbeatEvery{1000};

class Heartbeat {
 public:
  void Beat(MonoTime now) {
    ns_.store(std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count(),
              std::memory_order_relaxed);
  }
  std::optional<MonoTime> last() const {
    const int64_t ns = ns_.load(std::memory_order_relaxed);
    if (ns == kNever) return std::nullopt;
    return MonoTime(std::chrono::duration_cast<MonoTime::duration>(std::chrono::nanoseconds(ns)));
  }

 private:
  static constexpr int64_t kNever = INT64_MIN;
  std::atomic<int64_t> ns_{kNever};
};

}  // namespace tagrelay
