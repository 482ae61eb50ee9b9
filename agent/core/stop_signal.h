// StopSignal: a one-way "please stop" flag that worker threads wait on.
//
// Promise: once Request() is called, every current and future wait returns
// at once. A worker sleeps with WaitUntil() instead of sleep_for, so a stop
// never has to wait for a poll interval or a backoff to run out.
//
// Threads: every method is safe from any thread. Waits use the real steady
// clock; logic that must be tested with a FakeClock computes its deadlines
// separately and is driven without waiting.
#pragma once

#include <atomic>
#include <chrono>

#include "agent/core/mutex.h"

namespace tagrelay {

class StopSignal {
 public:
  void Request() {
    MutexLock lock(&mu_);
    requested_.store(true);
    cv_.SignalAll();
  }
  bool requested() const { return requested_.load(); }

  // Sleeps until `deadline` or a stop request; returns true if stop was requested.
  bool WaitUntil(std::chrono::steady_clock::time_point deadline) {
    MutexLock lock(&mu_);
    while (!requested_.load()) {
      if (!cv_.WaitUntil(deadline)) break;
    }
    return requested_.load();
  }
  template <typename Rep, typename Period>
  bool WaitFor(std::chrono::duration<Rep, Period> d) {
    return WaitUntil(std::chrono::steady_clock::now() +
                     std::chrono::duration_cast<std::chrono::steady_clock::duration>(d));
  }

 private:
  Mutex mu_;
  CondVar cv_{&mu_};
  std::atomic<bool> requested_{false};
};

}  // namespace tagrelay
